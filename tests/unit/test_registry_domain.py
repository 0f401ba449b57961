"""The registry's rules, without I/O: the tree, places, people, posts over time, 双报到."""

from __future__ import annotations

from datetime import date

import pytest

from services.registry.domain import people, posts, statistics, tree
from shared.errors import Conflict, InvalidInput
from shared.pii import PiiVault, mask
from shared.schemas import validated
from shared.schemas.registry import (
    NewDualReport,
    NewMembership,
    NewOrganisation,
    NewPerson,
    NewPlace,
    PersonDetails,
)

STREET = "420391-001"
COMMUNITY = f"{STREET}-001"
GRID = f"{COMMUNITY}-01"


def org(code, classification, parent=None, **extra):
    return validated(
        NewOrganisation,
        {"code": code, "name": code, "classification": classification, "parent_id": parent, **extra},
    )


def node(code, classification, parent=None, **extra):
    document, _ = tree.new_organisation(org(code, classification, parent, **extra))
    return document


@pytest.fixture
def nodes():
    built = [
        node(STREET, "street_working_committee"),
        node(COMMUNITY, "community_party_committee", STREET),
        node(f"{STREET}-002", "community_party_committee", STREET),
        node(GRID, "grid_party_branch", COMMUNITY),
        node(f"{GRID}-B1", "building_party_group", GRID),
        node("CB-1", "compound_party_branch", COMMUNITY),
        node("HOA-1", "homeowners_committee", COMMUNITY),
        node("PC-1", "property_company", STREET),
    ]
    return {n["_id"]: n for n in built}


def errors_of(caught):
    return {e["field"] for e in caught.value.errors}


# --- the tree -------------------------------------------------------------------------------


def test_levels_nest_street_community_grid_building(nodes):
    tree.check_new_organisation(org(f"{GRID}-B2", "building_party_group", GRID), nodes, {})
    with pytest.raises(InvalidInput) as caught:
        tree.check_new_organisation(org(f"{STREET}-01", "grid_party_branch", STREET), nodes, {})
    assert errors_of(caught) == {"parent_id"}
    assert "community_party_committee" in caught.value.errors[0]["message"]
    with pytest.raises(InvalidInput) as caught:
        tree.check_new_organisation(org(f"{COMMUNITY}-09", "grid_party_branch", "nowhere"), nodes, {})
    assert "unknown organisation" in caught.value.errors[0]["message"]
    with pytest.raises(InvalidInput) as caught:
        tree.check_new_organisation(org("420391-009", "street_working_committee", COMMUNITY), nodes, {})
    assert errors_of(caught) == {"parent_id"}


def test_spine_codes_extend_the_parents_code_and_street_codes_are_division_codes(nodes):
    with pytest.raises(InvalidInput) as caught:
        tree.check_new_organisation(org("420391-002-001-01", "grid_party_branch", COMMUNITY), nodes, {})
    assert errors_of(caught) == {"code"}
    assert f"{COMMUNITY}-01" in caught.value.errors[0]["message"]
    with pytest.raises(InvalidInput) as caught:
        tree.check_new_organisation(org("baiilang", "street_working_committee"), nodes, {})
    assert errors_of(caught) == {"code"}
    with pytest.raises(InvalidInput) as caught:
        validated(NewOrganisation, {"code": "bad code!", "name": "x", "classification": "grid_party_branch"})
    assert errors_of(caught) == {"code"}


def test_only_property_companies_carry_party_status():
    with pytest.raises(InvalidInput) as caught:
        org("HOA-2", "homeowners_committee", COMMUNITY, party_status="own_branch")
    assert caught.value.errors == [{"field": "party_status", "message": "only a property company has one"}]


def test_a_move_takes_the_subtree_and_refuses_a_cycle(nodes):
    other_community = f"{STREET}-002"
    change, events = tree.move(nodes[GRID], other_community, nodes)
    assert change == {"parent_id": other_community, "version": 2}
    assert events[0].data == {
        "organisation_id": GRID,
        "from_parent_id": COMMUNITY,
        "to_parent_id": other_community,
    }
    moved = {**nodes, GRID: {**nodes[GRID], **change}}
    assert f"{GRID}-B1" in tree.subtree(moved, other_community)
    assert f"{GRID}-B1" not in tree.subtree(moved, COMMUNITY)
    with pytest.raises(InvalidInput) as caught:
        tree.move(nodes[COMMUNITY], GRID, nodes)  # a grid below the community itself
    assert errors_of(caught) == {"parent_id"}
    assert "cycle" in caught.value.errors[0]["message"]
    with pytest.raises(InvalidInput):
        tree.move(nodes[GRID], STREET, nodes)  # a grid cannot hang under a street


def test_closing_needs_the_children_closed_first(nodes):
    with pytest.raises(Conflict) as caught:
        tree.close(nodes[GRID], date(2024, 1, 1), nodes)
    assert f"{GRID}-B1" in caught.value.message
    change, events = tree.close(nodes[f"{GRID}-B1"], date(2024, 1, 1), nodes)
    assert change["closed_on"] == "2024-01-01"
    assert events[0].data["classification"] == "building_party_group"
    closed = {**nodes, f"{GRID}-B1": {**nodes[f"{GRID}-B1"], **change}}
    tree.close(closed[GRID], date(2024, 2, 1), closed)  # now it may close
    with pytest.raises(InvalidInput) as caught:
        tree.check_new_organisation(org(f"{GRID}-B1-X", "building_party_group", f"{GRID}-B1"), closed, {})
    assert errors_of(caught) == {"parent_id"}


def test_the_flat_listing_reads_as_the_tree(nodes):
    order = [n["_id"] for n in tree.in_order(nodes)]
    assert order.index(STREET) < order.index(COMMUNITY) < order.index(GRID) < order.index(f"{GRID}-B1")
    view = tree.organisation_view(nodes[f"{GRID}-B1"], nodes)
    assert view["path"] == [STREET, COMMUNITY, GRID]
    assert tree.community_of(nodes, f"{GRID}-B1") == COMMUNITY


def test_places_inherit_community_and_grid(nodes):
    compound = tree.new_place(
        validated(
            NewPlace, {"code": "C1", "name": "五鼎小区", "kind": "compound", "community_id": COMMUNITY}
        ),
        nodes,
        {},
    )
    places = {"C1": compound}
    building = tree.new_place(
        validated(
            NewPlace, {"code": "C1-1", "name": "1栋", "kind": "building", "parent_id": "C1", "grid_id": GRID}
        ),
        nodes,
        places,
    )
    places["C1-1"] = building
    unit = tree.new_place(
        validated(NewPlace, {"code": "C1-1-1", "name": "1单元", "kind": "unit", "parent_id": "C1-1"}),
        nodes,
        places,
    )
    assert (unit["community_id"], unit["grid_id"]) == (COMMUNITY, GRID)
    with pytest.raises(InvalidInput) as caught:
        tree.new_place(
            validated(NewPlace, {"code": "C1-2", "name": "2栋", "kind": "building", "parent_id": "C1"}),
            nodes,
            places,
        )
    assert errors_of(caught) == {"grid_id"}
    with pytest.raises(InvalidInput) as caught:
        tree.new_place(
            validated(NewPlace, {"code": "H1", "name": "101", "kind": "household", "parent_id": "C1-1"}),
            nodes,
            places,
        )
    assert errors_of(caught) == {"parent_id"}


# --- people ---------------------------------------------------------------------------------

VAULT = PiiVault("unit-test-secret")


def test_numbers_are_sealed_indexed_masked_and_never_in_events(nodes):
    new = validated(
        NewPerson,
        {
            "name": "李平",
            "community_id": COMMUNITY,
            "phone": "+8613812345678",
            "id_number": "42030319800101123x",
        },
    )
    people.check_person(new.model_dump(), nodes, {})
    document, events = people.new_person(new, VAULT, nodes, {})
    assert "13812345678" not in str(document)
    assert document["phone"]["masked"] == "138****5678"
    assert document["id_number"]["masked"] == "4203**********123X"
    assert VAULT.open("phone", document["phone"]) == "13812345678"
    assert document["phone"]["index"] == VAULT.index("phone", "138 1234 5678")
    assert PiiVault("another-secret").index("phone", "13812345678") != document["phone"]["index"]
    payload = str(events[0].model_dump())
    assert "5678" not in payload and document["phone"]["index"] not in payload
    view = people.person_view(document)
    assert view["phone"] == "138****5678" and view["id_number"] == mask("id_number", "42030319800101123X")


def test_person_rules_name_the_field(nodes):
    base = {"name": "王建国", "community_id": COMMUNITY}
    with pytest.raises(InvalidInput) as caught:
        people.check_person({**base, "is_cadre": True, "employer": "住建局"}, nodes, {})
    assert errors_of(caught) == {"is_cadre"}
    with pytest.raises(InvalidInput) as caught:
        people.check_person({**base, "is_party_member": True, "is_cadre": True}, nodes, {})
    assert errors_of(caught) == {"employer"}
    with pytest.raises(InvalidInput) as caught:
        people.check_person({**base, "community_id": GRID, "party_organisation_id": "PC-1"}, nodes, {})
    assert errors_of(caught) == {"community_id", "party_organisation_id"}
    with pytest.raises(InvalidInput) as caught:
        validated(NewPerson, {**base, "phone": "12345"})
    assert errors_of(caught) == {"phone"}


def test_an_update_bumps_the_version_and_publishes_public_details_only(nodes):
    new = validated(NewPerson, {"person_id": "p1", "name": "李平", "community_id": COMMUNITY})
    document, _ = people.new_person(new, VAULT, nodes, {})
    change = validated(PersonDetails, {"is_party_member": True, "phone": "13900001111", "household_id": None})
    after, fields, events = people.updated(document, change, VAULT, {})
    assert fields["version"] == 2 and after["is_party_member"] is True
    assert events[0].type == "cn.gridlink.person.updated.v1"
    assert events[0].data["revision"] == 2 and "phone" not in events[0].data
    with pytest.raises(InvalidInput) as caught:
        people.updated(document, validated(PersonDetails, {"name": None}), VAULT, {})
    assert errors_of(caught) == {"name"}


def test_a_persons_grid_is_their_households_and_travels_in_the_events(nodes):
    household = {"_id": "H1", "kind": "household", "community_id": COMMUNITY, "grid_id": GRID}
    places = {"H1": household}
    new = validated(
        NewPerson, {"person_id": "p1", "name": "李平", "community_id": COMMUNITY, "household_id": "H1"}
    )
    people.check_person(new.model_dump(), nodes, places)
    document, [registered] = people.new_person(new, VAULT, nodes, places)
    assert document["grid_id"] == GRID and registered.data["grid_id"] == GRID
    moved_out = validated(PersonDetails, {"household_id": None})
    after, fields, [update] = people.updated(document, moved_out, VAULT, places)
    assert after["grid_id"] is None and fields["grid_id"] is None and update.data["grid_id"] is None


# --- posts over time ---------------------------------------------------------------------------


def membership(person, role, start, end=None, target="CB-1", **extra):
    return validated(
        NewMembership,
        {
            "person_id": person,
            "role": role,
            "organisation_id": target,
            "start_on": start,
            "end_on": end,
            **extra,
        },
    )


def appoint(chain, new):
    tenure, events = posts.next_tenure(new, chain)
    chain.append(tenure)
    return tenure, events


def test_a_successor_ends_the_open_tenure_and_history_reads_from_when_to_when():
    chain = []
    appoint(chain, membership("p1", "secretary", "2020-01-01"))
    _, events = appoint(chain, membership("p2", "secretary", "2023-07-01"))
    assert [e.type for e in events] == [
        "cn.gridlink.membership.started.v1",
        "cn.gridlink.membership.ended.v1",
    ]
    assert events[1].data["person_id"] == "p1" and events[1].data["end_on"] == "2023-06-30"
    history = posts.effective(chain)
    assert [(t["person_id"], t["start_on"], t["ends_on"]) for t in history] == [
        ("p1", "2020-01-01", "2023-06-30"),
        ("p2", "2023-07-01", None),
    ]
    assert [t["person_id"] for t in posts.active_on(history, date(2022, 5, 1))] == ["p1"]
    assert [t["person_id"] for t in posts.active_on(history, date(2024, 5, 1))] == ["p2"]


def test_overlapping_duplicate_posts_are_refused():
    chain = []
    appoint(chain, membership("p1", "secretary", "2020-01-01", "2024-12-31"))
    with pytest.raises(Conflict) as caught:
        posts.next_tenure(membership("p2", "secretary", "2024-06-01"), chain)
    assert (caught.value.code, caught.value.field) == ("overlapping_post", "start_on")
    with pytest.raises(Conflict):
        posts.next_tenure(membership("p2", "secretary", "2019-01-01"), chain)  # before the last one
    members = []
    appoint(members, membership("p3", "committee_member", "2021-01-01"))
    with pytest.raises(Conflict):
        posts.next_tenure(membership("p3", "committee_member", "2022-01-01"), members)


def test_two_people_may_be_committee_members_at_once_but_chains_differ():
    a = posts.chain_key(membership("p1", "committee_member", "2021-01-01"))
    b = posts.chain_key(membership("p2", "committee_member", "2021-01-01"))
    assert a != b
    assert posts.chain_key(membership("p1", "secretary", "2021-01-01")) == "CB-1#secretary"


def test_roles_fit_their_organisations(nodes):
    person = {"_id": "p1", "is_party_member": False}
    with pytest.raises(InvalidInput) as caught:
        posts.check_membership(membership("p1", "chair", "2021-01-01", target="CB-1"), person, nodes, {})
    assert errors_of(caught) == {"role"}
    with pytest.raises(InvalidInput) as caught:
        posts.check_membership(membership("p1", "secretary", "2021-01-01"), person, nodes, {})
    assert "party members" in caught.value.errors[0]["message"]
    with pytest.raises(InvalidInput) as caught:
        posts.check_membership(membership("p1", "member", "2021-01-01", target="nowhere"), None, nodes, {})
    assert errors_of(caught) == {"person_id", "organisation_id"}


def test_a_resident_may_sit_on_a_homeowners_committee_without_party_membership(nodes):
    resident = {"_id": "p1", "is_party_member": False}
    posts.check_membership(
        membership("p1", "committee_member", "2021-01-01", target="HOA-1"), resident, nodes, {}
    )
    with pytest.raises(InvalidInput):
        posts.check_membership(
            membership("p1", "committee_member", "2021-01-01", target="CB-1"), resident, nodes, {}
        )


def test_an_organisation_counts_between_its_founding_and_closing():
    branch = {"founded_on": "2021-01-01", "closed_on": "2024-01-01"}
    assert [tree.is_open(branch, date(y, 6, 1)) for y in (2020, 2022, 2024)] == [False, True, False]
    assert not tree.is_open(branch) and tree.is_open({"founded_on": "2021-01-01", "closed_on": None})


def test_cross_appointments_and_one_shoulder(nodes):
    chains = {}

    def hold(person, role, target, start="2021-01-01"):
        new = membership(person, role, start, target=target)
        appoint(chains.setdefault(posts.chain_key(new), []), new)

    hold("p1", "secretary", "CB-1")
    hold("p1", "chair", "HOA-1")  # 一肩挑
    hold("p2", "committee_member", "CB-1")
    hold("p2", "member", "HOA-1")  # cross-appointed
    hold("p3", "committee_member", "CB-1")  # party side only
    hold("p4", "member", "HOA-1", start="2030-01-01")  # not yet
    active = posts.active_on(posts.all_effective(t for c in chains.values() for t in c), date(2025, 1, 1))
    found = posts.cross_appointments(active, nodes)
    assert [(c["person_id"], c["one_shoulder"]) for c in found] == [("p1", True), ("p2", False)]
    assert posts.cross_appointments(active, nodes, within={f"{STREET}-002"}) == []


# --- 双报到 ------------------------------------------------------------------------------------


def test_an_in_service_member_reports_where_they_live(nodes):
    member = {
        "_id": "p1",
        "name": "王",
        "community_id": COMMUNITY,
        "is_party_member": True,
        "employer": "住建局",
    }
    report = validated(
        NewDualReport,
        {
            "person_id": "p1",
            "community_id": COMMUNITY,
            "reported_on": "2024-03-01",
            "commitment": "每月参加一次志愿服务",
            "posts": ["patrol", "care", "patrol"],
        },
    )
    document, events = posts.new_dual_report(report, member, nodes)
    assert document["_id"] == "person:p1"
    assert events[0].data["posts"] == ["care", "patrol"]
    elsewhere = report.model_copy(update={"community_id": f"{STREET}-002"})
    with pytest.raises(InvalidInput) as caught:
        posts.new_dual_report(elsewhere, member, nodes)
    assert errors_of(caught) == {"community_id"}
    with pytest.raises(InvalidInput) as caught:
        posts.new_dual_report(report, {**member, "employer": None}, nodes)
    assert errors_of(caught) == {"person_id"}
    status = posts.dual_report_status(
        COMMUNITY,
        [
            member,
            {"_id": "p2", "name": "赵", "is_party_member": True, "employer": "税务局"},
            {"_id": "p3", "name": "钱"},
        ],
        [nodes["PC-1"]],
        {"person:p1": document},
    )
    assert [(m["person_id"], m["reported_on"]) for m in status["members"]] == [
        ("p1", "2024-03-01"),
        ("p2", None),
    ]
    assert (status["reported"], status["not_reported"]) == (1, 2)


def test_percent_rounds_half_up_and_knows_nothing_of_empty_sets():
    assert statistics.percent(16, 29) == "55.2"
    assert statistics.percent(1, 8) == "12.5"
    assert statistics.percent(0, 0) is None


def test_a_listing_filters_by_community_grid_and_party_status_in_id_order():
    everyone = [
        {"_id": "p3", "community_id": "c1", "grid_id": "c1-01", "is_party_member": True, "employer": "局"},
        {"_id": "p1", "community_id": "c1", "grid_id": "c1-02", "is_party_member": True, "employer": ""},
        {"_id": "p2", "community_id": "c2", "is_party_member": False, "employer_unit_id": "u1"},
        {"_id": "p4", "community_id": "c1", "is_party_member": False},  # no household: no grid
    ]

    def ids(*areas, **only) -> list[str]:
        return [p["_id"] for p in people.listing(everyone, areas, **only)]

    assert ids() == ["p1", "p2", "p3", "p4"]
    assert ids({"c1"}) == ["p1", "p3", "p4"]
    assert ids({"c1-01"}) == ["p3"]  # a grid's people: those whose household is in it
    assert ids({"c1"}, {"c1-02", "c2"}) == ["p1"]  # in every area
    assert ids(set()) == []
    assert ids({"c1", "c2"}, party_members_only=True) == ["p1", "p3"]
    assert ids(in_service_only=True) == ["p3"]  # p2 works for a unit but is no member


def test_people_are_found_by_the_search_index_of_a_number():
    everyone = [
        {"_id": "b", "phone": {"index": "i1", "masked": "138****5678"}},
        {"_id": "a", "phone": {"index": "i1", "masked": "138****5678"}, "id_number": {"index": "i1"}},
        {"_id": "c", "phone": None, "id_number": {"index": "i2"}},
    ]
    assert [p["_id"] for p in people.with_number(everyone, "phone", "i1")] == ["a", "b"]
    assert [p["_id"] for p in people.with_number(everyone, "id_number", "i2")] == ["c"]
    assert people.with_number(everyone, "phone", "i2") == []


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (NewOrganisation, {"serves_compounds": [f"xq-{n}" for n in range(201)]}, "serves_compounds"),
        (NewOrganisation, {"serves_compounds": ["小区 1"]}, "serves_compounds[0]"),
        (NewDualReport, {"posts": ["patrol"] * 8}, "posts"),
    ],
    ids=["too-many-compounds", "not-a-code", "more-posts-than-there-are"],
)
def test_lists_in_a_body_are_bounded_and_name_each_thing_once(model, body, field):
    """A list field holds codes, a bounded number of them: a huge one is refused, not stored."""
    company = {"code": "wy-1", "name": "红色物业", "classification": "property_company"}
    report = {"person_id": "p1", "community_id": COMMUNITY, "reported_on": "2024-03-01", "commitment": "巡逻"}
    with pytest.raises(InvalidInput) as caught:
        validated(model, {**(company if model is NewOrganisation else report), **body})
    assert errors_of(caught) == {field}


def test_a_compound_listed_twice_counts_once():
    company = {"code": "wy-1", "name": "红色物业", "classification": "property_company"}
    new = validated(NewOrganisation, {**company, "serves_compounds": ["xq-2", "xq-1", "xq-2"]})
    assert new.serves_compounds == ["xq-2", "xq-1"]
