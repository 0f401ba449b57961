"""The points bank over HTTP: rules with caps and approvals, staff actions with roles in the
right part of the tree, awards, inspections, reversals and redemptions."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from deploy.local.demo_data import STREET
from gateway import responses as r
from tests.conftest import COMMUNITY, Api, new_id, registered
from tests.support import eventually

pytestmark = pytest.mark.e2e
OTHER_COMMUNITY = f"{STREET}-002"
GRID = f"{COMMUNITY}-01"  # in the demo data: building 1 of compound P01 is in grid 01


def staff(stack, *roles: str, scope: str | None = None) -> Api:
    from gateway.keys import api_keys

    return Api(stack.base_url, api_keys().create(new_id("staff"), roles=list(roles), scope=scope, rate=0))


def keyed(api: Api, path: str, body: dict, key: str | None = None):
    return api.post(path, json=body, headers={"Idempotency-Key": key or new_id("key")})


def balance(api: Api, person_id: str) -> int:
    return api.get(f"/api/v1/points/accounts/{person_id}").json()["balance"]


def act(api: Api, person_id: str, act_type: str, hours: str, occurred_on: str = "2026-11-02"):
    body = {
        "person_id": person_id,
        "act_type": act_type,
        "hours": hours,
        "occurred_on": occurred_on,
        "community_id": COMMUNITY,
    }
    assert api.record_act(body).status_code == 202


def add_rule(api: Api, **fields) -> dict:
    rule = {"rule_id": new_id("rule"), "community_id": COMMUNITY, "valid_from": "2026-11-01", **fields}
    response = api.post("/api/v1/points/rules", json=rule)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_daily_cap_credits_what_fits_and_shows_what_it_held_back(api, resident):
    add_rule(api, act_type="mediation", points_per_hour="10", daily_cap=25)
    act(api, resident, "mediation", "2")
    eventually(lambda: balance(api, resident) == 20)
    act(api, resident, "mediation", "2")
    eventually(lambda: balance(api, resident) == 25)
    act(api, resident, "mediation", "1", occurred_on="2026-11-03")  # a new day
    eventually(lambda: balance(api, resident) == 35)
    entries = r.Account.model_validate(api.get(f"/api/v1/points/accounts/{resident}").json()).entries
    capped = [e for e in entries if e.capped]
    assert [(e.points, e.capped) for e in capped] == [(5, {"requested": 20, "granted": 5, "cap": "daily 25"})]
    assert {e.counterparty.split(":")[0] for e in entries} == {"pool"}  # double entry: from the pool


def test_long_acts_wait_for_an_approver_whose_first_decision_stands(api, stack, resident):
    add_rule(api, act_type="elder_care", points_per_hour="10", approval_above_hours="4")
    act(api, resident, "elder_care", "6")
    act(api, resident, "elder_care", "3")  # under the threshold: credited at once
    eventually(lambda: balance(api, resident) == 30)
    pending = eventually(
        lambda: [
            p
            for p in api.get("/api/v1/points/approvals", params={"community_id": COMMUNITY}).json()["items"]
            if p["person_id"] == resident
        ]
    )
    [waiting] = pending
    assert (waiting["hours"], balance(api, resident)) == ("6", 30)
    reader = staff(stack)
    refused = reader.post(f"/api/v1/points/approvals/{waiting['act_id']}:decide", json={"approve": True})
    assert refused.status_code == 403
    decided = api.post(f"/api/v1/points/approvals/{waiting['act_id']}:decide", json={"approve": True})
    assert decided.status_code == 200 and decided.json()["approved"] is True
    assert decided.json()["approver"] == "tests"  # from the key, not from the body
    assert balance(api, resident) == 90
    again = api.post(f"/api/v1/points/approvals/{waiting['act_id']}:decide", json={"approve": False})
    assert again.status_code == 409
    assert balance(api, resident) == 90


def test_staff_act_only_with_their_role_and_within_their_scope(stack, api, resident):
    award = {"person_id": resident, "community_id": COMMUNITY, "points": 15, "reason": "社区活动组织"}
    assert keyed(staff(stack, "inspector"), "/api/v1/points/awards", award).status_code == 403
    elsewhere = staff(stack, "awarder", scope=OTHER_COMMUNITY)
    denied = keyed(elsewhere, "/api/v1/points/awards", award)
    assert denied.status_code == 403 and OTHER_COMMUNITY in denied.json()["error"]["message"]
    street_staff = staff(stack, "awarder", scope=STREET)
    first = keyed(street_staff, "/api/v1/points/awards", award, key="award-once")
    assert first.status_code == 201 and first.json()["replayed"] is False
    replay = keyed(street_staff, "/api/v1/points/awards", award, key="award-once")
    assert replay.json()["replayed"] is True
    assert balance(api, resident) == 15
    bad = keyed(street_staff, "/api/v1/points/awards", {**award, "points": 0})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "points"


def test_awards_inspections_and_orders_name_a_registered_person_within_the_scope(
    stack, api, rpc, databases, resident
):
    award = {"person_id": resident, "community_id": COMMUNITY, "points": 5, "reason": "表彰"}
    # A pool's account is no person: a pool may go negative, so it must never be named.
    pool = keyed(api, "/api/v1/points/awards", {**award, "person_id": f"pool:{COMMUNITY}:0"})
    assert pool.status_code == 422 and pool.json()["error"]["fields"][0]["field"] == "person_id"
    assert keyed(api, "/api/v1/points/awards", {**award, "person_id": new_id("nobody")}).status_code == 404

    elsewhere = registered(
        rpc, databases, {"person_id": new_id("res"), "name": "外社区居民", "community_id": OTHER_COMMUNITY}
    )
    local = staff(stack, "awarder", "inspector", "redemption_clerk", scope=COMMUNITY)
    assert keyed(local, "/api/v1/points/awards", {**award, "person_id": elsewhere}).status_code == 404
    check = {
        "person_id": elsewhere,
        "community_id": COMMUNITY,
        "inspected_on": "2026-11-10",
        "passed": True,
        "points": 5,
        "inspector": "网格员张",
    }
    assert keyed(local, "/api/v1/points/inspections", check).status_code == 404
    assert balance(api, elsewhere) == 0
    assert keyed(local, "/api/v1/points/awards", award).status_code == 201
    assert balance(api, resident) == 5


def test_inspections_and_reversals_are_on_the_record(api, databases, resident):
    check = {
        "person_id": resident,
        "community_id": COMMUNITY,
        "inspected_on": "2026-11-10",
        "passed": False,
        "points": 5,
        "inspector": "网格员张",
    }
    failed = keyed(api, "/api/v1/points/inspections", check)
    assert failed.status_code == 201 and failed.json()["points"] == 0
    passed = keyed(api, "/api/v1/points/inspections", {**check, "passed": True, "inspected_on": "2026-11-17"})
    assert passed.json()["points"] == 5 and balance(api, resident) == 5
    transfer_id = passed.json()["transfer_id"]
    # Signed by the key's member who records it; who did the check is kept with the entry.
    assert passed.json()["actor"] == "tests"
    leg = databases["points_bank"].ledger_entries.find_one({"transfer_id": transfer_id, "key": resident})
    assert (leg["actor"], leg["inspector"]) == ("tests", "网格员张")
    reversed_ = api.post(f"/api/v1/points/transfers/{transfer_id}:reverse", json={"reason": "检查记录有误"})
    assert reversed_.status_code == 200 and reversed_.json()["reverses"] == transfer_id
    assert balance(api, resident) == 0
    entries = api.get(f"/api/v1/points/accounts/{resident}").json()["entries"]
    assert [(e["kind"], e["points"]) for e in entries][:2] == [("reversal", -5), ("inspection", 5)]
    assert api.post(f"/api/v1/points/transfers/{transfer_id}:reverse", json={"reason": "再次"}).json()[
        "replayed"
    ]
    legs = list(
        databases["points_bank"].ledger_entries.find(
            {"transfer_id": {"$in": [transfer_id, f"reversal:{transfer_id}"]}}
        )
    )
    assert len(legs) == 4 and sum(e["points"] for e in legs) == 0


def test_a_redemption_over_http(api, resident):
    award = {"person_id": resident, "community_id": COMMUNITY, "points": 100, "reason": "测试"}
    keyed(api, "/api/v1/points/awards", award)
    item_id = new_id("item")
    item = {
        "item_id": item_id,
        "community_id": COMMUNITY,
        "name": "家政服务1小时",
        "kind": "service",
        "price": 60,
        "available_from": "2026-01-01",
    }
    assert api.post("/api/v1/points/catalogue", json=item).status_code == 201
    assert keyed(api, f"/api/v1/points/catalogue/{item_id}:restock", {"quantity": 3}).json()["stock"] == 3
    placed = keyed(api, "/api/v1/points/orders", {"person_id": resident, "item_id": item_id})
    assert placed.status_code == 201 and r.Order.model_validate(placed.json()).status == "reserved"
    second = keyed(api, "/api/v1/points/orders", {"person_id": resident, "item_id": item_id})
    assert second.status_code == 409 and second.json()["error"]["code"] == "insufficient_points"
    assert second.json()["error"]["fields"] == []  # no input field is at fault
    # An order's reservation is not reversed (with a cancellation after it, it would refund twice).
    reversal = api.post(
        f"/api/v1/points/transfers/order:{placed.json()['order_id']}:reverse", json={"reason": "退回"}
    )
    assert reversal.status_code == 409 and reversal.json()["error"]["code"] == "not_reversible"
    assert balance(api, resident) == 40
    done = api.post(f"/api/v1/points/orders/{placed.json()['order_id']}:fulfil", json={})
    assert done.json()["status"] == "fulfilled" and done.json()["outcome"]["actor"] == "tests"
    catalogue = api.get("/api/v1/points/catalogue", params={"community_id": COMMUNITY}).json()["items"]
    assert [i["stock"] for i in catalogue if i["item_id"] == item_id] == [2]
    assert balance(api, resident) == 40


def test_a_revoked_act_gives_its_points_back_pointing_at_the_credit(api, stack, resident):
    response = api.record_act(
        {
            "person_id": resident,
            "act_type": "clean_up",
            "hours": "2",
            "occurred_on": "2026-11-05",
            "community_id": COMMUNITY,
        }
    )
    act_id = response.json()["act_id"]
    eventually(lambda: balance(api, resident) == 20)
    assert (
        staff(stack).post(f"/api/v1/volunteer-acts/{act_id}:revoke", json={"reason": "重复登记"}).status_code
        == 403
    )
    revoked = api.post(f"/api/v1/volunteer-acts/{act_id}:revoke", json={"reason": "重复登记"})
    assert revoked.status_code == 200 and revoked.json()["revoked"] == {"reason": "重复登记", "by": "tests"}
    eventually(lambda: balance(api, resident) == 0)
    again = api.post(f"/api/v1/volunteer-acts/{act_id}:revoke", json={"reason": "重复登记"})
    assert again.status_code == 200
    entries = api.get(f"/api/v1/points/accounts/{resident}").json()["entries"]
    reversal, credit = entries[0], entries[1]
    assert (reversal["kind"], reversal["points"], reversal["reverses"]) == (
        "reversal",
        -20,
        credit["transfer_id"],
    )
    assert balance(api, resident) == 0


def test_a_revoked_act_gives_back_what_it_used_of_the_daily_cap(api, databases, resident):
    """An act recorded in error and revoked no longer holds the day's cap: the act recorded
    instead earns in full."""
    add_rule(api, act_type="epidemic_duty", points_per_hour="10", daily_cap=25)
    wrong = api.record_act(
        {
            "person_id": resident,
            "act_type": "epidemic_duty",
            "hours": "2",
            "occurred_on": "2026-11-04",
            "community_id": COMMUNITY,
        }
    ).json()["act_id"]
    eventually(lambda: balance(api, resident) == 20)
    assert api.post(f"/api/v1/volunteer-acts/{wrong}:revoke", json={"reason": "登记错误"}).status_code == 200
    eventually(lambda: balance(api, resident) == 0)
    # The cap is given back just after the points.
    released = {"key": {"$regex": f"^cap:{resident}:"}, "kind": "cap_released"}
    eventually(lambda: databases["points_bank"].counter_entries.find_one(released))
    act(api, resident, "epidemic_duty", "2", occurred_on="2026-11-04")  # the right one, same day
    eventually(lambda: balance(api, resident) == 20)
    [credit] = [e for e in api.get(f"/api/v1/points/accounts/{resident}").json()["entries"] if e["seq"] == 3]
    assert (credit["kind"], credit["points"], credit.get("capped")) == ("volunteer_act", 20, None)


def test_the_month_is_published_ranked_and_as_an_excel_list(api, rpc, databases, resident, settings):
    in_grid = {"name": "网格居民", "community_id": COMMUNITY, "household_id": f"{COMMUNITY}-P01-1-1-101"}
    neighbour = registered(rpc, databases, {"person_id": new_id("res"), **in_grid})
    eventually(lambda: databases["points_bank"].people.find_one({"_id": neighbour, "grid_id": GRID}))
    act(api, neighbour, "patrol_duty", "2")
    for hours in ("3", "1.5"):
        act(api, resident, "patrol_duty", hours, occurred_on="2026-11-06")
    eventually(lambda: balance(api, resident) == 45 and balance(api, neighbour) == 20)
    # The leaderboard and the disclosure count what was credited in a month, whenever the acts
    # were done: the month of these credits is the one they were applied in, wherever `now` is.
    [credited_in] = {
        datetime.fromisoformat(e["applied_at"])
        .astimezone(ZoneInfo(settings.local_timezone))
        .strftime("%Y-%m")
        for e in api.get(f"/api/v1/points/accounts/{resident}").json()["entries"]
    }
    board = api.get(
        "/api/v1/points/leaderboards", params={"scope": COMMUNITY, "month": credited_in, "limit": 200}
    )
    assert board.status_code == 200, board.text
    mine = [row for row in board.json()["items"] if row["person_id"] == resident]
    assert [(row["points"], row["acts"]) for row in mine] == [(45, 2)]
    street = api.get(
        "/api/v1/points/leaderboards", params={"scope": STREET, "month": credited_in, "limit": 200}
    )
    assert resident in {row["person_id"] for row in street.json()["items"]}
    grid = api.get("/api/v1/points/leaderboards", params={"scope": GRID, "month": credited_in, "limit": 200})
    ranked = {row["person_id"]: (row["points"], row["grid_id"]) for row in grid.json()["items"]}
    assert ranked[neighbour] == (20, GRID)
    assert resident not in ranked  # lives in no grid
    bad = api.get("/api/v1/points/leaderboards", params={"scope": COMMUNITY, "month": "2026-13"})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "month"
    disclosure = f"/api/v1/points/disclosures/{COMMUNITY}"
    listed = api.get(disclosure, params={"month": credited_in}).json()
    assert any(row["name"] == "测***" and (row["points"], row["acts"]) == (45, 2) for row in listed["items"])
    excel = api.get(disclosure, params={"month": credited_in, "format": "xlsx"})
    from io import BytesIO

    from openpyxl import load_workbook

    rows = list(load_workbook(BytesIO(excel.content)).active.iter_rows(values_only=True))
    assert "志愿服务情况公示" in rows[0][0] and rows[1][:2] == ("序号", "姓名")


def test_a_volunteer_team_has_an_account_paid_from_the_community_pool(api):
    team = f"team:{new_id('zg-volunteers')}"
    before = api.get(f"/api/v1/points/communities/{COMMUNITY}/accounts").json()
    award = {"person_id": team, "community_id": COMMUNITY, "points": 120, "reason": "志愿服务队月度奖励"}
    assert keyed(api, "/api/v1/points/awards", award).status_code == 201
    assert api.get(f"/api/v1/points/accounts/{team}").json()["balance"] == 120
    after = api.get(f"/api/v1/points/communities/{COMMUNITY}/accounts").json()
    # Other tests move points in this community at the same time; this award moved 120 at least.
    assert after["pool"] <= before["pool"] - 120
