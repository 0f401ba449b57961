"""A collection stored as several small ones, chosen by a hash of the key.

Journal summaries live here. The split dates from when FerretDB read every row of a collection
to find a document by `_id`; the local stack now gives it an index for that
(deploy/local/ferretdb_indexes.py), so the split no longer saves work, and every collection
more makes each command of its database a little slower. Merging them into one collection
needs a move of the stored summaries; until then they stay as they are.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database

from shared.mongo import find_by_ids, replace_by_id

PARTITIONS = 8


class Partitioned:
    def __init__(self, db: Database, name: str, partitions: int = PARTITIONS) -> None:
        self.db = db
        self.name = name
        self.partitions = partitions

    def of(self, key: str) -> Collection:
        return self._partition(zlib.crc32(key.encode()) % self.partitions)

    def _partition(self, n: int) -> Collection:
        return self.db[f"{self.name}.p{n:03d}"]

    def _by_partition(self, keys: Iterable[str]) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            grouped[self.of(key).name].append(key)
        return grouped

    def stored_keys(self) -> list[str]:
        """Every key stored (a query of every partition)."""
        return [
            document["_id"]
            for n in range(self.partitions)
            for document in self._partition(n).find({}, {"_id": 1})
        ]

    def find_one(self, key: str) -> dict[str, Any] | None:
        return self.of(key).find_one({"_id": key})

    def find_many(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        found = []
        for collection, some in self._by_partition(keys).items():
            found += find_by_ids(self.db[collection], some).values()
        return found

    def replace_many(self, documents: dict[str, dict[str, Any]]) -> None:
        """Write documents by key (inserting missing ones), a few per command (`replace_by_id`)."""
        for collection, keys in self._by_partition(documents).items():
            replace_by_id(self.db[collection], {key: documents[key] for key in keys})
