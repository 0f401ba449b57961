"""Issue intake persistence: the only module of this service that talks to MongoDB."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pymongo.database import Database

from shared.cache import RecentlyFound
from shared.events import Envelope, OrganisationCreated, PersonRegistered
from shared.mongo import BaseStore
from shared.outbox import insert_with_events

ACTS = "volunteer_acts"


class IntakeStore(BaseStore):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.acts = db[ACTS]
        # Read models of the registry, fed by its events.
        self.people = db["people"]
        self.organisations = db["organisations"]
        self._found = RecentlyFound()

    def person(self, person_id: str) -> dict[str, Any] | None:
        return self._found.get(f"person:{person_id}", lambda: self.people.find_one({"_id": person_id}))

    def organisation(self, organisation_id: str) -> dict[str, Any] | None:
        return self._found.get(
            f"organisation:{organisation_id}", lambda: self.organisations.find_one({"_id": organisation_id})
        )

    def people_by_id(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {p["_id"]: p for p in self.people.find({"_id": {"$in": sorted(set(ids))}})}

    def organisations_by_id(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {o["_id"]: o for o in self.organisations.find({"_id": {"$in": sorted(set(ids))}})}

    def remember_person(self, data: PersonRegistered) -> None:
        self.people.update_one({"_id": data.person_id}, {"$set": data.model_dump(mode="json")}, upsert=True)

    def remember_organisation(self, data: OrganisationCreated) -> None:
        self.organisations.update_one(
            {"_id": data.organisation_id}, {"$set": data.model_dump(mode="json")}, upsert=True
        )

    def insert_acts(
        self, changes: Sequence[tuple[dict[str, Any], Sequence[Envelope]]]
    ) -> tuple[list[dict[str, Any]], set[str]]:
        return insert_with_events(self.db, ACTS, changes)

    def act(self, act_id: str) -> dict[str, Any] | None:
        return self.acts.find_one({"_id": act_id})
