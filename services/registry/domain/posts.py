"""Posts and memberships over time, cross-appointments (交叉任职) and 双报到.

A post that one person holds at a time (the secretary of a branch, the chair of a 业委会, a
building head) is a chain of tenures: tenure n of post k is stored under `_id` "k#n", so two
appointments can never both become tenure n (primary key, exact on any MongoDB-protocol
server). A tenure still open when the next one starts ends the day before it; history is
recorded in date order and an overlap with an explicitly ended tenure is refused. A role that
many hold at once (committee member) is a chain per person, which refuses the same person
holding it twice at the same time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any

from services.registry.domain.people import is_in_service
from services.registry.domain.tree import PARTY_ORGANISATIONS, is_open
from shared.errors import Conflict, InvalidInput
from shared.events import (
    DualReportRegistered,
    Envelope,
    MembershipEnded,
    MembershipStarted,
    ServicePostClaimed,
    new_event,
)
from shared.journal import slot_id
from shared.schemas.registry import (
    Classification,
    NewDualReport,
    NewMembership,
    PlaceKind,
    PostClaim,
    Role,
)

C = Classification
Document = dict[str, Any]

SINGLE_HOLDER = frozenset(
    {Role.SECRETARY, Role.CHAIR, Role.GRID_HEAD, Role.BUILDING_HEAD, Role.UNIT_HEAD, Role.GROUP_LEADER}
)
PARTY_COMMITTEE_ROLES = frozenset(
    {Role.SECRETARY, Role.DEPUTY_SECRETARY, Role.COMMITTEE_MEMBER, Role.PART_TIME_COMMITTEE_MEMBER}
)
COMMITTEE_ROLES = frozenset({Role.CHAIR, Role.DEPUTY_CHAIR, Role.COMMITTEE_MEMBER, Role.MEMBER})
COMMITTEES = frozenset({C.RESIDENTS_COMMITTEE, C.HOMEOWNERS_COMMITTEE})
# Where each role can be held; `member` fits any organisation.
ROLE_TARGETS: dict[Role, frozenset[str]] = {
    **{role: PARTY_ORGANISATIONS for role in PARTY_COMMITTEE_ROLES},
    Role.COMMITTEE_MEMBER: PARTY_ORGANISATIONS | COMMITTEES,
    Role.GROUP_LEADER: frozenset({C.BUILDING, C.COMPOUND_BRANCH, C.FUNCTIONAL_BRANCH}),
    Role.CHAIR: COMMITTEES,
    Role.DEPUTY_CHAIR: COMMITTEES,
    Role.GRID_HEAD: frozenset({C.GRID}),
    Role.GRID_WORKER: frozenset({C.GRID}),
    Role.BUILDING_HEAD: frozenset({PlaceKind.BUILDING}),
    Role.UNIT_HEAD: frozenset({PlaceKind.UNIT}),
    Role.PARTY_INSTRUCTOR: frozenset({C.PROPERTY_COMPANY, C.COMPOUND_BRANCH, C.CO_BUILDING_UNIT}),
    Role.BUILDING_LIAISON: frozenset({C.PROPERTY_COMPANY}),
    Role.PUBLIC_SUPERVISOR: frozenset({C.COMMUNITY, C.COMPOUND_BRANCH, C.RESIDENTS_COMMITTEE}),
    Role.MANAGER: frozenset({C.PROPERTY_COMPANY, C.CO_BUILDING_UNIT}),
}


def chain_key(membership: NewMembership) -> str:
    target = membership.organisation_id or membership.place_id
    if membership.role in SINGLE_HOLDER:
        return f"{target}#{membership.role}"
    return f"{target}#{membership.role}#{membership.person_id}"


def check_membership(
    new: NewMembership,
    person: Document | None,
    tree: Mapping[str, Document],
    places: Mapping[str, Document],
) -> None:
    errors: list[dict[str, str]] = []
    if person is None:
        errors.append({"field": "person_id", "message": f"unknown person {new.person_id!r}"})
    if new.organisation_id is not None:
        target = tree.get(new.organisation_id)
        field, kind = "organisation_id", target and target["classification"]
        if target is not None and not is_open(target, new.start_on):
            errors.append(
                {
                    "field": field,
                    "message": f"not open on {new.start_on} (founded, closed: "
                    f"{target.get('founded_on') or '-'}, {target.get('closed_on') or '-'})",
                }
            )
    else:
        target = places.get(new.place_id)
        field, kind = "place_id", target and target["kind"]
    allowed = ROLE_TARGETS.get(new.role)
    if target is None:
        errors.append({"field": field, "message": "unknown"})
    elif allowed is not None and kind not in allowed:
        errors.append({"field": "role", "message": f"a {new.role} is not held in a {kind}"})
    if new.on_behalf_of is not None and new.on_behalf_of not in tree:
        errors.append({"field": "on_behalf_of", "message": f"unknown organisation {new.on_behalf_of!r}"})
    on_party_committee = new.role in PARTY_COMMITTEE_ROLES and kind in PARTY_ORGANISATIONS
    if person is not None and on_party_committee and not person.get("is_party_member"):
        errors.append({"field": "role", "message": "party committee posts are held by party members"})
    if errors:
        raise InvalidInput(errors)


def effective(tenures: Iterable[Document]) -> list[Document]:
    """A chain's tenures in order, each with `ends_on`: its own end, or the day before the next
    tenure started if that comes first."""
    ordered = sorted(tenures, key=lambda t: t["seq"])
    result = []
    for index, tenure in enumerate(ordered):
        ends_on = tenure.get("end_on")
        if index + 1 < len(ordered):
            implied = (date.fromisoformat(ordered[index + 1]["start_on"]) - timedelta(days=1)).isoformat()
            ends_on = min(ends_on, implied) if ends_on else implied
        result.append({**tenure, "ends_on": ends_on})
    return result


def next_tenure(new: NewMembership, chain: list[Document]) -> tuple[Document, list[Envelope]]:
    """The tenure to append to a post's chain (read as `chain`), with its events."""
    key = chain_key(new)
    start = new.start_on.isoformat()
    events = []
    if chain:
        last = effective(chain)[-1]
        holder = "the same person" if new.role not in SINGLE_HOLDER else last["person_id"]
        if start <= last["start_on"] or (last["ends_on"] is not None and start <= last["ends_on"]):
            raise Conflict(
                "overlapping_post",
                f"overlaps the {new.role} tenure of {holder} "
                f"from {last['start_on']} to {last['ends_on'] or 'now'}; end it first or start later",
                field="start_on",
            )
        if last["ends_on"] is None and new.role not in SINGLE_HOLDER:
            raise Conflict(
                "overlapping_post",
                f"{holder} already holds this {new.role} post; end it first",
                field="start_on",
            )
        if last["ends_on"] is None:  # the predecessor's tenure ends where this one starts
            events.append(_ended(last, (new.start_on - timedelta(days=1))))
    membership_id = f"m-{uuid.uuid4().hex[:16]}"
    tenure = {
        "_id": slot_id(key, len(chain) + 1),
        "membership_id": membership_id,
        "chain": key,
        "seq": len(chain) + 1,
        "person_id": new.person_id,
        "role": new.role.value,
        "organisation_id": new.organisation_id,
        "place_id": new.place_id,
        "on_behalf_of": new.on_behalf_of,
        "start_on": start,
        "end_on": new.end_on.isoformat() if new.end_on else None,
        "version": 1,
    }
    started = MembershipStarted(
        membership_id=membership_id,
        person_id=new.person_id,
        role=new.role,
        organisation_id=new.organisation_id,
        place_id=new.place_id,
        start_on=new.start_on,
        end_on=new.end_on,
        on_behalf_of=new.on_behalf_of,
    )
    return tenure, [new_event(started, subject=new.person_id), *events]


def end(tenure: Document, chain: list[Document], end_on: date) -> tuple[Document, list[Envelope]]:
    current = next(t for t in effective(chain) if t["_id"] == tenure["_id"])
    if current["ends_on"] is not None:
        raise Conflict("already_ended", f"this membership ended on {current['ends_on']}", field="end_on")
    if end_on.isoformat() < tenure["start_on"]:
        raise InvalidInput.single("end_on", f"before the membership started ({tenure['start_on']})")
    return {"end_on": end_on.isoformat(), "version": tenure.get("version", 1) + 1}, [_ended(tenure, end_on)]


def _ended(tenure: Document, end_on: date) -> Envelope:
    ended = MembershipEnded(
        membership_id=tenure["membership_id"],
        person_id=tenure["person_id"],
        role=tenure["role"],
        end_on=end_on,
    )
    return new_event(ended, subject=tenure["person_id"])


def active_on(tenures: Iterable[Document], on: date) -> list[Document]:
    """Tenures (with `ends_on`, see `effective`) held on day `on`."""
    day = on.isoformat()
    return [t for t in tenures if t["start_on"] <= day and (t["ends_on"] is None or day <= t["ends_on"])]


def all_effective(tenures: Iterable[Document]) -> list[Document]:
    chains: dict[str, list[Document]] = {}
    for tenure in tenures:
        chains.setdefault(tenure["chain"], []).append(tenure)
    return [t for chain in chains.values() for t in effective(chain)]


def membership_view(tenure: Document) -> Document:
    return {
        "id": tenure["membership_id"],
        "person_id": tenure["person_id"],
        "role": tenure["role"],
        "organisation_id": tenure.get("organisation_id"),
        "place_id": tenure.get("place_id"),
        "on_behalf_of": tenure.get("on_behalf_of"),
        "start_on": tenure["start_on"],
        "end_on": tenure.get("ends_on", tenure.get("end_on")),
    }


# --- cross-appointments (交叉任职) ----------------------------------------------------------


def cross_appointments(
    active: Iterable[Document], tree: Mapping[str, Document], within: set[str] | None = None
) -> list[Document]:
    """People on a party organisation's committee and on a residents' or homeowners' committee
    at once; `one_shoulder` (一肩挑) when they are the secretary of the one and chair of the other."""
    party: dict[str, list[Document]] = {}
    committees: dict[str, list[Document]] = {}
    for tenure in active:
        organisation = tree.get(tenure.get("organisation_id") or "")
        if organisation is None or (within is not None and organisation["_id"] not in within):
            continue
        if organisation["classification"] in PARTY_ORGANISATIONS and tenure["role"] in PARTY_COMMITTEE_ROLES:
            party.setdefault(tenure["person_id"], []).append(tenure)
        elif organisation["classification"] in COMMITTEES and tenure["role"] in COMMITTEE_ROLES:
            committees.setdefault(tenure["person_id"], []).append(tenure)
    found = []
    for person_id in sorted(party.keys() & committees.keys()):
        party_posts, committee_posts = party[person_id], committees[person_id]
        found.append(
            {
                "person_id": person_id,
                "party_posts": [membership_view(t) for t in party_posts],
                "committee_posts": [membership_view(t) for t in committee_posts],
                "one_shoulder": any(t["role"] == Role.SECRETARY for t in party_posts)
                and any(t["role"] == Role.CHAIR for t in committee_posts),
            }
        )
    return found


# --- 双报到 ---------------------------------------------------------------------------------


def report_id(report: NewDualReport) -> str:
    return f"person:{report.person_id}" if report.person_id else f"unit:{report.unit_id}"


def new_dual_report(
    report: NewDualReport, person: Document | None, tree: Mapping[str, Document]
) -> tuple[Document, list[Envelope]]:
    errors: list[dict[str, str]] = []
    community = tree.get(report.community_id)
    if community is None or community["classification"] != C.COMMUNITY or not is_open(community):
        errors.append({"field": "community_id", "message": f"unknown community {report.community_id!r}"})
    if report.person_id is not None:
        if person is None:
            errors.append({"field": "person_id", "message": f"unknown person {report.person_id!r}"})
        elif not is_in_service(person):
            errors.append(
                {"field": "person_id", "message": "only an in-service party member reports (双报到)"}
            )
        elif person["community_id"] != report.community_id:
            errors.append(
                {
                    "field": "community_id",
                    "message": f"a member reports where they live: {person['community_id']}",
                }
            )
    else:
        unit = tree.get(report.unit_id)
        if unit is None or unit["classification"] not in (C.CO_BUILDING_UNIT, C.PROPERTY_COMPANY):
            errors.append({"field": "unit_id", "message": f"unknown co-building unit {report.unit_id!r}"})
    if errors:
        raise InvalidInput(errors)
    identifier = report_id(report)
    posts = sorted({post.value for post in report.posts})
    document = {
        "_id": identifier,
        "person_id": report.person_id,
        "unit_id": report.unit_id,
        "community_id": report.community_id,
        "reported_on": report.reported_on.isoformat(),
        "commitment": report.commitment,
        "posts": [{"post": post, "claimed_on": report.reported_on.isoformat()} for post in posts],
    }
    event = DualReportRegistered(
        report_id=identifier,
        person_id=report.person_id,
        unit_id=report.unit_id,
        community_id=report.community_id,
        reported_on=report.reported_on,
        posts=posts,
    )
    return document, [new_event(event, subject=identifier)]


def claimed_post(report: Document, claim: PostClaim) -> tuple[Document, list[Envelope]]:
    """A post claimed after reporting: its own document, so claiming twice is one claim."""
    document = {
        "_id": f"{report['_id']}#{claim.post}",
        "report_id": report["_id"],
        "post": claim.post.value,
        "claimed_on": claim.claimed_on.isoformat(),
    }
    event = ServicePostClaimed(
        report_id=report["_id"],
        person_id=report.get("person_id"),
        unit_id=report.get("unit_id"),
        post=claim.post,
        claimed_on=claim.claimed_on,
    )
    return document, [new_event(event, subject=report["_id"])]


def dual_report_view(report: Document, claims: Iterable[Document] = ()) -> Document:
    posts = {p["post"]: p["claimed_on"] for p in report.get("posts", [])}
    for claim in claims:
        posts.setdefault(claim["post"], claim["claimed_on"])
    return {
        "id": report["_id"],
        "person_id": report.get("person_id"),
        "unit_id": report.get("unit_id"),
        "community_id": report["community_id"],
        "reported_on": report["reported_on"],
        "commitment": report["commitment"],
        "posts": [{"post": post, "claimed_on": day} for post, day in sorted(posts.items())],
    }


def dual_report_status(
    community_id: str,
    residents: Iterable[Document],
    units: Iterable[Document],
    reports: Mapping[str, Document],
) -> Document:
    """Who of a community's in-service members and co-building units has reported, who not."""
    members = [
        {
            "person_id": p["_id"],
            "name": p["name"],
            "reported_on": reports.get(f"person:{p['_id']}", {}).get("reported_on"),
        }
        for p in sorted(residents, key=lambda p: p["_id"])
        if is_in_service(p)
    ]
    unit_rows = [
        {
            "unit_id": u["_id"],
            "name": u["name"],
            "reported_on": reports.get(f"unit:{u['_id']}", {}).get("reported_on"),
        }
        for u in sorted(units, key=lambda u: u["_id"])
    ]
    rows = members + unit_rows
    return {
        "community_id": community_id,
        "members": members,
        "units": unit_rows,
        "reported": sum(1 for row in rows if row["reported_on"]),
        "not_reported": sum(1 for row in rows if not row["reported_on"]),
    }
