"""Cadre evaluation domain (干部考察): what a cadre's dossier records. No I/O here."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.events import (
    DualReportRegistered,
    Envelope,
    PointsTransferred,
    VolunteerActRecorded,
    VolunteerActRevoked,
)

RECENT_ACTS = 20  # the latest entries a dossier shows; its totals count them all
REVOCATION = "revocation"  # the kind of a dossier entry that revokes an earlier act (acts have none)


def dossier_act(envelope: Envelope, act: VolunteerActRecorded, applied_at: datetime) -> dict[str, Any]:
    return {"event_id": envelope.id, **act.facts(), "applied_at": applied_at}


def dossier_revocation(
    envelope: Envelope, revoked: VolunteerActRevoked, act: dict[str, Any], applied_at: datetime
) -> dict[str, Any]:
    """The entry that takes a revoked act (its dossier entry `act`) out of the totals."""
    return {
        "kind": REVOCATION,
        "event_id": envelope.id,
        "act_id": revoked.act_id,
        "hours": act["hours"],
        "reason": revoked.reason,
        "applied_at": applied_at,
    }


# What the dossier needs to know of a person from the registry.
PERSON_FIELDS = ("name", "is_cadre", "employer", "community_id")


def dual_report_facts(report: DualReportRegistered) -> dict[str, Any]:
    return {
        "community_id": report.community_id,
        "reported_on": report.reported_on.isoformat(),
        "posts": report.posts,
    }


def may_be_cadre(person: dict[str, Any] | None) -> bool:
    """Whether to keep a fact about this person: a cadre's, or a person not known yet (the
    registry's event may come after the fact: the two travel on different queues). Facts of
    people known not to be cadres are not kept; most people earning points are residents."""
    return person is None or person["is_cadre"]


def points_moves(transfer: PointsTransferred) -> list[dict[str, Any]]:
    """The transfer as seen by each person in it (person accounts are bare person ids)."""
    return [
        {"person_id": account, "transfer_id": transfer.transfer_id, "kind": transfer.kind, "points": points}
        for account, points in (
            (transfer.from_account, -transfer.points),
            (transfer.to_account, transfer.points),
        )
        if ":" not in account
    ]


def no_points(person_id: str) -> dict[str, Any]:
    return {"_id": person_id, "seq": 0, "earned": 0, "spent": 0}


def with_points_move(totals: dict[str, Any], move: dict[str, Any]) -> dict[str, Any]:
    """A person's points totals once `move` (the next in their chain) is added."""
    points = move["points"]
    return {
        "_id": totals["_id"],
        "seq": move["seq"],
        "earned": totals["earned"] + max(points, 0),
        "spent": totals["spent"] + max(-points, 0),
    }


def points_figures(totals: dict[str, Any]) -> dict[str, int]:
    return {
        "earned": totals["earned"],
        "spent": totals["spent"],
        "balance": totals["earned"] - totals["spent"],
    }


def empty_dossier(person_id: str) -> dict[str, Any]:
    return {"_id": person_id, "seq": 0, "acts_total": 0, "hours_total": "0"}


def acts_total(dossier: dict[str, Any]) -> int:
    # Summaries stored before revocations reached dossiers lack the count: each entry was an act.
    return dossier.get("acts_total", dossier["seq"])


def with_entry(dossier: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The dossier summary once `entry` (the next in its chain: an act, or the revocation of
    one) is added."""
    sign = -1 if entry.get("kind") == REVOCATION else 1
    return {
        "_id": dossier["_id"],
        "seq": entry["seq"],
        "acts_total": acts_total(dossier) + sign,
        "hours_total": str(Decimal(dossier["hours_total"]) + sign * Decimal(entry["hours"])),
    }


def dossier_view(
    person: dict[str, Any],
    dossier: dict[str, Any],
    recent_entries: list[dict[str, Any]],
    dual_report: dict[str, Any] | None,
) -> dict[str, Any]:
    """The dossier as read; its recent acts show their revocation, which always comes after
    them in the chain (a revocation waits for its act), so within the same recent entries."""
    revoked = {entry["act_id"]: entry for entry in recent_entries if entry.get("kind") == REVOCATION}
    return {
        "person_id": person["_id"],
        "name": person["name"],
        "employer": person.get("employer"),
        # 双报到: the community the cadre reported to, when, and the service posts claimed.
        "dual_report": dual_report,
        "acts_total": acts_total(dossier),
        "hours_total": dossier["hours_total"],
        "volunteer_acts": [
            {
                **{k: v for k, v in act.items() if k not in ("_id", "key", "guard", "event_id")},
                "applied_at": act["applied_at"].isoformat(),
                "revoked": {"reason": revoked[act["act_id"]]["reason"]} if act["act_id"] in revoked else None,
            }
            for act in recent_entries
            if act.get("kind") != REVOCATION
        ],
    }
