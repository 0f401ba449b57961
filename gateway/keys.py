"""API keys: stored as SHA-256 hashes in the gateway's own database, shown once.

    python -m gateway.keys create <name> [--role R]… [--scope CODE] [--rate R --burst B]
                                         [--expires YYYY-MM-DD] [--read-only]
    python -m gateway.keys list
    python -m gateway.keys revoke <client_id>
    python -m gateway.keys ensure-demo <file>

`create` prints a new key. A key acts with its roles (staff actions need one) within the
subtree of its scope (none: everywhere), at up to R requests per second in bursts of B
(default: GRIDLINK_RATE_LIMIT and GRIDLINK_RATE_BURST; a rate of 0 lifts the limit, for a
trusted system), through the day it expires (local time; none: until revoked). A read-only key
(a dashboard, say) is refused every write, volunteer acts too (403). `list` shows
every key by client id, never the key; `revoke` ends one. `ensure-demo` makes sure the demo key
exists (GRIDLINK_DEMO_API_KEY if set, else the one saved in <file>, else a new one saved there)
and prints it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo.collection import Collection

from shared.audit import record_command
from shared.mongo import connect
from shared.settings import get_settings, local_zone

GATEWAY = "gateway"
# Staff actions and the role each needs. A key without roles reads and records volunteer acts;
# a read-only one only reads.
ROLES = {
    "rules_admin": "sets earning rules and the redemption catalogue",
    "approver": "approves or rejects long acts, reverses transfers",
    "awarder": "awards points by hand, with a reason",
    "inspector": "records doorstep and household inspections (门前三包)",
    "redemption_clerk": "places, fulfils and cancels redemption orders",
    "registrar": "keeps the registry: organisations, places, people, posts, 双报到, ledger imports",
    "account_admin": "keeps staff accounts: creates them, sets roles and scope, resets passwords, disables",
}


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def client_id(key: str) -> str:
    """How the key is named everywhere it is shown (listings, the audit trail): never the key."""
    return f"client_{key_hash(key)[:16]}"


class ApiKeys:
    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self._cache_seconds = get_settings().api_key_cache_seconds
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    def create(
        self,
        name: str,
        key: str | None = None,
        roles: list[str] | None = None,
        scope: str | None = None,
        rate: float | None = None,
        burst: int | None = None,
        expires: date | None = None,
        read_only: bool = False,
    ) -> str:
        """Create the key (or reset the one given). `rate`/`burst`: its own request limit;
        `expires`: the last local day it works; `read_only`: it may not write."""
        unknown = set(roles or []) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; known: {sorted(ROLES)}")
        if read_only and roles:
            raise ValueError("a read-only key takes no roles: each role is a kind of write")
        if (rate is not None and rate < 0) or (burst is not None and burst < 1):
            raise ValueError("rate must be ≥ 0 requests per second (0: no limit), burst ≥ 1")
        limit = {"per_second": rate, "burst": burst}
        key = key or f"glk_{secrets.token_urlsafe(32)}"
        digest = key_hash(key)
        self.collection.update_one(
            {"_id": digest},
            {
                "$setOnInsert": {
                    "client_id": client_id(key),
                    "created_at": datetime.now(UTC),
                },
                "$set": {
                    "name": name,
                    "revoked": False,
                    "roles": sorted(roles or []),
                    "scope": scope,
                    "rate_limit": {k: v for k, v in limit.items() if v is not None},
                    "expires_at": expires and end_of_local_day(expires),
                    "read_only": read_only,
                },
            },
            upsert=True,
        )
        return key

    def authenticate(self, key: str) -> dict[str, Any] | None:
        """The key's record if it is valid; cached briefly so a request costs no database trip."""
        digest = key_hash(key)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached and cached[0] > now:
            record = cached[1]
        else:
            record = self.collection.find_one({"_id": digest})
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now + self._cache_seconds, record)
        return record if is_valid(record) else None

    def records(self) -> list[dict[str, Any]]:
        """Every key's record, oldest first: names, roles, limits, never a key or its hash."""
        return list(self.collection.find({}, {"_id": 0}).sort("created_at", 1))

    def revoke(self, client_id: str) -> bool:
        """End the key; gateways stop taking it within GRIDLINK_KEY_CACHE_SECONDS."""
        revoked = self.collection.update_one({"client_id": client_id}, {"$set": {"revoked": True}})
        return revoked.matched_count == 1


def is_valid(record: dict[str, Any] | None) -> bool:
    if record is None or record.get("revoked"):
        return False
    expires_at = record.get("expires_at")
    return expires_at is None or datetime.now(UTC) < expires_at.replace(tzinfo=expires_at.tzinfo or UTC)


def end_of_local_day(day: date) -> datetime:
    """The moment `day` ends where the suite's users are (GRIDLINK_TIMEZONE), in UTC."""
    zone = local_zone()
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)


def rate_limit(record: dict[str, Any]) -> tuple[float, int]:
    """The key's (requests per second, burst): its own, else the gateway's defaults."""
    settings, own = get_settings(), record.get("rate_limit") or {}
    return own.get("per_second", settings.rate_limit_per_second), own.get("burst", settings.rate_limit_burst)


def api_keys() -> ApiKeys:
    return ApiKeys(connect(GATEWAY)["api_keys"])


def ensure_demo_key(saved: Path) -> str:
    key = get_settings().demo_api_key
    if not key and saved.exists():
        key = saved.read_text().strip()
    # The demo key may do everything, everywhere (every role, no scope), to try the whole API;
    # keys for real client systems get only the roles and the scope they need.
    key = api_keys().create("demo", key or None, roles=list(ROLES), scope=None)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(key + "\n")
    saved.chmod(0o600)
    return key


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.keys", description="manage API keys")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key and print it (shown this once)")
    create.add_argument("name")
    create.add_argument("--role", action="append", default=[], choices=sorted(ROLES))
    create.add_argument("--scope", help="an organisation code: the key acts within its subtree")
    create.add_argument("--rate", type=float, help="requests per second (0: no limit)")
    create.add_argument("--burst", type=int, help="requests in one burst")
    create.add_argument("--expires", type=date.fromisoformat, help="last day it works, YYYY-MM-DD")
    create.add_argument("--read-only", action="store_true", help="it only reads: every write is refused")
    commands.add_parser("list", help="every key, by client id (never the key itself)")
    revoke = commands.add_parser("revoke", help="end a key")
    revoke.add_argument("client_id")
    demo = commands.add_parser("ensure-demo", help="make sure the demo key exists and print it")
    demo.add_argument("file", type=Path)
    options = parser.parse_args(argv)
    if options.command == "list":
        for record in api_keys().records():
            print(json.dumps(record, default=str, ensure_ascii=False))
        return 0
    code = 0
    if options.command == "create":
        limits = {
            "rate": options.rate,
            "burst": options.burst,
            "expires": options.expires,
            "read_only": options.read_only,
        }
        target = {"name": options.name}
        try:
            key = api_keys().create(options.name, roles=options.role, scope=options.scope, **limits)
        except ValueError as exc:
            record_command("gateway.keys", "create", target, 2, str(exc))
            parser.error(str(exc))
        target["client_id"] = client_id(key)
        print(key)
    elif options.command == "revoke":
        target = {"client_id": options.client_id}
        if not api_keys().revoke(options.client_id):
            print(f"no key with client id {options.client_id}", file=sys.stderr)
            code = 1
    else:
        key = ensure_demo_key(options.file)
        target = {"name": "demo", "client_id": client_id(key)}
        print(key)
    record_command("gateway.keys", options.command, target, code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
