"""Account administrators at work through the running gateway: they create, change, reset and
disable staff accounts within their own scope, and never grant more than they hold."""

from __future__ import annotations

import pytest

from tests.conftest import COMMUNITY, Api, new_id
from tests.e2e.test_audit import audited
from tests.e2e.test_staff_sign_in import PASSWORD, Portal, sign_in

pytestmark = pytest.mark.e2e

OTHER_COMMUNITY = "420391-001-002"  # 光明社区 in the demo data


@pytest.fixture
def admin(stack) -> Api:
    """中观社区's account administrator, who also inspects (门前三包)."""
    from gateway.keys import api_keys

    key = api_keys().create(new_id("admin"), roles=["account_admin", "inspector"], scope=COMMUNITY, rate=0)
    return Api(stack.base_url, key)


def new_member(**fields) -> dict:
    return {"username": new_id("m").lower(), "name": "网格员", "password": PASSWORD, **fields}


def test_an_administrator_creates_an_account_that_must_choose_its_password(stack, admin):
    body = new_member(roles=["inspector"], scope=COMMUNITY)
    created = admin.post("/api/v1/staff-accounts", json=body)
    assert created.status_code == 201, created.text
    account = created.json()
    assert account["username"] == body["username"] and account["roles"] == ["inspector"]
    assert account["scope"] == COMMUNITY and account["must_change_password"] is True
    assert "password" not in created.text.replace("must_change_password", "").replace(
        "password_changed_at", ""
    )
    [record] = audited(stack, created)
    assert record["action"] == "POST /api/v1/staff-accounts" and PASSWORD not in str(record)
    portal = Portal(stack, sign_in(stack, body["username"]))
    assert portal.get("/auth/session").json()["password_change_required"] is True

    taken = admin.post("/api/v1/staff-accounts", json=body)
    assert taken.status_code == 409 and taken.json()["error"]["fields"][0]["field"] == "username"
    weak = admin.post("/api/v1/staff-accounts", json=new_member(password="short", scope=COMMUNITY))
    assert weak.status_code == 422 and weak.json()["error"]["fields"][0]["field"] == "password"


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"roles": ["awarder"], "scope": COMMUNITY}, "lacks ['awarder']"),  # a role it does not hold
        ({"scope": OTHER_COMMUNITY}, OTHER_COMMUNITY),  # outside its subtree
        ({}, "without scope"),  # everywhere: only an administrator without scope gives that
    ],
)
def test_an_administrator_grants_no_more_than_it_holds(admin, fields, why):
    from gateway.staff import staff_accounts

    body = new_member(**fields)
    refused = admin.post("/api/v1/staff-accounts", json=body)
    assert refused.status_code == 403 and why in refused.json()["error"]["message"]
    assert staff_accounts().account(body["username"]) is None


def test_an_administrator_sees_and_changes_only_accounts_within_its_scope(stack, api, admin):
    from gateway.staff import staff_accounts

    ours = staff_accounts().create(new_id("ours").lower(), "本社区", PASSWORD, scope=COMMUNITY)
    theirs = staff_accounts().create(new_id("theirs").lower(), "外社区", PASSWORD, scope=OTHER_COMMUNITY)
    listed = {a["username"] for a in admin.get("/api/v1/staff-accounts").json()["items"]}
    assert ours in listed and theirs not in listed
    everyone = {a["username"] for a in api.get("/api/v1/staff-accounts").json()["items"]}
    assert {ours, theirs} <= everyone  # the tests' key has no scope

    outside = admin.post(f"/api/v1/staff-accounts/{theirs}:disable")
    assert outside.status_code == 404 and staff_accounts().account(theirs)["disabled"] is False
    assert audited(stack, outside)[0]["status"] == 404  # a refused access, audited

    changed = admin.post(
        f"/api/v1/staff-accounts/{ours}:update", json={"roles": ["inspector"], "name": "巡查员"}
    )
    assert changed.status_code == 200 and changed.json()["roles"] == ["inspector"]
    assert changed.json()["name"] == "巡查员"
    escalating = admin.post(f"/api/v1/staff-accounts/{ours}:update", json={"roles": ["approver"]})
    assert escalating.status_code == 403 and staff_accounts().account(ours)["roles"] == ["inspector"]
    widening = admin.post(f"/api/v1/staff-accounts/{ours}:update", json={"scope": None})
    assert widening.status_code == 403 and staff_accounts().account(ours)["scope"] == COMMUNITY
    emptied = admin.post(f"/api/v1/staff-accounts/{ours}:update", json={"roles": None})
    assert emptied.status_code == 422 and emptied.json()["error"]["fields"][0]["field"] == "roles"


def test_disabling_and_resetting_end_the_members_sessions(stack, admin):
    from gateway.staff import staff_accounts

    username = staff_accounts().create(
        new_id("m").lower(), "楼栋长", PASSWORD, scope=COMMUNITY, must_change_password=False
    )
    portal = Portal(stack, sign_in(stack, username))
    assert portal.get("/api/v1/people").status_code == 200

    disabled = admin.post(f"/api/v1/staff-accounts/{username}:disable")
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert portal.get("/api/v1/people").status_code == 401
    assert admin.post(f"/api/v1/staff-accounts/{username}:enable").json()["disabled"] is False

    reset = admin.post(
        f"/api/v1/staff-accounts/{username}:reset-password", json={"password": "临时口令-2026-reset"}
    )
    assert reset.status_code == 200 and reset.json()["must_change_password"] is True
    assert sign_in(stack, username).status_code == 401  # the old password no longer works
    again = Portal(stack, sign_in(stack, username, "临时口令-2026-reset"))
    assert again.get("/api/v1/people").json()["error"]["code"] == "password_change_required"


def test_without_the_role_staff_accounts_are_out_of_reach(stack):
    from gateway.keys import api_keys

    reader = Api(stack.base_url, api_keys().create(new_id("reader"), roles=["inspector"], rate=0))
    assert reader.get("/api/v1/staff-accounts").status_code == 403
    assert reader.post("/api/v1/staff-accounts", json=new_member()).status_code == 403
    # The same answer for a username that exists and one that does not: nothing is learnt.
    assert reader.post("/api/v1/staff-accounts/demo:disable").status_code == 403
    assert reader.post(f"/api/v1/staff-accounts/{new_id('nobody')}:disable").status_code == 403


def test_an_administrator_cannot_manage_an_account_holding_a_role_it_lacks(admin):
    """Resetting an approver's password would let an administrator sign in as an approver."""
    from gateway.staff import staff_accounts

    approver = staff_accounts().create(
        new_id("approver").lower(), "审批人", PASSWORD, roles=["approver"], scope=COMMUNITY
    )
    before = staff_accounts().account(approver)
    for action, body in (
        ("reset-password", {"password": "另一个临时口令-2026"}),
        ("update", {"name": "改名"}),
        ("disable", {}),
    ):
        refused = admin.post(f"/api/v1/staff-accounts/{approver}:{action}", json=body)
        assert refused.status_code == 403 and "lacks ['approver']" in refused.json()["error"]["message"]
    assert staff_accounts().account(approver) == before


def test_staff_account_bodies_refuse_unknown_fields_by_name(admin):
    from gateway.staff import staff_accounts

    body = new_member(scope=COMMUNITY, disabled=True)
    refused = admin.post("/api/v1/staff-accounts", json=body)
    assert refused.status_code == 422 and refused.json()["error"]["fields"][0]["field"] == "disabled"
    assert staff_accounts().account(body["username"]) is None


def test_an_account_whose_scope_the_registry_does_not_know_leaves_the_list_working(admin):
    from gateway.staff import staff_accounts

    lost = staff_accounts().create(new_id("lost").lower(), "旧网格", PASSWORD, scope="420391-001-999")
    listed = admin.get("/api/v1/staff-accounts")
    assert listed.status_code == 200
    assert lost not in {a["username"] for a in listed.json()["items"]}
