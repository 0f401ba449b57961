"""The organisation registry over HTTP, against the running suite: the tree, places, people and
their numbers, posts over time, 交叉任职, 双报到, ledgers, and what reaches the other services."""

from __future__ import annotations

import csv
import io
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest
import requests

from deploy.local.demo_data import STREET
from gateway import responses as r
from services.registry.domain.ledgers import COLUMNS
from shared.schemas.registry import Classification
from shared.settings import local_today
from tests.conftest import COMMUNITY, new_id
from tests.support import eventually, outbox_events

pytestmark = pytest.mark.e2e

C = Classification
EMPLOYER = "十堰经开区测试局"


# --- helpers ----------------------------------------------------------------------------------


def segment() -> str:
    """A fresh code segment ([0-9A-Za-z]{1,8}), so every test builds its own part of the tree."""
    return "c" + uuid.uuid4().hex[:6]


def organisation_body(code: str, classification: str, parent_id: str | None, **extra) -> dict:
    body = {"code": code, "name": f"测试组织{code[-8:]}", "classification": classification}
    return {**body, "parent_id": parent_id, **extra}


def create_organisation(
    api, code: str, classification: str, parent_id: str | None, **extra
) -> r.Organisation:
    response = api.post(
        "/api/v1/organisations", json=organisation_body(code, classification, parent_id, **extra)
    )
    assert response.status_code == 201, response.text
    return r.Organisation.model_validate(response.json())


def new_community(api) -> str:
    code = f"{STREET}-{segment()}"
    create_organisation(api, code, C.COMMUNITY, STREET)
    return code


def new_grid(api, community: str, number: str = "01") -> str:
    return create_organisation(api, f"{community}-{number}", C.GRID, community).id


def new_building_group(api, grid: str, number: str = "B1") -> str:
    return create_organisation(api, f"{grid}-{number}", C.BUILDING, grid).id


def refused(response, status: int = 422) -> set[str]:
    """The fields a refusal names (after checking its status and shape)."""
    assert response.status_code == status, response.text
    return {f.field for f in r.ErrorResponse.model_validate(response.json()).error.fields}


def organisation_ids(api, **params) -> list[str]:
    response = api.get("/api/v1/organisations", params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    return [o.id for o in r.Organisations.model_validate(response.json()).items]


def register_person(api, community: str, **fields) -> r.Person:
    body = {"person_id": new_id("p"), "name": "测试居民", "community_id": community, **fields}
    response = api.post("/api/v1/people", json=body)
    assert response.status_code == 201, response.text
    return r.Person.model_validate(response.json())


def party_member(api, community: str, **fields) -> str:
    return register_person(api, community, is_party_member=True, **fields).id


def patch_person(api, person_id: str, details: dict):
    return api.http.patch(f"{api.base_url}/api/v1/people/{person_id}", json=details, timeout=15)


def all_people(api, **params) -> list[r.Person]:
    people, offset = [], 0
    while True:
        response = api.get("/api/v1/people", params={**params, "offset": offset, "limit": 200})
        assert response.status_code == 200, response.text
        page = r.PeoplePage.model_validate(response.json())
        people += page.items
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return people


def unique_numbers() -> tuple[str, str]:
    """A phone and an ID number that mask as 138****5678 and 4203**********1234."""
    return f"138{random.randrange(10**4):04d}5678", f"4203{random.randrange(10**10):010d}1234"


def appoint(api, person_id: str, role: str, organisation_id: str, start_on: str, **extra):
    body = {
        "person_id": person_id,
        "role": role,
        "organisation_id": organisation_id,
        "start_on": start_on,
        **extra,
    }
    return api.post("/api/v1/memberships", json=body)


def appointed(api, person_id: str, role: str, organisation_id: str, start_on: str) -> r.Membership:
    response = appoint(api, person_id, role, organisation_id, start_on)
    assert response.status_code == 201, response.text
    return r.Membership.model_validate(response.json())


def holders(api, organisation_id: str, **params) -> list[tuple[str, str, str, str | None]]:
    response = api.get(f"/api/v1/organisations/{organisation_id}/memberships", params=params)
    assert response.status_code == 200, response.text
    items = r.Memberships.model_validate(response.json()).items
    return [(m.person_id, m.role, m.start_on, m.end_on) for m in items]


def an_act(person_id: str, community_id: str, occurred_on: date) -> dict:
    return {
        "person_id": person_id,
        "act_type": "patrol_duty",
        "hours": 1,
        "occurred_on": occurred_on.isoformat(),
        "community_id": community_id,
    }


def dossier(api, person_id: str) -> r.Dossier | None:
    response = api.get(f"/api/v1/cadres/{person_id}/dossier")
    return r.Dossier.model_validate(response.json()) if response.status_code == 200 else None


def csv_body(header: list[str], rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def start_import(api, kind: str, body: bytes, content_type: str = "text/csv"):
    return api.post(f"/api/v1/registry/imports/{kind}", data=body, headers={"Content-Type": content_type})


def finished_import(api, import_id: str) -> r.ImportJob:
    def done() -> r.ImportJob | None:
        response = api.get(f"/api/v1/registry/imports/{import_id}")
        assert response.status_code == 200, response.text
        job = r.ImportJob.model_validate(response.json())
        if job.status == "failed":
            pytest.fail(f"import {import_id} failed: {job.message}")
        return job if job.status == "done" else None

    return eventually(done, timeout=60, interval=0.2)


def imported(api, kind: str, body: bytes) -> r.ImportJob:
    response = start_import(api, kind, body)
    assert response.status_code == 202, response.text
    started = r.ImportJob.model_validate(response.json())
    return finished_import(api, started.id)


def organisation_ledger(community: str, grids: int, buildings_per_grid: int) -> list[list[str]]:
    rows = [[community, "导入社区大党委", C.COMMUNITY, STREET]]
    for g in range(1, grids + 1):
        grid = f"{community}-g{g:02d}"
        rows.append([grid, f"导入第{g}网格党支部", C.GRID, community])
        rows += [
            [f"{grid}-b{b:02d}", f"导入{g}网格{b}号楼党小组", C.BUILDING, grid]
            for b in range(1, buildings_per_grid + 1)
        ]
    return rows


def labels(kind: str, *fields: str) -> list[str]:
    by_field = {column.field: column.label for column in COLUMNS[kind]}
    return [by_field[field] for field in fields]


# --- 1. the tree ------------------------------------------------------------------------------


def test_a_community_grid_and_building_group_form_a_tree_listed_parents_first(api):
    community = new_community(api)
    grids = [new_grid(api, community, "01"), new_grid(api, community, "02")]
    buildings = {
        grid: [new_building_group(api, grid, "B1"), new_building_group(api, grid, "B2")] for grid in grids
    }

    building = r.OrganisationDetail.model_validate(
        api.get(f"/api/v1/organisations/{buildings[grids[0]][0]}").json()
    )
    assert building.path == [STREET, community, grids[0]] and building.children == []
    assert building.classification == C.BUILDING and building.parent_id == grids[0]
    top = r.OrganisationDetail.model_validate(api.get(f"/api/v1/organisations/{community}").json())
    assert top.path == [STREET] and top.children == grids

    subtree = [community, grids[0], *buildings[grids[0]], grids[1], *buildings[grids[1]]]
    assert organisation_ids(api, within=community) == subtree
    assert organisation_ids(api, within=community, classification=C.GRID) == grids
    assert organisation_ids(api, within=grids[1]) == [grids[1], *buildings[grids[1]]]

    page = r.Organisations.model_validate(
        api.get("/api/v1/organisations", params={"within": community, "offset": 2, "limit": 3}).json()
    )
    assert [o.id for o in page.items] == subtree[2:5]
    assert (page.total, page.offset) == (7, 2)
    assert api.get(f"/api/v1/organisations/{community}-99").status_code == 404
    assert refused(api.get("/api/v1/organisations", params={"classification": "club"})) == {"classification"}


def test_registering_an_organisation_again_changes_nothing_but_other_details_conflict(api, databases):
    code = f"{STREET}-{segment()}"
    body = organisation_body(code, C.COMMUNITY, STREET)
    first = api.post("/api/v1/organisations", json=body)
    again = api.post("/api/v1/organisations", json=body)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()

    other = api.post("/api/v1/organisations", json={**body, "name": "另一个社区"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "already_registered"
    stored = databases["registry"].organisations.find_one({"_id": code})
    assert stored["name"] == body["name"] and stored["version"] == 1
    assert [e["type"] for e in stored["events"]] == ["cn.gridlink.organisation.created.v1"]


@pytest.mark.parametrize(
    ("make", "field"),
    [
        # a grid code that extends another community's code, not its parent's
        (lambda community: (f"{STREET}-001-{segment()}", C.GRID, community), "code"),
        (lambda community: (f"{community}-01-02", C.GRID, community), "code"),  # two segments
        (lambda community: ("bad code!", C.GRID, community), "code"),
        (lambda community: (f"{STREET}-{segment()}", "club", STREET), "classification"),
        (lambda community: (f"{STREET}-nowhere-{segment()}", C.GRID, f"{STREET}-nowhere"), "parent_id"),
        (lambda community: (f"{STREET}-{segment()}", C.COMMUNITY, None), "parent_id"),
        (lambda community: (f"{community}-{segment()}", C.BUILDING, community), "parent_id"),  # wrong kind
    ],
)
def test_a_malformed_organisation_is_refused_naming_the_field_and_nothing_is_written(
    api, databases, make, field
):
    community = new_community(api)
    code, classification, parent_id = make(community)
    response = api.post("/api/v1/organisations", json=organisation_body(code, classification, parent_id))
    assert field in refused(response)
    assert databases["registry"].organisations.count_documents({"_id": code}) == 0
    assert [e for e in outbox_events(databases["registry"]) if e["aggregate_id"] == code] == []
    assert organisation_ids(api, within=community) == [community]


# --- 2. moves ---------------------------------------------------------------------------------


def test_a_moved_grid_takes_its_subtree_to_the_new_community(api, databases):
    old, new = new_community(api), new_community(api)
    grid = new_grid(api, old)
    building = new_building_group(api, grid)

    response = api.post(f"/api/v1/organisations/{grid}:move", json={"parent_id": new})
    assert response.status_code == 200, response.text
    assert r.Organisation.model_validate(response.json()).parent_id == new

    assert organisation_ids(api, within=new) == [new, grid, building]
    assert organisation_ids(api, within=old) == [old]
    detail = r.OrganisationDetail.model_validate(api.get(f"/api/v1/organisations/{building}").json())
    assert detail.path == [STREET, new, grid]
    stored = databases["registry"].organisations.find_one({"_id": grid})
    assert (stored["parent_id"], stored["version"]) == (new, 2)
    assert stored["events"][-1]["data"] == {
        "organisation_id": grid,
        "from_parent_id": old,
        "to_parent_id": new,
    }

    # The issue intake service keeps the organisations it is told about.
    for code, classification in (
        (old, C.COMMUNITY),
        (new, C.COMMUNITY),
        (grid, C.GRID),
        (building, C.BUILDING),
    ):
        known = eventually(lambda c=code: databases["issue_intake"].organisations.find_one({"_id": c}))
        assert known["classification"] == classification


def test_moving_a_community_under_its_own_grid_is_refused_as_a_cycle(api, databases):
    community = new_community(api)
    grid = new_grid(api, community)
    assert refused(api.post(f"/api/v1/organisations/{community}:move", json={"parent_id": grid})) == {
        "parent_id"
    }
    assert refused(api.post(f"/api/v1/organisations/{community}:move", json={"parent_id": community})) == {
        "parent_id"
    }
    # a grid hangs under a community, not under a street
    assert refused(api.post(f"/api/v1/organisations/{grid}:move", json={"parent_id": STREET})) == {
        "parent_id"
    }
    assert (
        api.post(f"/api/v1/organisations/{community}-77:move", json={"parent_id": STREET}).status_code == 404
    )
    stored = databases["registry"].organisations.find_one({"_id": community})
    assert (stored["parent_id"], stored["version"]) == (STREET, 1)
    assert databases["registry"].organisations.find_one({"_id": grid})["parent_id"] == community


def test_published_registry_events_leave_the_outbox(api, databases):
    # Including events no other service subscribes to (organisation.moved, membership.*).
    old, new = new_community(api), new_community(api)
    grid = new_grid(api, old)
    person = party_member(api, new)
    assert api.post(f"/api/v1/organisations/{grid}:move", json={"parent_id": new}).status_code == 200
    membership = appointed(api, person, "secretary", grid, "2024-01-01")
    assert (
        api.post(f"/api/v1/memberships/{membership.id}:end", json={"end_on": "2024-12-31"}).status_code == 200
    )

    aggregates = {old, new, grid, person, membership.id}

    def drained() -> bool:
        left = [e for e in outbox_events(databases["registry"]) if e["aggregate_id"] in aggregates]
        assert left == [], left
        return True

    eventually(drained, timeout=20)


# --- 3. closing -------------------------------------------------------------------------------


def test_a_grid_closes_only_after_its_children_and_then_drops_out_of_lists(api, databases):
    community = new_community(api)
    grid = new_grid(api, community)
    buildings = [new_building_group(api, grid, "B1"), new_building_group(api, grid, "B2")]
    today = local_today().isoformat()

    busy = api.post(f"/api/v1/organisations/{grid}:close", json={"closed_on": today})
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "has_open_children"
    assert databases["registry"].organisations.find_one({"_id": grid})["closed_on"] is None

    for building in buildings:
        closed = api.post(f"/api/v1/organisations/{building}:close", json={"closed_on": today})
        assert closed.status_code == 200, closed.text
        assert r.Organisation.model_validate(closed.json()).closed_on == today
    response = api.post(f"/api/v1/organisations/{grid}:close", json={"closed_on": today})
    assert response.status_code == 200, response.text
    assert response.json()["closed_on"] == today

    assert organisation_ids(api, within=community) == [community]
    assert organisation_ids(api, within=community, include_closed="true") == [community, grid, *buildings]
    assert api.post(f"/api/v1/organisations/{grid}:close", json={"closed_on": today}).status_code == 409
    assert refused(api.post(f"/api/v1/organisations/{community}:close", json={"closed_on": "soon"})) == {
        "closed_on"
    }
    # nothing new hangs under a closed organisation
    late = api.post("/api/v1/organisations", json=organisation_body(f"{grid}-B3", C.BUILDING, grid))
    assert refused(late) == {"parent_id"}


def test_a_closed_community_refuses_volunteer_acts_dated_from_its_closure(api, databases, resident):
    community = new_community(api)
    closed_on = local_today() - timedelta(days=5)
    eventually(lambda: databases["issue_intake"].organisations.find_one({"_id": community}))
    before = api.record_act(an_act(resident, community, closed_on - timedelta(days=1)))
    assert before.status_code == 202, before.text

    response = api.post(f"/api/v1/organisations/{community}:close", json={"closed_on": closed_on.isoformat()})
    assert response.status_code == 200, response.text
    eventually(
        lambda: (
            databases["issue_intake"].organisations.find_one({"_id": community}).get("closed_on")
            == closed_on.isoformat()
        )
    )

    for day in (closed_on, local_today()):
        key = new_id("idem")
        late = eventually(
            lambda d=day, k=key: api.record_act(an_act(resident, community, d), key=k).status_code == 422
        )
        assert late
        assert refused(api.record_act(an_act(resident, community, day), key=key)) == {"community_id"}
    still = api.record_act(an_act(resident, community, closed_on - timedelta(days=2)))
    assert still.status_code == 202, still.text
    assert databases["issue_intake"].volunteer_acts.count_documents({"community_id": community}) == 2


# --- 4. places --------------------------------------------------------------------------------


def test_places_inherit_community_and_grid_from_their_parents(api, databases):
    community = new_community(api)
    grid = new_grid(api, community)

    def place(code: str, kind: str, **fields) -> r.Place:
        response = api.post(
            "/api/v1/places", json={"code": code, "name": f"测试{kind}", "kind": kind, **fields}
        )
        assert response.status_code == 201, response.text
        return r.Place.model_validate(response.json())

    compound = place(f"{community}-XQ", "compound", community_id=community)
    assert (compound.community_id, compound.grid_id) == (community, None)
    building = place(f"{compound.code}-1", "building", parent_id=compound.code, grid_id=grid)
    unit = place(f"{building.code}-U1", "unit", parent_id=building.code)
    household = place(f"{unit.code}-101", "household", parent_id=unit.code)
    for inherited in (building, unit, household):
        assert (inherited.community_id, inherited.grid_id) == (community, grid)

    stray = f"{compound.code}-2"
    no_grid = api.post(
        "/api/v1/places",
        json={"code": stray, "name": "无网格楼", "kind": "building", "parent_id": compound.code},
    )
    assert refused(no_grid) == {"grid_id"}
    foreign_grid = api.post(
        "/api/v1/places",
        json={
            "code": stray,
            "name": "外网格楼",
            "kind": "building",
            "parent_id": compound.code,
            "grid_id": f"{STREET}-001-01",
        },
    )
    assert refused(foreign_grid) == {"grid_id"}
    orphan = api.post(
        "/api/v1/places", json={"code": f"{stray}-U1", "name": "孤单元", "kind": "unit", "parent_id": stray}
    )
    assert refused(orphan) == {"parent_id"}
    assert databases["registry"].places.count_documents({"_id": {"$in": [stray, f"{stray}-U1"]}}) == 0

    listed = r.Places.model_validate(
        api.get("/api/v1/places", params={"within": community, "kind": "building"}).json()
    )
    assert [p.code for p in listed.items] == [building.code] and listed.total == 1
    everything = r.Places.model_validate(api.get("/api/v1/places", params={"within": community}).json())
    assert [p.code for p in everything.items] == sorted(
        [compound.code, building.code, unit.code, household.code]
    )
    assert api.get(f"/api/v1/places/{household.code}").json() == household.model_dump()


# --- 5. people --------------------------------------------------------------------------------


def test_phone_and_id_numbers_are_shown_masked_and_stored_nowhere_in_clear(api, databases):
    phone, id_number = unique_numbers()
    person = register_person(api, COMMUNITY, phone=phone, id_number=id_number)
    assert (person.phone, person.id_number) == ("138****5678", "4203**********1234")
    fetched = r.PersonDetail.model_validate(api.get(f"/api/v1/people/{person.id}").json())
    assert (fetched.phone, fetched.id_number) == ("138****5678", "4203**********1234")

    stored = databases["registry"].people.find_one({"_id": person.id})
    assert stored["phone"]["masked"] == "138****5678"
    assert phone not in str(stored) and id_number not in str(stored)
    index = stored["phone"]["index"]
    assert index not in str(stored["events"])  # events carry neither the number nor its hash
    for event in outbox_events(databases["registry"]):
        assert phone not in str(event) and id_number not in str(event) and index not in str(event)
    for service in ("issue_intake", "cadre_evaluation"):
        copy = eventually(lambda s=service: databases[s].people.find_one({"_id": person.id}))
        assert phone not in str(copy) and id_number not in str(copy) and "138****5678" not in str(copy)


def test_people_are_found_by_phone_or_id_number_sent_in_the_body(api):
    phone, id_number = unique_numbers()
    person = register_person(api, COMMUNITY, phone=phone, id_number=id_number)

    def found(search: dict) -> list[str]:
        response = api.post("/api/v1/people:search", json=search)
        assert response.status_code == 200, response.text
        return [p.id for p in r.PeoplePage.model_validate(response.json()).items]

    assert found({"phone": phone}) == [person.id]
    assert found({"phone": f"+86{phone}"}) == [person.id]
    assert found({"id_number": id_number}) == [person.id]
    assert found({"id_number": f"4203{'0' * 10}9999"}) == []
    assert refused(api.post("/api/v1/people:search", json={"phone": phone, "id_number": id_number}))
    assert refused(api.post("/api/v1/people:search", json={}))
    assert refused(api.post("/api/v1/people:search", json={"phone": "12345"})) == {"phone"}


def test_an_id_number_belongs_to_one_person(api, databases):
    _, id_number = unique_numbers()
    first = register_person(api, COMMUNITY, id_number=id_number)
    second_id = new_id("p")
    twin = api.post(
        "/api/v1/people",
        json={"person_id": second_id, "name": "重号者", "community_id": COMMUNITY, "id_number": id_number},
    )
    assert refused(twin) == {"id_number"}
    assert databases["registry"].people.count_documents({"_id": second_id}) == 0

    other = register_person(api, COMMUNITY)
    assert refused(patch_person(api, other.id, {"id_number": id_number})) == {"id_number"}
    assert databases["registry"].people.find_one({"_id": other.id}).get("id_number") is None
    # giving a person their own number again is no conflict
    assert patch_person(api, first.id, {"id_number": id_number}).status_code == 200


def test_a_resident_made_a_cadre_gets_a_dossier(api, databases):
    resident = register_person(api, COMMUNITY)
    eventually(lambda: databases["cadre_evaluation"].people.find_one({"_id": resident.id}))
    assert api.get(f"/api/v1/cadres/{resident.id}/dossier").status_code == 404

    response = patch_person(
        api, resident.id, {"is_party_member": True, "is_cadre": True, "employer": EMPLOYER}
    )
    assert response.status_code == 200, response.text
    cadre = r.Person.model_validate(response.json())
    assert cadre.is_cadre and cadre.is_in_service and cadre.name == resident.name
    assert databases["registry"].people.find_one({"_id": resident.id})["version"] == 2

    opened = eventually(lambda: dossier(api, resident.id))
    assert (opened.person_id, opened.employer, opened.acts_total) == (resident.id, EMPLOYER, 0)


def test_a_cadre_must_be_a_party_member(api, databases):
    resident = register_person(api, COMMUNITY)
    assert refused(patch_person(api, resident.id, {"is_cadre": True, "employer": EMPLOYER})) == {"is_cadre"}
    assert refused(patch_person(api, resident.id, {"name": None})) == {"name"}
    stored = databases["registry"].people.find_one({"_id": resident.id})
    assert (stored["is_cadre"], stored["version"]) == (False, 1)
    assert patch_person(api, "p-nobody", {"name": "无名"}).status_code == 404


def test_in_service_party_members_are_listed_within_a_street(api):
    community = new_community(api)
    in_service = party_member(api, community, employer=EMPLOYER)
    at_home = party_member(api, community)
    not_a_member = register_person(api, community, employer=EMPLOYER).id

    in_street = {p.id: p for p in all_people(api, within=STREET, in_service="true")}
    assert in_service in in_street and "p-zg-001" in in_street
    assert at_home not in in_street and not_a_member not in in_street and "p-zg-003" not in in_street
    assert all(p.is_party_member and p.is_in_service for p in in_street.values())
    assert [p.id for p in all_people(api, within=community, in_service="true")] == [in_service]
    assert sorted(p.id for p in all_people(api, within=community, party_members="true")) == sorted(
        [in_service, at_home]
    )


# --- 6. memberships ---------------------------------------------------------------------------


def test_a_successor_ends_the_predecessors_tenure_and_history_is_kept(api, databases):
    community = new_community(api)
    first, second, third = (party_member(api, community) for _ in range(3))
    appointed(api, first, "secretary", community, "2020-01-01")
    successor = appointed(api, second, "secretary", community, "2023-07-01")

    assert holders(api, community, on="2022-01-01") == [(first, "secretary", "2020-01-01", "2023-06-30")]
    assert holders(api, community, on="2023-07-01") == [(second, "secretary", "2023-07-01", None)]

    ended = api.post(f"/api/v1/memberships/{successor.id}:end", json={"end_on": "2024-12-31"})
    assert ended.status_code == 200, ended.text
    assert r.Membership.model_validate(ended.json()).end_on == "2024-12-31"
    assert (
        api.post(f"/api/v1/memberships/{successor.id}:end", json={"end_on": "2025-01-31"}).status_code == 409
    )
    assert api.post("/api/v1/memberships/m-nothing:end", json={"end_on": "2025-01-31"}).status_code == 404

    overlapping = appoint(api, third, "secretary", community, "2024-06-01")
    assert overlapping.status_code == 409 and overlapping.json()["error"]["code"] == "overlapping_post"
    assert [f["field"] for f in overlapping.json()["error"]["fields"]] == ["start_on"]
    appointed(api, third, "secretary", community, "2025-01-01")
    assert holders(api, community) == [
        (first, "secretary", "2020-01-01", "2023-06-30"),
        (second, "secretary", "2023-07-01", "2024-12-31"),
        (third, "secretary", "2025-01-01", None),
    ]
    assert holders(api, community, on="2019-12-31") == []
    assert databases["registry"].memberships.count_documents({"chain": f"{community}#secretary"}) == 3

    # The person's own record shows the tenure ended by the successor, as the post's record does.
    for person_id, end_on in ((first, "2023-06-30"), (second, "2024-12-31"), (third, None)):
        person = r.PersonDetail.model_validate(api.get(f"/api/v1/people/{person_id}").json())
        assert [(m.role, m.organisation_id, m.end_on) for m in person.memberships] == [
            ("secretary", community, end_on)
        ], person_id


def test_one_person_holds_a_committee_seat_once_at_a_time(api, databases):
    community = new_community(api)
    member, colleague = party_member(api, community), party_member(api, community)
    appointed(api, member, "committee_member", community, "2021-01-01")
    twice = appoint(api, member, "committee_member", community, "2022-01-01")
    assert twice.status_code == 409, twice.text
    appointed(api, colleague, "committee_member", community, "2022-01-01")  # many sit on a committee
    assert sorted(p for p, *_ in holders(api, community, on="2022-06-01")) == sorted([member, colleague])
    assert databases["registry"].memberships.count_documents({"person_id": member}) == 1


def test_a_party_post_is_held_by_a_party_member(api, databases):
    community = new_community(api)
    resident = register_person(api, community).id
    assert refused(appoint(api, resident, "secretary", community, "2024-01-01")) == {"role"}
    assert refused(appoint(api, resident, "grid_head", community, "2024-01-01")) == {"role"}  # grids only
    assert refused(appoint(api, "p-nobody", "member", community, "2024-01-01")) == {"person_id"}
    assert databases["registry"].memberships.count_documents({"person_id": resident}) == 0


def test_simultaneous_appointments_to_one_post_leave_exactly_one_tenure(api, databases):
    community = new_community(api)
    candidates = [party_member(api, community) for _ in range(8)]
    start = threading.Barrier(len(candidates))

    def appoint_at_once(person_id: str) -> int:
        with requests.Session() as session:
            session.headers["X-API-Key"] = api.key
            start.wait(timeout=10)
            body = {
                "person_id": person_id,
                "role": "secretary",
                "organisation_id": community,
                "start_on": "2024-03-01",
            }
            return session.post(f"{api.base_url}/api/v1/memberships", json=body, timeout=30).status_code

    with ThreadPoolExecutor(len(candidates)) as pool:
        statuses = list(pool.map(appoint_at_once, candidates))

    assert sorted(statuses) == [201] + [409] * 7, statuses
    winner = candidates[statuses.index(201)]
    assert databases["registry"].memberships.count_documents({"chain": f"{community}#secretary"}) == 1
    assert holders(api, community) == [(winner, "secretary", "2024-03-01", None)]


# --- 7. cross-appointments (交叉任职) ------------------------------------------------------------


def test_cross_appointments_and_one_shoulder_posts_are_counted(api):
    community = new_community(api)
    branch = create_organisation(api, f"{community}-xq", C.COMPOUND_BRANCH, community).id
    committee = create_organisation(api, f"{community}-ywh", C.HOMEOWNERS_COMMITTEE, community).id
    crossed, one_shoulder, party_only = (party_member(api, community) for _ in range(3))
    appointed(api, crossed, "committee_member", branch, "2024-01-01")
    appointed(api, crossed, "member", committee, "2024-01-01")
    appointed(api, one_shoulder, "secretary", branch, "2024-01-01")
    appointed(api, one_shoulder, "chair", committee, "2024-01-01")
    appointed(api, party_only, "committee_member", branch, "2024-01-01")

    response = api.get("/api/v1/cross-appointments", params={"within": community})
    assert response.status_code == 200, response.text
    found = r.CrossAppointments.model_validate(response.json())
    by_person = {c.person_id: c for c in found.items}
    assert set(by_person) == {crossed, one_shoulder}
    assert (found.total, found.one_shoulder) == (2, 1)
    assert not by_person[crossed].one_shoulder and by_person[one_shoulder].one_shoulder
    assert [(m.role, m.organisation_id) for m in by_person[crossed].party_posts] == [
        ("committee_member", branch)
    ]
    assert [(m.role, m.organisation_id) for m in by_person[crossed].committee_posts] == [
        ("member", committee)
    ]

    figures = r.Statistics.model_validate(api.get(f"/api/v1/organisations/{community}/statistics").json())
    assert (figures.cross_appointed, figures.one_shoulder, figures.compound_party_branches) == (2, 1, 1)
    before = api.get("/api/v1/cross-appointments", params={"within": community, "on": "2023-12-31"}).json()
    assert before["total"] == 0
    elsewhere = api.get("/api/v1/cross-appointments", params={"within": f"{STREET}-002"}).json()
    assert not {crossed, one_shoulder} & {c["person_id"] for c in elsewhere["items"]}


# --- 8. 双报到 --------------------------------------------------------------------------------


def test_an_in_service_cadre_reports_to_the_community_where_they_live(api, databases):
    community, other = new_community(api), new_community(api)
    reporter = party_member(api, community, is_cadre=True, employer=EMPLOYER)
    colleague = party_member(api, community, employer="十堰经开区另一局")
    resident = register_person(api, community).id
    eventually(lambda: dossier(api, reporter))

    report = {
        "person_id": reporter,
        "community_id": community,
        "reported_on": "2026-11-01",
        "commitment": "每月参加一次巡逻",
    }
    response = api.post("/api/v1/dual-reports", json={**report, "posts": ["patrol"]})
    assert response.status_code == 201, response.text
    registered = r.DualReport.model_validate(response.json())
    assert registered.id == f"person:{reporter}"
    assert [(p.post, p.claimed_on) for p in registered.posts] == [("patrol", "2026-11-01")]

    again = api.post("/api/v1/dual-reports", json=report)
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_reported"
    assert refused(api.post("/api/v1/dual-reports", json={**report, "community_id": other})) == {
        "community_id"
    }
    assert refused(api.post("/api/v1/dual-reports", json={**report, "person_id": resident})) == {"person_id"}
    assert databases["registry"].dual_reports.count_documents({"person_id": reporter}) == 1

    claim = api.post(
        f"/api/v1/dual-reports/{registered.id}/claims", json={"post": "care", "claimed_on": "2026-11-02"}
    )
    assert claim.status_code == 200, claim.text
    claimed = r.DualReport.model_validate(claim.json())
    assert [(p.post, p.claimed_on) for p in claimed.posts] == [
        ("care", "2026-11-02"),
        ("patrol", "2026-11-01"),
    ]
    claim_again = api.post(
        f"/api/v1/dual-reports/{registered.id}/claims", json={"post": "care", "claimed_on": "2026-11-03"}
    )
    assert claim_again.json() == claim.json()

    status = r.DualReportStatus.model_validate(
        api.get(f"/api/v1/communities/{community}/dual-reports").json()
    )
    assert {m.person_id: m.reported_on for m in status.members} == {reporter: "2026-11-01", colleague: None}
    assert (status.reported, status.not_reported) == (1, 1)
    assert api.get(f"/api/v1/communities/{STREET}/dual-reports").status_code == 404

    reported = eventually(lambda: dossier(api, reporter).dual_report)
    assert (reported.community_id, reported.reported_on) == (community, "2026-11-01")
    assert "patrol" in reported.posts


# --- 9. ledgers (台账) -------------------------------------------------------------------------


def test_a_ledger_of_300_organisations_is_imported_and_importing_it_again_changes_nothing(api, databases):
    community = f"{STREET}-{segment()}"
    rows = organisation_ledger(community, grids=23, buildings_per_grid=12)
    assert len(rows) == 300
    body = csv_body(labels("organisations", "code", "name", "classification", "parent_id"), rows)

    response = start_import(api, "organisations", body)
    assert response.status_code == 202, response.text
    started = r.ImportJob.model_validate(response.json())
    assert (started.kind, started.total) == ("organisations", 300)
    job = finished_import(api, started.id)
    assert (job.processed, job.total, job.unchanged) == (300, 300, 0)

    assert organisation_ids(api, within=community) == [row[0] for row in rows]
    assert databases["registry"].organisations.count_documents({"_id": {"$regex": f"^{community}"}}) == 300
    sample = rows[-1][0]
    eventually(lambda: databases["issue_intake"].organisations.find_one({"_id": sample}))

    again = imported(api, "organisations", body)
    assert (again.processed, again.total, again.unchanged) == (300, 300, 300)
    assert again.id != job.id
    assert databases["registry"].organisations.count_documents({"_id": {"$regex": f"^{community}"}}) == 300


def test_a_ledger_with_bad_rows_is_refused_naming_each_line_and_writes_nothing(api, databases):
    community = f"{STREET}-{segment()}"
    grid = f"{community}-01"
    rows = [
        [community, "坏台账社区", C.COMMUNITY, STREET],  # line 2
        [grid, "坏台账网格", C.GRID, community],  # line 3
        [f"{grid}-B1", "一号楼", C.BUILDING, grid],  # line 4
        [f"{grid}-B2", "二号楼", "club", grid],  # line 5: no such classification
        [f"{grid}-B3", "三号楼", C.BUILDING, grid],  # line 6
        [f"{STREET}-001-01-{segment()}", "错号楼", C.BUILDING, grid],  # line 7: not under its parent's code
        [f"{grid}-B5", "五号楼", C.BUILDING, grid],  # line 8
    ]
    response = start_import(
        api, "organisations", csv_body(["code", "name", "classification", "parent_id"], rows)
    )
    assert response.status_code == 422, response.text
    errors = r.ErrorResponse.model_validate(response.json()).error.fields
    assert {(e.line, e.field) for e in errors} == {(5, "classification"), (7, "code")}
    codes = [row[0] for row in rows]
    assert databases["registry"].organisations.count_documents({"_id": {"$in": codes}}) == 0
    assert organisation_ids(api, within=STREET, include_closed="true").count(community) == 0


def test_a_people_ledger_exports_masked_as_xlsx_and_csv(api):
    import openpyxl

    community = new_community(api)
    phones = {}
    for _ in range(2):
        phone, id_number = unique_numbers()
        phones[register_person(api, community, phone=phone, id_number=id_number).id] = phone

    response = api.get("/api/v1/registry/exports/people", params={"format": "xlsx", "within": community})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml"
    )
    assert "attachment" in response.headers["Content-Disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).worksheets[0]
    header, *rows = list(sheet.iter_rows(values_only=True))
    assert list(header) == [column.label for column in COLUMNS["people"]]
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert set(by_id) == set(phones)
    assert {row["手机号"] for row in by_id.values()} == {"138****5678"}
    assert {row["身份证号"] for row in by_id.values()} == {"4203**********1234"}
    assert {row["所在社区编码"] for row in by_id.values()} == {community}

    as_csv = api.get("/api/v1/registry/exports/people", params={"within": community})
    assert as_csv.status_code == 200 and as_csv.headers["Content-Type"].startswith("text/csv")
    assert as_csv.content.startswith(b"\xef\xbb\xbf")
    text = as_csv.content.decode("utf-8-sig")
    table = list(csv.DictReader(io.StringIO(text)))
    assert {row["人员编号"] for row in table} == set(phones)
    assert {row["手机号"] for row in table} == {"138****5678"}
    assert not any(phone in text for phone in phones.values())
    assert refused(api.get("/api/v1/registry/exports/people", params={"format": "pdf"})) == {"format"}
    assert api.get("/api/v1/registry/exports/people", params={"within": f"{community}-99"}).status_code == 404


def test_an_exported_people_ledger_imports_back_unchanged(api, databases):
    community = new_community(api)
    phone, id_number = unique_numbers()
    people = [
        register_person(api, community, phone=phone, id_number=id_number).id,
        party_member(api, community, employer=EMPLOYER),
    ]
    exported = api.get("/api/v1/registry/exports/people", params={"within": community})
    assert exported.status_code == 200, exported.text

    job = imported(api, "people", exported.content)
    assert (job.total, job.processed, job.unchanged) == (2, 2, 2)
    for person_id in people:
        assert databases["registry"].people.find_one({"_id": person_id})["version"] == 1


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/octet-stream"])
def test_a_ledger_in_another_format_is_refused(api, databases, content_type):
    community = f"{STREET}-{segment()}"
    body = csv_body(
        ["code", "name", "classification", "parent_id"], [[community, "格式", C.COMMUNITY, STREET]]
    )
    assert start_import(api, "organisations", body, content_type).status_code == 415
    assert start_import(api, "budgets", body).status_code == 404
    assert databases["registry"].organisations.count_documents({"_id": community}) == 0


# --- 10. the API description --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method", "request_schema", "fields"),
    [
        ("/api/v1/organisations", "post", "NewOrganisation", {"code", "classification", "parent_id"}),
        ("/api/v1/organisations/{code}:move", "post", "OrganisationMove", {"parent_id"}),
        ("/api/v1/organisations/{code}:close", "post", "OrganisationClosure", {"closed_on"}),
        ("/api/v1/places", "post", "NewPlace", {"code", "kind", "grid_id"}),
        ("/api/v1/people", "post", "NewPerson", {"person_id", "phone", "id_number"}),
        ("/api/v1/people/{person_id}", "patch", "PersonDetails", {"is_cadre", "employer"}),
        ("/api/v1/people:search", "post", "PersonSearch", {"phone", "id_number"}),
        ("/api/v1/memberships", "post", "NewMembership", {"role", "start_on"}),
        ("/api/v1/memberships/{membership_id}:end", "post", "MembershipEnd", {"end_on"}),
        ("/api/v1/dual-reports", "post", "NewDualReport", {"community_id", "posts"}),
        ("/api/v1/dual-reports/{report_id}/claims", "post", "PostClaim", {"post"}),
    ],
)
def test_openapi_documents_each_registry_operation_with_its_request_schema(
    api, path, method, request_schema, fields
):
    document = api.get("/openapi.json").json()
    assert path in document["paths"], sorted(
        p for p in document["paths"] if "registry" in p or "/api/v1/" in p
    )
    operation = document["paths"][path][method]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": f"#/components/schemas/{request_schema}"}
    assert fields <= set(document["components"]["schemas"][request_schema]["properties"])
    path_parameters = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
    assert path_parameters == {
        part[1:-1] for part in path.replace(":", "/").split("/") if part.startswith("{")
    }
    assert operation["tags"] == ["Organisation registry"]


def test_openapi_documents_the_registry_reads_and_ledgers(api):
    paths = api.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/organisations/{code}",
        "/api/v1/organisations/{code}/memberships",
        "/api/v1/organisations/{code}/statistics",
        "/api/v1/cross-appointments",
        "/api/v1/communities/{community_id}/dual-reports",
        "/api/v1/registry/imports/{kind}",
        "/api/v1/registry/imports/{import_id}",
        "/api/v1/registry/exports/{kind}",
    ):
        assert path in paths, path
    listing = paths["/api/v1/organisations"]["get"]
    assert {"within", "classification", "include_closed", "offset", "limit"} <= {
        p["name"] for p in listing["parameters"]
    }
    assert {"415", "422", "202"} <= set(paths["/api/v1/registry/imports/{kind}"]["post"]["responses"])


# --- who may change the registry -------------------------------------------------------------


def test_registry_changes_need_the_registrar_role_and_store_nothing_without_it(stack, api):
    from tests.e2e.test_points import staff

    reader = staff(stack)  # a key for reading and recording volunteer acts only
    body = {"person_id": new_id("p"), "name": "未授权", "community_id": COMMUNITY}
    refused = reader.post("/api/v1/people", json=body)
    assert refused.status_code == 403 and "registrar" in refused.json()["error"]["message"]
    assert api.get(f"/api/v1/people/{body['person_id']}").status_code == 404

    person = register_person(api, COMMUNITY)
    assert patch_person(reader, person.id, {"name": "改名"}).status_code == 403
    assert api.get(f"/api/v1/people/{person.id}").json()["name"] == "测试居民"
    closing = reader.post(f"/api/v1/organisations/{COMMUNITY}-01:close", json={"closed_on": "2026-12-01"})
    assert closing.status_code == 403
    ledger = reader.post(
        "/api/v1/registry/imports/people", data=b"person_id,name\n", headers={"Content-Type": "text/csv"}
    )
    assert ledger.status_code == 403


def test_a_registrar_with_a_scope_changes_only_its_subtree(stack, api):
    from tests.e2e.test_points import staff

    local = staff(stack, "registrar", scope=COMMUNITY)
    elsewhere = f"{STREET}-002"
    mine = register_person(local, COMMUNITY)
    outside = {"person_id": new_id("p"), "name": "外社区居民", "community_id": elsewhere}
    refused = local.post("/api/v1/people", json=outside)
    assert refused.status_code == 403 and elsewhere in refused.json()["error"]["message"]
    assert api.get(f"/api/v1/people/{outside['person_id']}").status_code == 404

    # Moving someone out of the subtree is a change there too; their own details are not.
    assert patch_person(local, mine.id, {"community_id": elsewhere}).status_code == 403
    assert patch_person(local, mine.id, {"name": "新名字"}).status_code == 200
    theirs = register_person(api, elsewhere)
    assert patch_person(local, theirs.id, {"name": "越权"}).status_code == 403
    assert api.get(f"/api/v1/people/{mine.id}").json()["community_id"] == COMMUNITY
    assert api.get(f"/api/v1/people/{theirs.id}").json()["name"] == "测试居民"

    # Changes that name no organisation need a key without scope.
    ledger = local.post(
        "/api/v1/registry/imports/people", data=b"person_id,name\n", headers={"Content-Type": "text/csv"}
    )
    assert ledger.status_code == 403 and "without scope" in ledger.json()["error"]["message"]


def test_a_scoped_key_reads_only_its_subtree_and_its_lists_never_cross(stack, api):
    from tests.e2e.test_audit import audited
    from tests.e2e.test_points import staff

    local = staff(stack, scope=COMMUNITY)  # a community's reading key
    elsewhere = f"{STREET}-002"
    phone, id_number = unique_numbers()
    mine = register_person(api, COMMUNITY)
    theirs = register_person(api, elsewhere, phone=phone, id_number=id_number)

    # Lists without a filter cover the scope, and nothing else.
    people = all_people(local)
    assert {p.community_id for p in people} == {COMMUNITY} and mine.id in {p.id for p in people}
    assert theirs.id not in {p.id for p in people}
    organisations = organisation_ids(local)
    assert COMMUNITY in organisations and all(code.startswith(COMMUNITY) for code in organisations)
    # A filter outside the scope is answered as an unknown one.
    assert local.get("/api/v1/people", params={"within": elsewhere}).status_code == 404
    assert local.get("/api/v1/people", params={"community_id": elsewhere}).status_code == 404
    assert local.get("/api/v1/people", params={"within": f"{COMMUNITY}-01"}).status_code == 200

    # One thing at a time: inside yes, outside 404, like something that does not exist.
    assert local.get(f"/api/v1/people/{mine.id}").status_code == 200
    assert local.get(f"/api/v1/points/accounts/{mine.id}").status_code == 200
    for path in (
        f"/api/v1/people/{theirs.id}",
        f"/api/v1/points/accounts/{theirs.id}",
        f"/api/v1/points/accounts/{theirs.id}/statement?from=2026-12-01&to=2026-12-07",
        f"/api/v1/organisations/{elsewhere}",
        f"/api/v1/points/disclosures/{elsewhere}?month=2026-11",
        f"/api/v1/points/rules?community_id={elsewhere}",
        f"/api/v1/registry/imports/imp-{uuid.uuid4().hex[:16]}",  # imports are for keys without scope
    ):
        outside = local.get(path)
        assert outside.status_code == 404, path
        assert "within this API key's scope" in outside.json()["error"]["message"]
        [record] = audited(stack, outside)  # every refusal is on the audit trail
        assert record["status"] == 404 and record["scope"] == COMMUNITY
    # A number may belong to someone elsewhere: the search neither shows nor counts them.
    searched = local.post("/api/v1/people:search", json={"phone": phone}).json()
    assert (searched["items"], searched["total"]) == ([], 0)
    # The same key without scope sees both.
    assert api.get(f"/api/v1/people/{theirs.id}").status_code == 200
    assert api.post("/api/v1/people:search", json={"phone": phone}).json()["total"] == 1


def test_a_grids_key_reads_and_registers_the_residents_of_its_grid_only(stack, api):
    """网格: a grid's people are those whose household is in it. Its key lists, opens, finds and
    changes them, registers people into its households, and reaches no one else."""
    from tests.e2e.test_points import staff

    one, two = f"{COMMUNITY}-01", f"{COMMUNITY}-02"
    in_one, in_two = f"{COMMUNITY}-P01-1-1-101", f"{COMMUNITY}-P01-2-1-101"  # demo households
    phone, id_number = unique_numbers()
    resident = register_person(api, COMMUNITY, household_id=in_one, phone=phone, id_number=id_number)
    neighbour = register_person(api, COMMUNITY, household_id=in_two)
    no_household = register_person(api, COMMUNITY)
    assert (resident.grid_id, neighbour.grid_id, no_household.grid_id) == (one, two, None)
    grid = staff(stack, "registrar", scope=one)

    for params in ({}, {"within": one}):
        listed = {p.id: p for p in all_people(grid, **params)}
        assert resident.id in listed and {p.grid_id for p in listed.values()} == {one}, params
    assert grid.get("/api/v1/people", params={"within": two}).status_code == 404
    assert grid.get(f"/api/v1/people/{resident.id}").status_code == 200
    assert grid.get(f"/api/v1/points/accounts/{resident.id}").status_code == 200
    for outside in (neighbour.id, no_household.id):
        assert grid.get(f"/api/v1/people/{outside}").status_code == 404
    assert [p["id"] for p in grid.post("/api/v1/people:search", json={"phone": phone}).json()["items"]] == [
        resident.id
    ]
    # The community's key lists the grid's residents with everyone else's; the list `within`
    # a grid is that grid's residents.
    community_wide = {p.id for p in all_people(staff(stack, scope=COMMUNITY), within=one)}
    assert resident.id in community_wide and not {neighbour.id, no_household.id} & community_wide

    assert patch_person(grid, resident.id, {"name": "网格居民"}).status_code == 200
    assert patch_person(grid, resident.id, {"household_id": in_two}).status_code == 403  # out of the grid
    assert patch_person(grid, neighbour.id, {"name": "越权"}).status_code == 403
    assert api.get(f"/api/v1/people/{resident.id}").json()["grid_id"] == one
    assert register_person(grid, COMMUNITY, household_id=in_one).grid_id == one
    for household in ({"household_id": in_two}, {}):
        body = {"person_id": new_id("p"), "name": "外网格居民", "community_id": COMMUNITY, **household}
        assert grid.post("/api/v1/people", json=body).status_code == 403


def test_a_scoped_registrar_adds_units_under_its_own_buildings_and_sees_only_its_places(stack, api):
    from tests.e2e.test_points import staff

    def building_of(community: str) -> str:
        compound = f"{community}-XQ"
        for body in (
            {"code": compound, "name": "小区", "kind": "compound", "community_id": community},
            {
                "code": f"{compound}-1",
                "name": "1栋",
                "kind": "building",
                "parent_id": compound,
                "grid_id": new_grid(api, community),
            },
        ):
            assert api.post("/api/v1/places", json=body).status_code == 201
        return f"{compound}-1"

    mine, theirs = new_community(api), new_community(api)
    my_building, their_building = building_of(mine), building_of(theirs)
    local = staff(stack, "registrar", scope=mine)

    def unit(parent: str):
        return local.post(
            "/api/v1/places",
            json={"code": f"{parent}-U1", "name": "1单元", "kind": "unit", "parent_id": parent},
        )

    added = unit(my_building)
    assert added.status_code == 201 and added.json()["community_id"] == mine
    assert unit(their_building).status_code == 403
    assert api.get(f"/api/v1/places/{their_building}-U1").status_code == 404  # nothing stored
    assert local.get(f"/api/v1/places/{my_building}").status_code == 200
    assert local.get(f"/api/v1/places/{their_building}").status_code == 404
