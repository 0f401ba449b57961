"""The points ledger on the real database: exact under duplicate and concurrent delivery.

FerretDB can lose one of two concurrent updates of a document; these tests show that the
ledger's guarantees, which rest on unique keys, hold anyway.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest
from pymongo import MongoClient

from services.points.store import PointsStore
from shared.journal import slot_id

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger_db(settings, infrastructure):
    client = MongoClient(settings.mongo_url, tz_aware=True)
    name = f"gltest_ledger_{uuid.uuid4().hex[:8]}"
    yield client, name
    client.drop_database(name)
    client.close()


def store_on(settings, name: str) -> PointsStore:
    """A store with its own client and cache, as another service process would have."""
    store = PointsStore(MongoClient(settings.mongo_url, tz_aware=True, maxPoolSize=1)[name])
    store.ensure_indexes()
    return store


def entry(points: int) -> dict:
    return {"kind": "volunteer_act", "points": points, "rule": "test", "applied_at": datetime.now(UTC)}


def test_concurrent_duplicate_deliveries_across_instances_credit_once(settings, ledger_db):
    _, name = ledger_db
    instances = [store_on(settings, name) for _ in range(6)]
    events = [f"evt-{i}" for i in range(50)]
    errors = []

    def deliver(store: PointsStore) -> None:
        try:
            for event_id in events:
                store.post("p-1", event_id, entry(10))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(store,)) for store in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    entries = list(instances[0].ledger.entries.find({"key": "p-1"}))
    assert len(entries) == 50
    assert sorted(e["seq"] for e in entries) == list(range(1, 51))  # an unbroken chain
    assert {e["guard"] for e in entries} == {f"{e}@p-1" for e in events}
    assert sorted(e["balance_after"] for e in entries) == list(range(10, 501, 10))
    assert max(e["balance_after"] for e in entries) == sum(e["points"] for e in entries) == 500


def test_stale_summary_is_repaired_by_the_next_posting(settings, ledger_db):
    """A crash between the entry and the summary write leaves the summary behind; the next
    posting walks the chain and the balance comes out right."""
    _, name = ledger_db
    store = store_on(settings, name)
    store.post("p-2", "e-1", entry(10))
    # What a crash right after the insert of e-2 leaves behind: the entry, no summary update.
    store.ledger.entries.insert_one(
        {
            **entry(5),
            "_id": slot_id("p-2", 2),
            "account": "p-2",
            "seq": 2,
            "guard": "e-2@p-2",
            "balance_after": 15,
        }
    )
    assert store.account("p-2")["balance"] == 10

    assert store.post("p-2", "e-2", entry(5)) is False  # the redelivery is recognised
    assert store.account("p-2")["balance"] == 15  # and the summary caught up
    assert store.post("p-2", "e-3", entry(1)) is True
    summary = store.account("p-2")
    assert (summary["balance"], summary["seq"]) == (16, 3)
    assert [e["seq"] for e in summary["recent"]] == [3, 2, 1]
    assert [e["points"] for e in summary["recent"]] == [1, 5, 10]


def test_one_event_may_post_to_two_accounts(settings, ledger_db):
    _, name = ledger_db
    store = store_on(settings, name)
    assert store.post("p-3", "e-1", entry(7)) is True
    assert store.post("pool-c1", "e-1", entry(-7)) is True
    assert store.post("p-3", "e-1", entry(7)) is False
    assert store.account("p-3")["balance"] + store.account("pool-c1")["balance"] == 0
