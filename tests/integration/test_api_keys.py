"""API keys on the real database: expiry, revocation and the operator's command."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from gateway import keys
from gateway.keys import ApiKeys, key_hash
from shared.audit import records
from shared.settings import get_settings, local_today

pytestmark = pytest.mark.integration


@pytest.fixture
def api_keys(scratch) -> ApiKeys:
    return ApiKeys(scratch["api_keys"])


def test_a_key_works_through_its_last_day_and_not_after(api_keys):
    today, yesterday = local_today(), local_today() - timedelta(days=1)
    assert api_keys.authenticate(api_keys.create("today", expires=today)) is not None
    assert api_keys.authenticate(api_keys.create("yesterday", expires=yesterday)) is None
    assert api_keys.authenticate(api_keys.create("forever")) is not None


def test_expiry_is_checked_at_each_request_even_from_the_cache(api_keys):
    key = api_keys.create("short")
    soon = datetime.now(UTC) + timedelta(seconds=0.5)
    api_keys.collection.update_one({"_id": key_hash(key)}, {"$set": {"expires_at": soon}})
    assert api_keys.authenticate(key) is not None  # now cached
    time.sleep(0.6)
    assert api_keys.authenticate(key) is None


def test_a_revoked_key_stops_working_and_keys_are_listed_without_secrets(api_keys, scratch):
    key = api_keys.create("old system", roles=["awarder"])
    [record] = api_keys.records()
    assert record["name"] == "old system" and record["roles"] == ["awarder"]
    assert key not in json.dumps(record, default=str) and key_hash(key) not in json.dumps(record, default=str)
    assert key not in json.dumps(list(scratch["api_keys"].find()), default=str)  # stored as its hash only
    assert api_keys.revoke(record["client_id"]) is True
    assert ApiKeys(scratch["api_keys"]).authenticate(key) is None  # a gateway that has not cached it
    assert api_keys.revoke("client_nobody") is False


def test_the_operator_command_creates_lists_and_revokes(infrastructure, capsys):
    name = f"cli-{time.time_ns()}"
    assert keys.main(["create", name, "--role", "registrar", "--expires", "2999-12-31"]) == 0
    key = capsys.readouterr().out.strip()
    assert keys.api_keys().authenticate(key)["roles"] == ["registrar"]
    keys.main(["list"])
    [listed] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if name in line]
    assert key not in json.dumps(listed)
    assert keys.main(["revoke", listed["client_id"]]) == 0
    assert keys.main(["revoke", "client_nobody"]) == 1
    with pytest.raises(SystemExit):
        keys.main(["create", name, "--expires", "31/12/2999"])
    assert "--expires" in capsys.readouterr().err

    # Each change is in the audit trail, by the operating-system user, never with the key.
    trail = [
        r for r in records(get_settings().audit_dir, local_today()) if r["action"].startswith("gateway.keys")
    ]
    created = [r for r in trail if r["target"].get("name") == name]
    assert [(r["action"], r["status"]) for r in created] == [("gateway.keys create", 0)]
    assert created[0]["target"]["client_id"] == listed["client_id"] and created[0]["actor"].endswith(
        "(command line)"
    )
    revoked = [(r["target"]["client_id"], r["status"]) for r in trail if r["action"] == "gateway.keys revoke"]
    assert (listed["client_id"], 0) in revoked and ("client_nobody", 1) in revoked
    assert key not in json.dumps(trail, ensure_ascii=False)
