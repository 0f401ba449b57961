"""Staff accounts on the real database: argon2id hashes, one answer for every refused sign-in,
lockout, session ends, and the per-address limit on sign-in attempts."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from gateway import staff as staff_module
from gateway.app import create_app
from gateway.keys import ROLES, ApiKeys
from gateway.staff import (
    SignInBusy,
    SignInLocked,
    SignInRefused,
    StaffAccounts,
    StaffInputRejected,
    session_digest,
)
from shared.audit import records
from shared.settings import Settings, get_settings, local_today

pytestmark = pytest.mark.integration

PASSWORD = "红色物业-2026-lanterns"


@pytest.fixture
def staff(scratch, tmp_path) -> StaffAccounts:
    settings = Settings(GRIDLINK_LOGIN_MAX_FAILURES=3, GRIDLINK_LOGIN_LOCKOUT_MINUTES=15)
    accounts = StaffAccounts(scratch, settings)
    accounts.create("Wang.Li", "王丽", PASSWORD, roles=["registrar"], scope="420391-001-001")
    return accounts


def test_the_password_is_kept_only_as_an_argon2id_hash(staff, scratch):
    [stored] = scratch["staff_accounts"].find()
    assert stored["_id"] == "wang.li"  # usernames are case-insensitive
    assert stored["password_hash"].startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in str(stored)
    [listed] = staff.records()
    assert listed["username"] == "wang.li" and "password_hash" not in listed


@pytest.mark.parametrize(
    ("username", "password", "field"),
    [
        ("ab", PASSWORD, "username"),
        ("wang li", PASSWORD, "username"),
        ("zhao", "short-pw", "password"),
        ("zhao", "aaaaaaaaaaaaaaa", "password"),
        ("zhao", "zhao-2026-lanterns", "password"),
        ("WANG.LI", PASSWORD, "username"),  # taken
    ],
)
def test_the_policy_refuses_naming_the_field_and_stores_nothing(staff, scratch, username, password, field):
    with pytest.raises(StaffInputRejected) as refused:
        staff.create(username, "赵", password)
    assert refused.value.field == field
    assert scratch["staff_accounts"].count_documents({}) == 1


def test_a_session_is_stored_by_its_hash_and_carries_roles_scope_and_a_csrf_token(staff, scratch):
    session = staff.sign_in(" WANG.LI ", PASSWORD)
    [stored] = scratch["staff_sessions"].find()
    assert stored["_id"] == session_digest(session.token) and session.token not in str(stored)
    caller = staff.session(session.token)
    assert caller["name"] == "王丽 (wang.li)" and caller["client_id"] == "staff_wang.li"
    assert caller["roles"] == ["registrar"] and caller["scope"] == "420391-001-001"
    assert caller["csrf_token"] == stored["csrf_token"] and len(caller["csrf_token"]) >= 40
    assert staff.session("not-a-token") is None


def test_an_unknown_username_costs_the_same_argon2_work_and_gets_the_same_refusal(staff, monkeypatch):
    verified, hashed = [], []

    class CountingHasher(PasswordHasher):
        def verify(self, stored, password):
            verified.append(stored)
            return super().verify(stored, password)

        def hash(self, password, **kwargs):
            hashed.append(password)
            return super().hash(password, **kwargs)

    monkeypatch.setattr(staff_module, "hasher", CountingHasher())
    for username, password in (("nobody.here", PASSWORD), ("wang.li", "wrong-password-1")):
        with pytest.raises(SignInRefused):
            staff.sign_in(username, password)
    # One check each, the first sign-in of an unknown username included (no stand-in made then).
    assert (len(verified), hashed) == (2, [])


def test_failures_in_a_row_lock_a_username_known_or_not(staff, scratch):
    for attempt in range(3):
        with pytest.raises(SignInRefused):
            staff.sign_in("wang.li", f"wrong-password-{attempt}")
    with pytest.raises(SignInLocked) as locked:
        staff.sign_in("wang.li", PASSWORD)  # even the right password, while locked
    assert timedelta(minutes=14) < locked.value.retry_after <= timedelta(minutes=15)
    for attempt in range(3):
        with pytest.raises(SignInRefused):
            staff.sign_in("ghost", f"wrong-password-{attempt}")
    with pytest.raises(SignInLocked):
        staff.sign_in("ghost", PASSWORD)
    # Once the lock has passed, the right password works and the count starts again.
    scratch["staff_sign_in_failures"].update_one(
        {"_id": "wang.li"}, {"$set": {"locked_until": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    assert staff.sign_in("wang.li", PASSWORD).principal["username"] == "wang.li"
    assert scratch["staff_sign_in_failures"].find_one({"_id": "wang.li"}) is None


def test_a_success_between_failures_starts_the_count_again(staff):
    for attempt in range(2):
        with pytest.raises(SignInRefused):
            staff.sign_in("wang.li", f"wrong-password-{attempt}")
    staff.sign_in("wang.li", PASSWORD)
    for attempt in range(2):
        with pytest.raises(SignInRefused):
            staff.sign_in("wang.li", f"wrong-password-{attempt}")
    assert staff.sign_in("wang.li", PASSWORD)


def test_failures_far_apart_do_not_add_up_and_stale_counts_are_dropped(staff, scratch):
    for attempt in range(2):
        with pytest.raises(SignInRefused):
            staff.sign_in("wang.li", f"wrong-password-{attempt}")
    with pytest.raises(SignInRefused):
        staff.sign_in("made.up", "wrong-password")
    counts = scratch["staff_sign_in_failures"]
    counts.update_many({}, {"$set": {"last_failed_at": datetime.now(UTC) - timedelta(days=2)}})
    with pytest.raises(SignInRefused):  # the third failure, but two days after the second
        staff.sign_in("wang.li", "wrong-password-2")
    assert counts.find_one({"_id": "wang.li"})["failures"] == 1
    staff.sign_in("wang.li", PASSWORD)
    assert counts.count_documents({}) == 0  # made.up's count, a day old, went too


def test_a_session_ends_when_idle_too_long_or_too_old(staff, scratch):
    idle, old = staff.sign_in("wang.li", PASSWORD), staff.sign_in("wang.li", PASSWORD)
    long_ago = datetime.now(UTC) - timedelta(minutes=61)
    scratch["staff_sessions"].update_one(
        {"_id": session_digest(idle.token)}, {"$set": {"last_used_at": long_ago}}
    )
    scratch["staff_sessions"].update_one(
        {"_id": session_digest(old.token)}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    assert staff.session(idle.token) is None and staff.session(old.token) is None


def test_use_keeps_a_session_alive(staff, scratch):
    session = staff.sign_in("wang.li", PASSWORD)
    a_while_ago = datetime.now(UTC) - timedelta(minutes=50)
    scratch["staff_sessions"].update_one(
        {"_id": session_digest(session.token)}, {"$set": {"last_used_at": a_while_ago}}
    )
    assert staff.session(session.token) is not None
    touched = scratch["staff_sessions"].find_one({"_id": session_digest(session.token)})["last_used_at"]
    assert touched > datetime.now(UTC) - timedelta(minutes=1)


def test_a_new_password_or_disabling_ends_the_sessions(staff):
    first, second = staff.sign_in("wang.li", PASSWORD), staff.sign_in("wang.li", PASSWORD)
    staff.change_password(first.token, PASSWORD, "另一个口令-2027-lanterns")
    assert staff.session(first.token) is not None  # the one that changed it stays signed in
    assert staff.session(second.token) is None
    with pytest.raises(SignInRefused):
        staff.sign_in("wang.li", PASSWORD)
    staff.set_disabled("wang.li", True)
    assert staff.session(first.token) is None
    with pytest.raises(SignInRefused):
        staff.sign_in("wang.li", "另一个口令-2027-lanterns")


def test_a_password_change_needs_the_current_password_and_a_good_new_one(staff):
    session = staff.sign_in("wang.li", PASSWORD)
    with pytest.raises(SignInRefused):
        staff.change_password(session.token, "wrong-password-0", "另一个口令-2027-lanterns")
    with pytest.raises(StaffInputRejected) as weak:
        staff.change_password(session.token, PASSWORD, "short")
    assert weak.value.field == "new_password"
    with pytest.raises(StaffInputRejected) as same:
        staff.change_password(session.token, PASSWORD, PASSWORD)
    assert same.value.field == "new_password"
    assert staff.sign_in("wang.li", PASSWORD)


def test_a_hash_made_with_weaker_parameters_is_renewed_at_sign_in(staff, scratch):
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    scratch["staff_accounts"].update_one({"_id": "wang.li"}, {"$set": {"password_hash": weak}})
    staff.sign_in("wang.li", PASSWORD)
    renewed = scratch["staff_accounts"].find_one({"_id": "wang.li"})["password_hash"]
    assert renewed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_one_address_may_try_only_so_many_sign_ins_a_minute(scratch, tmp_path):
    settings = Settings(
        GRIDLINK_LOGIN_ATTEMPTS_PER_MINUTE=3,
        GRIDLINK_DB_PREFIX=f"gltest_{uuid.uuid4().hex[:8]}",  # a rate table of its own
        GRIDLINK_AUDIT_DIR=tmp_path,
    )
    app = create_app(
        settings, ApiKeys(scratch["api_keys"]), rpc=object(), staff=StaffAccounts(scratch, settings)
    )
    client = app.test_client()

    def attempt(address: str):
        body = {"username": "nobody.here", "password": "wrong-password"}
        return client.post("/auth/sign-in", json=body, environ_base={"REMOTE_ADDR": address})

    assert [attempt("10.0.0.7").status_code for _ in range(4)] == [401, 401, 401, 429]
    refused = attempt("10.0.0.7")
    assert refused.get_json()["error"]["code"] == "rate_limited" and int(refused.headers["Retry-After"]) >= 1
    assert attempt("10.0.0.8").status_code == 401  # another address has its own allowance


def test_the_demo_account_keeps_its_password_and_sessions_across_restarts(infrastructure, tmp_path):
    from gateway.staff import ensure_demo_account, staff_accounts

    saved = tmp_path / "demo-password"
    username, password = ensure_demo_account(saved)
    assert saved.read_text().strip() == password and saved.stat().st_mode & 0o777 == 0o600
    accounts = staff_accounts()
    session = accounts.sign_in(username, password)
    assert sorted(session.principal["roles"]) == sorted(ROLES) and session.principal["scope"] is None
    assert ensure_demo_account(saved) == (username, password)  # `make run` again
    assert accounts.session(session.token) is not None
    saved.write_text("另一个演示口令-2026\n")  # as GRIDLINK_DEMO_PASSWORD would set it
    assert ensure_demo_account(saved)[1] == "另一个演示口令-2026"
    assert accounts.session(session.token) is None
    accounts.sign_in(username, "另一个演示口令-2026")


def test_password_checks_take_turns_so_a_burst_of_sign_ins_is_not_a_burst_of_memory(scratch, monkeypatch):
    settings = Settings(GRIDLINK_PASSWORD_HASHES_AT_ONCE=2)
    accounts = StaffAccounts(scratch, settings)
    accounts.create("zhou.min", "周敏", PASSWORD)
    running, most = 0, 0
    lock = threading.Lock()

    class WatchedHasher(PasswordHasher):
        def verify(self, stored, password):
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            try:
                return super().verify(stored, password)
            finally:
                with lock:
                    running -= 1

    monkeypatch.setattr(staff_module, "hasher", WatchedHasher())
    with ThreadPoolExecutor(6) as pool:
        sessions = list(pool.map(lambda _: accounts.sign_in("zhou.min", PASSWORD), range(6)))
    assert len({session.token for session in sessions}) == 6
    assert most == 2


def test_a_password_check_that_waits_too_long_for_its_turn_is_refused_not_queued(scratch, monkeypatch):
    accounts = StaffAccounts(scratch, Settings(GRIDLINK_PASSWORD_HASHES_AT_ONCE=1))
    accounts.create("sun.hao", "孙浩", PASSWORD)
    monkeypatch.setattr(staff_module, "HASH_WAIT_SECONDS", 0.05)
    checking, release = threading.Event(), threading.Event()

    class SlowHasher(PasswordHasher):
        def verify(self, stored, password):
            checking.set()
            release.wait(10)
            return super().verify(stored, password)

    monkeypatch.setattr(staff_module, "hasher", SlowHasher())
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(accounts.sign_in, "sun.hao", PASSWORD)
        assert checking.wait(10)
        with pytest.raises(SignInBusy):
            accounts.sign_in("sun.hao", PASSWORD)
        release.set()
        assert first.result().principal["username"] == "sun.hao"
    assert scratch["staff_sign_in_failures"].count_documents({}) == 0  # a busy refusal is no failure


def test_an_administrators_password_and_an_old_one_must_be_changed_first(scratch):
    staff = StaffAccounts(scratch, Settings(GRIDLINK_PASSWORD_MAX_AGE_DAYS=90))
    staff.create("li.na", "李娜", PASSWORD)  # as `python -m gateway.staff create` sets it
    session = staff.sign_in("li.na", PASSWORD)
    assert session.principal["password_change_required"] is True
    staff.change_password(session.token, PASSWORD, "自己的口令-2026-lanterns")
    assert staff.session(session.token)["password_change_required"] is False

    ninety_days_ago = datetime.now(UTC) - timedelta(days=90, seconds=1)
    scratch["staff_accounts"].update_one({"_id": "li.na"}, {"$set": {"password_changed_at": ninety_days_ago}})
    assert staff.session(session.token)["password_change_required"] is True
    never_expiring = StaffAccounts(scratch, Settings(GRIDLINK_PASSWORD_MAX_AGE_DAYS=0))
    assert never_expiring.session(session.token)["password_change_required"] is False

    staff.set_password("li.na", "管理员重置-2026-lanterns")  # `passwd`: the administrator's again
    assert staff.sign_in("li.na", "管理员重置-2026-lanterns").principal["password_change_required"] is True


def test_an_administrator_changes_roles_and_scope_and_sessions_follow_at_once(infrastructure, capsys):
    from gateway.staff import main, staff_accounts

    accounts = staff_accounts()
    username = accounts.create(f"clerk-{uuid.uuid4().hex[:8]}", "吴磊", PASSWORD, roles=["inspector"])
    session = accounts.sign_in(username, PASSWORD)
    assert (
        main(["update", username, "--role", "awarder", "--role", "approver", "--scope", "420391-001-002"])
        == 0
    )
    caller = accounts.session(session.token)
    assert caller["roles"] == ["approver", "awarder"] and caller["scope"] == "420391-001-002"
    assert main(["update", username, "--no-roles", "--no-scope", "--name", "吴磊（网格员）"]) == 0
    caller = accounts.session(session.token)
    assert caller["roles"] == [] and caller["scope"] is None and caller["display_name"] == "吴磊（网格员）"

    assert main(["update", "nobody-here", "--no-roles"]) == 1
    assert "no staff account nobody-here" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # nothing to change
        main(["update", username])
    with pytest.raises(SystemExit):
        main(["update", username, "--role", "mayor"])
    assert accounts.session(session.token)["roles"] == []

    # Each change is in the audit trail, by the operating-system user, with its outcome.
    trail = [
        (r["action"], r["status"])
        for r in records(get_settings().audit_dir, local_today())
        if r["target"].get("username") in (username, "nobody-here")
    ]
    assert trail == [("gateway.staff update", 0)] * 2 + [
        ("gateway.staff update", 1),
        ("gateway.staff update", 2),
    ]
