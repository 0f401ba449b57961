"""Per-key request limits at the gateway: over its rate a key gets 429 with Retry-After, the
request does nothing, and other keys go on unaffected."""

from __future__ import annotations

import time

import pytest

from tests.conftest import Api, new_id
from tests.e2e.test_volunteer_act_flow import an_act

pytestmark = pytest.mark.e2e


def limited_key(stack, rate: float, burst: int) -> Api:
    from gateway.keys import api_keys

    return Api(stack.base_url, api_keys().create(new_id("limited"), rate=rate, burst=burst))


def test_a_key_over_its_rate_is_told_when_to_retry_and_nothing_is_stored(stack, cadre, databases):
    limited, neighbour = limited_key(stack, 0.5, 3), limited_key(stack, 0.5, 3)
    assert [limited.get("/api/v1/ping").status_code for _ in range(3)] == [200, 200, 200]

    refused = limited.record_act(an_act(cadre))
    assert refused.status_code == 429
    # One request every 2 s once the burst is spent: the next may go within 2 s.
    assert 1 <= int(refused.headers["Retry-After"]) <= 2
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and "0.5 requests/s in bursts of 3" in error["message"]
    assert refused.headers["X-Request-Id"] == refused.json()["request_id"]
    assert neighbour.get("/api/v1/ping").status_code == 200  # another key has its own count

    time.sleep(int(refused.headers["Retry-After"]))
    # The refused act never reached issue intake.
    assert databases["issue_intake"].volunteer_acts.count_documents({"person_id": cadre}) == 0
    assert limited.record_act(an_act(cadre)).status_code == 202
    assert databases["issue_intake"].volunteer_acts.count_documents({"person_id": cadre}) == 1


def test_the_limit_and_its_header_are_in_the_api_document(api):
    document = api.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answer = operation["responses"].get("429")
            assert answer, f"{method} {path} does not document 429"
            assert answer["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
