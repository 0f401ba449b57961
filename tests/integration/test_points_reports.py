"""Points bank reports on the real broker and database: acts arrive as events, people from the
registry, and statements, leaderboards and the monthly disclosure are read over RPC."""

from __future__ import annotations

import base64
import io
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from pymongo import MongoClient

from services.points import domain, reports
from services.points.store import PointsStore
from shared.errors import InvalidInput
from shared.outbox import EventPublisher, publishable
from shared.settings import local_today
from tests.conftest import COMMUNITY, TEST_ENV, new_id
from tests.support import act_recorded_event, eventually

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
    events = publishable(envelopes, "x")
    publisher = EventPublisher(TEST_ENV["AMQP_URI"], "issue_intake", timeout=5)
    try:
        assert publisher.publish(events) == [e.id for e in envelopes]
    finally:
        publisher.close()
    return [f"va:{e.id}" for e in envelopes]


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
        (people["li"], "9", "2026-10-01"),  # October: not in September's disclosure
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
    people, _ = served
    month = local_today().strftime("%Y-%m")
    board = rpc.points_bank.leaderboard("grid", [f"{COMMUNITY}-01"], month, 500)
    mine = {i["person_id"]: i for i in board["items"] if i["person_id"] in people.values()}
    assert people["zhao"] not in mine  # grid 02
    li, wang, zhang = mine[people["li"]], mine[people["wang"]], mine[people["zhang"]]
    assert (li["points"], li["acts"], li["hours"]) == (120, 2, "12")
    assert (wang["points"], wang["acts"], wang["hours"], wang["name"]) == (30, 2, "3", "王测甲")
    assert (zhang["points"], zhang["acts"], zhang["hours"]) == (10, 1, "1")  # 4 hours taken back
    assert li["rank"] < wang["rank"] < zhang["rank"]
    street = rpc.points_bank.leaderboard("street", [COMMUNITY], month)
    assert len(street["items"]) <= 20 and street["total"] >= 4


def test_the_monthly_disclosure_lists_septembers_service_with_masked_names(rpc, served):
    _, community = served
    report = rpc.points_bank.monthly_disclosure(community, SEPTEMBER)
    assert report["title"] == f"{community} 2026年09月 志愿服务情况公示"
    assert [(i["no"], i["name"], i["acts"], i["hours"], i["points"]) for i in report["items"]] == [
        (1, "赵**", 1, "5", 50),
        (2, "李**", 1, "3", 30),  # ties at 30: by name, 李 before 王
        (3, "王**", 2, "3", 30),
        (4, "张**", 1, "1", 10),
    ]
    assert report["totals"] == {"people": 4, "acts": 5, "hours": "12", "points": 120}
    file = rpc.points_bank.monthly_disclosure_xlsx(community, SEPTEMBER)
    sheet = load_workbook(io.BytesIO(base64.b64decode(file["content"]))).active
    rows = [tuple(c.value for c in row) for row in sheet.iter_rows(min_row=3)]
    assert rows[0] == (1, "赵**", 1, 5, 50) and rows[-1] == ("合计", "4人", 5, 12, 120)
    assert file["filename"] == f"volunteer-disclosure-{community}-{SEPTEMBER}.xlsx"


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
    legs = store.applied_between(*reports.month_period("2026-11").bounds(zone))
    assert sorted(leg["transfer_id"] for leg in legs if leg["key"] == "p1") == ["t2"]


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
