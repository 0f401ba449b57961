"""The gateway's audit trail as an auditor reads it: a record for every write and every refused
access, none for a successful read, and never the key itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from shared.audit import records
from shared.settings import local_today
from tests.conftest import COMMUNITY, Api, new_id
from tests.e2e.test_volunteer_act_flow import an_act
from tests.support import eventually

pytestmark = pytest.mark.e2e


def audited(stack, response: requests.Response) -> list[dict]:
    """The records of this response's request (by its request id)."""
    request_id = response.headers["X-Request-Id"]
    today = local_today()
    return [
        record
        for day in (today - timedelta(days=1), today)  # a test may straddle midnight
        for record in records(stack.home / "audit", day)
        if record["request_id"] == request_id
    ]


def test_every_write_and_refusal_leaves_one_record_and_a_read_none(stack, api, cadre):
    from gateway.keys import api_keys

    idempotency_key = new_id("idem")
    recorded = api.record_act(an_act(cadre), key=idempotency_key)
    assert recorded.status_code == 202
    [record] = audited(stack, recorded)
    assert record["actor"] == "tests" and record["client_id"].startswith("client_")
    assert record["action"] == "POST /api/v1/volunteer-acts" and record["status"] == 202
    assert record["error"] is None
    act_id = recorded.json()["act_id"]
    assert record["target"] == {
        "person_id": cadre, "community_id": COMMUNITY, "act_id": act_id, "idempotency_key": idempotency_key
    }  # fmt: skip

    invalid = api.record_act(an_act(cadre, hours=0))
    assert invalid.status_code == 422
    assert [r["error"] for r in audited(stack, invalid)] == ["validation_error"]

    read = api.get(f"/api/v1/volunteer-acts/{act_id}")
    assert read.status_code == 200 and audited(stack, read) == []

    wrong_key = "glk_" + new_id("guess")
    refused = requests.get(f"{api.base_url}/api/v1/people", headers={"X-API-Key": wrong_key}, timeout=10)
    assert refused.status_code == 401
    [record] = audited(stack, refused)
    assert record["actor"] is None and record["status"] == 401 and len(record["key_hint"]) == 12
    assert wrong_key not in str(record)

    inspector_key = api_keys().create(new_id("inspector"), roles=["inspector"], scope=COMMUNITY)
    inspector = Api(stack.base_url, inspector_key)
    award = {"person_id": cadre, "community_id": COMMUNITY, "points": 15, "reason": "社区活动组织"}
    forbidden = inspector.post("/api/v1/points/awards", json=award, headers={"Idempotency-Key": new_id()})
    assert forbidden.status_code == 403
    [record] = audited(stack, forbidden)
    assert record["scope"] == COMMUNITY and record["action"] == "POST /api/v1/points/awards"
    assert record["error"] == "forbidden"

    # No key, valid or not, reaches any process's log.
    for log in (stack.home / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        assert api.key not in text and wrong_key not in text and inspector_key not in text, log.name


def test_a_request_over_the_rate_is_recorded_as_refused(stack):
    from gateway.keys import api_keys

    limited = Api(stack.base_url, api_keys().create(new_id("limited"), rate=0.1, burst=1))
    assert limited.get("/api/v1/ping").status_code == 200
    over = limited.get(f"/api/v1/volunteer-acts/{new_id('va')}")
    assert over.status_code == 429
    [record] = audited(stack, over)
    assert record["status"] == 429 and record["error"] == "rate_limited"
    assert record["action"] == "GET /api/v1/volunteer-acts/<act_id>" and "act_id" in record["target"]


def test_a_record_names_what_its_write_is_about_from_the_body_and_the_answer(stack, api):
    """A write addressed by its body names the ids and codes there; one that creates names
    what it created. Never a name, a phone or an ID number."""
    body = {"name": "审计居民", "community_id": COMMUNITY, "phone": "13912345678"}
    registered = api.post("/api/v1/people", json=body)
    assert registered.status_code == 201
    [record] = audited(stack, registered)
    assert record["target"] == {"community_id": COMMUNITY, "id": registered.json()["id"]}
    assert "13912345678" not in str(record) and "审计居民" not in str(record)

    # Some communities use the ID number as a person's code: it stays out all the same.
    coded_by_id_number = {**body, "person_id": "420102199003071234"}
    del coded_by_id_number["phone"]
    registered = api.post("/api/v1/people", json=coded_by_id_number)
    assert registered.status_code == 201
    [record] = audited(stack, registered)
    assert record["target"] == {"community_id": COMMUNITY} and "420102199003071234" not in str(record)


def test_a_read_only_key_reads_and_is_refused_every_write(stack, databases, cadre):
    """A dashboard's key: it reads; a volunteer act, the write any other key may make, is
    refused before it reaches a service, and recorded as refused."""
    from gateway.keys import api_keys, client_id
    from services.intake.domain import act_id_for

    reader_key = api_keys().create(new_id("dashboard"), read_only=True)
    reader = Api(stack.base_url, reader_key)
    assert reader.get(f"/api/v1/points/accounts/{cadre}").status_code == 200
    idempotency_key = new_id("idem")
    refused = reader.record_act(an_act(cadre), key=idempotency_key)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "read_only_key"
    [record] = audited(stack, refused)
    assert record["error"] == "read_only_key" and record["target"]["idempotency_key"] == idempotency_key
    act_id = act_id_for(client_id(reader_key), idempotency_key)
    assert databases["issue_intake"].volunteer_acts.find_one({"_id": act_id}) is None
    # A search is a read, sent by POST only to keep the number out of the URL.
    found = reader.post("/api/v1/people:search", json={"phone": "13800000000"})
    assert found.status_code == 200 and found.json()["total"] == 0
    with pytest.raises(ValueError, match="no roles"):
        api_keys().create(new_id("dashboard"), read_only=True, roles=["approver"])


def test_a_revoked_key_is_refused_over_http_within_the_cache_time(stack, cadre):
    """Gateways keep what they read of a key for GRIDLINK_KEY_CACHE_SECONDS (1 in the tests):
    after that a revoked key is a 401, recorded as refused."""
    from gateway.keys import api_keys, client_id

    key = api_keys().create(new_id("retired"))
    retired = Api(stack.base_url, key)
    assert retired.get(f"/api/v1/points/accounts/{cadre}").status_code == 200  # now cached
    assert api_keys().revoke(client_id(key)) is True
    answers = []  # a Response is false when it is an error: keep them here instead
    eventually(
        lambda: (
            answers.append(retired.get(f"/api/v1/points/accounts/{cadre}")) or answers[-1].status_code == 401
        ),
        timeout=5,
    )
    [record] = audited(stack, answers[-1])
    assert record["status"] == 401 and record["key_hint"] and key not in str(record)
