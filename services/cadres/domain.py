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
)

RECENT_ACTS = 20  # the latest acts a dossier shows; its totals count them all


def dossier_act(envelope: Envelope, act: VolunteerActRecorded, applied_at: datetime) -> dict[str, Any]:
    return {"event_id": envelope.id, **act.facts(), "applied_at": applied_at}


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
    return {"_id": person_id, "seq": 0, "hours_total": "0"}


def with_act(dossier: dict[str, Any], act: dict[str, Any]) -> dict[str, Any]:
    """The dossier summary once `act` (the next in its chain) is added."""
    return {
        "_id": dossier["_id"],
        "seq": act["seq"],
        "hours_total": str(Decimal(dossier["hours_total"]) + Decimal(act["hours"])),
    }


def dossier_view(
    person: dict[str, Any],
    dossier: dict[str, Any],
    recent_acts: list[dict[str, Any]],
    dual_report: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "person_id": person["_id"],
        "name": person["name"],
        "employer": person.get("employer"),
        # 双报到: the community the cadre reported to, when, and the service posts claimed.
        "dual_report": dual_report,
        "acts_total": dossier["seq"],
        "hours_total": dossier["hours_total"],
        "volunteer_acts": [
            {
                **{k: v for k, v in act.items() if k not in ("_id", "key", "guard", "event_id")},
                "applied_at": act["applied_at"].isoformat(),
            }
            for act in recent_acts
        ],
    }
