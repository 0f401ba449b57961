"""Figures for a subtree of the tree, computed from the records (seed 000 reports them so:
19 业委会 with party members ≥55.2% of their members, 39 compound branches, 34 cross-appointed
members of whom 5 一肩挑, 20 property companies, 17 with party-member staff, 6 branches)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from services.registry.domain.posts import COMMITTEE_ROLES, cross_appointments
from services.registry.domain.tree import is_open
from shared.schemas.registry import Classification, PartyStatus, Role

C = Classification
Document = dict[str, Any]


def percent(part: int, whole: int) -> str | None:
    if whole == 0:
        return None
    return str((Decimal(100 * part) / whole).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def subtree_statistics(
    root: str,
    on: date,
    within: set[str],
    tree: Mapping[str, Document],
    people: Mapping[str, Document],
    active: Iterable[Document],
    reports: Iterable[Document],
) -> Document:
    """`within`: codes of the subtree; `active`: memberships held on the day asked about."""
    active = list(active)
    nodes = [tree[code] for code in within if code in tree and is_open(tree[code], on)]
    by_class = Counter(node["classification"] for node in nodes)
    homeowners = {n["_id"] for n in nodes if n["classification"] == C.HOMEOWNERS_COMMITTEE}
    committee_people = {
        t["person_id"]
        for t in active
        if t.get("organisation_id") in homeowners and t["role"] in COMMITTEE_ROLES
    }
    committee_party = sum(1 for p in committee_people if people.get(p, {}).get("is_party_member"))
    crossed = cross_appointments(active, tree, within)
    return {
        "organisation_id": root,
        "organisations": dict(sorted(by_class.items())),
        "homeowners_committees": {
            "count": len(homeowners),
            "members": len(committee_people),
            "party_members": committee_party,
            "party_member_percent": percent(committee_party, len(committee_people)),
        },
        "compound_party_branches": by_class[C.COMPOUND_BRANCH],
        "functional_party_branches": by_class[C.FUNCTIONAL_BRANCH],
        "building_party_groups": by_class[C.BUILDING],
        "cross_appointed": len(crossed),
        "one_shoulder": sum(1 for c in crossed if c["one_shoulder"]),
        "property_companies": property_figures(nodes, tree, people.values(), active),
        "dual_reports": sum(1 for r in reports if r["community_id"] in within),
    }


def property_figures(
    nodes: list[Document], tree: Mapping[str, Document], people: Iterable[Document], active: list[Document]
) -> Document:
    companies = [n for n in nodes if n["classification"] == C.PROPERTY_COMPANY]
    ledger = property_ledger(companies, tree, people)
    codes = {c["_id"] for c in companies}
    return {
        "count": len(ledger),
        "with_party_member_staff": sum(1 for row in ledger if row["party_member_staff"]),
        "without_party_member_staff": sum(1 for row in ledger if not row["party_member_staff"]),
        "party_branches": len({row["party_branch_id"] for row in ledger if row["party_branch_id"]}),
        "by_party_status": dict(sorted(Counter(row["party_status"] for row in ledger).items())),
        "party_member_staff": sum(row["party_member_staff"] for row in ledger),
        "party_members_in_compound_branches": sum(
            row["party_members_in_compound_branches"] for row in ledger
        ),
        "part_time_committee_members": sum(
            1
            for t in active
            if t["role"] == Role.PART_TIME_COMMITTEE_MEMBER and t.get("on_behalf_of") in codes
        ),
    }


def property_ledger(
    companies: Iterable[Document], tree: Mapping[str, Document], people: Iterable[Document]
) -> list[Document]:
    """The property-company ledger (物业企业台账): party organisation and party-member staff."""
    staff: dict[str, list[Document]] = {}
    for person in people:
        if person.get("employer_unit_id"):
            staff.setdefault(person["employer_unit_id"], []).append(person)
    rows = []
    for company in sorted(companies, key=lambda c: c["_id"]):
        employees = staff.get(company["_id"], [])
        members = [p for p in employees if p.get("is_party_member")]
        in_compound_branches = [
            p
            for p in members
            if tree.get(p.get("party_organisation_id") or "", {}).get("classification") == C.COMPOUND_BRANCH
        ]
        status = company.get("party_status") or PartyStatus.NONE
        rows.append(
            {
                "id": company["_id"],
                "name": company["name"],
                "party_status": status,
                "party_branch_id": company.get("party_branch_id"),
                "red_property": status != PartyStatus.NONE,  # 红色物业: organised into the party
                "serves_compounds": company.get("serves_compounds", []),
                "staff": len(employees),
                "party_member_staff": len(members),
                "party_members": [
                    {"id": p["_id"], "name": p["name"]} for p in sorted(members, key=lambda p: p["_id"])
                ],
                "party_members_in_compound_branches": len(in_compound_branches),
            }
        )
    return rows
