"""Organisation registry persistence: the only module of this service that talks to MongoDB.

The tree, the places and the people of a district are thousands of documents, so rules that
need the whole tree read it whole (FerretDB scans a collection for any filter but `_id`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

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
CACHED = (ORGANISATIONS, PLACES, PEOPLE)
# A process that died between a write and its token renewal leaves caches stale this long.
CACHE_SECONDS = 300.0
WITHOUT_EVENTS = {"events": 0}

Document = dict[str, Any]


class _Cached(NamedTuple):
    token: str | None
    until: float  # monotonic time
    documents: dict[str, Document]


class RegistryStore(BaseStore):
    """Reads of the whole tree, of all places and of all people are served from memory while
    the collection's change token is the one they were read under. Most calls need the tree;
    listings, searches, statistics and imports need the people. FerretDB reads a collection
    whole for any filter but `_id` (5,000 people: 0.7-1.4 s, make bench), a token in a
    millisecond.

    This process's own writes keep its cache (write-through) when nobody else renewed the
    token since the cache was read; a write by another process renews it, and the next read
    here reads the collection again. A person held here costs about 1 to 1.5 KB (no events).
    """

    def __init__(self, db: Database, reads: Database | None = None) -> None:
        super().__init__(db, reads)
        self._cache: dict[str, _Cached] = {}
        # One caller reads a collection whose cache is stale; the others wait for its result.
        # Each reading for itself, a portal's worth of calls right after a start read every
        # person that many times over, and held that many copies in memory.
        self._reading = {collection: threading.Lock() for collection in CACHED}

    def warm_up(self) -> None:
        """Read the cached collections now, so that the first calls after a start need not."""
        for collection in CACHED:
            self._cached(collection)

    def ensure_indexes(self) -> None:
        self.db[MEMBERSHIPS].create_index("chain")
        self.db[MEMBERSHIPS].create_index("membership_id", unique=True)
        self.db[MEMBERSHIPS].create_index("person_id")

    # --- reads ------------------------------------------------------------------------------

    def document(self, collection: str, document_id: str) -> Document | None:
        return self.db[collection].find_one({"_id": document_id})

    def all(self, collection: str, query: dict[str, Any] | None = None) -> dict[str, Document]:
        # On the read connections: a read of every person must not hold up this process's writes.
        return {d["_id"]: d for d in self.reads[collection].find(query or {}, WITHOUT_EVENTS)}

    def tree(self) -> dict[str, Document]:
        """Every organisation by code. Shared with other calls: read it, never change it."""
        return self._cached(ORGANISATIONS)

    def places(self) -> dict[str, Document]:
        """Every place by code. Shared with other calls: read it, never change it."""
        return self._cached(PLACES)

    def people(self) -> dict[str, Document]:
        """Every person by id, without events. Shared with other calls: read it, never change it."""
        return self._cached(PEOPLE)

    def _cached(self, collection: str) -> dict[str, Document]:
        hit = self._current(collection, self._token(collection))
        if hit is None:
            with self._reading[collection]:
                # The token is read before the documents, so documents read under a token are
                # at least as new as the write that set it.
                token = self._token(collection)
                hit = self._current(collection, token) or self._read(collection, token)
        return hit.documents

    def _token(self, collection: str) -> str | None:
        return (self.db[CHANGES].find_one({"_id": collection}) or {}).get("token")

    def _current(self, collection: str, token: str | None) -> _Cached | None:
        hit = self._cache.get(collection)
        if hit is not None and hit.until > time.monotonic() and hit.token == token:
            return hit
        return None

    def _read(self, collection: str, token: str | None) -> _Cached:
        hit = _Cached(token, time.monotonic() + CACHE_SECONDS, self.all(collection))
        self._cache[collection] = hit
        return hit

    def _changed(self, collection: str, written: dict[str, Document] | None = None) -> None:
        """Renew the token of a cached collection after a write to it. `written`: the documents
        as the write left them, when its outcome is known in full. The cache here then takes
        them in, if it was current until this write: the token is renewed only if it is
        still the one the cache was read under. Otherwise the cache goes."""
        if collection not in CACHED or written == {}:  # nothing changed
            return
        fresh = uuid.uuid4().hex
        hit = self._cache.get(collection)
        if hit is not None and written is not None:
            kept = self.db[CHANGES].update_one(
                {"_id": collection, "token": hit.token}, {"$set": {"token": fresh}}
            )
            # Another writer here may have replaced the cache meanwhile: its token tells.
            if kept.matched_count and self._cache.get(collection) is hit:
                # A new dict, never a changed one: callers may still hold the old.
                self._cache[collection] = hit._replace(token=fresh, documents={**hit.documents, **written})
                return
        self._cache.pop(collection, None)
        self.db[CHANGES].update_one({"_id": collection}, {"$set": {"token": fresh}}, upsert=True)

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
        records, existing = self.insert_many(collection, [(document, events)])
        return None if existing else records

    def insert_many(
        self, collection: str, changes: Sequence[tuple[Document, Sequence[Envelope]]]
    ) -> tuple[list[Document], set[int]]:
        written = None
        try:
            records, existing = insert_with_events(self.db, collection, changes)
            written = {d["_id"]: d for i, (d, _) in enumerate(changes) if i not in existing}
            return records, existing
        finally:
            self._changed(collection, written)

    def insert_plain(self, collection: str, document: Document) -> bool:
        """Insert a document that causes no event; False if its `_id` is taken."""
        written = None
        try:
            self.db[collection].insert_one(document)
            written = {document["_id"]: document}
        except DuplicateKeyError:
            written = {}
            return False
        finally:
            self._changed(collection, written)
        return True

    def insert_plain_many(self, collection: str, documents: list[Document]) -> None:
        if documents:
            written = None
            try:
                self.db[collection].insert_many(documents, ordered=False)
                written = {d["_id"]: d for d in documents}
            finally:
                self._changed(collection, written)

    def update(
        self, collection: str, current: Document, change: Document, events: Sequence[Envelope]
    ) -> list[Document] | None:
        """Change a document read as `current`; None if it changed meanwhile (nothing done)."""
        written = None
        try:
            records = update_with_events(self.db, collection, current, change, events)
            after = {k: v for k, v in {**current, **change}.items() if k != "events"}
            written = {} if records is None else {current["_id"]: after}
            return records
        finally:
            self._changed(collection, written)

    # --- imports ----------------------------------------------------------------------------

    def start_import(self, job: Document) -> None:
        self.db[IMPORTS].insert_one({**job, "started_at": datetime.now(UTC)})

    def import_progress(self, job_id: str, change: Document) -> None:
        self.db[IMPORTS].update_one({"_id": job_id}, {"$set": {**change, "updated_at": datetime.now(UTC)}})
