"""Points bank reports: statements, leaderboards, the monthly public disclosure."""

from __future__ import annotations

import base64
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from services.points import domain, reports
from shared.errors import InvalidInput
from shared.events import PersonUpdated, new_event
from shared.schemas.points import Inspection, ManualAward
from tests.support import act_recorded

CST = ZoneInfo("Asia/Shanghai")
NOVEMBER = reports.month_period("2026-11")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def entry(key: str, kind: str, points: int, transfer_id: str, **facts) -> dict:
    return {"key": key, "kind": kind, "points": points, "transfer_id": transfer_id, **facts}


def act(key: str, points: int, hours: str, transfer_id: str, occurred_on: str = "2026-11-20") -> dict:
    return entry(key, "volunteer_act", points, transfer_id, hours=hours, occurred_on=occurred_on)


def fields_of(caught) -> set[str]:
    return {e["field"] for e in caught.value.errors}


# --- periods ----------------------------------------------------------------------------------


def test_a_period_is_local_days_so_17_00_utc_on_october_31_is_november_1():
    start, end = reports.period("2026-11-01", "2026-11-30").bounds(CST)
    assert (start, end) == (at("2026-10-31T16:00:00"), at("2026-11-30T16:00:00"))
    assert start <= at("2026-10-31T17:00:00") < end
    assert not start <= at("2026-10-31T15:59:59") < end
    assert reports.Period(date(2026, 11, 1), date(2026, 11, 30)) == NOVEMBER
    assert reports.month_period("2028-02").last == date(2028, 2, 29)


@pytest.mark.parametrize("month", ["0000-01", "9999-12", "2026-00", "2026-13", "202611", None])
def test_a_month_outside_the_calendar_is_refused_by_name(month):
    """Year 0 and December 9999 have no period (no year 0; the next month is past year 9999)."""
    with pytest.raises(InvalidInput) as refused:
        reports.month_period(month)
    assert refused.value.errors == [{"field": "month", "message": "a month, YYYY-MM"}]


@pytest.mark.parametrize(
    ("period_from", "period_to", "fields"),
    [
        ("2026-11-1", "yesterday", {"from", "to"}),
        ("2026-02-30", "2026-03-01", {"from"}),
        ("2026-11-02", "2026-11-01", {"to"}),
        ("2025-01-01", "2026-01-02", {"to"}),  # 367 days
    ],
)
def test_a_bad_period_names_the_field(period_from, period_to, fields):
    with pytest.raises(InvalidInput) as caught:
        reports.period(period_from, period_to)
    assert fields_of(caught) == fields


def test_a_whole_leap_year_is_a_period():
    assert reports.period("2024-01-01", "2024-12-31").last == date(2024, 12, 31)


# --- statements -------------------------------------------------------------------------------


def ledger_entry(seq: int, points: int, balance_after: int, applied_at: str, kind="volunteer_act") -> dict:
    return {
        **entry("p1", kind, points, f"t{seq}"),
        "seq": seq,
        "balance_after": balance_after,
        "counterparty": "pool:c1:3",
        "applied_at": at(applied_at),
    }


def test_a_statement_opens_with_the_balance_before_the_period_and_adds_up():
    before = ledger_entry(3, 10, 30, "2026-10-31T15:00:00")
    within = [
        ledger_entry(4, 23, 53, "2026-10-31T17:00:00"),
        ledger_entry(5, -10, 43, "2026-11-10T08:00:00", kind="redemption"),
        ledger_entry(6, 5, 48, "2026-11-30T15:59:00", kind="manual_award"),
    ]
    result = reports.statement("p1", NOVEMBER, before, within, CST)
    assert (result["from"], result["to"]) == ("2026-11-01", "2026-11-30")
    assert (result["opening_balance"], result["credited"], result["debited"]) == (30, 28, 10)
    assert result["closing_balance"] == 48 == 30 + 28 - 10
    assert [e["seq"] for e in result["entries"]] == [4, 5, 6]
    assert result["entries"][0]["on"] == "2026-11-01"  # 17:00 UTC is 01:00 the next day in CST
    assert result["entries"][0]["applied_at"] == "2026-10-31T17:00:00+00:00"


def test_a_statement_without_history_or_movements_keeps_its_balance():
    empty = reports.statement("p1", NOVEMBER, None, [], CST)
    assert (empty["opening_balance"], empty["closing_balance"], empty["entries"]) == (0, 0, [])
    quiet = reports.statement("p1", NOVEMBER, ledger_entry(1, 40, 40, "2026-01-01T00:00:00"), [], CST)
    assert (quiet["opening_balance"], quiet["closing_balance"], quiet["credited"]) == (40, 40, 0)


# --- leaderboards -----------------------------------------------------------------------------

PEOPLE = {
    "p1": {"_id": "p1", "name": "王建国", "community_id": "c1", "grid_id": "c1-01"},
    "p2": {"_id": "p2", "name": "李平", "community_id": "c1", "grid_id": "c1-02"},
    "p3": {"_id": "p3", "name": "张敏", "community_id": "c1", "grid_id": "c1-01"},
    "p4": {"_id": "p4", "name": "李平", "community_id": "c1", "grid_id": "c1-02"},
}
MONTH_ENTRIES = [
    act("p1", 20, "2", "va:e1"),
    act("pool:c1:1", -20, "2", "va:e1"),  # a pool: not anyone's earning
    act("p1", 10, "1", "va:e2"),
    entry("p2", "manual_award", 30, "award:k1"),
    act("p3", 25, "2.5", "va:e3"),
    # An October act taken back in November: its reversal carries its hours.
    entry("p3", "reversal", -10, "reversal:va:e0", reverses="va:e0", hours="1"),
    entry("p3", "redemption", -15, "order:o1"),  # spending is not negative earning
    entry("p4", "manual_award", 30, "award:k2"),
    entry("p4", "inspection", 0, "inspection:k3"),  # a failed check
    entry("p9", "manual_award", 50, "award:k4"),  # the registry has not told of p9
]


def tallied(entries) -> reports.MonthTallies:
    tallies = reports.MonthTallies()
    tallies.add_entries(entries)
    return tallies


def test_the_leaderboard_ranks_by_earned_points_with_reversals_and_ties_by_name_then_id():
    wanted = reports.board("community", ["c1"], "2026-11", 20)
    board = reports.leaderboard(wanted, tallied(MONTH_ENTRIES).earned, PEOPLE)
    ranking = [(i["rank"], i["person_id"], i["points"], i["acts"], i["hours"]) for i in board["items"]]
    assert ranking == [
        (1, "p2", 30, 0, "0"),  # 李平 before 王建国 at 30 points; p2 before p4, both 李平
        (2, "p4", 30, 0, "0"),
        (3, "p1", 30, 2, "3"),
        (4, "p3", 15, 0, "1.5"),  # 25 - 10: the reversed October act is no act any more
    ]
    assert board["total"] == 4 and board["month"] == "2026-11"


def test_a_reversal_in_the_same_month_takes_the_act_back_entirely():
    entries = [
        act("p1", 20, "2", "va:e1"),
        entry("p1", "reversal", -20, "reversal:va:e1", reverses="va:e1", hours="2"),
    ]
    assert reports.earnings(entries)["p1"] == reports.Tally(points=0, acts=0, hours=Decimal(0))
    wanted = reports.board("grid", ["c1-01"], "2026-11", 5)
    assert reports.leaderboard(wanted, tallied(entries).earned, PEOPLE)["items"] == []


def test_the_leaderboard_keeps_to_its_scope_and_limit():
    wanted = reports.board("grid", ["c1-01"], "2026-11", 1)
    board = reports.leaderboard(wanted, tallied(MONTH_ENTRIES).earned, PEOPLE)
    assert board["total"] == 2 and [i["person_id"] for i in board["items"]] == ["p1"]
    assert board["items"][0]["grid_id"] == "c1-01"


def test_a_community_board_ranks_whoever_earned_from_its_pools_a_grid_board_its_residents():
    """A member reporting to c1 from c2 (双报到) who served c1 is on c1's board, not a grid's."""
    visitor = {"p5": {"_id": "p5", "name": "赵来", "community_id": "c2", "grid_id": "c2-01"}}
    earned = tallied([act("p5", 50, "5", "va:e7"), act("p1", 20, "2", "va:e8")]).earned
    people = PEOPLE | visitor
    community = reports.leaderboard(reports.board("community", ["c1"], "2026-11", 20), earned, people)
    assert [i["person_id"] for i in community["items"]] == ["p5", "p1"]
    grid = reports.leaderboard(reports.board("grid", ["c1-01"], "2026-11", 20), earned, people)
    assert [i["person_id"] for i in grid["items"]] == ["p1"]


def test_the_people_side_of_pool_entries_is_what_they_earned():
    """Reports read the pools' chains: each pool leg stands for its counterparty's leg."""
    given = ManualAward(person_id="p1", community_id="c1", points=5, reason="帮扶")
    award = domain.award_transfer("k1", given)
    debit, credit = domain.legs(award, datetime(2026, 11, 2, tzinfo=UTC))
    pool_leg = {"key": debit[0], **debit[2]({"balance": 0})}
    person_leg = {"key": credit[0], **credit[2]({"balance": 0})}
    assert pool_leg["key"] == domain.pool_account("c1", "p1")
    (mirrored,) = reports.people_side([pool_leg])
    assert mirrored == {k: person_leg.get(k) for k in mirrored}
    assert (mirrored["key"], mirrored["points"], mirrored["kind"]) == ("p1", 5, "manual_award")


def test_the_reversal_of_an_act_carries_its_hours_and_of_an_award_none():
    other_side = {"counterparty": "pool:c1:1", "community_id": "c1"}
    reversal = domain.reversal_of(act("p1", 20, "2.5", "va:e1") | other_side, "staff", "录入错误")
    assert (reversal.from_account, reversal.to_account) == ("p1", "pool:c1:1")
    assert reversal.facts == {"hours": "2.5"}
    award_leg = entry("p1", "manual_award", 5, "award:k1") | other_side
    assert domain.reversal_of(award_leg, "staff", "错发").facts == {}


def test_month_tallies_add_up_and_keep_exact_hours_through_their_stored_text():
    """Tallies of two pools' months add per person; their stored text gives them back exactly."""
    first, second = tallied(MONTH_ENTRIES[:3]), tallied([act("p1", 15, "1.5", "va:e9"), *MONTH_ENTRIES[3:]])
    first.add(second)
    assert first.earned == tallied([*MONTH_ENTRIES, act("p1", 15, "1.5", "va:e9")]).earned
    assert first.earned["p1"] == reports.Tally(points=45, acts=3, hours=Decimal("4.5"))
    assert first.served["p1"] == first.earned["p1"] and "p2" not in first.served  # p2: an award
    assert reports.MonthTallies.from_text(first.text()) == first
    assert reports.MonthTallies.from_text(reports.MonthTallies().text()) == reports.MonthTallies()


def pool_leg(seq: int, person_id: str, points: int, hours: str | None = None) -> dict:
    kind = "volunteer_act" if hours else "manual_award"
    return {"seq": seq, "counterparty": person_id, "kind": kind, "points": -points, "hours": hours}


def test_a_month_file_should_count_its_entries_up_to_its_last_filing_or_its_pool_cursor():
    """Reconciliation: what a month file is off by, and the correcting filing that ends it."""
    legs = [pool_leg(1, "p1", 10, "1"), pool_leg(2, "p2", 5), pool_leg(3, "p1", 15, "1.5")]

    def month_entries(through: int) -> list[dict]:
        return [leg for leg in legs if leg["seq"] <= through]

    month_file = reports.empty_month_file("pool:c1:0@2026-11")
    month_file = reports.with_filing(month_file, {"seq": 1, **reports.filing(legs[:2], 2)(month_file)})
    assert reports.month_file_error(month_file, 2, month_entries) == (2, reports.MonthTallies())
    assert reports.month_file_error(month_file, 0, month_entries)[0] == 2  # the file's own filing
    # The pool's cursor passed seq 3, which the file does not count: it would never be filed.
    through, off = reports.month_file_error(month_file, 3, month_entries)
    missing = reports.Tally(points=15, acts=1, hours=Decimal("1.5"))
    assert (through, off.earned, off.served) == (3, {"p1": missing}, {"p1": missing})
    correcting = reports.correction(3, month_entries)(month_file)
    assert (correcting["through"], correcting["correction"]) == (3, True)
    corrected = reports.with_filing(month_file, {"seq": 2, **correcting})
    assert reports.MonthTallies.from_text(corrected["tallies"]) == reports.MonthTallies.of_pool(legs)
    with pytest.raises(reports.NothingToFile):
        reports.correction(3, month_entries)(corrected)
    # Counted twice: the file is off by minus the second count.
    doubled = reports.with_filing(corrected, {"seq": 3, "through": 3, "tallies": corrected["tallies"]})
    _, off = reports.month_file_error(doubled, 3, month_entries)
    assert {pid: t.points for pid, t in off.earned.items()} == {"p1": -25, "p2": -5}


def test_a_bad_leaderboard_request_names_every_field():
    with pytest.raises(InvalidInput) as caught:
        reports.board("city", [], "2026-13", 0)
    assert fields_of(caught) == {"scope_kind", "scope_ids", "month", "limit"}


def test_earning_transfer_ids_are_what_reports_recognise():
    recorded = act_recorded(community_id="c1", person_id="p1")
    rule = domain.default_rule("c1", Decimal(10))
    award = ManualAward(person_id="p1", community_id="c1", points=5, reason="帮扶")
    checked = {"inspected_on": date(2026, 11, 2), "passed": True, "points": 5, "inspector": "x"}
    inspection = Inspection(person_id="p1", community_id="c1", **checked)
    transfers = [
        domain.volunteer_act_transfer(new_event(recorded, subject=recorded.act_id), recorded, rule, 10, None),
        domain.award_transfer("k", award),
        domain.inspection_transfer("k", inspection),
    ]
    assert [t.id.startswith(reports.EARNING_TRANSFERS) for t in transfers] == [True, True, True]
    assert transfers[0].id.startswith(reports.ACT_TRANSFER)


# --- the monthly public disclosure ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "masked"),
    [("王建国", "王**"), ("李平", "李*"), ("欧阳明", "欧阳*"), ("欧阳", "欧*"), ("王", "王"), (None, None)],
)
def test_public_names_keep_the_family_name_only(name, masked):
    assert reports.mask_name(name) == masked


DISCLOSED_ACTS = [
    act("p1", 20, "2", "va:e1"),
    act("pool:c1:1", -20, "2", "va:e1"),
    act("p1", 15, "1.5", "va:e2"),
    act("p2", 40, "4", "va:e3"),
    entry("p2", "manual_award", 30, "award:k1"),  # not volunteer service
    act("p3", 10, "1", "va:e4"),
    entry("p3", "reversal", -10, "reversal:va:e4", reverses="va:e4", hours="1"),  # taken back
    act("p9", 5, "0.5", "va:e5"),
]


def disclosed() -> dict:
    return reports.disclosure("c1", NOVEMBER, tallied(DISCLOSED_ACTS).served, PEOPLE)


def test_the_disclosure_lists_who_served_most_points_first_with_masked_names():
    report = disclosed()
    assert report["title"] == "c1 2026年11月 志愿服务情况公示"
    assert report["items"] == [
        {"no": 1, "name": "李*", "points": 40, "acts": 1, "hours": "4"},
        {"no": 2, "name": "王**", "points": 35, "acts": 2, "hours": "3.5"},
        {"no": 3, "name": None, "points": 5, "acts": 1, "hours": "0.5"},  # not yet known by name
    ]
    assert report["totals"] == {"people": 3, "points": 80, "acts": 4, "hours": "8"}


def test_an_act_taken_back_after_its_month_is_a_correction_in_the_month_it_is_taken_back():
    """October was posted with p1's act; November shows it taken back, and October stays."""
    october = [act("p1", 20, "2", "va:e1"), act("p2", 10, "1", "va:e2")]
    november = [entry("p1", "reversal", -20, "reversal:va:e1", reverses="va:e1", hours="2")]
    assert reports.disclosure("c1", NOVEMBER, tallied(october).served, PEOPLE)["totals"]["acts"] == 2
    report = reports.disclosure("c1", NOVEMBER, tallied(november).served, PEOPLE)
    assert report["items"] == [{"no": 1, "name": "王**", "points": -20, "acts": -1, "hours": "-2"}]
    assert report["totals"] == {"people": 1, "points": -20, "acts": -1, "hours": "-2"}


def test_the_disclosure_workbook_has_title_header_rows_and_totals():
    people = {**PEOPLE, "p9": {"_id": "p9", "name": "=HYPERLINK(1)"}}
    report = reports.disclosure("c1", NOVEMBER, tallied(DISCLOSED_ACTS).served, people)
    file = reports.disclosure_file(report)
    assert file["filename"] == "volunteer-disclosure-c1-2026-11.xlsx"
    sheet = load_workbook(io.BytesIO(base64.b64decode(file["content"]))).active
    rows = [tuple(cell.value for cell in row) for row in sheet.iter_rows()]
    assert rows[0][0] == "c1 2026年11月 志愿服务情况公示"
    assert rows[1] == ("序号", "姓名", "服务次数", "服务时长（小时）", "获得积分")
    assert rows[2:] == [
        (1, "李*", 1, 4, 40),
        (2, "王**", 2, 3.5, 35),
        (3, "=************", 1, 0.5, 5),
        ("合计", "3人", 4, 8, 80),
    ]
    assert sheet.cell(5, 2).data_type == "s"  # a name that looks like a formula stays text


def test_the_read_model_keeps_name_community_grid_and_version():
    update = PersonUpdated(
        person_id="p1",
        revision=3,
        name="王建国",
        community_id="c1",
        is_party_member=False,
        is_cadre=False,
        grid_id="c1-01",
    )
    assert update.read_model(reports.PERSON_FIELDS) == {
        "_id": "p1",
        "name": "王建国",
        "community_id": "c1",
        "grid_id": "c1-01",
        "version": 3,
    }
