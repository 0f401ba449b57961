"""Points bank domain (积分银行): how volunteer acts become points. No I/O here."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from shared.events import Envelope, VolunteerActRecorded

# The account summary is rewritten on every posting (see shared/partitions.py for what that
# costs on FerretDB): it carries a few slim latest entries; the ledger chain holds them all.
RECENT_ENTRIES = 10
SUMMARY_FIELDS = (
    "seq",
    "kind",
    "event_id",
    "act_id",
    "act_type",
    "hours",
    "occurred_on",
    "points",
    "balance_after",
    "applied_at",
)


def points_for_hours(hours: Decimal, points_per_hour: Decimal) -> int:
    """Points are whole numbers; half a point rounds up (2.25 h × 10 = 22.5 → 23)."""
    return int((hours * points_per_hour).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def volunteer_act_credit(
    envelope: Envelope, act: VolunteerActRecorded, points_per_hour: Decimal, applied_at: datetime
) -> dict[str, Any]:
    """The ledger entry crediting a volunteer act (without its place in the account's chain)."""
    return {
        "kind": "volunteer_act",
        "event_id": envelope.id,
        **act.facts(),
        "points": points_for_hours(act.hours, points_per_hour),
        "rule": f"{points_per_hour} points per hour",
        "applied_at": applied_at,
    }


def with_running_balance(entry: dict[str, Any], account: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "balance_after": account["balance"] + entry["points"]}


def empty_account(account_id: str) -> dict[str, Any]:
    return {"_id": account_id, "seq": 0, "balance": 0, "recent": []}


def with_entry(account: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The account summary once `entry` (the next in its chain) is applied."""
    recent = [e for e in account["recent"] if e["seq"] != entry["seq"]]
    slim = {k: entry[k] for k in SUMMARY_FIELDS if k in entry}
    return {
        "_id": account["_id"],
        "seq": entry["seq"],
        "balance": entry["balance_after"],
        "recent": [slim, *recent][:RECENT_ENTRIES],
    }


def entry_view(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "applied_at": entry["applied_at"].isoformat()}
