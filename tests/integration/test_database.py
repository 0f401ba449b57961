"""The embedded database's known faults, and what the suite does about them (shared/mongo.py)."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from deploy.local.ferretdb_indexes import INDEX_SUFFIX, LOOKUP_EXPRESSION
from shared.mongo import LOOKUPS_AT_MOST, find_by_ids, replace_by_id
from tests.support import eventually

pytestmark = pytest.mark.integration


# Ids whose JSON text FerretDB escapes: the index must agree with its lookups for all of them.
AWKWARD_IDS = [
    "plain",
    "中观社区",
    "a&b<c>d",
    'q"uote',
    "back\\slash",
    "emoji😀",
    "tab\tnl\n",
    "k#0000000001",
]


def test_lookups_by_id_get_an_index_that_agrees_with_ferretdb(scratch, infrastructure):
    """FerretDB's own `_id` index is on another expression than its lookups use, so they scan;
    the local stack's indexer adds one on the lookup's expression to every new collection.
    Lookups, updates and deletes by `_id` then still find every document."""
    scratch.things.insert_many([{"_id": i, "n": 1} for i in AWKWARD_IDS])
    path = infrastructure.home / "ferretdb" / f"{scratch.name}.sqlite"

    def lookup_plan() -> str:
        with closing(sqlite3.connect(path)) as db:
            [table] = db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'things%'"
            )
            query = f'EXPLAIN QUERY PLAN SELECT 1 FROM "{table[0]}" WHERE {LOOKUP_EXPRESSION} = ?'
            return " ".join(row[-1] for row in db.execute(query, ('"plain"',)))

    assert eventually(lambda: "USING INDEX" in lookup_plan() and INDEX_SUFFIX in lookup_plan())
    for i in AWKWARD_IDS:
        assert scratch.things.find_one({"_id": i}) == {"_id": i, "n": 1}
        assert scratch.things.update_one({"_id": i}, {"$set": {"n": 2}}).modified_count == 1
    scratch.things.insert_many([{"_id": f"{i}+", "n": 3} for i in AWKWARD_IDS])
    for i in AWKWARD_IDS:
        assert scratch.things.delete_one({"_id": i}).deleted_count == 1
    assert sorted(d["_id"] for d in scratch.things.find({})) == sorted(f"{i}+" for i in AWKWARD_IDS)


def test_many_replacements_in_one_call_complete(scratch):
    """One `update` command of ~100 statements deadlocks FerretDB's connection pool; the
    helper sends them a few at a time, so 300 go through (else: a socket timeout)."""
    documents = {f"doc-{i:03d}": {"n": i} for i in range(300)}
    replace_by_id(scratch.things, documents)
    replace_by_id(scratch.things, {key: {"n": doc["n"] + 1} for key, doc in documents.items()})
    stored = {d["_id"]: d["n"] for d in scratch.things.find({})}
    assert stored == {key: doc["n"] + 1 for key, doc in documents.items()}


def test_documents_by_id_are_found_a_few_or_many_at_a_time(scratch):
    scratch.things.insert_many([{"_id": f"doc-{i:03d}", "n": i} for i in range(LOOKUPS_AT_MOST + 10)])
    few = ["doc-001", "doc-002", "doc-001", "nobody"]
    assert find_by_ids(scratch.things, few) == {
        "doc-001": {"_id": "doc-001", "n": 1},
        "doc-002": {"_id": "doc-002", "n": 2},
    }
    many = [f"doc-{i:03d}" for i in range(LOOKUPS_AT_MOST + 20)]  # past the end too
    found = find_by_ids(scratch.things, many)
    assert sorted(found) == [f"doc-{i:03d}" for i in range(LOOKUPS_AT_MOST + 10)]
    assert all(document["n"] == int(key[4:]) for key, document in found.items())
