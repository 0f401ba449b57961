"""A collection stored as many small ones, chosen by a hash of the key.

FerretDB 1.24 (SQLite) looks up and rewrites a document by `_id` by reading every row of
its collection, so the cost of a summary rewrite grows with all the summaries there are.
Spread over 8 collections, each rewrite reads 1/8 of them. More partitions cost more than
they save there: measured, every command of a database gets slower as its number of
collections grows (a rewrite: 0.9 ms CPU with one collection, 3.7 ms with 127). On MongoDB
this is harmless: a few small collections with real indexes.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database

from shared.mongo import replace_by_id

PARTITIONS = 8


class Partitioned:
    def __init__(self, db: Database, name: str, partitions: int = PARTITIONS) -> None:
        self.db = db
        self.name = name
        self.partitions = partitions

    def of(self, key: str) -> Collection:
        return self.db[f"{self.name}.p{zlib.crc32(key.encode()) % self.partitions:03d}"]

    def _by_partition(self, keys: Iterable[str]) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            grouped[self.of(key).name].append(key)
        return grouped

    def find_one(self, key: str) -> dict[str, Any] | None:
        return self.of(key).find_one({"_id": key})

    def find_many(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        found = []
        for collection, some in self._by_partition(keys).items():
            found += list(self.db[collection].find({"_id": {"$in": some}}))
        return found

    def replace_many(self, documents: dict[str, dict[str, Any]]) -> None:
        """Write documents by key (inserting missing ones), one round trip per partition."""
        for collection, keys in self._by_partition(documents).items():
            replace_by_id(self.db[collection], {key: documents[key] for key in keys})
