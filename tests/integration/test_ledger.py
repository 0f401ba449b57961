"""The points ledger on the real database: exact under duplicate and concurrent delivery.

FerretDB can lose one of two concurrent updates of a document; these tests show that the
ledger's guarantees, which rest on unique keys, hold anyway.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime

import pytest
from pymongo import MongoClient, monitoring

from services.points import domain, redemptions
from services.points.store import PointsStore
from shared.journal import slot_id
from shared.settings import local_today
from tests.conftest import ROOT
from tests.support import audit_records_since

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


def transfer(transfer_id: str, points: int, to: str = "p-1", source: str = "pool:c1:0") -> domain.Transfer:
    return domain.Transfer(
        id=transfer_id, kind="test", from_account=source, to_account=to, points=points, community_id="c1"
    )


def balances(store: PointsStore, *accounts: str) -> list[int]:
    return [(store.account(a) or {"balance": 0})["balance"] for a in accounts]


def test_concurrent_duplicate_deliveries_across_instances_credit_once(settings, ledger_db):
    _, name = ledger_db
    instances = [store_on(settings, name) for _ in range(6)]
    transfers = [transfer(f"t-{i}", 10) for i in range(50)]
    errors = []

    def deliver(store: PointsStore) -> None:
        try:
            for each in transfers:
                store.execute(each)
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
    assert {e["guard"] for e in entries} == {f"t-{i}@p-1" for i in range(50)}
    assert sorted(e["balance_after"] for e in entries) == list(range(10, 501, 10))
    pool = list(instances[0].ledger.entries.find({"key": "pool:c1:0"}))
    assert sum(e["points"] for e in pool) + sum(e["points"] for e in entries) == 0  # double entry


def test_concurrent_debits_never_take_a_balance_below_zero(settings, ledger_db):
    """100 points, 30 debits of 10 at once from three processes: exactly ten go through."""
    _, name = ledger_db
    store_on(settings, name).execute(transfer("fund", 100))
    instances = [store_on(settings, name) for _ in range(3)]
    outcomes: list[str] = []

    def spend(store: PointsStore, start: int) -> None:
        for i in range(start, 30, 3):
            try:
                store.execute(transfer(f"order-{i}", 10, to="held:c1:0", source="p-1"))
                outcomes.append("paid")
            except domain.Refused as exc:
                outcomes.append(exc.code)

    threads = [threading.Thread(target=spend, args=(store, n)) for n, store in enumerate(instances)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["insufficient_points"] * 20 + ["paid"] * 10
    entries = list(instances[0].ledger.entries.find({"key": "p-1"}))
    assert min(e["balance_after"] for e in entries) == 0
    assert balances(instances[0], "p-1", "held:c1:0", "pool:c1:0") == [0, 100, -100]


def test_stale_summary_is_repaired_by_the_next_posting(settings, ledger_db):
    """A crash between the entry and the summary write leaves the summary behind: reads fold
    in the entry already, and the next posting walks the chain and stores it."""
    _, name = ledger_db
    store = store_on(settings, name)
    store.execute(transfer("t-1", 10, to="p-2"))
    # What a crash right after the insert of t-2's credit leg leaves: the entry, no summary.
    _, (_, guard, credit) = domain.legs(transfer("t-2", 5, to="p-2"), datetime.now(UTC))
    leg = credit(store.account("p-2"))
    store.ledger.entries.insert_one({**leg, "_id": slot_id("p-2", 2), "key": "p-2", "seq": 2, "guard": guard})
    assert (store.ledger.summaries.find_one("p-2") or {"seq": 0})["seq"] < 2  # stored: behind
    assert store.account("p-2")["balance"] == 15  # read: exact

    assert store.execute(transfer("t-2", 5, to="p-2")) is True  # its pool leg was missing
    assert store.execute(transfer("t-2", 5, to="p-2")) is False  # now all of it is there
    assert store.execute(transfer("t-3", 1, to="p-2")) is True
    summary = store.account("p-2")
    assert (summary["balance"], summary["seq"]) == (16, 3)
    recent = store.recent_entries(summary, 10)
    assert [e["seq"] for e in recent] == [3, 2, 1]
    assert [e["points"] for e in recent] == [1, 5, 10]
    assert balances(store, "p-2", "pool:c1:0") == [16, -16]


def test_a_debit_is_decided_on_the_balance_another_process_credited_since(settings, ledger_db):
    """Each process keeps the summaries it knows; a refusal is never made on one another
    process has moved past."""
    _, name = ledger_db
    here, there = store_on(settings, name), store_on(settings, name)
    here.execute(transfer("t-1", 10, to="p-7"))  # here knows p-7 at 10 ...
    there.execute(transfer("t-2", 50, to="p-7"))  # ... and p-7 has 60
    spend = domain.Transfer(
        id="spend-1", kind="test", from_account="p-7", to_account="pool:c1:0", points=40, community_id="c1"
    )
    assert here.execute(spend)
    too_much = spend.model_copy(update={"id": "spend-2", "points": 21})
    with pytest.raises(domain.Refused):
        there.execute(too_much)  # there knew 60; the true 20 refuses it
    assert balances(here, "p-7") == balances(there, "p-7") == [20]


def test_reconciliation_finds_and_repairs_a_lost_leg_and_a_stale_summary(settings, ledger_db):
    from services.points import reconcile

    _, name = ledger_db
    store = store_on(settings, name)
    store.execute(transfer("t-1", 10, to="p-4"))
    store.execute(transfer("t-2", 7, to="p-4"))

    def report():
        chains = store.chain_totals()
        return reconcile.check(
            chains, store.stored_summaries_of([c["_id"] for c in chains]), store.one_legged_transfers()
        )

    assert report().exact and report().total == 0
    # A crash after the debit leg of t-3: the pool gave, the person never received.
    debit, _ = domain.legs(transfer("t-3", 5, to="p-4"), datetime.now(UTC))
    store.ledger.append(*debit)
    # And a summary written wrong by hand.
    store.ledger.summaries.replace_many({"p-4": {**store.account("p-4"), "balance": 999}})
    broken = report()
    assert not broken.exact and broken.total == -5
    assert (broken.one_legged, broken.stale_summaries) == (["t-3"], ["p-4"])
    store.execute(reconcile.missing_leg(store.legs_of("t-3")[0]))
    store.ledger.heal("p-4")
    healed = report()
    assert healed.exact and store.account("p-4")["balance"] == 22


def reconcile_command(name: str, *options: str) -> subprocess.CompletedProcess:
    """`make reconcile` on the points bank database `name` (prefix + "_points_bank")."""
    env = {**os.environ, "GRIDLINK_DB_PREFIX": name.removesuffix("_points_bank")}
    command = [sys.executable, "-m", "services.points.reconcile", *options]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_make_reconcile_finds_a_lost_leg_and_a_month_file_off_and_repair_makes_both_exact(
    settings, ledger_db
):
    """The command as operators run it: a crash lost the person's leg of an award, and a
    month file counts another award twice; `--repair` completes the transfer, which then
    counts in its month, and corrects the file."""
    client, _ = ledger_db
    name = f"gltest_rc{uuid.uuid4().hex[:8]}_points_bank"
    try:
        store = store_on(settings, name)
        pool, month = domain.pool_account("c1", "p-6"), local_today().strftime("%Y-%m")
        award = {"kind": "manual_award", "community_id": "c1", "from_account": pool, "to_account": "p-6"}
        store.execute(domain.Transfer(id="award:a1", points=10, **award))
        store.pool_month_tallies(["c1"], month)  # files the month
        month_file = f"{pool}@{month}"
        again = {"through": 1, "tallies": store.ledger_files.months.entry(month_file, 1)["tallies"]}
        store.ledger_files.months.append(month_file, "twice", lambda _: again)
        debit, _ = domain.legs(domain.Transfer(id="award:a2", points=5, **award), datetime.now(UTC))
        store.ledger.append(*debit)  # the crash: the pool gave, p-6 never received
        store.write_behind()

        started = datetime.now(UTC)
        found = reconcile_command(name)
        assert found.returncode == 1, found.stdout + found.stderr
        assert "transfers missing a leg (1): award:a2" in found.stdout
        assert f"month files off their pool's entries (1): {month_file}" in found.stdout
        repaired = reconcile_command(name, "--repair")
        assert "repaired 1 transfers, 0 summaries and 1 month files" in repaired.stdout, repaired.stderr
        after = repaired.stdout.split("after the repairs:")[1]
        assert repaired.returncode == 0 and ": exact" in after  # checked again once repaired
        checked = reconcile_command(name)
        assert checked.returncode == 0 and ": exact" in checked.stdout, checked.stdout + checked.stderr
        [audited] = [
            r
            for r in audit_records_since(started)
            if r["action"].startswith("services.points.reconcile")
            and r["target"].get("transfers") == ["award:a2"]
        ]
        assert (audited["action"], audited["status"]) == ("services.points.reconcile repair", 0)
        assert audited["target"]["month_files"] == [month_file]
        fresh = store_on(settings, name)
        tallies = fresh.pool_month_tallies(["c1"], month)
        assert tallies.earned["p-6"].points == 15 and fresh.account("p-6")["balance"] == 15
    finally:
        client.drop_database(name)


def test_summaries_are_stored_behind_the_entries_and_reads_stay_exact(settings, ledger_db):
    """Summaries are written at most once a second per key: between writes, reads fold in the
    newer entries; a busy account costs one rewrite, not one per entry; stopping stores all."""
    import eventlet

    from shared.journal import SUMMARY_WRITE_SECONDS

    _, name = ledger_db
    store = store_on(settings, name)
    for i in range(20):
        store.execute(transfer(f"t-{i}", 3, to="p-5"))
    stored = store.ledger.summaries.find_one("p-5") or {"seq": 0}
    assert stored["seq"] < 20  # not rewritten per entry
    assert (store.account("p-5")["balance"], store.account("p-5")["seq"]) == (60, 20)
    reader = store_on(settings, name)  # another process: only the stored summary and entries
    assert reader.account("p-5")["balance"] == 60
    assert reader.account("pool:c1:0")["balance"] == -60

    eventlet.sleep(SUMMARY_WRITE_SECONDS * 1.5)  # the writer's turn
    assert store.ledger.summaries.find_one("p-5") == {"_id": "p-5", "seq": 20, "balance": 60}

    store.execute(transfer("t-last", 4, to="p-5"))
    store.write_behind()  # what the service does when it stops
    assert store.ledger.summaries.find_one("p-5") == {"_id": "p-5", "seq": 21, "balance": 64}


def test_reads_on_their_own_connections_see_every_append_at_once(settings, ledger_db):
    """The service reads balances on read-only connections (they need not wait behind its
    one writing connection): what an append wrote is there for them when it returns."""
    _, name = ledger_db
    readers = MongoClient(settings.mongo_url, tz_aware=True, maxPoolSize=4)
    store = PointsStore(MongoClient(settings.mongo_url, tz_aware=True, maxPoolSize=1)[name], readers[name])
    try:
        for i in range(5):
            store.execute(transfer(f"t-{i}", i + 1, to="p-6"))
            reader = PointsStore(readers[name])  # nothing in memory: only what is stored
            assert balances(reader, "p-6") == [sum(range(1, i + 2))]
        assert [e["points"] for e in store.recent_entries(store.account("p-6"), 3)] == [5, 4, 3]
    finally:
        readers.close()


def test_a_transfer_recorded_twice_in_one_batch_gives_one_event(settings, ledger_db):
    _, name = ledger_db
    store = store_on(settings, name)
    twice, other = transfer("t-twice", 5), transfer("t-other", 7)
    handed = store._record_batch([twice, other, twice])  # one flush: a cause delivered twice at once
    [first], [second], repeated = handed
    assert (first["aggregate_id"], second["aggregate_id"], repeated) == ("t-twice", "t-other", [])
    assert first["record_events"] == second["record_events"] == 2  # all the record holds
    [record] = store.db.outbox.find({})
    assert [e["envelope"]["data"]["points"] for e in record["events"]] == [5, 7]
    # Recorded again later (a redelivery after the first was published): the same event id.
    [[again]] = store._record_batch([twice])
    assert again["id"] == first["id"]


@pytest.mark.parametrize("entries_after", [0, 40], ids=["just-made", "made-40-entries-ago"])
def test_a_refused_debit_made_before_counts_as_made_a_new_one_is_refused(settings, ledger_db, entries_after):
    """A redelivered debit the balance no longer covers was made before: it moves nothing and
    raises nothing, whether its entry is among the chain's last ones (looked up by `_id`) or
    further back (asked of the guard's index). A debit never made is refused."""
    _, name = ledger_db
    store = store_on(settings, name)
    store.execute(transfer("fund", 40))
    spend = transfer("order-1", 40, to="held:c1:0", source="p-1")
    assert store.execute(spend) is True
    for n in range(entries_after):
        store.execute(transfer(f"credit-{n}", 0))  # the chain moves on; the balance stays 0
    again = store_on(settings, name)  # another process, with a cold cache
    assert again.execute(spend) is False
    with pytest.raises(domain.Refused):
        again.execute(transfer("order-2", 40, to="held:c1:0", source="p-1"))
    assert balances(again, "p-1", "held:c1:0") == [0, 40]


class GuardQueries(monitoring.CommandListener):
    """Counts the queries by guard, each of which reads every entry on FerretDB."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and "guard" in event.command.get("filter", {}):
            self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def watched_store_on(settings, name: str) -> tuple[PointsStore, GuardQueries]:
    queries = GuardQueries()
    client = MongoClient(settings.mongo_url, tz_aware=True, maxPoolSize=1, event_listeners=[queries])
    store = PointsStore(client[name])
    store.ensure_indexes()
    return store, queries


def spent_long_ago(settings, name: str) -> domain.Transfer:
    """p-1 spent its 40 points, then 40 entries came after: a chain longer than any walk."""
    store = store_on(settings, name)
    store.execute(transfer("fund", 40))
    spend = transfer("order-1", 40, to="held:c1:0", source="p-1")
    store.execute(spend)
    for n in range(40):
        store.execute(transfer(f"credit-{n}", 0))
    return spend


def test_refusals_on_a_long_chain_ask_the_guard_records_not_every_entry(settings, ledger_db):
    """A sold-out rush refuses many new takes on a long chain. Each refusal learns from the
    guard records, by `_id`, that it is no redelivery; a redelivery finds its entry by the slot
    its record names. Neither queries by guard."""
    _, name = ledger_db
    spend = spent_long_ago(settings, name)
    store, queries = watched_store_on(settings, name)
    for n in range(3):
        with pytest.raises(domain.Refused):
            store.execute(transfer(f"order-new-{n}", 40, to="held:c1:0", source="p-1"))
    assert store.execute(spend) is False
    store.count("stock:tea", "restock:1", redemptions.give_back(40))
    for n in range(40):  # 40 orders take the stock, then a rush on the empty shelf
        store.count("stock:tea", f"order:{n}", redemptions.take_stock(1, "tea"))
    for n in range(3):
        with pytest.raises(domain.Refused):
            store.count("stock:tea", f"order:late-{n}", redemptions.take_stock(1, "tea"))
    assert store.count("stock:tea", "order:1", redemptions.take_stock(1, "tea"))["points"] == -1
    assert queries.count == 0
    assert balances(store, "p-1", "held:c1:0") == [0, 40]


def test_entries_from_before_guard_records_are_recorded_when_the_store_opens(settings, ledger_db):
    """A database from before guard records (an upgrade): opening the store records the guards
    of its refusable entries once, so a redelivered old debit still counts as made. A store
    not opened so (a script's) does not trust a missing record."""
    client, name = ledger_db
    spend = spent_long_ago(settings, name)
    client[name]["ledger_entries_guards"].drop()
    unopened = PointsStore(MongoClient(settings.mongo_url, tz_aware=True)[name])
    assert unopened.execute(spend) is False  # found by a query
    store, queries = watched_store_on(settings, name)
    records = {r["_id"]: r.get("seq") for r in client[name]["ledger_entries_guards"].find()}
    assert records == {"#backfilled": None, "order-1@p-1": 2}
    assert store.execute(spend) is False
    assert queries.count == 0


def test_a_debit_refused_after_losing_its_slot_to_another_process_asks_no_query(settings, ledger_db):
    """Two processes spend the same 40 points: the one with the older view builds on a slot the
    other has just taken, walks on and is refused. Its guard was recorded with the slot it
    tried, so that refusal, and the retries of both debits, look only from there on."""
    _, name = ledger_db
    spent_long_ago(settings, name)
    here, here_queries = watched_store_on(settings, name)
    there, there_queries = watched_store_on(settings, name)
    here.execute(transfer("fund-again", 40))
    there.execute(transfer("credit-there", 0))  # there now knows a balance of 40
    first = transfer("order-2", 40, to="held:c1:0", source="p-1")
    second = transfer("order-3", 40, to="held:c1:0", source="p-1")
    assert here.execute(first) is True
    with pytest.raises(domain.Refused):
        there.execute(second)  # built on 40, its slot taken by `first`: refused on 0
    with pytest.raises(domain.Refused):
        here.execute(second)
    assert there.execute(first) is False
    assert (here_queries.count, there_queries.count) == (0, 0)
    assert balances(here, "p-1", "held:c1:0") == [0, 80]
