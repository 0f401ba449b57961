"""Points bank reports (积分报表): statements, leaderboards, the monthly public disclosure
(志愿服务情况按月公示). No I/O here.

Periods are calendar days where the users are (GRIDLINK_TIMEZONE, China Standard Time) while
the ledger stamps entries in UTC: a day holds the entries applied from its local midnight to
the next, so an entry applied at 2026-10-31T17:00Z belongs to November 1.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font

from services.points.domain import entry_view
from shared.errors import InvalidInput
from shared.schemas import MONTH

Entry = dict[str, Any]
Person = dict[str, Any]
Errors = list[dict[str, str]]

MAX_PERIOD_DAYS = 366
MAX_LEADERBOARD = 500
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
SCOPES = ("grid", "community", "street")
# What people earn; spending (redemptions) is not earning.
EARNING_KINDS = ("volunteer_act", "manual_award", "inspection")
# How earning transfers' ids begin (domain.volunteer_act_transfer, award_transfer,
# inspection_transfer): a reversal names only the transfer it reverses.
ACT_TRANSFER = "va:"
EARNING_TRANSFERS = (ACT_TRANSFER, "award:", "inspection:")
# Most family names are one character; these common ones are two.
COMPOUND_SURNAMES = (
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
    "宇文", "司徒", "夏侯", "轩辕", "令狐", "端木", "独孤", "南宫", "西门", "呼延",
)  # fmt: skip
DISCLOSURE_HEADER = ("序号", "姓名", "服务次数", "服务时长（小时）", "获得积分")


def is_person_account(account_id: str) -> bool:
    """People's accounts are their person ids, which have no colon; community and team
    accounts (`pool:`, `held:`, `team:`) do."""
    return ":" not in account_id


# --- the people read model ------------------------------------------------------------------


# What reports need to know of a person from the registry: a name, where they live.
PERSON_FIELDS = ("name", "community_id", "grid_id")


def mask_name(name: str | None) -> str | None:
    """Public lists show the family name only: 王建国 → 王**, 欧阳明 → 欧阳*."""
    name = (name or "").strip()
    if not name:
        return None
    surname = next((s for s in COMPOUND_SURNAMES if name.startswith(s) and len(name) > len(s)), name[:1])
    return surname + "*" * (len(name) - len(surname))


# --- periods ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    first: date
    last: date  # inclusive

    def bounds(self, zone: tzinfo) -> tuple[datetime, datetime]:
        """[start, end) in UTC: local midnight of the first day to local midnight after the last."""
        start = datetime.combine(self.first, time(), zone).astimezone(UTC)
        end = datetime.combine(self.last + timedelta(days=1), time(), zone).astimezone(UTC)
        return start, end


def period(period_from: Any, period_to: Any) -> Period:
    """A statement's period from its inclusive ISO dates; InvalidInput names `from` or `to`."""
    first, last = _day(period_from), _day(period_to)
    errors: Errors = [
        {"field": field, "message": "a date, YYYY-MM-DD"}
        for field, day in (("from", first), ("to", last))
        if day is None
    ]
    if errors:
        raise InvalidInput(errors)
    if last < first:
        raise InvalidInput.single("to", f"{last} is before from ({first})")
    if (last - first).days + 1 > MAX_PERIOD_DAYS:
        raise InvalidInput.single("to", f"a period is at most {MAX_PERIOD_DAYS} days")
    return Period(first, last)


def month_period(month: Any) -> Period:
    found = MONTH.fullmatch(month) if isinstance(month, str) else None
    if found is None:
        raise InvalidInput.single("month", "a month, YYYY-MM")
    first = date(int(found[1]), int(found[2]), 1)
    return Period(first, (first + timedelta(days=31)).replace(day=1) - timedelta(days=1))


def _day(text: Any) -> date | None:
    if not isinstance(text, str) or not DAY.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:  # 2026-02-30
        return None


def month_label(within: Period) -> str:
    return f"{within.first.year}年{within.first.month:02d}月"


# --- statements -------------------------------------------------------------------------------


def statement(
    account_id: str, within: Period, before: Entry | None, entries: Sequence[Entry], zone: tzinfo
) -> dict[str, Any]:
    """An account's statement: `before` is the entry preceding the period (its balance opens
    it), `entries` are the period's, in chain order."""
    opening = before["balance_after"] if before else 0
    return {
        "account_id": account_id,
        "from": within.first.isoformat(),
        "to": within.last.isoformat(),
        "opening_balance": opening,
        "closing_balance": entries[-1]["balance_after"] if entries else opening,
        "credited": sum(e["points"] for e in entries if e["points"] > 0),
        "debited": -sum(e["points"] for e in entries if e["points"] < 0),
        "entries": [
            {**entry_view(e), "on": e["applied_at"].astimezone(zone).date().isoformat()} for e in entries
        ],
    }


# --- what people earned ---------------------------------------------------------------------


@dataclass
class Tally:
    points: int = 0
    acts: int = 0
    hours: Decimal = Decimal(0)

    def count_act(self, hours: str, sign: int) -> None:
        self.acts += sign
        self.hours += sign * Decimal(hours)

    def add(self, other: Tally) -> None:
        self.points += other.points
        self.acts += other.acts
        self.hours += other.hours

    def negated(self) -> Tally:
        return Tally(-self.points, -self.acts, -self.hours)

    def view(self) -> dict[str, Any]:
        # Exact decimal text without trailing zeros: 2 + 1.5 + 4 + 0.5 is "8".
        return {"points": self.points, "acts": self.acts, "hours": f"{self.hours.normalize():f}"}


Tallies = dict[str, Tally]  # by person


@dataclass
class MonthTallies:
    """What a month's pool entries earned each person: `earned` counts every earning (the
    leaderboard), `served` volunteer acts alone (the disclosure)."""

    earned: Tallies = field(default_factory=dict)
    served: Tallies = field(default_factory=dict)

    @classmethod
    def of_pool(cls, pool_entries: Iterable[Entry]) -> MonthTallies:
        """What pool entries earned people."""
        tallies = cls()
        tallies.add_entries(people_side(pool_entries))
        return tallies

    def add_entries(self, people_entries: Sequence[Entry]) -> None:
        """Count the people's side of pool entries (`people_side`)."""
        served = [e for e in people_entries if is_service(e)]
        self.add(MonthTallies(earnings(people_entries), earnings(served)))

    def add(self, other: MonthTallies) -> None:
        for mine, theirs in ((self.earned, other.earned), (self.served, other.served)):
            for person_id, tally in theirs.items():
                mine.setdefault(person_id, Tally()).add(tally)

    def less(self, other: MonthTallies) -> MonthTallies:
        """What this counts beyond `other` (negative where it counts less); people counted
        alike by both are left out, so two equal tallies leave an empty one."""
        difference = MonthTallies()
        for mine, theirs, left in (
            (self.earned, other.earned, difference.earned),
            (self.served, other.served, difference.served),
        ):
            for person_id in mine.keys() | theirs.keys():
                tally = Tally()
                tally.add(mine.get(person_id, Tally()))
                tally.add(theirs.get(person_id, Tally()).negated())
                if tally != Tally():
                    left[person_id] = tally
        return difference

    def __bool__(self) -> bool:
        return bool(self.earned or self.served)

    def text(self) -> str:
        """As stored: JSON text, one value the database need not take apart (FerretDB spends
        about a tenth of a millisecond on each document nested in a stored one)."""
        return json.dumps(
            {
                name: {pid: [t.points, t.acts, str(t.hours)] for pid, t in tallies.items()}
                for name, tallies in (("earned", self.earned), ("served", self.served))
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_text(cls, text: str) -> MonthTallies:
        stored = json.loads(text)

        def tallies(name: str) -> Tallies:
            return {pid: Tally(p, acts, Decimal(hours)) for pid, (p, acts, hours) in stored[name].items()}

        return cls(tallies("earned"), tallies("served"))


class NothingToFile(Exception):
    """A filing found no entry its month file does not count already."""


def empty_month_file(key: str) -> dict[str, Any]:
    """A pool's month file (`<pool>@<YYYY-MM>`), a journal of filings: `through` is the last
    seq of the pool's chain it has counted, `tallies` what the month's entries earned."""
    return {"_id": key, "seq": 0, "through": 0, "tallies": MonthTallies().text()}


def with_filing(month_file: dict[str, Any], filing: Entry) -> dict[str, Any]:
    tallies = MonthTallies.from_text(month_file["tallies"])
    tallies.add(MonthTallies.from_text(filing["tallies"]))
    counted = {"seq": filing["seq"], "through": filing["through"], "tallies": tallies.text()}
    return {"_id": month_file["_id"], **counted}


def filing(pool_entries: Sequence[Entry], through: int) -> Callable[[dict[str, Any]], Entry]:
    """The next filing of a month file: what the month's `pool_entries` (seqs up to `through`)
    earned that the file does not count yet. Built on the file's true last filing, so an entry
    counts once however many filers file at once."""

    def entry_for(month_file: dict[str, Any]) -> Entry:
        new = [e for e in pool_entries if e["seq"] > month_file["through"]]
        if not new:
            raise NothingToFile(month_file["_id"])
        return {"through": through, "tallies": MonthTallies.of_pool(new).text()}

    return entry_for


def month_file_error(
    month_file: dict[str, Any], filed_through: int, month_entries: Callable[[int], Iterable[Entry]]
) -> tuple[int, MonthTallies]:
    """How far a month file should count, and what it should count beyond what it does
    (empty when exact). It should count the month's entries up to its own last filing's
    `through`, and up to `filed_through` (the pool's filing cursor, read before the file): a
    filing raises the cursor only once its month files count what it read.
    `month_entries(through)`: the month's pool entries with seqs up to `through`."""
    through = max(month_file["through"], filed_through)
    counted = MonthTallies.from_text(month_file["tallies"])
    return through, MonthTallies.of_pool(month_entries(through)).less(counted)


def correction(
    filed_through: int, month_entries: Callable[[int], Iterable[Entry]]
) -> Callable[[dict[str, Any]], Entry]:
    """A filing that makes a month file count what `month_file_error` finds it should
    (reconciliation repairs). Like any filing it is built on the file's true last one, so it
    corrects what is off then, whatever was filed since the check."""

    def entry_for(month_file: dict[str, Any]) -> Entry:
        through, off = month_file_error(month_file, filed_through, month_entries)
        if not off:
            raise NothingToFile(month_file["_id"])
        return {"through": through, "tallies": off.text(), "correction": True}

    return entry_for


def local_month(entry: Entry, zone: tzinfo) -> str:
    """The local month (YYYY-MM) an entry was applied in."""
    return entry["applied_at"].astimezone(zone).strftime("%Y-%m")


def is_earning_reversal(entry: Entry) -> bool:
    return entry["kind"] == "reversal" and (entry.get("reverses") or "").startswith(EARNING_TRANSFERS)


def is_service(entry: Entry) -> bool:
    """A volunteer act, or the reversal of one."""
    return entry["kind"] == "volunteer_act" or (entry.get("reverses") or "").startswith(ACT_TRANSFER)


def people_side(pool_entries: Iterable[Entry]) -> list[Entry]:
    """What pool entries moved for their counterparties: a pool's leg mirrors the other leg
    of its transfer (same kind and facts, opposite points), so a month of the pools' chains
    tells what the community's people earned in it."""
    return [
        {
            "key": e["counterparty"],
            "kind": e["kind"],
            "points": -e["points"],
            "transfer_id": e.get("transfer_id"),
            "reverses": e.get("reverses"),
            "hours": e.get("hours"),
        }
        for e in pool_entries
    ]


def earnings(entries: Iterable[Entry]) -> Tallies:
    """What each person earned by `entries`: earning credits, less reversals of earnings. A
    reversed act counts neither as an act nor in hours: its reversal carries its hours, and
    takes them back in the month it is made, whenever the act was credited."""
    tallies: dict[str, Tally] = {}
    for entry in entries:
        if not is_person_account(entry["key"]):
            continue
        if entry["kind"] in EARNING_KINDS or is_earning_reversal(entry):
            tally = tallies.setdefault(entry["key"], Tally())
            tally.points += entry["points"]  # a reversal's is negative: the earning given back
            if is_service(entry) and entry.get("hours"):
                tally.count_act(entry["hours"], +1 if entry["kind"] == "volunteer_act" else -1)
    return tallies


def _ranked(
    tallies: Mapping[str, Tally], people: Mapping[str, Person], listed: Callable[[Tally], bool]
) -> list[tuple[str, Tally]]:
    """The `listed` people, most points first; ties by name, then id, so the order is stable."""
    shown = [(pid, t) for pid, t in tallies.items() if pid in people and listed(t)]
    return sorted(shown, key=lambda item: (-item[1].points, people[item[0]].get("name") or "", item[0]))


def earned_something(tally: Tally) -> bool:
    return tally.points > 0 or tally.acts > 0


# --- leaderboards -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Board:
    scope_kind: str
    scope_ids: tuple[str, ...]
    month: Period
    limit: int


def board(scope_kind: Any, scope_ids: Any, month: Any, limit: Any) -> Board:
    """A leaderboard request, checked; InvalidInput names every bad field."""
    errors: Errors = []
    if not isinstance(scope_kind, str) or scope_kind not in SCOPES:
        errors.append({"field": "scope_kind", "message": f"one of {', '.join(SCOPES)}"})
    ids_ok = isinstance(scope_ids, list | tuple) and all(isinstance(i, str) and i for i in scope_ids)
    if not ids_ok or not scope_ids:
        errors.append({"field": "scope_ids", "message": "one or more grid or community codes"})
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LEADERBOARD:
        errors.append({"field": "limit", "message": f"a whole number from 1 to {MAX_LEADERBOARD}"})
    try:
        within = month_period(month)
    except InvalidInput as exc:
        errors += exc.errors
    if errors:
        raise InvalidInput(errors)
    return Board(scope_kind, tuple(dict.fromkeys(scope_ids)), within, limit)


def leaderboard(wanted: Board, earned: Tallies, people: Mapping[str, Person]) -> dict[str, Any]:
    """People ranked by what they `earned` in the month from the pools of the scope's
    communities (`MonthTallies`): whoever served there, residents or members reporting there
    from elsewhere (双报到); a grid's board, its residents among them. `people` are those the
    registry told of: people it has not told of are left out."""
    in_grid = wanted.scope_kind == "grid"
    in_scope = {pid: p for pid, p in people.items() if not in_grid or p.get("grid_id") in wanted.scope_ids}
    ranked = _ranked(earned, in_scope, earned_something)
    return {
        "scope_kind": wanted.scope_kind,
        "scope_ids": list(wanted.scope_ids),
        "month": wanted.month.first.strftime("%Y-%m"),
        "total": len(ranked),
        "items": [
            {
                "rank": rank,
                "person_id": person_id,
                "name": in_scope[person_id].get("name"),
                "community_id": in_scope[person_id].get("community_id"),
                "grid_id": in_scope[person_id].get("grid_id"),
                **tally.view(),
            }
            for rank, (person_id, tally) in enumerate(ranked[: wanted.limit], start=1)
        ],
    }


# --- the monthly public disclosure ------------------------------------------------------------


def disclosure(
    community_id: str, within: Period, served: Tallies, people: Mapping[str, Person]
) -> dict[str, Any]:
    """志愿服务情况按月公示: who `served` the community by what its ledger recorded in the month
    (`MonthTallies`), names masked for posting. A month shows the acts credited in it, less the
    acts taken back in it: an act taken back after its month was posted shows as a correction
    (negative) in the month it is taken back, so a posted month never changes (unless `make
    reconcile` corrects a count a fault had left wrong)."""
    # Everyone who served is listed, even if the registry has not told of them yet.
    named = {pid: people.get(pid, {}) for pid in served}
    ranked = _ranked(served, named, lambda tally: tally.points != 0 or tally.acts != 0)
    total = Tally(
        points=sum(t.points for _, t in ranked),
        acts=sum(t.acts for _, t in ranked),
        hours=sum((t.hours for _, t in ranked), Decimal(0)),
    )
    return {
        "community_id": community_id,
        "month": within.first.strftime("%Y-%m"),
        "title": f"{community_id} {month_label(within)} 志愿服务情况公示",
        "items": [
            {"no": no, "name": mask_name(named[pid].get("name")), **tally.view()}
            for no, (pid, tally) in enumerate(ranked, start=1)
        ],
        "totals": {"people": len(ranked), **total.view()},
    }


def disclosure_file(report: Mapping[str, Any]) -> dict[str, str]:
    """The disclosure as an .xlsx file, base64 so that it crosses RPC as text."""
    return {
        "filename": f"volunteer-disclosure-{report['community_id']}-{report['month']}.xlsx",
        "content": base64.b64encode(disclosure_xlsx(report)).decode(),
    }


def disclosure_xlsx(report: Mapping[str, Any]) -> bytes:
    """The disclosure as a sheet to print and post: title, header, one row a person, totals."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "志愿服务公示"
    _append(sheet, [report["title"]])
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(DISCLOSURE_HEADER))
    sheet["A1"].font = Font(bold=True, size=14)
    sheet["A1"].alignment = Alignment(horizontal="center")
    _append(sheet, DISCLOSURE_HEADER)
    totals = report["totals"]
    rows = [(item["no"], item["name"], item) for item in report["items"]]
    for no, name, figures in [*rows, ("合计", f"{totals['people']}人", totals)]:
        _append(sheet, [no, name, figures["acts"], Decimal(figures["hours"]), figures["points"]])
    bold = Font(bold=True)
    for cell in (*sheet[2], *sheet[sheet.max_row]):
        cell.font = bold
    for column, width in zip("ABCDE", (8, 14, 12, 18, 12), strict=True):
        sheet.column_dimensions[column].width = width
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _append(sheet: Any, values: Sequence[Any]) -> None:
    # Control characters are not allowed in XML, so they go; text stays text, even "=…".
    sheet.append([ILLEGAL_CHARACTERS_RE.sub("", v) if isinstance(v, str) else v for v in values])
    for cell in sheet[sheet.max_row]:
        if isinstance(cell.value, str):
            cell.data_type = "s"
