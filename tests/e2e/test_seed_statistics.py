"""Seed 000 over HTTP: a street built like 十堰经开区 reproduces the figures the article reports.

The article counts, for the district's 4 communities: 19 业委会 whose members are ≥55.2% party
members, 39 compound branches, 44 functional branches, 165 building party groups, 34 compound
party committee members who also sit on a 业委会 (5 of them 一肩挑), 3 property-company party
managers serving as part-time committee members, and 20 property companies (17 with party-member
staff, 3 without, 6 property party branches, 20 party-member staff kept by compound branches).

The test builds such a street in a fresh subtree through the ledger imports (three CSV files),
with some history around it (a chair replaced, a member who left, one who starts later) that
must not change the figures of the day asked about, then reads the statistics endpoint.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import COMMUNITY
from tests.support import eventually

pytestmark = pytest.mark.e2e

ON = "2025-01-01"  # the day the figures are asked for
LATER = "2025-07-01"  # after the late joiner started
BEFORE = "2020-06-01"  # when only the replaced chair held posts
STARTED = "2021-03-01"  # when today's posts began

COMMUNITIES = 4
GRIDS_PER_COMMUNITY = 2
BUILDING_GROUPS = 165
GROUP_LEADERS = 107  # 选配楼栋党小组长107名
COMPOUND_BRANCHES = 39
SECOND_FUNCTIONAL_BRANCH = 5  # compound branches with two functional branches: 39 + 5 = 44
# The 19 业委会: seats, party members among them and cross-appointees among those (125, 69, 34);
# 69 / 125 = 55.2%.
HOA_SEATS = [7] * 11 + [6] * 8
HOA_PARTY_MEMBERS = [4] * 12 + [3] * 7
HOA_CROSS_APPOINTED = [2] * 15 + [1] * 4
SEAT_ROLES = ("chair", "deputy_chair", "committee_member", "committee_member", "committee_member")
ONE_SHOULDER_HOAS = range(5)  # the chair is the secretary of the paired compound branch: 一肩挑
SECRETARY_DEPUTY_CHAIR_HOAS = (5, 6)  # the deputy chair is the secretary: crossed, not 一肩挑
TWO_PARTY_POSTS_HOAS = range(7, 11)  # the deputy chair also sits on a functional branch

OWN, JOINT, INSTRUCTOR, NONE = "own_branch", "joint_branch", "instructor_dispatched", "none"
# Property companies per community: (两建一派 status, party-member staff kept by compound branches).
# Own-branch companies have 2 party-member staff in their branch, joint ones 1 in the shared branch.
COMPANY_PLAN = (
    ((OWN, 0), (JOINT, 0), (JOINT, 0), (INSTRUCTOR, 2), (NONE, 0)),
    ((OWN, 0), (JOINT, 0), (JOINT, 0), (INSTRUCTOR, 2), (NONE, 0)),
    ((OWN, 0), (INSTRUCTOR, 3), (INSTRUCTOR, 2), (INSTRUCTOR, 2), (NONE, 0)),
    ((OWN, 0), (INSTRUCTOR, 3), (INSTRUCTOR, 2), (INSTRUCTOR, 2), (INSTRUCTOR, 2)),
)
BRANCH_STAFF = {OWN: 2, JOINT: 1}
PART_TIME_COMMUNITIES = (0, 1, 2)  # where a property party manager is a 兼职委员

COLUMNS = {
    "organisations": (
        "code",
        "name",
        "classification",
        "parent_id",
        "party_status",
        "party_branch_id",
    ),
    "people": (
        "person_id",
        "name",
        "community_id",
        "is_party_member",
        "party_organisation_id",
        "employer",
        "employer_unit_id",
    ),
    "memberships": ("person_id", "role", "organisation_id", "start_on", "end_on", "on_behalf_of"),
}


def csv_body(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: str(v).lower() if isinstance(v, bool) else v for k, v in row.items()})
    return buffer.getvalue().encode()


@dataclass
class Street:
    """The ledgers of one street, built row by row, and the figures they should give."""

    code: str
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {kind: [] for kind in COLUMNS})
    community_of: dict[str, int] = field(default_factory=dict)  # organisation → community index
    people: int = 0

    @property
    def communities(self) -> list[str]:
        return [f"{self.code}-{c + 1:03d}" for c in range(COMMUNITIES)]

    def organisation(
        self, code: str, name: str, classification: str, parent: str | None, **extra: Any
    ) -> str:
        self.rows["organisations"].append(
            {"code": code, "name": name, "classification": classification, "parent_id": parent or "", **extra}
        )
        if parent in self.community_of:
            self.community_of[code] = self.community_of[parent]
        return code

    def person(self, community: str, *, party_organisation: str | None = None, **extra: Any) -> str:
        self.people += 1
        person_id = f"{self.code}-p{self.people:04d}"
        self.rows["people"].append(
            {
                "person_id": person_id,
                "name": f"居民{self.people:04d}",
                "community_id": community,
                "is_party_member": party_organisation is not None,
                "party_organisation_id": party_organisation or "",
                **extra,
            }
        )
        return person_id

    def post(self, person: str, role: str, organisation: str, start_on: str = STARTED, **extra: Any) -> None:
        self.rows["memberships"].append(
            {
                "person_id": person,
                "role": role,
                "organisation_id": organisation,
                "start_on": start_on,
                **extra,
            }
        )

    def csv(self, kind: str) -> bytes:
        return csv_body(COLUMNS[kind], self.rows[kind])

    def expected_organisations(self, community: int | None = None) -> dict[str, int]:
        counted = Counter(
            row["classification"]
            for row in self.rows["organisations"]
            if community is None or self.community_of.get(row["code"]) == community
        )
        return dict(sorted(counted.items()))


# --- the tree ----------------------------------------------------------------------------------


def build_spine(street: Street) -> list[str]:
    """Street, communities and grids; returns the grid codes (grid g lies in community g // 2)."""
    street.organisation(street.code, "测试街道大工委", "street_working_committee", None)
    grids = []
    for index, community in enumerate(street.communities):
        street.organisation(community, f"测试社区{index + 1}大党委", "community_party_committee", street.code)
        street.community_of[community] = index
        for g in range(GRIDS_PER_COMMUNITY):
            grids.append(
                street.organisation(f"{community}-{g + 1:02d}", "网格党支部", "grid_party_branch", community)
            )
    return grids


def build_building_groups(street: Street, grids: list[str]) -> None:
    for j in range(BUILDING_GROUPS):
        group = street.organisation(
            f"{grids[j % len(grids)]}-B{j:03d}", f"{j}栋党小组", "building_party_group", grids[j % len(grids)]
        )
        if j < GROUP_LEADERS:
            leader = street.person(
                street.communities[street.community_of[group]], party_organisation=group, employer="某企业"
            )
            street.post(leader, "group_leader", group)


def build_compound_branches(street: Street, grids: list[str]) -> list[str]:
    """Compound branch i lies in grid i % 8; each has one functional branch, the first few two."""
    compounds = []
    for i in range(COMPOUND_BRANCHES):
        grid = grids[i % len(grids)]
        compound = street.organisation(f"{grid}-XQ{i:02d}", f"{i}号小区党支部", "compound_party_branch", grid)
        compounds.append(compound)
        for k in range(2 if i < SECOND_FUNCTIONAL_BRANCH else 1):
            street.organisation(f"{compound}-GN{k}", "功能型小区党支部", "functional_party_branch", compound)
    return compounds


def community_code(street: Street, organisation: str) -> str:
    return street.communities[street.community_of[organisation]]


def homeowners_committee(compounds: list[str], h: int) -> str:
    """业委会 h lies in the grid of compound branch h (the grid is the branch's parent)."""
    return f"{compounds[h].rsplit('-', 1)[0]}-YWH{h:02d}"


# --- 业委会 and 交叉任职 ---------------------------------------------------------------------------


def build_homeowners_committees(street: Street, compounds: list[str]) -> None:
    """业委会 h sits in the grid of compound branch h and shares its members with it."""
    secretaries: dict[str, str] = {}
    for h, seats in enumerate(HOA_SEATS):
        compound = compounds[h]
        committee = homeowners_committee(compounds, h)
        street.organisation(
            committee, f"{h}号小区业委会", "homeowners_committee", committee.rsplit("-", 1)[0]
        )
        for seat in range(seats):
            party = compound if seat < HOA_PARTY_MEMBERS[h] else None
            # Residents who are not party members sit as plain members: the registry refuses
            # them as committee_member (see test_a_resident_who_is_no_party_member_can_be_a_委员).
            role = SEAT_ROLES[seat] if party and seat < len(SEAT_ROLES) else "member"
            person = street.person(community_code(street, compound), party_organisation=party)
            street.post(person, role, committee)
            if seat < HOA_CROSS_APPOINTED[h]:
                party_role = cross_party_role(h, seat)
                if party_role == "secretary":
                    secretaries[compound] = person
                street.post(person, party_role, compound)
                if seat == 1 and h in TWO_PARTY_POSTS_HOAS:
                    street.post(person, "committee_member", f"{compound}-GN0")
    for compound in compounds:  # the remaining branches have a secretary who is on no 业委会
        if compound not in secretaries:
            street.post(
                street.person(community_code(street, compound), party_organisation=compound),
                "secretary",
                compound,
            )


def cross_party_role(h: int, seat: int) -> str:
    if seat == 0:
        return "secretary" if h in ONE_SHOULDER_HOAS else "committee_member"
    return "secretary" if h in SECRETARY_DEPUTY_CHAIR_HOAS else "deputy_secretary"


def build_history(street: Street, compounds: list[str]) -> None:
    """Posts that are not held on ON: they must not change the figures of that day."""
    replaced, left, late = (
        street.person(community_code(street, compounds[h]), party_organisation=compounds[h]) for h in range(3)
    )
    # 一肩挑 until today's secretary and chair took over (rows come first: chains are dated in order).
    street.post(replaced, "secretary", compounds[0], start_on="2018-03-01")
    street.post(replaced, "chair", homeowners_committee(compounds, 0), start_on="2018-03-01")
    street.post(replaced, "committee_member", compounds[0])  # still on the branch, off the 业委会
    # Left the 业委会 of compound 1 before ON.
    street.post(left, "member", homeowners_committee(compounds, 1), end_on="2023-12-31")
    street.post(left, "committee_member", compounds[1])
    # Joins the 业委会 of compound 2 after ON.
    street.post(late, "committee_member", homeowners_committee(compounds, 2), start_on="2025-06-01")
    street.post(late, "committee_member", compounds[2])


# --- 红色物业 --------------------------------------------------------------------------------------


def build_property_companies(street: Street, compounds: list[str]) -> None:
    for c, plan in enumerate(COMPANY_PLAN):
        community = street.communities[c]
        compound = compounds[2 * c]  # compound branch 2c lies in grid 2c, in community c
        joint = None
        part_time_wanted = c in PART_TIME_COMMUNITIES
        for k, (status, in_compound) in enumerate(plan):
            branch = None
            if status == OWN or (status == JOINT and joint is None):
                branch = street.organisation(
                    f"{community}-WYDZB{k}", "物业党支部", "property_party_branch", community
                )
                joint = branch if status == JOINT else joint
            elif status == JOINT:
                branch = joint
            company = street.organisation(
                f"{community}-WY{k}",
                f"{c}-{k}物业公司",
                "property_company",
                community,
                party_status=status,
                party_branch_id=branch or "",
            )
            street.person(community, employer_unit_id=company)  # staff who are not party members
            for _ in range(BRANCH_STAFF.get(status, 0)):
                street.person(community, party_organisation=branch, employer_unit_id=company)
            for n in range(in_compound):
                member = street.person(community, party_organisation=compound, employer_unit_id=company)
                if n == 0 and part_time_wanted:
                    street.post(member, "manager", company)
                    street.post(member, "part_time_committee_member", compound, on_behalf_of=company)
                    part_time_wanted = False


def build_street(code: str) -> Street:
    street = Street(code)
    grids = build_spine(street)
    build_building_groups(street, grids)
    compounds = build_compound_branches(street, grids)
    build_history(street, compounds)
    build_homeowners_committees(street, compounds)
    build_property_companies(street, compounds)  # each branch comes before the companies naming it
    return street


# --- importing -----------------------------------------------------------------------------------


def imported(api, kind: str, body: bytes) -> dict[str, Any]:
    response = api.post(f"/api/v1/registry/imports/{kind}", data=body, headers={"Content-Type": "text/csv"})
    if response.status_code == 422:
        for error in response.json()["error"]["fields"]:
            print(f"{kind} ledger, line {error.get('line')}: {error['field']}: {error['message']}")
    assert response.status_code == 202, response.text[:2000]

    def finished() -> dict[str, Any] | None:
        answer = api.get(f"/api/v1/registry/imports/{response.json()['id']}")
        if answer.status_code == 504:  # the registry is busy writing the rows: ask again
            return None
        assert answer.status_code == 200, answer.text
        job = answer.json()
        if job["status"] == "failed":
            pytest.fail(f"the {kind} import failed: {job}")
        return job if job["status"] == "done" else None

    job = eventually(finished, timeout=60, interval=0.2)
    assert job["processed"] == job["total"] == body.count(b"\n") - 1
    return job


@pytest.fixture(scope="module")
def street(api) -> Street:
    number = uuid.uuid4().int
    built = build_street(f"4203{number % 80 + 10}-{number // 80 % 1000:03d}")  # not 420391 (demo)
    for kind in COLUMNS:
        started = time.monotonic()
        job = imported(api, kind, built.csv(kind))
        print(f"import {kind}: {job['total']} rows in {time.monotonic() - started:.2f} s")
    return built


def statistics(api, code: str, on: str = ON) -> dict[str, Any]:
    response = api.get(f"/api/v1/organisations/{code}/statistics", params={"on": on})
    assert response.status_code == 200, response.text
    return response.json()


# --- the figures -----------------------------------------------------------------------------------


def test_the_street_reproduces_the_seed_figures(api, street):
    figures = statistics(api, street.code)

    assert figures["organisation_id"] == street.code and figures["on"] == ON
    assert figures["organisations"] == street.expected_organisations()
    assert figures["organisations"] == {
        "building_party_group": 165,
        "community_party_committee": 4,
        "compound_party_branch": 39,
        "functional_party_branch": 44,
        "grid_party_branch": 8,
        "homeowners_committee": 19,
        "property_company": 20,
        "property_party_branch": 6,
        "street_working_committee": 1,
    }
    assert figures["homeowners_committees"] == {
        "count": 19,
        "members": 125,
        "party_members": 69,
        "party_member_percent": "55.2",
    }
    assert figures["compound_party_branches"] == 39
    assert figures["functional_party_branches"] == 44
    assert figures["building_party_groups"] == 165
    assert figures["cross_appointed"] == 34
    assert figures["one_shoulder"] == 5
    assert figures["property_companies"] == {
        "count": 20,
        "with_party_member_staff": 17,
        "without_party_member_staff": 3,
        "party_branches": 6,
        "by_party_status": {INSTRUCTOR: 9, JOINT: 4, NONE: 3, OWN: 4},
        "party_member_staff": 32,
        "party_members_in_compound_branches": 20,
        "part_time_committee_members": 3,
    }
    assert figures["dual_reports"] == 0


def test_the_figures_follow_the_day_asked_about(api, street):
    later = statistics(api, street.code, LATER)
    assert later["homeowners_committees"]["members"] == 126
    assert later["homeowners_committees"]["party_member_percent"] == "55.6"  # 70 / 126
    assert (later["cross_appointed"], later["one_shoulder"]) == (35, 5)

    before = statistics(api, street.code, BEFORE)
    assert before["homeowners_committees"] == {
        "count": 19,
        "members": 1,
        "party_members": 1,
        "party_member_percent": "100.0",
    }
    assert (before["cross_appointed"], before["one_shoulder"]) == (1, 1)
    assert before["property_companies"]["part_time_committee_members"] == 0


def test_cross_appointments_are_listed_once_per_person(api, street):
    response = api.get("/api/v1/cross-appointments", params={"within": street.code, "on": ON})
    assert response.status_code == 200, response.text
    found = response.json()
    assert found["total"] == len(found["items"]) == 34
    assert found["one_shoulder"] == sum(item["one_shoulder"] for item in found["items"]) == 5
    assert len({item["person_id"] for item in found["items"]}) == 34
    two_posts = [item for item in found["items"] if len(item["party_posts"]) == 2]
    assert len(two_posts) == len(TWO_PARTY_POSTS_HOAS)
    for item in found["items"]:
        assert len(item["committee_posts"]) == 1
        roles = ({p["role"] for p in item["party_posts"]}, {p["role"] for p in item["committee_posts"]})
        assert item["one_shoulder"] == (roles == ({"secretary"}, {"chair"}))

    history = api.get("/api/v1/cross-appointments", params={"within": street.code, "on": BEFORE}).json()
    assert history["total"] == 1 and history["one_shoulder"] == 1


def test_the_property_ledger_marks_red_property(api, street):
    response = api.get("/api/v1/property-companies", params={"within": street.code})
    assert response.status_code == 200, response.text
    rows = response.json()["items"]
    assert len(rows) == response.json()["total"] == 20
    for row in rows:
        assert row["red_property"] is (row["party_status"] != NONE), row
        assert (row["party_branch_id"] is not None) is (row["party_status"] in (OWN, JOINT)), row
        assert row["staff"] == row["party_member_staff"] + 1
    assert sum(row["party_member_staff"] > 0 for row in rows) == 17
    assert len({row["party_branch_id"] for row in rows if row["party_branch_id"]}) == 6
    assert sum(row["party_members_in_compound_branches"] for row in rows) == 20


SUMMED = (
    ("compound_party_branches",),
    ("functional_party_branches",),
    ("building_party_groups",),
    ("cross_appointed",),
    ("one_shoulder",),
    ("homeowners_committees", "count"),
    ("homeowners_committees", "members"),
    ("homeowners_committees", "party_members"),
    ("property_companies", "count"),
    ("property_companies", "with_party_member_staff"),
    ("property_companies", "without_party_member_staff"),
    ("property_companies", "party_branches"),
    ("property_companies", "party_member_staff"),
    ("property_companies", "party_members_in_compound_branches"),
    ("property_companies", "part_time_committee_members"),
)


def figure(figures: dict[str, Any], path: tuple[str, ...]) -> int:
    for key in path:
        figures = figures[key]
    return figures


def test_the_communities_add_up_to_the_street(api, street):
    whole = statistics(api, street.code)
    parts = [statistics(api, community) for community in street.communities]
    for index, part in enumerate(parts):
        assert part["organisations"] == street.expected_organisations(index)
    for path in SUMMED:
        assert sum(figure(part, path) for part in parts) == figure(whole, path), path
    by_class = sum((Counter(part["organisations"]) for part in parts), Counter())
    assert by_class + Counter({"street_working_committee": 1}) == Counter(whole["organisations"])


def test_a_resident_who_is_no_party_member_can_be_a_委员(api, unique):
    """Seed 000: 业委会 bring in residents with financial or legal skills, party members or not."""
    committee = {
        "code": f"{COMMUNITY}-YWH{unique}",
        "name": "测试业委会",
        "classification": "homeowners_committee",
        "parent_id": COMMUNITY,
    }
    assert api.post("/api/v1/organisations", json=committee).status_code == 201
    resident = api.post("/api/v1/people", json={"name": "非党员业主", "community_id": COMMUNITY})
    assert resident.status_code == 201, resident.text
    post = {"person_id": resident.json()["id"], "role": "committee_member", "start_on": STARTED}
    response = api.post("/api/v1/memberships", json={**post, "organisation_id": committee["code"]})
    assert response.status_code == 201, response.text
