"""Organisation registry persistence: the only module of this service that talks to MongoDB."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo.database import Database

from shared.events import Envelope
from shared.mongo import BaseStore
from shared.outbox import insert_with_events

ORGANISATIONS = "organisations"
PEOPLE = "people"


class RegistryStore(BaseStore):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.organisations = db[ORGANISATIONS]
        self.people = db[PEOPLE]

    def organisation(self, organisation_id: str) -> dict[str, Any] | None:
        return self.document(ORGANISATIONS, organisation_id)

    def person(self, person_id: str) -> dict[str, Any] | None:
        return self.document(PEOPLE, person_id)

    def document(self, collection: str, document_id: str) -> dict[str, Any] | None:
        return self.db[collection].find_one({"_id": document_id})

    def insert(
        self, collection: str, document: dict[str, Any], events: Sequence[Envelope]
    ) -> tuple[list[dict[str, Any]], bool]:
        """Insert a new document with its events; returns (outbox records, already existed)."""
        records, existing = insert_with_events(self.db, collection, [(document, events)])
        return records, bool(existing)

    def list_people(
        self, community_id: str | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        query = {"community_id": community_id} if community_id else {}
        total = self.people.count_documents(query)
        return list(self.people.find(query).sort("_id", 1).skip(offset).limit(limit)), total

    def list_organisations(self) -> list[dict[str, Any]]:
        return list(self.organisations.find({}).sort("_id", 1))
