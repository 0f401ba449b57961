"""Organisation registry persistence: the only module of this service that talks to MongoDB.

The tree, the places and the people of a district are thousands of documents, so rules that
need the whole tree read it whole (FerretDB scans a collection for any filter but `_id`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from shared.events import Envelope
from shared.mongo import BaseStore
from shared.outbox import insert_with_events, update_with_events

ORGANISATIONS = "organisations"
PLACES = "places"
PEOPLE = "people"
MEMBERSHIPS = "memberships"
DUAL_REPORTS = "dual_reports"
POST_CLAIMS = "post_claims"
IMPORTS = "imports"
CHANGES = "changes"  # a token per cached collection, renewed by every write to it
CACHED = (ORGANISATIONS, PLACES)
# A process that died between a write and its token renewal leaves caches stale this long.
CACHE_SECONDS = 30.0
WITHOUT_EVENTS = {"events": 0}

Document = dict[str, Any]


class RegistryStore(BaseStore):
    """Reads of the whole tree and of all places are served from memory while the collection's
    change token is the one they were read under: most calls need the tree, and reading a
    2,000-node tree costs FerretDB about 0.4 s (make bench), reading its token a millisecond."""

    def __init__(self, db: Database, reads: Database | None = None) -> None:
        super().__init__(db, reads)
        self._cache: dict[str, tuple[str | None, float, dict[str, Document]]] = {}

    def ensure_indexes(self) -> None:
        self.db[PEOPLE].create_index("community_id")
        self.db[PEOPLE].create_index("phone.index")
        self.db[PEOPLE].create_index("id_number.index")
        self.db[MEMBERSHIPS].create_index("chain")
        self.db[MEMBERSHIPS].create_index("membership_id", unique=True)
        self.db[MEMBERSHIPS].create_index("person_id")

    # --- reads ------------------------------------------------------------------------------

    def document(self, collection: str, document_id: str) -> Document | None:
        return self.db[collection].find_one({"_id": document_id})

    def all(self, collection: str, query: dict[str, Any] | None = None) -> dict[str, Document]:
        return {d["_id"]: d for d in self.db[collection].find(query or {}, WITHOUT_EVENTS)}

    def tree(self) -> dict[str, Document]:
        """Every organisation by code. Shared with other calls: read it, never change it."""
        return self._cached(ORGANISATIONS)

    def places(self) -> dict[str, Document]:
        """Every place by code. Shared with other calls: read it, never change it."""
        return self._cached(PLACES)

    def _cached(self, collection: str) -> dict[str, Document]:
        # The token is read before the documents, so documents read under a token are at
        # least as new as the write that set it.
        token = (self.db[CHANGES].find_one({"_id": collection}) or {}).get("token")
        hit = self._cache.get(collection)
        if hit is not None and hit[0] == token and hit[1] > time.monotonic():
            return hit[2]
        documents = self.all(collection)
        self._cache[collection] = (token, time.monotonic() + CACHE_SECONDS, documents)
        return documents

    def _changed(self, collection: str) -> None:
        if collection in CACHED:
            self._cache.pop(collection, None)
            self.db[CHANGES].update_one(
                {"_id": collection}, {"$set": {"token": uuid.uuid4().hex}}, upsert=True
            )

    def people_page(self, query: dict[str, Any], offset: int, limit: int) -> tuple[list[Document], int]:
        people = self.db[PEOPLE]
        total = people.count_documents(query)
        found = people.find(query, WITHOUT_EVENTS).sort("_id", 1).skip(offset).limit(limit)
        return list(found), total

    def people_by_number(self, kind: str, index: str) -> list[Document]:
        return list(self.db[PEOPLE].find({f"{kind}.index": index}, WITHOUT_EVENTS).sort("_id", 1))

    def chain(self, key: str) -> list[Document]:
        return list(self.db[MEMBERSHIPS].find({"chain": key}))

    def tenure(self, membership_id: str) -> Document | None:
        return self.db[MEMBERSHIPS].find_one({"membership_id": membership_id})

    def tenures(self, query: dict[str, Any] | None = None) -> list[Document]:
        return list(self.db[MEMBERSHIPS].find(query or {}, WITHOUT_EVENTS))

    def claims(self, report_ids: Iterable[str]) -> list[Document]:
        return list(self.db[POST_CLAIMS].find({"report_id": {"$in": sorted(set(report_ids))}}))

    # --- writes -----------------------------------------------------------------------------

    def insert(
        self, collection: str, document: Document, events: Sequence[Envelope]
    ) -> list[Document] | None:
        """Insert a new document with its events: the outbox records, or None if its `_id` is taken."""
        records, existing = insert_with_events(self.db, collection, [(document, events)])
        self._changed(collection)
        return None if existing else records

    def insert_many(
        self, collection: str, changes: Sequence[tuple[Document, Sequence[Envelope]]]
    ) -> tuple[list[Document], set[int]]:
        try:
            return insert_with_events(self.db, collection, changes)
        finally:
            self._changed(collection)

    def insert_plain(self, collection: str, document: Document) -> bool:
        """Insert a document that causes no event; False if its `_id` is taken."""
        try:
            self.db[collection].insert_one(document)
        except DuplicateKeyError:
            return False
        finally:
            self._changed(collection)
        return True

    def insert_plain_many(self, collection: str, documents: list[Document]) -> None:
        if documents:
            try:
                self.db[collection].insert_many(documents, ordered=False)
            finally:
                self._changed(collection)

    def update(
        self, collection: str, current: Document, change: Document, events: Sequence[Envelope]
    ) -> list[Document] | None:
        """Change a document read as `current`; None if it changed meanwhile (nothing done)."""
        try:
            return update_with_events(self.db, collection, current, change, events)
        finally:
            self._changed(collection)

    # --- imports ----------------------------------------------------------------------------

    def start_import(self, job: Document) -> None:
        self.db[IMPORTS].insert_one({**job, "started_at": datetime.now(UTC)})

    def import_progress(self, job_id: str, change: Document) -> None:
        self.db[IMPORTS].update_one({"_id": job_id}, {"$set": {**change, "updated_at": datetime.now(UTC)}})
