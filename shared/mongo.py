"""MongoDB access for services: one client per process, one database per service.

FerretDB 1.24 (SQLite backend), the development database, shapes how the stores are written
(all measured here):
- a filter of `{"_id": <string>}` alone (find, update, replace, delete) is an index lookup once
  the local stack's `deploy/local/ferretdb_indexes.py` has indexed the table; any other filter,
  `{"_id": {"$in": ...}}` included, reads and decodes the whole collection in Go. So hot paths
  look documents up by `_id` one at a time, and inserts, which unique indexes keep O(log n),
  carry the load;
- an `update` command holds a SQLite connection for each of its statements until the last is
  done, from a pool of 100 per database: a bulk write of about 100 updates waits for itself
  forever and stalls every writer of that database. Bulk updates go `UPDATES_PER_COMMAND` at
  a time (`replace_by_id`);
- an update is read-modify-write without a check, so two concurrent updates of one document
  can lose one; inserts guarded by unique indexes are exact, so correctness rests on them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import uuid4

from nameko.extensions import DependencyProvider
from pymongo import MongoClient, ReplaceOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from shared.settings import get_settings

log = logging.getLogger(__name__)
_clients: dict[str, MongoClient] = {}
DUPLICATE_KEY = 11000
UPDATES_PER_COMMAND = 25  # well below FerretDB's 100 connections, with room for other writers
PARKED_EVENTS = "parked_events"  # events a consumer could not apply (see shared/parked.py)
LOOKUPS_AT_MOST = 64  # ids `find_by_ids` looks up one by one; more are fetched by one `$in`


def find_by_ids(collection: Collection, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Documents by `_id`. A few are one indexed lookup each; many, one `$in` query (on
    FerretDB a scan of the collection, cheaper than that many lookups)."""
    wanted = sorted(set(ids))
    if len(wanted) > LOOKUPS_AT_MOST:
        return {d["_id"]: d for d in collection.find({"_id": {"$in": wanted}})}
    found = (collection.find_one({"_id": i}) for i in wanted)
    return {d["_id"]: d for d in found if d is not None}


def insert_new(collection: Collection, documents: Sequence[dict[str, Any]]) -> set[int]:
    """Insert documents in one statement, skipping those a unique key (`_id`, a guard) says
    are there already; returns their positions. Any other error is raised."""
    try:
        collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        skipped = set()
        for error in exc.details.get("writeErrors", []):
            if error.get("code") != DUPLICATE_KEY:
                raise
            skipped.add(error["index"])
        return skipped
    return set()


def replace_by_id(collection: Collection, documents: dict[str, dict[str, Any]]) -> None:
    """Write documents by `_id` (inserting missing ones), a few statements per command."""
    ids = list(documents)
    for start in range(0, len(ids), UPDATES_PER_COMMAND):
        chunk = ids[start : start + UPDATES_PER_COMMAND]
        replacements = [ReplaceOne({"_id": i}, documents[i], upsert=True) for i in chunk]
        collection.bulk_write(replacements, ordered=False)


def connect(service: str, *, for_reads: bool = False) -> Database:
    """The service's database, on the process's one client (shared by the store and the
    outbox relay); `for_reads`: on a second client, for reads only.

    One connection by default: FerretDB runs an update as a read and then a write, so two
    connections of one process could interleave two versioned updates of a document and lose
    one; on a single connection they take turns. Reads change nothing, so they get their own
    few connections (GRIDLINK_MONGO_READ_POOL_SIZE) and need not wait behind writes. Against
    MongoDB, whose updates are atomic, raise GRIDLINK_MONGO_POOL_SIZE.
    """
    settings = get_settings()
    key = f"{settings.mongo_url} reads" if for_reads else settings.mongo_url
    client = _clients.get(key)
    if client is None:
        client = MongoClient(
            settings.mongo_url,
            maxPoolSize=settings.mongo_read_pool_size if for_reads else settings.mongo_pool_size,
            serverSelectionTimeoutMS=settings.mongo_timeout_ms,
            connectTimeoutMS=settings.mongo_timeout_ms,
            socketTimeoutMS=max(10_000, settings.mongo_timeout_ms * 4),
            tz_aware=True,
            appname=f"gridlink-{service}",
        )
        _clients[key] = client
    return client[settings.database_name(service)]


def disconnect() -> None:
    for client in _clients.values():
        client.close()
    _clients.clear()


class Store(Protocol):
    def __init__(self, db: Database, reads: Database | None = None) -> None: ...

    def ensure_indexes(self) -> None: ...

    def write_behind(self) -> None: ...

    def warm_up(self) -> None: ...


class StoreProvider(DependencyProvider):
    """Injects the service's store (its one persistence module) into every worker."""

    def __init__(self, service: str, store_class: type[Store]) -> None:
        self.service = service
        self.store_class = store_class
        self.store: Any = None

    def setup(self) -> None:
        self.store = self.store_class(connect(self.service), connect(self.service, for_reads=True))

    def start(self) -> None:
        self.store.ensure_indexes()
        # In the background: the service answers meanwhile (calls that need what is being
        # read wait for it), and a database that is down now only costs the warm-up.
        self.container.spawn_managed_thread(self._warm_up, identifier="warm-up")

    def _warm_up(self) -> None:
        try:
            self.store.warm_up()
        except Exception:  # an exception here would stop the service
            log.exception("%s: warming up failed; its first calls will read instead", self.service)

    def stop(self) -> None:
        try:
            self.store.write_behind()
        finally:
            disconnect()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> Any:
        return self.store


class BaseStore:
    """What every service store has: its database and a place for parked events."""

    def __init__(self, db: Database, reads: Database | None = None) -> None:
        self.db = db
        self.reads = db if reads is None else reads  # the same database, on read-only connections
        self.parked = db[PARKED_EVENTS]

    def ensure_indexes(self) -> None:
        """Stores add their own; FerretDB ignores none of them, though it uses few."""

    def write_behind(self) -> None:
        """Store now what is kept in memory to be written later (the service is stopping)."""

    def warm_up(self) -> None:
        """Read now what calls would otherwise read first (the service is starting)."""

    def park_event(self, payload: Any, reason: str, handler: str) -> None:
        """Keep an event no retry can apply, for an operator to inspect; never raises twice."""
        event_id = payload.get("id") if isinstance(payload, dict) else None
        self.parked.update_one(
            {"_id": f"{handler}:{event_id or uuid4()}"},
            {
                "$set": {"handler": handler, "reason": reason[:2000], "payload": payload},
                "$setOnInsert": {"parked_at": datetime.now(UTC)},
                "$inc": {"deliveries": 1},
            },
            upsert=True,
        )
