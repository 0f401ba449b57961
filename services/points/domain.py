"""Points bank domain (积分银行): accounts, double-entry transfers, earning rules. No I/O here.

Every change of points is a transfer between two accounts: a debit leg and a credit leg of
equal points, so the sum over all accounts is always zero. Points are whole numbers. Accounts:
- a person: `<person id>`; a volunteer team: `team:<id>` — never below zero;
- a community's pool, which issues points and takes spent ones back: `pool:<community>:<n>`,
  spread over a few shards so that credits to many people do not queue on one chain;
- points reserved by open redemption orders: `held:<community>:<n>`.
Counters (stock, purchases per person, caps) are chains too, but not accounts.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.events import Envelope, PointsTransferred, VolunteerActRecorded, new_event
from shared.schemas.points import ApprovalDecision, EarningRule, Inspection, ManualAward

Entry = dict[str, Any]
Summary = dict[str, Any]
POOL_SHARDS = 8
# Namespace of the ids of `points.transferred` events (uuid5 of the transfer id).
EVENT_IDS = UUID("6d1f2a8e-3c4b-5e6f-8a9b-0c1d2e3f4a5b")
RECENT_ENTRIES = 10  # the latest entries an account answer shows; statements show them all
# What an entry shows of itself to readers.
ENTRY_FIELDS = (
    "seq",
    "kind",
    "transfer_id",
    "counterparty",
    "event_id",
    "act_id",
    "act_type",
    "hours",
    "occurred_on",
    "points",
    "balance_after",
    "reason",
    "reverses",
    "capped",
    "applied_at",
)


class Refused(Exception):
    """An entry that would break a bound: a balance below zero, a stock below zero."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


# --- accounts -------------------------------------------------------------------------------


def shard(counterparty: str) -> int:
    return zlib.crc32(counterparty.encode()) % POOL_SHARDS


def pool_account(community_id: str, counterparty: str) -> str:
    return f"pool:{community_id}:{shard(counterparty)}"


def held_account(community_id: str, counterparty: str) -> str:
    return f"held:{community_id}:{shard(counterparty)}"


def community_accounts(community_id: str) -> tuple[list[str], list[str]]:
    """Every shard of the community's pool and of its held account."""
    shards = range(POOL_SHARDS)
    return [f"pool:{community_id}:{n}" for n in shards], [f"held:{community_id}:{n}" for n in shards]


# Transfers staff may reverse: what people earned. An order's move only through cancelling it.
REVERSIBLE = frozenset({"volunteer_act", "manual_award", "inspection"})


def may_go_negative(account_id: str) -> bool:
    """Pools issue points (their balance is minus what they issued); people and teams cannot
    spend what they do not have."""
    return account_id.startswith("pool:")


def may_be_refused(entry: Entry) -> bool:
    """A debit of an account that cannot go negative: the only leg `legs` can refuse (its
    balance is never below zero, so a credit always fits). The ledger records the guards of
    these before appending them (shared/journal.py): keep the two in step."""
    return entry.get("points", 0) < 0 and not may_go_negative(entry["key"])


# --- transfers --------------------------------------------------------------------------------


class Transfer(BaseModel):
    """One movement of points. `id` is derived from what caused it, so a cause moves points
    once however often it is processed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    kind: str
    from_account: str
    to_account: str
    points: int = Field(ge=0)
    community_id: str
    reason: str | None = None
    actor: str | None = None  # the staff member who made it, for manual ones
    reverses: str | None = None  # the transfer this one compensates
    facts: dict[str, Any] = Field(default_factory=dict)  # of the cause: act, order, inspection

    @model_validator(mode="after")
    def two_accounts(self) -> Transfer:
        if self.from_account == self.to_account:
            raise ValueError("from_account: a transfer needs two different accounts")
        return self


# What a leg holds of its own, besides the transfer's facts (the same in both legs): its place
# in its chain (the journal's fields) and what `legs` writes.
LEG_FIELDS = frozenset(
    {"_id", "key", "seq", "guard", "kind", "transfer_id", "counterparty", "community_id", "points",
     "balance_after", "reason", "actor", "reverses", "applied_at"}
)  # fmt: skip


def legs(transfer: Transfer, applied_at: datetime) -> list[tuple[str, str, Callable[[Summary], Entry]]]:
    """(account, guard, entry_for) for the debit and the credit leg, debit first."""

    def leg(account: str, counterparty: str, points: int) -> Callable[[Summary], Entry]:
        def entry_for(summary: Summary) -> Entry:
            balance_after = summary["balance"] + points
            if balance_after < 0 and not may_go_negative(account):  # see `may_be_refused`
                raise Refused(
                    "insufficient_points", f"{account} has {summary['balance']} points, {-points} needed"
                )
            return {
                "kind": transfer.kind,
                "transfer_id": transfer.id,
                "counterparty": counterparty,
                "community_id": transfer.community_id,
                "points": points,
                "balance_after": balance_after,
                "reason": transfer.reason,
                "actor": transfer.actor,
                "reverses": transfer.reverses,
                **transfer.facts,
                "applied_at": applied_at,
            }

        return entry_for

    return [
        (
            transfer.from_account,
            f"{transfer.id}@{transfer.from_account}",
            leg(transfer.from_account, transfer.to_account, -transfer.points),
        ),
        (
            transfer.to_account,
            f"{transfer.id}@{transfer.to_account}",
            leg(transfer.to_account, transfer.from_account, transfer.points),
        ),
    ]


def reversal_of(original: Entry, actor: str | None, reason: str) -> Transfer:
    """The compensating transfer of the transfer `original` (one of its legs) belongs to."""
    points = abs(original["points"])
    receiver, sender = original["key"], original["counterparty"]
    if original["points"] < 0:  # the debit leg: its account sent, the other received
        receiver, sender = sender, receiver
    return Transfer(
        id=f"reversal:{original['transfer_id']}",
        kind="reversal",
        from_account=receiver,
        to_account=sender,
        points=points,
        community_id=original["community_id"],
        reason=reason,
        actor=actor,
        reverses=original["transfer_id"],
        # A reversed act's hours travel with its reversal, so that reports reading a month's
        # entries take them back without looking up the act's credit (a scan on FerretDB).
        facts={"hours": original["hours"]} if original.get("hours") else {},
    )


# --- earning rules ------------------------------------------------------------------------------


def default_rule(community_id: str, points_per_hour: Decimal) -> EarningRule:
    return EarningRule(
        rule_id="default",
        community_id=community_id,
        points_per_hour=points_per_hour,
        valid_from=date(2000, 1, 1),
    )


def rule_for(rules: Iterable[EarningRule], community_id: str, act_type: str, day: date) -> EarningRule | None:
    """The rule in force: of the community's rules valid that day, one for the act type over
    one for every type, then the latest start."""
    valid = [
        r
        for r in rules
        if r.community_id == community_id
        and r.act_type in (None, act_type)
        and r.valid_from <= day
        and (r.valid_to is None or day <= r.valid_to)
    ]
    return max(valid, key=lambda r: (r.act_type is not None, r.valid_from), default=None)


def points_for_hours(hours: Decimal, points_per_hour: Decimal) -> int:
    """Points are whole numbers; half a point rounds up (2.25 h × 10 = 22.5 → 23)."""
    return int((hours * points_per_hour).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def points_by_rule(rule: EarningRule, hours: Decimal) -> int:
    if rule.fixed_points is not None:
        return rule.fixed_points
    return points_for_hours(hours, rule.points_per_hour)


def rule_text(rule: EarningRule) -> str:
    measure = (
        f"{rule.fixed_points} points per act"
        if rule.fixed_points
        else f"{rule.points_per_hour} points per hour"
    )
    return f"{rule.rule_id}: {measure}"


def needs_approval(rule: EarningRule, hours: Decimal) -> bool:
    return rule.approval_above_hours is not None and hours > rule.approval_above_hours


def caps(rule: EarningRule, person_id: str, day: date) -> list[tuple[str, int, str]]:
    """(counter key, cap, label) of the caps that apply, daily first."""
    found = []
    if rule.daily_cap:
        found.append((f"cap:{person_id}:{rule.rule_id}:{day.isoformat()}", rule.daily_cap, "daily"))
    if rule.yearly_cap:
        found.append((f"cap:{person_id}:{rule.rule_id}:{day.year}", rule.yearly_cap, "yearly"))
    return found


def released_from_cap(points: int) -> Callable[[Summary], Entry]:
    """A cap counter's entry giving back what a reversed act had used of the cap, so that the
    person may earn it again."""

    def entry_for(summary: Summary) -> Entry:
        return {"kind": "cap_released", "points": -points, "balance_after": summary["balance"] - points}

    return entry_for


def grant_within(cap: int, label: str, requested: int) -> Callable[[Summary], Entry]:
    """A cap counter's entry: grants what fits under the cap, records what was asked."""

    def entry_for(summary: Summary) -> Entry:
        granted = max(0, min(requested, cap - summary["balance"]))
        return {
            "kind": f"{label}_cap",
            "requested": requested,
            "points": granted,
            "balance_after": summary["balance"] + granted,
            "cap": cap,
        }

    return entry_for


def earned(
    transfer_id: str, kind: str, person_id: str, community_id: str, points: int, **details: Any
) -> Transfer:
    """Points a person earns: paid from their community's pool."""
    return Transfer(
        id=transfer_id,
        kind=kind,
        from_account=pool_account(community_id, person_id),
        to_account=person_id,
        points=points,
        community_id=community_id,
        **details,
    )


def act_transfer_id(recorded_event_id: str) -> str:
    """A volunteer act's credit is named by the event that recorded the act."""
    return f"va:{recorded_event_id}"


def volunteer_act_transfer(
    envelope: Envelope,
    act: VolunteerActRecorded,
    rule: EarningRule,
    points: int,
    capped: dict[str, Any] | None,
    caps_used: dict[str, int] | None = None,
) -> Transfer:
    """`caps_used`: what the act used of each cap counter, given back if it is reversed."""
    facts = {"event_id": envelope.id, **act.facts(), "rule": rule_text(rule), "capped": capped}
    if caps_used:
        facts["caps_used"] = caps_used
    return earned(
        act_transfer_id(envelope.id), "volunteer_act", act.person_id, act.community_id, points,
        reason=rule_text(rule), facts=facts,
    )  # fmt: skip


def award_transfer(key: str, award: ManualAward) -> Transfer:
    return earned(
        f"award:{key}",
        "manual_award",
        award.person_id,
        award.community_id,
        award.points,
        reason=award.reason,
        actor=award.actor,
    )


def inspection_transfer(key: str, inspection: Inspection) -> Transfer:
    """A failed check moves no points but is on the record (a transfer of 0)."""
    verdict = "合格" if inspection.passed else "不合格"
    return earned(
        f"inspection:{key}",
        "inspection",
        inspection.person_id,
        inspection.community_id,
        inspection.points if inspection.passed else 0,
        reason=f"门前三包检查{verdict}" + (f"：{inspection.notes}" if inspection.notes else ""),
        actor=inspection.actor,
        facts={
            "inspector": inspection.inspector,
            "household_id": inspection.household_id,
            "inspected_on": inspection.inspected_on.isoformat(),
            "passed": inspection.passed,
        },
    )


def transfer_events(transfer: Transfer) -> list[Envelope]:
    """The event that tells the others of an applied transfer. Its id follows from the
    transfer's, so recording it again (a redelivered cause) repeats the same event."""
    event = PointsTransferred(
        transfer_id=transfer.id,
        kind=transfer.kind,
        from_account=transfer.from_account,
        to_account=transfer.to_account,
        points=transfer.points,
        community_id=transfer.community_id,
        reverses=transfer.reverses,
    )
    return [new_event(event, subject=transfer.id, event_id=str(uuid5(EVENT_IDS, transfer.id)))]


def transfer_view(transfer: Transfer) -> dict[str, Any]:
    return transfer.model_dump(mode="json", exclude={"facts"}) | {"transfer_id": transfer.id}


# --- approvals --------------------------------------------------------------------------------


def decision(act_id: str, pending: dict[str, Any], wanted: ApprovalDecision) -> dict[str, Any]:
    return {
        "_id": act_id,
        "community_id": pending["community_id"],
        "approved": wanted.approve,
        "approver": wanted.approver,
        "reason": wanted.reason,
        "decided_at": datetime.now(UTC),
    }


def decision_view(decided: dict[str, Any]) -> dict[str, Any]:
    return {
        "act_id": decided["_id"],
        "approved": decided["approved"],
        "approver": decided["approver"],
        "reason": decided.get("reason"),
        "decided_at": decided["decided_at"].isoformat(),
    }


def pending_view(pending: dict[str, Any]) -> dict[str, Any]:
    act = pending["envelope"]["data"]
    return {
        "act_id": pending["_id"],
        "person_id": pending["person_id"],
        "act_type": act["act_type"],
        "hours": act["hours"],
        "occurred_on": act["occurred_on"],
        "community_id": pending["community_id"],
        "rule": pending["rule"],
    }


# --- summaries --------------------------------------------------------------------------------


# Summaries stay small: FerretDB decodes and re-encodes the whole document on every rewrite.


def empty_account(account_id: str) -> Summary:
    return {"_id": account_id, "seq": 0, "balance": 0}


def with_entry(account: Summary, entry: Entry) -> Summary:
    """The account summary once `entry` (the next in its chain) is applied."""
    return {"_id": account["_id"], "seq": entry["seq"], "balance": entry["balance_after"]}


def entry_view(entry: Entry) -> Entry:
    view = {k: entry[k] for k in ENTRY_FIELDS if entry.get(k) is not None}
    return {**view, "applied_at": entry["applied_at"].isoformat()}
