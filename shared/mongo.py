"""MongoDB access for services: one client per process, one database per service.

FerretDB 1.24 (SQLite backend), the development database, shapes how the stores are written
(all measured here):
- every lookup or rewrite reads the whole collection: `{"_id": <string>}` is scanned in SQL
  (its index is not used), any other filter is matched in Go; so hot paths touch only small
  collections, and inserts, which unique indexes keep O(log n), carry the load;
- an update is read-modify-write without a check, so two concurrent updates of one document
  can lose one; inserts guarded by unique indexes are exact, so correctness rests on them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import uuid4

from nameko.extensions import DependencyProvider
from pymongo import MongoClient
from pymongo.database import Database

from shared.settings import get_settings

_clients: dict[str, MongoClient] = {}


def connect(service: str) -> Database:
    """The service's database, on the process's one client (shared by the store and the
    outbox relay).

    The pool is small by default: with FerretDB's SQLite backend, concurrent writers to one
    database file wait on SQLite's lock, sleeping in coarse steps, so one connection that
    green threads take turns on is far faster. Against MongoDB, raise GRIDLINK_MONGO_POOL_SIZE.
    """
    settings = get_settings()
    client = _clients.get(settings.mongo_url)
    if client is None:
        client = MongoClient(
            settings.mongo_url,
            maxPoolSize=settings.mongo_pool_size,
            serverSelectionTimeoutMS=settings.mongo_timeout_ms,
            connectTimeoutMS=settings.mongo_timeout_ms,
            socketTimeoutMS=max(10_000, settings.mongo_timeout_ms * 4),
            tz_aware=True,
            appname=f"gridlink-{service}",
        )
        _clients[settings.mongo_url] = client
    return client[settings.database_name(service)]


def disconnect() -> None:
    for client in _clients.values():
        client.close()
    _clients.clear()


class Store(Protocol):
    def __init__(self, db: Database) -> None: ...

    def ensure_indexes(self) -> None: ...


class StoreProvider(DependencyProvider):
    """Injects the service's store (its one persistence module) into every worker."""

    def __init__(self, service: str, store_class: type[Store]) -> None:
        self.service = service
        self.store_class = store_class
        self.store: Any = None

    def setup(self) -> None:
        self.store = self.store_class(connect(self.service))

    def start(self) -> None:
        self.store.ensure_indexes()

    def stop(self) -> None:
        disconnect()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> Any:
        return self.store


class BaseStore:
    """What every service store has: its database and a place for parked events."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.parked = db["parked_events"]

    def ensure_indexes(self) -> None:
        """Stores add their own; FerretDB ignores none of them, though it uses few."""

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

    def parked_events(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self.parked.find({}).limit(limit))
