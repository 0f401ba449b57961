"""Staff accounts for the portal: passwords kept as argon2id hashes, sessions, CSRF tokens.

    python -m gateway.staff create <username> --name 姓名 [--role R]… [--scope CODE]
    python -m gateway.staff update <username> [--name 姓名] [--role R… | --no-roles]
                                              [--scope CODE | --no-scope]
    python -m gateway.staff passwd <username>
    python -m gateway.staff disable <username> | enable <username>
    python -m gateway.staff list
    python -m gateway.staff ensure-demo <file>

`create` and `passwd` ask for the password (or read one line from standard input, for
scripts). A staff member acts with the account's roles within the subtree of its scope, as an
API key does (gateway/keys.py). `passwd` and `disable` end the account's sessions.

A password an administrator set (`create`, `passwd`) is for one sign-in: until the member
has chosen their own, and again once theirs is GRIDLINK_PASSWORD_MAX_AGE_DAYS old (等保 2.0
asks that passwords be changed periodically), the session may change the password and sign out,
and /api/v1 answers 403 `password_change_required`.

Signing in follows OWASP's authentication advice:
- one answer for an unknown username and a wrong password, and the same argon2 work for both,
  so neither the answer nor its time tells which usernames exist;
- after GRIDLINK_LOGIN_MAX_FAILURES failures in a row (none more than
  GRIDLINK_LOGIN_LOCKOUT_MINUTES apart) a username is locked for that long, whether or not it
  exists; the gateway also limits sign-in attempts per client address (gateway/staff_routes.py);
- a session is a random token in a cookie (HttpOnly, Secure, SameSite=Strict); only its SHA-256
  is stored. It ends after GRIDLINK_SESSION_IDLE_MINUTES without use, and at the latest
  GRIDLINK_SESSION_MAX_HOURS after sign-in;
- each session has its own CSRF token, which every write made with the cookie must echo in
  the X-CSRF-Token header.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import hashlib
import json
import re
import secrets
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from gateway.keys import GATEWAY, ROLES
from shared.audit import record_command
from shared.mongo import connect
from shared.settings import Settings, get_settings

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{2,31}")
PASSWORD_MIN, PASSWORD_MAX = 10, 128
# How long a password check may wait for its turn (see StaffAccounts._turn).
HASH_WAIT_SECONDS = 10.0
# Touch a session's last use at most this often: a write per request would cost more than it tells.
TOUCH_EVERY = timedelta(seconds=60)

# RFC 9106's second recommended profile (argon2-cffi's default): 64 MiB, 3 passes, 4 lanes.
hasher = PasswordHasher()


class StaffInputRejected(ValueError):
    """A username, name, role or password that an account may not have; `field` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class SignInRefused(Exception):
    """Unknown username, wrong password or disabled account: deliberately one answer."""


class SignInBusy(Exception):
    """Too many password checks already waiting in this process: try again shortly."""


class SignInLocked(Exception):
    def __init__(self, retry_after: timedelta) -> None:
        super().__init__(f"locked for {retry_after}")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Session:
    token: str  # goes into the cookie, never stored
    principal: dict[str, Any]


def normalise_username(username: str) -> str:
    return username.strip().lower()


def check_username(username: str) -> str:
    name = normalise_username(username)
    if not USERNAME.fullmatch(name):
        raise StaffInputRejected(
            "username", "3–32 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_password(password: str, username: str) -> None:
    """NIST SP 800-63B's rules: length counts, composition rules do not."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise StaffInputRejected("password", f"must be {PASSWORD_MIN}–{PASSWORD_MAX} characters long")
    if len(set(password)) < 4:
        raise StaffInputRejected("password", "must use at least 4 different characters")
    if username in password.lower():
        raise StaffInputRejected("password", "must not contain the username")


def check_roles(roles: list[str]) -> None:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise StaffInputRejected("role", f"unknown roles {sorted(unknown)}; known: {sorted(ROLES)}")


class Unchanged(Enum):
    """What `StaffAccounts.update` leaves as it is (a scope may be changed to None)."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


def session_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class StaffAccounts:
    def __init__(self, database: Database, settings: Settings | None = None) -> None:
        self.accounts: Collection = database["staff_accounts"]
        self.sessions: Collection = database["staff_sessions"]
        self.failures: Collection = database["staff_sign_in_failures"]
        self.settings = settings or get_settings()
        # Each argon2 run holds 64 MiB while it lasts: a burst of sign-ins must not be a burst
        # of memory (tests/bench/bench_sign_in.py measures it).
        self._hashing = threading.BoundedSemaphore(self.settings.password_hashes_at_once)
        # Made now: made on the first sign-in of an unknown username, it would make that one
        # slower than a known username's (see `_verify`).
        self._stand_in_hash = stand_in_hash()

    # --- accounts ---------------------------------------------------------------------------

    def create(
        self,
        username: str,
        name: str,
        password: str,
        roles: list[str] | None = None,
        scope: str | None = None,
        *,
        must_change_password: bool = True,
    ) -> str:
        """Create the account; returns its normalised username. Refuses a taken username.
        The password is the administrator's, for the first sign-in, unless told otherwise."""
        username = check_username(username)
        check_password(password, username)
        check_roles(roles or [])
        if not name.strip():
            raise StaffInputRejected("name", "must not be empty")
        now = datetime.now(UTC)
        try:
            self.accounts.insert_one(
                {
                    "_id": username,
                    "name": name.strip(),
                    "password_hash": self._hash(password),
                    "roles": sorted(roles or []),
                    "scope": scope,
                    "disabled": False,
                    "created_at": now,
                    "password_changed_at": now,
                    "must_change_password": must_change_password,
                }
            )
        except DuplicateKeyError:
            raise StaffInputRejected("username", f"{username} is taken") from None
        return username

    def set_password(
        self, username: str, password: str, keep_session: str | None = None, *, must_change: bool = True
    ) -> bool:
        """Replace the password and end the account's sessions (but `keep_session`, by token).
        `must_change`: an administrator's password, which the member must replace."""
        username = normalise_username(username)
        check_password(password, username)
        changed = self.accounts.update_one(
            {"_id": username},
            {
                "$set": {
                    "password_hash": self._hash(password),
                    "password_changed_at": datetime.now(UTC),
                    "must_change_password": must_change,
                }
            },
        )
        kept = {"_id": {"$ne": session_digest(keep_session)}} if keep_session else {}
        self.sessions.delete_many({"username": username, **kept})
        return changed.matched_count == 1

    def update(
        self,
        username: str,
        name: str | None = None,
        roles: list[str] | None = None,
        scope: str | Unchanged | None = UNCHANGED,
    ) -> bool:
        """Change what is given: a staff member's name, roles (the whole set) or scope. Signed-in
        sessions act with the new ones from their next request."""
        changes: dict[str, Any] = {}
        if name is not None:
            if not name.strip():
                raise StaffInputRejected("name", "must not be empty")
            changes["name"] = name.strip()
        if roles is not None:
            check_roles(roles)
            changes["roles"] = sorted(roles)
        if scope is not UNCHANGED:
            changes["scope"] = scope
        if not changes:
            raise StaffInputRejected("update", "give a name, roles or a scope to change")
        changed = self.accounts.update_one({"_id": normalise_username(username)}, {"$set": changes})
        return changed.matched_count == 1

    def set_disabled(self, username: str, disabled: bool) -> bool:
        username = normalise_username(username)
        changed = self.accounts.update_one({"_id": username}, {"$set": {"disabled": disabled}})
        if disabled:
            self.sessions.delete_many({"username": username})
        return changed.matched_count == 1

    def records(self) -> list[dict[str, Any]]:
        """Every account, oldest first, without its password hash."""
        return [shown(a) for a in self.accounts.find({}, {"password_hash": 0}).sort("created_at", 1)]

    def account(self, username: str) -> dict[str, Any] | None:
        """One account as `records` shows it, or None."""
        found = self.accounts.find_one({"_id": normalise_username(username)}, {"password_hash": 0})
        return found and shown(found)

    # --- signing in and out -------------------------------------------------------------------

    def sign_in(self, username: str, password: str) -> Session:
        """A new session, or SignInRefused / SignInLocked."""
        username = normalise_username(username)[:64]
        now = datetime.now(UTC)
        account = self.accounts.find_one({"_id": username}) if USERNAME.fullmatch(username) else None
        self._check(username, account, password, now)
        # This member's count starts again; counts of names nobody used for a day are dropped,
        # so names made up by guessers do not pile up.
        self.failures.delete_many(
            {"$or": [{"_id": username}, {"last_failed_at": {"$lt": now - timedelta(days=1)}}]}
        )
        if hasher.check_needs_rehash(account["password_hash"]):
            self.accounts.update_one({"_id": username}, {"$set": {"password_hash": self._hash(password)}})
        # Sessions that ran out are cleared here, so the collection stays the size of its use.
        self.sessions.delete_many({"username": username, "expires_at": {"$lte": now}})
        token = secrets.token_urlsafe(32)
        session = {
            "_id": session_digest(token),
            "username": username,
            "csrf_token": secrets.token_urlsafe(32),
            "created_at": now,
            "last_used_at": now,
            "expires_at": now + timedelta(hours=self.settings.session_max_hours),
        }
        self.sessions.insert_one(session)
        return Session(token, self._principal(account, session))

    def session(self, token: str) -> dict[str, Any] | None:
        """The signed-in staff member behind a session token, or None once it has ended."""
        digest = session_digest(token)
        session = self.sessions.find_one({"_id": digest})
        now = datetime.now(UTC)
        if session is None or min(aware(session["expires_at"]), self._idle_end(session)) <= now:
            return None
        account = self.accounts.find_one({"_id": session["username"]}, {"password_hash": 0})
        if account is None or account["disabled"]:
            return None
        if now - aware(session["last_used_at"]) >= TOUCH_EVERY:
            self.sessions.update_one({"_id": digest}, {"$set": {"last_used_at": now}})
            session["last_used_at"] = now
        return self._principal(account, session)

    def sign_out(self, token: str) -> None:
        self.sessions.delete_one({"_id": session_digest(token)})

    def change_password(self, token: str, current: str, new: str) -> None:
        """The signed-in member's own change: the current password must be right (else
        SignInRefused, counted as a failure); the member's other sessions end."""
        session = self.session(token)
        if session is None:
            raise SignInRefused()
        username = session["username"]
        self._check(username, self.accounts.find_one({"_id": username}), current, datetime.now(UTC))
        if new == current:
            raise StaffInputRejected("new_password", "must differ from the current password")
        try:
            self.set_password(username, new, keep_session=token, must_change=False)
        except StaffInputRejected as exc:
            raise StaffInputRejected("new_password", exc.message) from None

    # --- inside -------------------------------------------------------------------------------

    def _check(self, username: str, account: dict[str, Any] | None, password: str, now: datetime) -> None:
        """SignInLocked while the username is locked; else SignInRefused, counted as a failure,
        unless the account exists, is enabled and the password is its own."""
        locked = self.failures.find_one({"_id": username, "locked_until": {"$gt": now}})
        if locked:
            raise SignInLocked(aware(locked["locked_until"]) - now)
        if not self._verify(account, password) or account["disabled"]:
            self._count_failure(username, now)
            raise SignInRefused()

    def _verify(self, account: dict[str, Any] | None, password: str) -> bool:
        # An unknown username costs the same argon2 work as a known one, so timing tells nothing.
        stored = account["password_hash"] if account else self._stand_in_hash
        with self._turn():
            return verifies(stored, password) and account is not None

    def _hash(self, password: str) -> str:
        with self._turn():
            return hasher.hash(password)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        # Waiting long would hold a gateway thread that other calls need: refuse instead.
        if not self._hashing.acquire(timeout=HASH_WAIT_SECONDS):
            raise SignInBusy()
        try:
            yield
        finally:
            self._hashing.release()

    def _count_failure(self, username: str, now: datetime) -> None:
        lockout = timedelta(minutes=self.settings.login_lockout_minutes)
        # A failure long after the last one starts a new run of failures.
        self.failures.delete_one({"_id": username, "last_failed_at": {"$lt": now - lockout}})
        counted = self.failures.find_one_and_update(
            {"_id": username},
            {"$inc": {"failures": 1}, "$set": {"last_failed_at": now}},
            upsert=True,
            return_document=True,
        )
        if counted["failures"] >= self.settings.login_max_failures:
            self.failures.replace_one(
                {"_id": username}, {"failures": 0, "last_failed_at": now, "locked_until": now + lockout}
            )

    def _principal(self, account: dict[str, Any], session: dict[str, Any]) -> dict[str, Any]:
        max_age = self.settings.password_max_age_days
        expired = bool(max_age) and aware(account["password_changed_at"]) + timedelta(
            days=max_age
        ) <= datetime.now(UTC)
        return principal(
            account,
            session,
            self._idle_end(session),
            password_change_required=expired or account.get("must_change_password", False),
        )

    def _idle_end(self, session: dict[str, Any]) -> datetime:
        return aware(session["last_used_at"]) + timedelta(minutes=self.settings.session_idle_minutes)


def shown(account: dict[str, Any]) -> dict[str, Any]:
    """An account without its password hash, its times in ISO 8601."""
    return {
        "username": account["_id"],
        "name": account["name"],
        "roles": account["roles"],
        "scope": account["scope"],
        "disabled": account["disabled"],
        "must_change_password": account.get("must_change_password", False),
        "created_at": aware(account["created_at"]).isoformat(),
        "password_changed_at": aware(account["password_changed_at"]).isoformat(),
    }


@functools.cache
def stand_in_hash() -> str:
    """What an unknown username's password is checked against: the hash of a password nobody
    knows, made once per process (an argon2 run: 64 MiB for a moment)."""
    return hasher.hash(secrets.token_urlsafe(16))


def verifies(stored_hash: str, password: str) -> bool:
    try:
        return hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def principal(
    account: dict[str, Any], session: dict[str, Any], idle_end: datetime, *, password_change_required: bool
) -> dict[str, Any]:
    """The staff member as the gateway sees a caller: the fields of an API key's record, plus
    the session's CSRF token, when it ends, and whether the password must be changed first."""
    return {
        # `name` signs what the member does (ledger entries, the audit trail): the username
        # tells two members of one name apart.
        "name": f"{account['name']} ({account['_id']})",
        "display_name": account["name"],
        "username": account["_id"],
        "client_id": f"staff_{account['_id']}",
        "roles": account["roles"],
        "scope": account["scope"],
        "csrf_token": session["csrf_token"],
        "session_ends_at": min(aware(session["expires_at"]), idle_end),
        "password_change_required": password_change_required,
    }


def aware(moment: datetime) -> datetime:
    """pymongo hands back naive UTC datetimes."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def staff_accounts() -> StaffAccounts:
    return StaffAccounts(connect(GATEWAY))


def ensure_demo_account(saved: Path) -> tuple[str, str]:
    """The demo staff member (username `demo`, every role, no scope) and its password:
    GRIDLINK_DEMO_PASSWORD if set, else the one saved in `saved`, else a new one saved there."""
    password = get_settings().demo_password
    if not password and saved.exists():
        password = saved.read_text().strip()
    password = password or secrets.token_urlsafe(12)
    accounts = staff_accounts()
    demo = accounts.accounts.find_one({"_id": "demo"})
    # The demo's password is printed for anyone to try, so it is not one to be changed first.
    if demo is None:
        accounts.create("demo", "演示账号", password, roles=list(ROLES), must_change_password=False)
    elif not verifies(demo["password_hash"], password):  # a restart keeps the demo's sessions
        accounts.set_password("demo", password, must_change=False)
    if demo and demo["disabled"]:
        accounts.set_disabled("demo", False)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(password + "\n")
    saved.chmod(0o600)
    return "demo", password


def read_password(prompt: str) -> str:
    if sys.stdin.isatty():
        first, again = getpass.getpass(prompt), getpass.getpass("again: ")
        if first != again:
            raise StaffInputRejected("password", "the two entries differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.staff", description="manage staff accounts")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make an account; asks for its password")
    create.add_argument("username")
    create.add_argument("--name", required=True, help="the staff member's name, as the portal shows it")
    create.add_argument("--role", action="append", default=[], choices=sorted(ROLES))
    create.add_argument("--scope", help="an organisation code: the account acts within its subtree")
    update = commands.add_parser("update", help="change a name, the roles or the scope")
    update.add_argument("username")
    update.add_argument("--name")
    given_roles = update.add_mutually_exclusive_group()
    given_roles.add_argument("--role", action="append", choices=sorted(ROLES), help="the whole new set")
    given_roles.add_argument("--no-roles", action="store_true", help="take every role away")
    given_scope = update.add_mutually_exclusive_group()
    given_scope.add_argument("--scope", help="an organisation code: the account acts within its subtree")
    given_scope.add_argument("--no-scope", action="store_true", help="everywhere")
    for command, text in (
        ("passwd", "set a password for the next sign-in, which the member then replaces; ends sessions"),
        ("disable", "lock out and end the account's sessions"),
        ("enable", "let in again"),
    ):
        commands.add_parser(command, help=text).add_argument("username")
    commands.add_parser("list", help="every account, without password hashes")
    demo = commands.add_parser("ensure-demo", help="make sure the demo account exists; print its password")
    demo.add_argument("file", type=Path)
    options = parser.parse_args(argv)
    accounts = staff_accounts()
    target = {"username": getattr(options, "username", "demo")}
    found = True
    try:
        if options.command == "create":
            password = read_password("password: ")
            accounts.create(options.username, options.name, password, options.role, options.scope)
        elif options.command == "update":
            roles = [] if options.no_roles else options.role
            scope = None if options.no_scope else (options.scope or UNCHANGED)
            found = accounts.update(options.username, options.name, roles, scope)
        elif options.command == "passwd":
            found = accounts.set_password(options.username, read_password("new password: "))
        elif options.command in ("disable", "enable"):
            found = accounts.set_disabled(options.username, options.command == "disable")
        elif options.command == "list":
            for record in accounts.records():
                print(json.dumps(record, default=str, ensure_ascii=False))
            return 0
        else:
            print(ensure_demo_account(options.file)[1])
    except StaffInputRejected as exc:
        record_command("gateway.staff", options.command, target, 2, str(exc))
        parser.error(str(exc))
    record_command("gateway.staff", options.command, target, 0 if found else 1)
    if not found:
        print(f"no staff account {options.username}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
