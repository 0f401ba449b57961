"""The gateway's HTTP contract: authentication, validation, and how failures map to statuses.

The services sit behind a scripted stand-in for `RpcPool` here; the integration and end-to-end
tiers run the same gateway against the real services.
"""

from __future__ import annotations

import json
import re

import pytest
from nameko.exceptions import RemoteError, serialize

from gateway.app import create_app
from gateway.rpc import ServiceTimeout, ServiceUnavailable
from shared.errors import DOMAIN_ERRORS, Conflict, InvalidInput, NotFound
from shared.settings import Settings

KEY = "good-key"
ACT = {
    "person_id": "p-1",
    "act_type": "patrol_duty",
    "hours": 2.5,
    "occurred_on": "2026-11-20",
    "community_id": "c-1",
}


class StandInKeys:
    def authenticate(self, key):
        return {"client_id": "client-test"} if key == KEY else None


class ScriptedRpc:
    def __init__(self):
        self.calls = []
        self.answers = {}

    def call(self, service, method, *args, **kwargs):
        self.calls.append((service, method, args))
        answer = self.answers.get((service, method), {})
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def rpc():
    return ScriptedRpc()


@pytest.fixture
def client(rpc, tmp_path):
    settings = Settings(
        GRIDLINK_MAX_BODY_BYTES=20_000, GRIDLINK_BATCH_MAX_ITEMS=3, GRIDLINK_AUDIT_DIR=tmp_path / "audit"
    )
    app = create_app(settings=settings, keys=StandInKeys(), rpc=rpc)
    return app.test_client()


def post_act(client, body=ACT, key=KEY, idempotency="k-1", **kwargs):
    headers = {"X-API-Key": key}
    if idempotency is not None:
        headers["Idempotency-Key"] = idempotency
    return client.post("/api/v1/volunteer-acts", json=body, headers=headers, **kwargs)


def error_fields(response):
    return {f["field"] for f in response.get_json()["error"]["fields"]}


@pytest.mark.parametrize(
    ("given", "kept"),
    [("trace-7f3a9c01", True), ("x" * 65, False), ("a\u202eforged id", False), ("short", False)],
)
def test_a_callers_request_id_is_kept_only_if_it_is_a_plain_short_token(client, given, kept):
    response = client.get("/api/v1/people", headers={"X-Request-Id": given})
    answered = response.headers["X-Request-Id"]
    assert (answered == given) is kept and response.get_json()["request_id"] == answered
    assert re.fullmatch(r"[A-Za-z0-9._-]{8,64}", answered)


@pytest.mark.parametrize("key", [None, "", "wrong"])
def test_missing_or_unknown_key_is_401(client, rpc, key):
    headers = {} if key is None else {"X-API-Key": key}
    response = client.get("/api/v1/people", headers=headers)
    assert response.status_code == 401
    body = response.get_json()
    assert body["error"]["code"] == "unauthorized"
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert rpc.calls == []


def intake_answers_the_act(rpc, outcome):
    """Issue intake's answer to the one act a POST sends (coalesced: a list of one outcome),
    or the failure of the whole RPC."""
    if isinstance(outcome, DOMAIN_ERRORS):
        outcome = [{"error": serialize(outcome)}]
    elif not isinstance(outcome, Exception):
        outcome = [{"result": outcome}]
    rpc.answers[("issue_intake", "record_volunteer_acts_apart")] = outcome


def test_accepted_act_goes_to_issue_intake_with_client_and_key(client, rpc):
    intake_answers_the_act(rpc, {"act_id": "va_1", "status": "accepted", "replayed": False})
    response = post_act(client)
    assert response.status_code == 202
    assert response.get_json()["act_id"] == "va_1"
    [(service, method, ([(client_id, key, act)],))] = rpc.calls
    assert (service, method) == ("issue_intake", "record_volunteer_acts_apart")
    assert client_id == "client-test" and key == "k-1"
    assert act["hours"] == "2.5"


def test_missing_idempotency_key_is_named(client, rpc):
    response = post_act(client, idempotency=None)
    assert response.status_code == 400
    assert error_fields(response) == {"Idempotency-Key"}
    assert rpc.calls == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**ACT, "hours": 0}, "hours"),
        ({**ACT, "hours": 25}, "hours"),
        ({**ACT, "occurred_on": "yesterday"}, "occurred_on"),
        ({k: v for k, v in ACT.items() if k != "person_id"}, "person_id"),
        ({**ACT, "points": 9999}, "points"),
        # JSON types are kept strictly: pydantic's lax mode would read 0 as 1970-01-01.
        ({**ACT, "occurred_on": 0}, "occurred_on"),
        ({**ACT, "hours": True}, "hours"),
        ({**ACT, "person_id": 5}, "person_id"),
    ],
)
def test_invalid_fields_are_422_and_never_reach_a_service(client, rpc, body, field):
    response = post_act(client, body=body)
    assert response.status_code == 422
    assert field in error_fields(response)
    assert rpc.calls == []


def test_body_must_be_a_json_object(client, rpc):
    assert post_act(client, body=[1, 2]).status_code == 400
    response = client.post(
        "/api/v1/volunteer-acts",
        data="{not json",
        content_type="application/json",
        headers={"X-API-Key": KEY, "Idempotency-Key": "k"},
    )
    assert response.status_code == 400
    response = client.post(
        "/api/v1/volunteer-acts", data="a=b", headers={"X-API-Key": KEY, "Idempotency-Key": "k"}
    )
    assert response.status_code == 415
    assert rpc.calls == []


@pytest.mark.parametrize("deep", ["[" * 5000 + "]" * 5000, '{"person_id": ' + "[" * 5000 + "]" * 5000 + "}"])
def test_deep_nesting_is_refused_cleanly(client, rpc, deep):
    response = client.post(
        "/api/v1/volunteer-acts",
        data=deep,
        content_type="application/json",
        headers={"X-API-Key": KEY, "Idempotency-Key": "k"},
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "nested_too_deep"
    assert response.get_json()["error"]["fields"] == [{"field": "body", "message": "nested too deep"}]
    assert rpc.calls == []


def test_oversized_body_is_413(client, rpc):
    response = post_act(client, body={**ACT, "padding": "x" * 30_000})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "request_entity_too_large"
    assert rpc.calls == []


def test_batch_over_the_configured_limit_is_422(client, rpc):
    items = [{**ACT, "idempotency_key": f"k{i}"} for i in range(4)]
    response = client.post("/api/v1/volunteer-acts:batch", json={"items": items}, headers={"X-API-Key": KEY})
    assert response.status_code == 422
    assert error_fields(response) == {"items"}
    assert rpc.calls == []


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (NotFound("person", "p-1"), 404, "not_found"),
        (Conflict("idempotency_key_reused", "used"), 409, "idempotency_key_reused"),
        (InvalidInput.single("community_id", "unknown community"), 422, "validation_error"),
        (ServiceUnavailable("issue_intake is not running"), 503, "service_unavailable"),
        (ServiceTimeout("no answer"), 504, "service_timeout"),
        (RemoteError("ServerSelectionTimeoutError", "no primary"), 503, "database_unavailable"),
        (RemoteError("NotPrimaryError", "not primary"), 503, "database_unavailable"),  # a failover
        (RemoteError("KeyError", "boom"), 500, "internal_error"),
        (KeyError("boom"), 500, "internal_error"),  # one act's unexpected error, sent back
    ],
)
def test_service_failures_map_to_http(client, rpc, failure, status, code):
    if isinstance(failure, KeyError):
        rpc.answers[("issue_intake", "record_volunteer_acts_apart")] = [{"error": serialize(failure)}]
    else:
        intake_answers_the_act(rpc, failure)
    response = post_act(client)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def test_field_errors_from_the_service_are_passed_on(client, rpc):
    intake_answers_the_act(rpc, InvalidInput.single("community_id", "unknown community"))
    assert error_fields(post_act(client)) == {"community_id"}


def test_account_of_unknown_person_is_404(client, rpc):
    rpc.answers[("registry", "get_person")] = NotFound("person", "p-x")
    response = client.get("/api/v1/points/accounts/p-x", headers={"X-API-Key": KEY})
    assert response.status_code == 404
    assert [c[:2] for c in rpc.calls] == [("registry", "get_person")]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("limit=", "limit"),
        ("party_members=1", "party_members"),
        ("community_id=", "community_id"),
        ("within=a%20b", "within"),
    ],
)
def test_people_query_is_checked(client, rpc, query, field):
    response = client.get(f"/api/v1/people?{query}", headers={"X-API-Key": KEY})
    assert response.status_code == 422
    assert error_fields(response) == {field}
    assert rpc.calls == []


def test_people_query_reaches_the_registry_read(client, rpc):
    response = client.get(
        "/api/v1/people?community_id=c-1&party_members=true&limit=20", headers={"X-API-Key": KEY}
    )
    assert response.status_code == 200
    # community, offset, limit, within, party members only, in-service only
    assert rpc.calls == [("registry", "list_people", ("c-1", 0, 20, None, True, False))]


@pytest.mark.parametrize(
    "query",
    ["month=0000-01", "month=9999-12", "month=2026-13", "month=2026-1", "format=pdf&month=2026-11", ""],
)
def test_disclosure_month_is_checked_before_the_points_bank(client, rpc, query):
    """Year 0 once reached the points bank and failed there with a 500 (found by fuzzing)."""
    response = client.get(f"/api/v1/points/disclosures/c-1?{query}", headers={"X-API-Key": KEY})
    assert response.status_code == 422
    assert error_fields(response) <= {"month", "format"} and error_fields(response)
    assert rpc.calls == []


def test_statement_needs_both_days(client, rpc):
    response = client.get("/api/v1/points/accounts/p-1/statement?from=2026-11-01", headers={"X-API-Key": KEY})
    assert response.status_code == 422
    assert error_fields(response) == {"to"}
    assert rpc.calls == []


def test_wrong_method_is_405_naming_the_allowed_ones(client):
    response = client.delete("/api/v1/volunteer-acts", headers={"X-API-Key": KEY})
    assert response.status_code == 405
    assert response.headers["Allow"] == "OPTIONS, POST"
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_unknown_route_is_json_404(client):
    response = client.get("/api/v1/nothing-here", headers={"X-API-Key": KEY})
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_openapi_documents_every_route_with_its_schemas(client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    paths = document["paths"]
    for path, method in [
        ("/api/v1/volunteer-acts", "post"),
        ("/api/v1/volunteer-acts:batch", "post"),
        ("/api/v1/volunteer-acts/{act_id}", "get"),
        ("/api/v1/volunteer-act-types", "get"),
        ("/api/v1/points/accounts/{person_id}", "get"),
        ("/api/v1/cadres/{person_id}/dossier", "get"),
        ("/api/v1/people", "get"),
    ]:
        assert method in paths[path], (path, method)
    post = paths["/api/v1/volunteer-acts"]["post"]
    assert "202" in post["responses"] and "422" in post["responses"] and "401" in post["responses"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in post["parameters"])
    schema = document["components"]["schemas"]["VolunteerActInput"]
    assert set(schema["required"]) == {"person_id", "act_type", "hours", "occurred_on", "community_id"}
    assert document["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    json.dumps(document)  # serialisable as a whole


def test_openapi_gives_query_parameters_their_constraints(client):
    """The document and the checks come from one declaration (gateway.http.Query)."""
    paths = client.get("/openapi.json").get_json()["paths"]
    people = {p["name"]: p for p in paths["/api/v1/people"]["get"]["parameters"]}
    assert people["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
    assert people["party_members"]["schema"]["type"] == "boolean"
    assert people["within"]["schema"]["pattern"].startswith("^[A-Za-z0-9]")
    organisations = {p["name"]: p for p in paths["/api/v1/organisations"]["get"]["parameters"]}
    assert "grid_party_branch" in organisations["classification"]["schema"]["enum"]
    statement = {
        p["name"]: p for p in paths["/api/v1/points/accounts/{account_id}/statement"]["get"]["parameters"]
    }
    assert statement["from"]["required"] and statement["from"]["schema"]["format"] == "date"
    assert "422" in paths["/api/v1/people"]["get"]["responses"]


def test_openapi_documents_what_the_gateway_refuses_of_a_body(client):
    operations = client.get("/openapi.json").get_json()["paths"].values()
    with_body = [op for methods in operations for op in methods.values() if "requestBody" in op]
    assert len(with_body) > 20
    for operation in with_body:
        assert {"400", "415", "422"} <= set(operation["responses"]), operation["operationId"]
    disclosure = client.get("/openapi.json").get_json()["paths"]["/api/v1/points/disclosures/{community_id}"]
    assert set(disclosure["get"]["responses"]["200"]["content"]) == {
        "application/json",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }


def test_api_docs_page_and_its_assets_are_served_locally(client):
    page = client.get("/docs")
    assert page.status_code == 200 and b"/openapi.json" in page.data
    assert client.get("/docs/static/swagger-ui-bundle.js").status_code == 200


def test_a_file_name_with_control_characters_makes_a_valid_download(client, rpc):
    """The disclosure's file name holds the community id from the path; a carriage return in
    it once made the header invalid and the answer a 500 (found by fuzzing)."""
    rpc.answers[("points_bank", "monthly_disclosure_xlsx")] = {
        "filename": "volunteer-disclosure-\rQ社区!-2026-11.xlsx",
        "content": "UEsDBA==",
    }
    path = "/api/v1/points/disclosures/%0DQ%E7%A4%BE%E5%8C%BA!"
    response = client.get(f"{path}?month=2026-11&format=xlsx", headers={"X-API-Key": KEY})
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="volunteer-disclosure-_Q___-2026-11.xlsx"; '
        "filename*=UTF-8''volunteer-disclosure-%0DQ%E7%A4%BE%E5%8C%BA%21-2026-11.xlsx"
    )
    assert response.data == b"PK\x03\x04"


def test_openapi_links_lead_to_documented_operations(client):
    """Links from what a call creates to the calls that read or act on it (clients and the
    fuzzer follow them): each names an operation of the document and fills its path."""
    paths = client.get("/openapi.json").get_json()["paths"]
    operations = {op["operationId"]: op for methods in paths.values() for op in methods.values()}
    links = [
        link
        for methods in paths.values()
        for op in methods.values()
        for answer in op["responses"].values()
        for link in answer.get("links", {}).values()
    ]
    assert len(links) >= 10
    for link in links:
        target = operations[link["operationId"]]
        path_parameters = {p["name"] for p in target["parameters"] if p["in"] == "path"}
        assert set(link["parameters"]) == path_parameters, link
        assert all(value.startswith("$response.body#/") for value in link["parameters"].values())
    act = paths["/api/v1/volunteer-acts"]["post"]["responses"]["202"]["links"]["act"]
    assert act["parameters"] == {"act_id": "$response.body#/act_id"}


def test_a_refusal_is_audited_in_the_configured_folder(client, tmp_path):
    assert client.get("/api/v1/people", headers={"X-API-Key": "wrong"}).status_code == 401
    [line] = next((tmp_path / "audit").glob("audit-*.jsonl")).read_text().splitlines()
    assert json.loads(line)["status"] == 401 and json.loads(line)["action"] == "GET /api/v1/people"


def test_a_key_without_scope_reads_orders_and_dossiers_without_asking_the_registry(client, rpc):
    headers = {"X-API-Key": KEY}
    assert client.get("/api/v1/points/orders?person_id=p-1", headers=headers).status_code == 200
    assert client.get("/api/v1/cadres/p-1/dossier", headers=headers).status_code == 200
    assert [method for service, method, _ in rpc.calls if service == "registry"] == []


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/v1/organisations/420391-001:close", "OPTIONS, POST"),
        ("/api/v1/organisations/420391-001", "GET, HEAD, OPTIONS"),
        ("/api/v1/volunteer-acts/va_0a1b:revoke", "OPTIONS, POST"),
        ("/api/v1/registry/imports/people", "OPTIONS, POST"),
        ("/api/v1/registry/imports/imp-0123456789abcdef", "GET, HEAD, OPTIONS"),
    ],
)
def test_a_path_names_one_resource_so_allow_lists_only_its_methods(client, path, allowed):
    """A custom method's path (`…/<code>:close`) is not also the resource's own path with a code
    that ends in ':close', and an import's id is not a ledger kind."""
    answered = client.open(path, method="OPTIONS", headers={"X-API-Key": KEY})
    assert ", ".join(sorted(answered.headers["Allow"].split(", "))) == allowed


def test_an_unknown_ledger_kind_is_404_and_the_document_lists_the_kinds(client):
    unknown = client.get("/api/v1/registry/exports/households", headers={"X-API-Key": KEY})
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "not_found"
    paths = client.get("/openapi.json").get_json()["paths"]
    [kind] = paths["/api/v1/registry/exports/{kind}"]["get"]["parameters"][:1]
    assert kind["schema"]["enum"] == ["organisations", "places", "people", "memberships"]
    [code] = paths["/api/v1/organisations/{code}"]["get"]["parameters"][:1]
    assert code["schema"]["pattern"] == "^[^/:]+$"


def test_path_examples_name_records_of_the_demo_data(client):
    """The docs page's "Try it out" with the demo key reaches real records."""
    from deploy.local.demo_data import COMMUNITIES, PEOPLE

    paths = client.get("/openapi.json").get_json()["paths"]
    examples = {
        parameter["name"]: parameter["example"]
        for operations in paths.values()
        for operation in operations.values()
        for parameter in operation["parameters"]
        if parameter["in"] == "path" and "example" in parameter
    }
    assert examples["code"] in COMMUNITIES and examples["community_id"] in COMMUNITIES
    assert {examples["person_id"], examples["account_id"]} <= {person[0] for person in PEOPLE}


def test_a_sign_in_with_no_turn_free_for_its_password_check_is_503_with_retry_after(rpc, tmp_path):
    from gateway.staff import SignInBusy

    class BusyStaff:
        def sign_in(self, username, password):
            raise SignInBusy()

    settings = Settings(GRIDLINK_AUDIT_DIR=tmp_path, GRIDLINK_DB_PREFIX=f"unit_{tmp_path.name}")
    client = create_app(settings, keys=StandInKeys(), rpc=rpc, staff=BusyStaff()).test_client()
    answer = client.post("/auth/sign-in", json={"username": "wang.li", "password": "any password"})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.get_json()["error"]["code"] == "sign_in_busy"


@pytest.mark.parametrize(("hops", "client_address"), [(0, "10.0.0.1"), (1, "203.0.113.9")])
def test_behind_a_trusted_proxy_the_client_is_the_address_it_forwards(rpc, tmp_path, hops, client_address):
    """The address the sign-in limit and the audit trail count; X-Forwarded-For is believed only
    from the proxies GRIDLINK_PROXY_HOPS says there are."""
    from shared.audit import records
    from shared.settings import local_today

    settings = Settings(GRIDLINK_AUDIT_DIR=tmp_path, GRIDLINK_PROXY_HOPS=hops)
    client = create_app(settings, keys=StandInKeys(), rpc=rpc).test_client()
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    assert (
        client.get("/api/v1/people", headers=forwarded, environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code
        == 401
    )
    [record] = records(tmp_path, local_today())
    assert record["remote_addr"] == client_address


def test_a_write_whose_audit_record_cannot_be_written_keeps_its_answer_and_logs_the_record(
    rpc, tmp_path, caplog
):
    (tmp_path / "audit").write_text("a file where the audit folder should be")
    settings = Settings(GRIDLINK_AUDIT_DIR=tmp_path / "audit")
    client = create_app(settings=settings, keys=StandInKeys(), rpc=rpc).test_client()
    intake_answers_the_act(rpc, {"act_id": "va_1", "status": "accepted", "replayed": False})
    response = post_act(client)
    assert response.status_code == 202 and response.get_json()["act_id"] == "va_1"
    [logged] = [r for r in caplog.records if "audit trail not writable" in r.getMessage()]
    assert logged.levelname == "CRITICAL" and response.headers["X-Request-Id"] in logged.getMessage()


def test_the_openapi_document_is_built_once_and_again_after_an_operation_is_added(client):
    from gateway.openapi import OpenApi, Operation

    first = client.get("/openapi.json").get_json()
    assert client.get("/openapi.json").get_json() == first
    docs = OpenApi("t", "1", "d")
    docs.add(Operation("GET", "/a", "A", None))
    one = docs.document()
    assert docs.document() is one and list(one["paths"]) == ["/a"]
    docs.add(Operation("GET", "/b", "B", None))
    assert list(docs.document()["paths"]) == ["/a", "/b"]


def test_the_gateways_own_database_down_is_a_503_not_a_server_error(rpc, tmp_path):
    """A key not read lately is checked in the gateway's database: while that is down, the
    request is refused as unavailable, and no service is called."""
    from pymongo.errors import AutoReconnect

    class KeysOnADatabaseThatIsDown:
        def authenticate(self, key):
            raise AutoReconnect("127.0.0.1:27017: [Errno 111] Connection refused")

    settings = Settings(GRIDLINK_AUDIT_DIR=tmp_path)
    client = create_app(settings, keys=KeysOnADatabaseThatIsDown(), rpc=rpc).test_client()
    response = post_act(client)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "database_unavailable"
    assert rpc.calls == []
