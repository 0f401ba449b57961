"""Staff sign in to the portal through the running gateway: the cookie, CSRF on writes, one answer
for every refused sign-in, lockout, sign-out and password change, each audited."""

from __future__ import annotations

import pytest
import requests

from shared.settings import get_settings
from tests.conftest import COMMUNITY, new_id
from tests.e2e.test_audit import audited
from tests.e2e.test_volunteer_act_flow import an_act

pytestmark = pytest.mark.e2e

PASSWORD = "网格员-2026-patrol-duty"


def new_account(roles: list[str] | None = None) -> str:
    from gateway.staff import staff_accounts

    return staff_accounts().create(
        new_id("staff").lower(), "测试员", PASSWORD, roles=roles or [], must_change_password=False
    )


def sign_in(stack, username: str, password: str = PASSWORD) -> requests.Response:
    body = {"username": username, "password": password}
    return requests.post(f"{stack.base_url}/auth/sign-in", json=body, timeout=15)


class Portal:
    """The gateway as the portal's page sees it: a session cookie, and the CSRF token on writes.
    (The cookie is Secure, which `requests` keeps from plain HTTP, so it is sent by hand.)"""

    def __init__(self, stack, signed_in: requests.Response) -> None:
        assert signed_in.status_code == 200, signed_in.text
        self.base_url = stack.base_url
        self.cookie = signed_in.headers["Set-Cookie"].split(";")[0]
        self.csrf_token = signed_in.json()["csrf_token"]

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base_url + path, headers={"Cookie": self.cookie}, timeout=15)

    def post(self, path: str, csrf: bool = True, headers: dict | None = None, **kwargs) -> requests.Response:
        headers = {"Cookie": self.cookie, **(headers or {})}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf_token
        return requests.post(self.base_url + path, headers=headers, timeout=30, **kwargs)


def test_a_session_is_a_hardened_cookie_that_works_as_the_accounts_key(stack, cadre):
    username = new_account()
    signed_in = sign_in(stack, username.upper())
    cookie = signed_in.headers["Set-Cookie"]
    assert cookie.startswith("__Host-gridlink_session=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite", "path"} <= attributes and "domain" not in attributes
    assert "SameSite=Strict" in cookie and "Path=/" in cookie
    member = signed_in.json()
    assert member["username"] == username and member["display_name"] == "测试员" and member["roles"] == []
    assert signed_in.headers["Cache-Control"] == "no-store"
    portal = Portal(stack, signed_in)
    assert portal.get("/auth/session").json()["csrf_token"] == portal.csrf_token
    assert portal.get("/api/v1/people").status_code == 200

    act, idempotency = an_act(cadre), {"Idempotency-Key": new_id("idem")}
    forged = portal.post("/api/v1/volunteer-acts", csrf=False, json=act, headers=idempotency)
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf_token_invalid"
    [record] = audited(stack, forged)
    assert record["status"] == 403 and record["client_id"] == f"staff_{username}"
    recorded = portal.post("/api/v1/volunteer-acts", json=act, headers=idempotency)
    assert recorded.status_code == 202 and recorded.json()["replayed"] is False  # the 403 stored nothing
    [record] = audited(stack, recorded)
    assert record["actor"] == f"测试员 ({username})" and record["client_id"] == f"staff_{username}"

    award = {"person_id": cadre, "community_id": COMMUNITY, "points": 5, "reason": "社区活动组织"}
    no_role = portal.post("/api/v1/points/awards", json=award, headers={"Idempotency-Key": new_id()})
    assert no_role.status_code == 403 and "awarder" in no_role.json()["error"]["message"]


def test_an_unknown_username_and_a_wrong_password_get_the_same_answer(stack):
    username = new_account()
    unknown, wrong = sign_in(stack, new_id("nobody")), sign_in(stack, username, "wrong-password-2026")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["error"] == wrong.json()["error"]
    assert "Set-Cookie" not in unknown.headers and "Set-Cookie" not in wrong.headers
    [record] = audited(stack, wrong)
    assert record["actor"] == username and record["action"] == "POST /auth/sign-in"
    assert record["error"] == "sign_in_refused" and "wrong-password-2026" not in str(record)


def test_failures_in_a_row_lock_the_username(stack):
    username = new_account()
    failures = get_settings().login_max_failures
    assert [sign_in(stack, username, f"wrong-password-{n}").status_code for n in range(failures)] == [
        401
    ] * failures
    locked = sign_in(stack, username)
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "sign_in_locked"
    assert 840 < int(locked.headers["Retry-After"]) <= 900
    assert "Set-Cookie" not in locked.headers


def test_signing_out_ends_the_session(stack):
    portal = Portal(stack, sign_in(stack, new_account()))
    assert portal.post("/auth/sign-out", csrf=False).status_code == 403  # another site cannot sign you out
    signed_out = portal.post("/auth/sign-out")
    assert signed_out.status_code == 204
    assert "__Host-gridlink_session=;" in signed_out.headers["Set-Cookie"]
    assert portal.get("/auth/session").status_code == 401
    refused = portal.get("/api/v1/people")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"


def test_a_password_change_ends_the_other_sessions(stack):
    username = new_account()
    here, elsewhere = Portal(stack, sign_in(stack, username)), Portal(stack, sign_in(stack, username))
    new_password = "新的口令-2027-clean-up"

    def change(current: str, new: str) -> requests.Response:
        return here.post("/auth/password", json={"current_password": current, "new_password": new})

    wrong = change("wrong-password-2026", new_password)
    assert wrong.status_code == 422 and wrong.json()["error"]["fields"][0]["field"] == "current_password"
    weak = change(PASSWORD, "short")
    assert weak.status_code == 422 and weak.json()["error"]["fields"][0]["field"] == "new_password"
    assert here.post("/auth/password", csrf=False, json={}).status_code == 403
    assert change(PASSWORD, new_password).status_code == 204
    assert here.get("/api/v1/people").status_code == 200
    assert elsewhere.get("/api/v1/people").status_code == 401
    assert sign_in(stack, username, new_password).status_code == 200


def test_with_an_administrators_password_the_session_can_only_change_it(stack):
    from gateway.staff import staff_accounts

    username = staff_accounts().create(new_id("staff").lower(), "新同事", PASSWORD)
    portal = Portal(stack, sign_in(stack, username))
    assert portal.get("/auth/session").json()["password_change_required"] is True
    refused = portal.get("/api/v1/people")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "password_change_required"
    [record] = audited(stack, refused)
    assert record["client_id"] == f"staff_{username}" and record["error"] == "password_change_required"
    changed = portal.post(
        "/auth/password", json={"current_password": PASSWORD, "new_password": "自己的-2026-clean-up"}
    )
    assert changed.status_code == 204
    assert portal.get("/api/v1/people").status_code == 200
