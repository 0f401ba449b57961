"""API keys: stored as SHA-256 hashes in the gateway's own database, shown once.

`python -m gateway.keys create <name> [--role R]… [--scope CODE] [--rate R --burst B]` prints a
new key; a key acts with its roles (staff actions need one) within the subtree of its scope
(none: everywhere), at up to R requests per second in bursts of B (default: GRIDLINK_RATE_LIMIT
and GRIDLINK_RATE_BURST; a rate of 0 lifts the limit, for a trusted system);
`python -m gateway.keys ensure-demo <file>` makes sure the demo key exists (GRIDLINK_DEMO_API_KEY
if set, else the one saved in <file>, else a new one saved there) and prints it.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo.collection import Collection

from shared.mongo import connect
from shared.settings import get_settings

GATEWAY = "gateway"
# Staff actions and the role each needs. A key without roles reads and records volunteer acts.
ROLES = {
    "rules_admin": "sets earning rules and the redemption catalogue",
    "approver": "approves or rejects long acts, reverses transfers",
    "awarder": "awards points by hand, with a reason",
    "inspector": "records doorstep and household inspections (门前三包)",
    "redemption_clerk": "places, fulfils and cancels redemption orders",
    "registrar": "keeps the registry: organisations, places, people, posts, 双报到, ledger imports",
}
CACHE_SECONDS = 30.0  # a revoked key stops working within this time


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, collection: Collection) -> None:
        self.collection = collection
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
    ) -> str:
        """Create the key (or reset the one given). `rate`/`burst`: its own request limit."""
        unknown = set(roles or []) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; known: {sorted(ROLES)}")
        if (rate is not None and rate < 0) or (burst is not None and burst < 1):
            raise ValueError("rate must be ≥ 0 requests per second (0: no limit), burst ≥ 1")
        limit = {"per_second": rate, "burst": burst}
        key = key or f"glk_{secrets.token_urlsafe(32)}"
        digest = key_hash(key)
        self.collection.update_one(
            {"_id": digest},
            {
                "$setOnInsert": {
                    "client_id": f"client_{digest[:16]}",
                    "created_at": datetime.now(UTC),
                },
                "$set": {
                    "name": name,
                    "revoked": False,
                    "roles": sorted(roles or []),
                    "scope": scope,
                    "rate_limit": {k: v for k, v in limit.items() if v is not None},
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
            return cached[1]
        record = self.collection.find_one({"_id": digest})
        valid = record if record and not record.get("revoked") else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + CACHE_SECONDS, valid)
        return valid


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
    # The demo key is the street's staff: every role, the demo street as its scope.
    key = api_keys().create("demo", key or None, roles=list(ROLES), scope=None)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(key + "\n")
    saved.chmod(0o600)
    return key


if __name__ == "__main__":
    command = sys.argv[1:2]
    if command == ["create"] and len(sys.argv) >= 3:
        parser = argparse.ArgumentParser(prog="python -m gateway.keys create")
        parser.add_argument("name")
        parser.add_argument("--role", action="append", default=[], choices=sorted(ROLES))
        parser.add_argument("--scope", help="an organisation code: the key acts within its subtree")
        parser.add_argument("--rate", type=float, help="requests per second (0: no limit)")
        parser.add_argument("--burst", type=int, help="requests in one burst")
        options = parser.parse_args(sys.argv[2:])
        print(
            api_keys().create(
                options.name, roles=options.role, scope=options.scope, rate=options.rate, burst=options.burst
            )
        )
    elif command == ["ensure-demo"] and len(sys.argv) == 3:
        print(ensure_demo_key(Path(sys.argv[2])))
    else:
        sys.exit(
            "usage: python -m gateway.keys create <name> [--role R]… [--scope CODE] [--rate R] [--burst B]"
            " | ensure-demo <file>"
        )
