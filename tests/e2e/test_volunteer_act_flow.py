"""The mission flow over HTTP, as another government system uses it through the gateway."""

from __future__ import annotations

from decimal import Decimal

import pytest

from deploy.local.demo_data import PEOPLE, STREET
from tests.conftest import COMMUNITY, Api, new_id
from tests.support import eventually, outbox_events

pytestmark = pytest.mark.e2e


def an_act(person_id: str, **overrides) -> dict:
    return {
        "person_id": person_id,
        "act_type": "patrol_duty",
        "hours": 2.25,
        "occurred_on": "2026-11-20",
        "community_id": COMMUNITY,
        **overrides,
    }


def test_demo_people_are_listed(api):
    listed, total = {}, None
    while total is None or len(listed) < total:
        page = api.get(
            "/api/v1/people", params={"within": STREET, "limit": 200, "offset": len(listed)}
        ).json()
        listed |= {p["id"]: p for p in page["items"]}
        total = page["total"]
    for person_id, name, _, _, cadre, _ in PEOPLE:
        assert listed[person_id]["name"] == name
        assert listed[person_id]["is_cadre"] is cadre
    assert total >= len(PEOPLE)
    only = api.get("/api/v1/people", params={"community_id": f"{STREET}-002"}).json()["items"]
    assert only and {p["community_id"] for p in only} == {f"{STREET}-002"}


def test_a_volunteer_act_credits_points_and_reaches_the_cadre_dossier(api, cadre):
    response = api.record_act(an_act(cadre))
    assert response.status_code == 202
    act_id = response.json()["act_id"]
    assert response.json() == {"act_id": act_id, "status": "accepted", "replayed": False}

    account = eventually(lambda: api.get(f"/api/v1/points/accounts/{cadre}").json()["entries"])
    assert api.get(f"/api/v1/points/accounts/{cadre}").json()["balance"] == 23  # 2.25 h × 10, half up
    [entry] = account
    assert entry["act_id"] == act_id and entry["points"] == 23 and entry["balance_after"] == 23

    dossier = eventually(lambda: api.get(f"/api/v1/cadres/{cadre}/dossier").json()["volunteer_acts"])
    assert [a["act_id"] for a in dossier] == [act_id]
    assert dossier[0]["hours"] == "2.25"
    # The points bank's `points.transferred` event reaches the dossier's points figures too.
    dossier_points = f"/api/v1/cadres/{cadre}/dossier"
    figures = eventually(lambda: (points := api.get(dossier_points).json()["points"])["earned"] and points)
    assert figures == {"earned": 23, "spent": 0, "balance": 23}

    act = api.get(f"/api/v1/volunteer-acts/{act_id}").json()
    assert act["person_id"] == cadre and act["hours"] == "2.25" and act["occurred_on"] == "2026-11-20"
    assert act["event_ids"] == [entry["event_id"]]


def test_a_resident_earns_points_but_has_no_cadre_dossier(api, resident):
    assert api.record_act(an_act(resident, hours=1)).status_code == 202
    eventually(lambda: api.get(f"/api/v1/points/accounts/{resident}").json()["balance"] == 10)
    assert api.get(f"/api/v1/cadres/{resident}/dossier").status_code == 404


def test_retrying_with_the_same_key_records_once(api, cadre, databases):
    first = api.record_act(an_act(cadre), key="retry-me")
    second = api.record_act(an_act(cadre), key="retry-me")
    assert first.status_code == second.status_code == 202
    assert second.json() == {"act_id": first.json()["act_id"], "status": "accepted", "replayed": True}
    eventually(lambda: api.get(f"/api/v1/points/accounts/{cadre}").json()["balance"] == 23)
    reused = api.record_act(an_act(cadre, hours=5), key="retry-me")
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert databases["issue_intake"].volunteer_acts.count_documents({"person_id": cadre}) == 1
    assert api.get(f"/api/v1/points/accounts/{cadre}").json()["entries_total"] == 1


def test_concurrent_acts_are_each_answered_on_their_own(api, cadre, databases):
    """Concurrent POSTs share RPCs at the gateway (gateway.rpc.Coalesced); each still gets
    the answer it would get alone."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    sent = [(an_act(cadre, hours=1), f"together-{i}") for i in range(16)]
    sent += [(an_act("p-nobody"), f"nobody-{i}") for i in range(4)]
    sent += [(an_act(cadre, hours=1), "together-0"), (an_act(cadre, hours=3), "together-1")]

    def post(act_and_key):
        act, key = act_and_key
        headers = {"X-API-Key": api.key, "Idempotency-Key": key}
        return requests.post(f"{api.base_url}/api/v1/volunteer-acts", json=act, headers=headers, timeout=30)

    with ThreadPoolExecutor(len(sent)) as pool:
        answers = dict(enumerate(pool.map(post, sent)))
    assert [answers[i].status_code for i in range(16, 20)] == [404] * 4
    accepted = [answers[i] for i in range(2, 16)]
    assert [a.status_code for a in accepted] == [202] * 14
    assert len({a.json()["act_id"] for a in accepted}) == 14
    same_act_twice = [answers[0].json(), answers[20].json()]
    assert same_act_twice[0]["act_id"] == same_act_twice[1]["act_id"]
    assert sorted(a["replayed"] for a in same_act_twice) == [False, True]
    other_act_same_key = {answers[1].status_code: 1, answers[21].status_code: 3}
    assert sorted(other_act_same_key) == [202, 409]
    assert databases["issue_intake"].volunteer_acts.count_documents({"person_id": cadre}) == 16
    expected = 15 * 10 + other_act_same_key[202] * 10
    eventually(lambda: api.get(f"/api/v1/points/accounts/{cadre}").json()["balance"] == expected)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hours": 0}, "hours"),
        ({"hours": 24.5}, "hours"),
        ({"hours": 1.125}, "hours"),
        ({"occurred_on": "2999-01-01"}, "occurred_on"),
        ({"act_type": "napping"}, "act_type"),
        ({"community_id": "nowhere"}, "community_id"),
        ({"community_id": f"{STREET}-001-01"}, "community_id"),  # a grid, not a community
        ({"points": 9999}, "points"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(api, cadre, databases, overrides, field):
    response = api.record_act(an_act(cadre, **overrides))
    assert response.status_code == 422, response.text
    assert field in {f["field"] for f in response.json()["error"]["fields"]}
    assert databases["issue_intake"].volunteer_acts.count_documents({"person_id": cadre}) == 0
    intake = databases["issue_intake"]  # no event waits for an act that was not stored
    waiting = [e["aggregate_id"] for e in outbox_events(intake)]
    assert [a for a in waiting if intake.volunteer_acts.find_one({"_id": a}) is None] == []


def test_unknown_person_is_404_and_nothing_is_stored(api, databases):
    response = api.record_act(an_act("p-nobody"))
    assert response.status_code == 404
    assert databases["issue_intake"].volunteer_acts.count_documents({"person_id": "p-nobody"}) == 0
    assert api.get("/api/v1/points/accounts/p-nobody").status_code == 404


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "glk_not-a-key"}])
def test_without_a_valid_key_nothing_happens(api, cadre, databases, headers):
    import requests

    response = requests.post(
        f"{api.base_url}/api/v1/volunteer-acts",
        json=an_act(cadre),
        timeout=10,
        headers={"Idempotency-Key": new_id(), **headers},
    )
    assert response.status_code == 401
    assert databases["issue_intake"].volunteer_acts.count_documents({"person_id": cadre}) == 0


def test_a_batch_of_500_is_recorded_and_credited_once(api, cadre):
    items = [{**an_act(cadre, hours=1), "idempotency_key": f"batch-{i}"} for i in range(500)]
    response = api.post("/api/v1/volunteer-acts:batch", json={"items": items})
    assert response.status_code == 202
    results = response.json()["items"]
    assert len(results) == 500 and {r["status"] for r in results} == {"accepted"}
    assert len({r["act_id"] for r in results}) == 500

    again = api.post("/api/v1/volunteer-acts:batch", json={"items": items[:10]}).json()["items"]
    assert [r["act_id"] for r in again] == [r["act_id"] for r in results[:10]]
    assert all(r["replayed"] for r in again)

    eventually(lambda: api.get(f"/api/v1/points/accounts/{cadre}").json().get("balance") == 5000, timeout=60)
    assert api.get(f"/api/v1/points/accounts/{cadre}").json()["entries_total"] == 500
    eventually(lambda: api.get(f"/api/v1/cadres/{cadre}/dossier").json()["acts_total"] == 500, timeout=60)


def test_a_batch_with_one_bad_item_records_nothing(api, cadre, databases):
    items = [{**an_act(cadre), "idempotency_key": f"b-{i}"} for i in range(5)]
    items[3]["hours"] = 30
    items[4]["person_id"] = "p-nobody"
    response = api.post("/api/v1/volunteer-acts:batch", json={"items": items})
    assert response.status_code == 422
    assert {f["field"] for f in response.json()["error"]["fields"]} == {"items[3].hours"}
    items[3]["hours"] = 3
    response = api.post("/api/v1/volunteer-acts:batch", json={"items": items})
    assert response.status_code == 422
    assert {f["field"] for f in response.json()["error"]["fields"]} == {"items[4].person_id"}
    assert databases["issue_intake"].volunteer_acts.count_documents({"person_id": cadre}) == 0


def test_a_batch_item_whose_key_named_another_act_is_answered_conflict_and_not_recorded(api, cadre):
    first = [{**an_act(cadre, hours=1), "idempotency_key": new_id("b")} for _ in range(2)]
    earlier = api.post("/api/v1/volunteer-acts:batch", json={"items": first}).json()["items"]

    items = [first[0], {**first[1], "hours": 4}, {**an_act(cadre, hours=2), "idempotency_key": new_id("b")}]
    response = api.post("/api/v1/volunteer-acts:batch", json={"items": items})
    assert response.status_code == 202
    replay, conflict, fresh = response.json()["items"]
    assert (replay["status"], replay["replayed"]) == ("accepted", True)
    assert conflict == {"act_id": earlier[1]["act_id"], "status": "conflict", "replayed": False}
    assert (fresh["status"], fresh["replayed"]) == ("accepted", False)
    # The conflicting item changed nothing: its key's act is still the earlier one.
    assert api.get(f"/api/v1/volunteer-acts/{conflict['act_id']}").json()["hours"] == "1"
    eventually(lambda: api.get(f"/api/v1/points/accounts/{cadre}").json().get("balance") == 40)


def test_a_revoked_act_leaves_the_cadres_dossier_totals_and_shows_why(api, cadre):
    kept = api.record_act(an_act(cadre, hours=1)).json()["act_id"]
    wrong = api.record_act(an_act(cadre, hours=3)).json()["act_id"]
    dossier = f"/api/v1/cadres/{cadre}/dossier"
    eventually(lambda: api.get(dossier).json()["acts_total"] == 2)

    assert api.post(f"/api/v1/volunteer-acts/{wrong}:revoke", json={"reason": "重复登记"}).status_code == 200
    eventually(lambda: api.get(dossier).json()["acts_total"] == 1)
    read = api.get(dossier).json()
    assert Decimal(read["hours_total"]) == 1
    listed = {a["act_id"]: a["revoked"] for a in read["volunteer_acts"]}
    assert listed == {kept: None, wrong: {"reason": "重复登记"}}
    eventually(lambda: api.get(f"/api/v1/points/accounts/{cadre}").json()["balance"] == 10)


def test_the_act_type_catalogue_is_listed(api):
    items = api.get("/api/v1/volunteer-act-types").json()["items"]
    codes = {t["code"] for t in items}
    assert {"patrol_duty", "service_order", "micro_wish", "clean_up"} <= codes
    assert all(t["name_zh"] for t in items)


def test_organisation_tree_street_to_building(api):
    items = api.get("/api/v1/organisations", params={"within": STREET}).json()["items"]
    by_id = {o["id"]: o for o in items}
    building = by_id[f"{STREET}-001-01-B1"]
    grid = by_id[building["parent_id"]]
    community = by_id[grid["parent_id"]]
    street = by_id[community["parent_id"]]
    assert [o["classification"] for o in (street, community, grid, building)] == [
        "street_working_committee",
        "community_party_committee",
        "grid_party_branch",
        "building_party_group",
    ]
    assert street["parent_id"] is None


def test_docs_and_portal_are_served(api):
    assert api.get("/openapi.json").json()["info"]["title"] == "GridLink API"
    assert api.get("/docs").status_code == 200
    portal = api.get("/portal/")
    assert portal.status_code == 200 and "积分" in portal.text


def test_a_scoped_key_records_only_acts_its_subtree_verifies(stack, api, cadre, databases):
    from tests.e2e.test_points import staff

    local = staff(stack, scope=COMMUNITY)
    elsewhere = an_act(cadre, community_id=f"{STREET}-002")
    refused = local.record_act(elsewhere)
    assert refused.status_code == 403 and f"{STREET}-002" in refused.json()["error"]["message"]
    items = [{**an_act(cadre), "idempotency_key": new_id()}, {**elsewhere, "idempotency_key": new_id()}]
    batch = {"items": items}
    assert local.post("/api/v1/volunteer-acts:batch", json=batch).status_code == 403
    # A community the registry does not know lies in no scope either (not a 404 for a write).
    unknown = local.record_act(an_act(cadre, community_id=f"{STREET}-999"))
    assert unknown.status_code == 403 and f"{STREET}-999" in unknown.json()["error"]["message"]
    assert databases["issue_intake"].volunteer_acts.count_documents({"person_id": cadre}) == 0
    assert local.record_act(an_act(cadre)).status_code == 202


def test_an_expired_key_is_refused_like_an_unknown_one(stack, api):
    from datetime import timedelta

    from gateway.keys import api_keys
    from shared.settings import local_today

    expired = api_keys().create(new_id("expired"), expires=local_today() - timedelta(days=1))
    refused = Api(api.base_url, expired).get("/api/v1/people")
    assert refused.status_code == 401 and "expired" in refused.json()["error"]["message"]
    current = api_keys().create(new_id("current"), expires=local_today())
    assert Api(api.base_url, current).get("/api/v1/people").status_code == 200
