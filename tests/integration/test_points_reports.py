"""Points bank reports on the real broker and database: acts arrive as events, people from the
registry, and statements, leaderboards and the monthly disclosure are read over RPC."""

from __future__ import annotations

import base64
import io
import itertools
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from pymongo import MongoClient

from services.points import domain, reports
from services.points.store import PointsStore
from shared.errors import InvalidInput
from shared.settings import local_today
from tests.conftest import COMMUNITY, new_id
from tests.support import act_recorded_event, eventually, publish_as_intake

pytestmark = pytest.mark.integration

COMPOUND = f"{COMMUNITY}-P01"  # in the demo data: building 1 is in grid 01, building 2 in grid 02
GRIDS = {f"{COMPOUND}-1-1-101": f"{COMMUNITY}-01", f"{COMPOUND}-2-1-101": f"{COMMUNITY}-02"}
SEPTEMBER = "2026-09"


def person(rpc, databases, name: str, household_id: str) -> str:
    """A resident of a grid, once the points bank knows them by name and grid."""
    person_id = new_id("rep")
    rpc.registry.register_person(
        {"person_id": person_id, "name": name, "community_id": COMMUNITY, "household_id": household_id}
    )
    eventually(
        lambda: databases["points_bank"].people.find_one({"_id": person_id, "grid_id": GRIDS[household_id]})
    )
    return person_id


def publish_acts(community_id: str, *acts: tuple[str, str, str]) -> list[str]:
    """(person id, hours, day) each, published as intake would; the transfer ids they credit."""
    envelopes = [
        act_recorded_event(
            person_id=person_id,
            hours=Decimal(hours),
            occurred_on=datetime.fromisoformat(day).date(),
            community_id=community_id,
        )
        for person_id, hours, day in acts
    ]
    assert publish_as_intake(*envelopes) == [e.id for e in envelopes]
    return [domain.act_transfer_id(e.id) for e in envelopes]


def credited(databases, person_id: str, entries: int) -> bool:
    return databases["points_bank"].ledger_entries.count_documents({"key": person_id}) == entries


@pytest.fixture(scope="module")
def served(rpc, databases):
    """Four residents who served a community of their own in September 2026; one act of 张
    is taken back."""
    one, two = GRIDS
    people = {
        "wang": person(rpc, databases, "王测甲", one),
        "li": person(rpc, databases, "李测乙", one),
        "zhang": person(rpc, databases, "张测丙", one),
        "zhao": person(rpc, databases, "赵测丁", two),
    }
    community = new_id("c")
    transfers = publish_acts(
        community,
        (people["wang"], "2", "2026-09-01"),
        (people["wang"], "1", "2026-09-30"),
        (people["li"], "3", "2026-09-15"),
        (people["zhang"], "4", "2026-09-02"),
        (people["zhang"], "1", "2026-09-03"),
        (people["zhao"], "5", "2026-09-20"),
        (people["li"], "9", "2026-10-01"),  # done in October, credited this month like the rest
    )
    entries = {"wang": 2, "li": 2, "zhang": 2, "zhao": 1}
    eventually(lambda: all(credited(databases, people[who], n) for who, n in entries.items()))
    rpc.points_bank.reverse_transfer(transfers[3], {"reason": "录入错误"})
    return people, community


def test_a_statement_adds_up_and_a_quiet_period_keeps_the_balance(rpc, served):
    people, _ = served
    today = local_today()
    around = (today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat()
    result = rpc.points_bank.statement(people["zhang"], *around)
    assert (result["opening_balance"], result["credited"], result["debited"]) == (0, 50, 40)
    assert result["closing_balance"] == 10
    assert sorted(e["points"] for e in result["entries"]) == [-40, 10, 40]
    assert {e["on"] for e in result["entries"]} <= {today.isoformat(), around[0], around[1]}
    tomorrow = (today + timedelta(days=1)).isoformat()
    later = rpc.points_bank.statement(people["zhang"], tomorrow, tomorrow)
    assert (later["opening_balance"], later["closing_balance"], later["entries"]) == (10, 10, [])
    with pytest.raises(InvalidInput) as caught:
        rpc.points_bank.statement(people["zhang"], "2026-11-02", "2026-11-01")
    assert [e["field"] for e in caught.value.errors] == ["to"]


def test_the_leaderboard_of_a_grid_ranks_its_people_by_points_earned_this_month(rpc, served):
    month = local_today().strftime("%Y-%m")
    people, community = served
    board = rpc.points_bank.leaderboard("grid", [f"{COMMUNITY}-01"], [community], month, 500)
    mine = {i["person_id"]: i for i in board["items"] if i["person_id"] in people.values()}
    assert people["zhao"] not in mine  # grid 02
    li, wang, zhang = mine[people["li"]], mine[people["wang"]], mine[people["zhang"]]
    assert (li["points"], li["acts"], li["hours"]) == (120, 2, "12")
    assert (wang["points"], wang["acts"], wang["hours"], wang["name"]) == (30, 2, "3", "王测甲")
    assert (zhang["points"], zhang["acts"], zhang["hours"]) == (10, 1, "1")  # 4 hours taken back
    assert li["rank"] < wang["rank"] < zhang["rank"]
    street = rpc.points_bank.leaderboard("street", [COMMUNITY], [COMMUNITY, community], month)
    assert len(street["items"]) <= 20 and street["total"] >= 4
    elsewhere = rpc.points_bank.leaderboard("grid", [f"{COMMUNITY}-01"], [COMMUNITY], month, 500)
    assert not {i["person_id"] for i in elsewhere["items"]} & set(people.values())  # not their pools


def test_the_monthly_disclosure_lists_what_the_month_credited_with_masked_names(rpc, served):
    """Acts done in September and October, credited this month: this month's list. 张's act
    taken back this month is not in it; September, credited nothing, lists nobody."""
    _, community = served
    month = local_today().strftime("%Y-%m")
    report = rpc.points_bank.monthly_disclosure(community, month)
    assert report["title"] == f"{community} {month[:4]}年{month[5:]}月 志愿服务情况公示"
    assert [(i["no"], i["name"], i["acts"], i["hours"], i["points"]) for i in report["items"]] == [
        (1, "李**", 2, "12", 120),
        (2, "赵**", 1, "5", 50),
        (3, "王**", 2, "3", 30),
        (4, "张**", 1, "1", 10),
    ]
    assert report["totals"] == {"people": 4, "acts": 6, "hours": "21", "points": 210}
    file = rpc.points_bank.monthly_disclosure_xlsx(community, month)
    sheet = load_workbook(io.BytesIO(base64.b64decode(file["content"]))).active
    rows = [tuple(c.value for c in row) for row in sheet.iter_rows(min_row=3)]
    assert rows[0] == (1, "李**", 2, 12, 120) and rows[-1] == ("合计", "4人", 6, 21, 210)
    assert file["filename"] == f"volunteer-disclosure-{community}-{month}.xlsx"
    september = rpc.points_bank.monthly_disclosure(community, SEPTEMBER)
    assert (september["items"], september["totals"]["people"]) == ([], 0)


# --- periods on the database itself -----------------------------------------------------------


@pytest.fixture
def store(settings, infrastructure):
    client = MongoClient(settings.mongo_url, tz_aware=True)
    name = f"gltest_reports_{uuid.uuid4().hex[:8]}"
    yield PointsStore(client[name])
    client.drop_database(name)
    client.close()


def post(store: PointsStore, transfer_id: str, points: int, applied_at: str) -> None:
    accounts = {"from_account": "pool:c1:0", "to_account": "p1", "community_id": "c1"}
    transfer = domain.Transfer(id=transfer_id, kind="manual_award", points=points, **accounts)
    when = datetime.fromisoformat(applied_at).replace(tzinfo=UTC)
    assert all(r is not None for r in store.ledger.append_together(domain.legs(transfer, when)))


def test_months_split_the_chain_at_local_midnight_and_share_their_balances(store):
    zone = ZoneInfo("Asia/Shanghai")
    post(store, "t1", 10, "2026-10-31T15:59:00")  # October 31, 23:59 in CST
    post(store, "t2", 20, "2026-10-31T17:00:00")  # November 1, 01:00
    post(store, "t3", 5, "2026-10-31T15:59:59")  # stamped a moment early by another clock: stays after t2
    post(store, "t4", 1, "2026-11-30T16:00:00")  # December 1, 00:00
    statements = {}
    for month in ("2026-10", "2026-11", "2026-12"):
        within = reports.month_period(month)
        before, entries = store.period_entries("p1", *within.bounds(zone))
        statements[month] = reports.statement("p1", within, before, entries, zone)
    balances = [(s["opening_balance"], s["closing_balance"]) for s in statements.values()]
    assert balances == [(0, 10), (10, 35), (35, 36)]  # each month opens where the last closed
    november = statements["2026-11"]
    assert [e["transfer_id"] for e in november["entries"]] == ["t2", "t3"]
    assert november["entries"][0]["on"] == "2026-11-01"


def earned(store: PointsStore, month: str) -> dict[str, int]:
    return {pid: tally.points for pid, tally in store.pool_month_tallies(["c1"], month).earned.items()}


def test_reports_count_each_pool_entry_in_the_local_month_it_was_applied_in(store):
    """Reports count what a month recorded, each entry by its own stamp (t3, stamped a moment
    before midnight, counts in October where November's statement shows it)."""
    post(store, "t1", 10, "2026-10-31T15:59:00")  # October 31, 23:59 in CST
    post(store, "t2", 20, "2026-10-31T17:00:00")  # November 1, 01:00
    post(store, "t3", 5, "2026-10-31T15:59:59")
    assert [earned(store, m) for m in ("2026-10", "2026-11", "2026-12")] == [{"p1": 15}, {"p1": 20}, {}]
    assert store.ledger_files.filed.find_one({"_id": "pool:c1:0"})["through"] == 3
    post(store, "t4", 1, "2026-11-30T15:00:00")  # appended since: the next read files it
    assert (earned(store, "2026-11"), earned(store, "2026-10")) == ({"p1": 21}, {"p1": 15})  # once each


def test_entries_appended_here_are_filed_from_memory_others_read_back_each_once(store):
    """What this process appended is filed without reading it back; what another process
    appended is read back by `_id`. Filing again, from either process, changes nothing."""
    other = PointsStore(store.db)
    award = {"kind": "manual_award", "points": 7, "community_id": "c1", "to_account": "p1"}
    pool = domain.pool_account("c1", "p1")
    assert store.execute(domain.Transfer(id="mine", from_account=pool, **award))
    assert other.execute(domain.Transfer(id="theirs", from_account=pool, **award))
    assert set(store.ledger_files._pools[pool]) == {1} and set(other.ledger_files._pools[pool]) == {2}
    store.ledger_files.file_appended()
    assert (store.ledger_files._pools, store.ledger_files._transfers) == ({}, {})
    month = local_today().strftime("%Y-%m")
    month_file = f"{pool}@{month}"
    assert store.ledger_files.months.summary(month_file)["through"] == 2
    assert earned(store, month) == {"p1": 14}
    # The transfers' legs: "mine" from the index; "theirs", not filed yet, by the query.
    assert store.ledger_files.transfers.find_one({"_id": "theirs"}) is None
    assert [leg["_id"] for leg in store.legs_of("mine")] == [f"{pool}#{1:010d}", f"p1#{1:010d}"]
    assert [leg["key"] for leg in store.legs_of("theirs")] == [pool, "p1"]
    other.ledger_files.file_appended()
    indexed = store.ledger_files.transfers.find_one({"_id": "theirs"})
    assert indexed["legs"] == [f"{pool}#{2:010d}", f"p1#{2:010d}"]
    assert store.ledger_files.months.summary(month_file)["seq"] == 1  # one filing: nothing new for the other
    assert earned(other, month) == {"p1": 14}
    assert store.leg("theirs", "p1")["points"] == 7 and store.leg("theirs", "p2") is None


def another_process(settings, store: PointsStore) -> PointsStore:
    """A store of the same database with its own client and caches. A store's journals are
    used from one thread, as in a service (one process, green threads)."""
    return PointsStore(MongoClient(settings.mongo_url, tz_aware=True)[store.db.name])


def file_while_it_grows(filer: PointsStore, offset: int, every: int) -> None:
    """Append entries `offset`, `offset + every`, ... below 30 to the pool, filing it after each."""
    filer.pool_month_tallies(["c1"], "2026-11")  # holds the month as it is now
    for n in range(offset, 30, every):
        post(filer, f"u{n}", 1, "2026-11-03T04:00:00")
        filer.ledger_files.file("pool:c1:0")


def all_at_once(*work: tuple[Callable[..., None], tuple]) -> None:
    threads = [threading.Thread(target=target, args=args) for target, args in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_filers_in_several_processes_at_once_count_every_entry_once(settings, store):
    """Three processes file one pool's 60 entries at once, while it grows, each from a stale
    view of the month; the month counts each entry once."""
    for n in range(30):
        post(store, f"t{n}", 1, "2026-11-02T04:00:00")
    all_at_once(*((file_while_it_grows, (another_process(settings, store), n, 3)) for n in range(3)))
    assert earned(another_process(settings, store), "2026-11") == {"p1": 60}


def test_a_month_file_corrected_while_two_processes_file_it_counts_every_entry_once(settings, store):
    """Reconciliation corrects a month file that counted 30 entries twice, again and again,
    while two processes append and file 30 more."""
    for n in range(30):
        post(store, f"t{n}", 1, "2026-11-02T04:00:00")
    month_file = "pool:c1:0@2026-11"
    assert earned(store, "2026-11") == {"p1": 30}
    again = {"tallies": store.ledger_files.months.entry(month_file, 1)["tallies"], "through": 30}
    store.ledger_files.months.append(month_file, "twice", lambda _: again)
    assert earned(another_process(settings, store), "2026-11") == {"p1": 60}

    def correct_meanwhile(repairer: PointsStore) -> None:
        for _ in range(4):
            pools = repairer.ledger_files.read_pools()
            for key in repairer.ledger_files.audit(pools):
                repairer.ledger_files.correct(key, pools)

    filers = [(file_while_it_grows, (another_process(settings, store), n, 2)) for n in range(2)]
    all_at_once(*filers, (correct_meanwhile, (another_process(settings, store),)))
    fresh = another_process(settings, store)
    assert earned(fresh, "2026-11") == {"p1": 60}
    assert fresh.ledger_files.audit(fresh.ledger_files.read_pools()) == {}


def test_consecutive_statements_of_a_long_chain_share_every_entry_once(store):
    """The chain's month boundaries are found by bisection over `_id` lookups; with stamps a
    little out of order, every entry still lands in exactly one month and balances carry on."""
    zone = ZoneInfo("Asia/Shanghai")
    stamps = [datetime(2026, 9, 20, tzinfo=UTC) + timedelta(days=2 * n) for n in range(45)]
    stamps[7], stamps[8] = stamps[8], stamps[7]  # another process's clock, a little behind
    # Across the start of November (CST): 20 is stamped in it, 21 just before it.
    stamps[20], stamps[21] = datetime(2026, 10, 31, 17, tzinfo=UTC), datetime(2026, 10, 31, 15, tzinfo=UTC)
    for n, stamp in enumerate(stamps):
        post(store, f"t{n:02d}", n + 1, stamp.isoformat().replace("+00:00", ""))
    months = ["2026-09", "2026-10", "2026-11", "2026-12", "2027-01"]
    statements = []
    for month in months:
        within = reports.month_period(month)
        before, entries = store.period_entries("p1", *within.bounds(zone))
        statements.append(reports.statement("p1", within, before, entries, zone))
    listed = [e["transfer_id"] for s in statements for e in s["entries"]]
    assert listed == [f"t{n:02d}" for n in range(45)]  # each once, in chain order
    for earlier, later in itertools.pairwise(statements):
        assert earlier["closing_balance"] == later["opening_balance"]
    assert statements[-1]["closing_balance"] == sum(range(1, 46))
    nobody = reports.month_period("2026-11")
    assert store.period_entries("nobody", *nobody.bounds(zone)) == (None, [])


def test_reports_know_the_earners_filing_looked_up_and_a_person_updated_here_at_once(store):
    person = {"_id": "p1", "version": 1, "name": "王测", "community_id": "c1", "grid_id": "c1-01"}
    store.remember_person(person)
    award = {"kind": "manual_award", "points": 7, "community_id": "c1", "from_account": "pool:c1:0"}
    assert store.execute(domain.Transfer(id="a1", to_account="p1", **award))
    assert store.execute(domain.Transfer(id="a2", to_account="team:t1", **award))
    store.ledger_files.file_appended()  # filing looks the earners up ...
    store.people.delete_one({"_id": "p1"})
    assert store.people_by_id(["p1", "team:t1"]) == {"p1": person}  # ... so reports need not
    store.remember_person({**person, "version": 2, "name": "王测改"})
    assert store.people_by_id(["p1"])["p1"]["name"] == "王测改"


def test_a_reversal_made_before_reversals_carried_hours_takes_its_act_back_whole(store):
    """Such a reversal names only the act's transfer: filing finds the act's hours there."""
    pool = "pool:c1:0"
    act = {"kind": "volunteer_act", "points": 20, "community_id": "c1", "facts": {"hours": "2"}}
    assert store.execute(domain.Transfer(id="va:e1", from_account=pool, to_account="p1", **act))
    old_reversal = {"kind": "reversal", "points": 20, "community_id": "c1", "reverses": "va:e1"}
    back = domain.Transfer(id="reversal:va:e1", from_account="p1", to_account=pool, **old_reversal)
    assert store.execute(back)
    month = local_today().strftime("%Y-%m")
    tallies = store.pool_month_tallies(["c1"], month)
    assert tallies.served["p1"] == reports.Tally(points=0, acts=0, hours=Decimal(0))


def test_reconciliation_corrects_month_files_off_their_pool_and_filing_goes_on_past_it(store):
    """A month file that counted a filing twice, and one missing an entry a filing skipped,
    are found and corrected by a filing, also by a process whose view of them is stale; it
    files on past the correction."""
    pool = "pool:c1:0"
    post(store, "t1", 10, "2026-10-20T04:00:00")
    post(store, "t2", 20, "2026-11-02T04:00:00")
    running = PointsStore(store.db)
    assert (earned(running, "2026-10"), earned(running, "2026-11")) == ({"p1": 10}, {"p1": 20})
    assert store.ledger_files.audit(store.ledger_files.read_pools()) == {}
    november, october = f"{pool}@2026-11", f"{pool}@2026-10"
    counted = store.ledger_files.months.entry(november, 1)["tallies"]
    again = {"tallies": counted}
    store.ledger_files.months.append(november, "twice", lambda month_file: {**again, "through": 2})
    post(store, "t3", 5, "2026-10-21T04:00:00")
    store.ledger_files._mark_filed(pool, 3)  # as if t3 had been filed
    assert (earned(running, "2026-10"), earned(running, "2026-11")) == ({"p1": 10}, {"p1": 40})

    off = store.ledger_files.audit(store.ledger_files.read_pools())
    assert {key: tallies.earned["p1"].points for key, tallies in off.items()} == {october: 5, november: -20}
    # `running` filed both months: its view of November is from before the second count.
    pools = running.ledger_files.read_pools()
    assert [running.ledger_files.correct(key, pools) for key in off] == [True, True]
    assert not running.ledger_files.correct(november, pools)  # exact by then
    assert store.ledger_files.audit(store.ledger_files.read_pools()) == {}
    post(running, "t4", 1, "2026-11-03T04:00:00")
    assert (earned(running, "2026-10"), earned(running, "2026-11")) == ({"p1": 15}, {"p1": 21})
    assert earned(PointsStore(store.db), "2026-11") == {"p1": 21}
    assert store.ledger_files.audit(store.ledger_files.read_pools()) == {}
