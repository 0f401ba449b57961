"""Issue intake domain: volunteer acts and their rules. No I/O here."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from shared.errors import InvalidInput, NotFound
from shared.events import Envelope, VolunteerActRecorded, VolunteerActRevoked, new_event
from shared.schemas import VolunteerActInput


@dataclass(frozen=True)
class ActType:
    code: str
    name_zh: str
    name_en: str
    source: str  # the seed practice it comes from


# The catalogue communities verify acts against (seeds 001-004).
ACT_TYPES: dict[str, ActType] = {
    t.code: t
    for t in (
        ActType("patrol_duty", "党员联勤岗巡逻", "party-member patrol duty", "003 党员联勤岗"),
        ActType("service_order", "志愿服务领单", "service order taken", "004 群众点单、成员领单"),
        ActType("micro_wish", "认领微心愿", "micro-wish fulfilled", "001 微心愿"),
        ActType("clean_up", "环境卫生整治", "clean-up", "001/002 环境卫生整治"),
        ActType("epidemic_duty", "疫情防控值守", "epidemic-prevention duty", "002 疫情防控"),
        ActType("mediation", "矛盾纠纷调解", "dispute mediation", "003 居民纠纷调解"),
        ActType("elder_care", "关爱帮扶重点对象", "care for people in need", "004 6+N 志愿服务"),
        ActType("parking_order", "停车秩序整治", "parking order", "001 机动车乱停乱放整治"),
    )
}


def act_id_for(client_id: str, idempotency_key: str) -> str:
    """The act id is derived from who sent it and their idempotency key, so a retried request
    lands on the same document and the primary key makes it count once."""
    digest = hashlib.sha256(f"{client_id}\x1f{idempotency_key}".encode()).hexdigest()
    return f"va_{digest[:26]}"


def fingerprint(act: VolunteerActInput) -> str:
    canonical = json.dumps(act.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_volunteer_act(
    act: VolunteerActInput,
    *,
    person: dict[str, Any] | None,
    community: dict[str, Any] | None,
    today: date,
    field_prefix: str = "",
) -> None:
    """The rules a volunteer act must meet before it is recorded."""
    if person is None:
        if not field_prefix:
            raise NotFound("person", act.person_id)
        raise InvalidInput.single(f"{field_prefix}person_id", f"unknown person {act.person_id!r}")
    errors = []
    if act.act_type not in ACT_TYPES:
        errors.append(
            {
                "field": f"{field_prefix}act_type",
                "message": f"unknown act type {act.act_type!r}; see /api/v1/volunteer-act-types",
            }
        )
    if act.occurred_on > today:
        errors.append({"field": f"{field_prefix}occurred_on", "message": f"is after today ({today})"})
    if community is None or community.get("classification") != "community_party_committee":
        errors.append(
            {
                "field": f"{field_prefix}community_id",
                "message": f"unknown community {act.community_id!r}",
            }
        )
    elif community.get("closed_on") and act.occurred_on.isoformat() >= community["closed_on"]:
        errors.append(
            {
                "field": f"{field_prefix}community_id",
                "message": f"the community was closed on {community['closed_on']}",
            }
        )
    if errors:
        raise InvalidInput(errors)


def new_act(
    act_id: str, act: VolunteerActInput, *, client_id: str, recorded_at: datetime
) -> tuple[dict[str, Any], list[Envelope]]:
    """The act document and the events it causes."""
    event = new_event(
        VolunteerActRecorded(
            act_id=act_id,
            person_id=act.person_id,
            act_type=act.act_type,
            hours=act.hours,
            occurred_on=act.occurred_on,
            community_id=act.community_id,
            recorded_at=recorded_at,
        ),
        subject=act_id,
    )
    document = {
        "_id": act_id,
        **act.model_dump(mode="json"),
        "client_id": client_id,
        "fingerprint": fingerprint(act),
        "recorded_at": recorded_at,
    }
    return document, [event]


def revocation(
    document: dict[str, Any], reason: str, actor: str | None
) -> tuple[dict[str, Any], list[Envelope]]:
    """The change that revokes a recorded act, and the event that takes its points back."""
    recorded = next(e for e in document["events"] if e["type"] == VolunteerActRecorded.cloudevent_type())
    event = new_event(
        VolunteerActRevoked(
            act_id=document["_id"],
            person_id=document["person_id"],
            community_id=document["community_id"],
            recorded_event_id=recorded["id"],
            reason=reason,
            revoked_by=actor,
        ),
        subject=document["_id"],
    )
    change = {"revoked": {"reason": reason, "by": actor}, "version": document.get("version", 1) + 1}
    return change, [event]


def act_view(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "revoked": document.get("revoked"),
        "act_id": document["_id"],
        "person_id": document["person_id"],
        "act_type": document["act_type"],
        "hours": document["hours"],
        "occurred_on": document["occurred_on"],
        "community_id": document["community_id"],
        "recorded_at": document["recorded_at"].isoformat(),
        "event_ids": [event["id"] for event in document.get("events", [])],
    }
