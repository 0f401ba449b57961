"""The HTTP gateway: other government systems and the staff portal reach GridLink here.

It authenticates, validates (so bad input never reaches a service), calls the owning service
over RPC and maps the answer, or the failure, to HTTP.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, redirect, request, send_from_directory
from nameko.exceptions import RemoteError
from pymongo.errors import ConnectionFailure
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.middleware.proxy_fix import ProxyFix

from gateway import responses as r
from gateway.audit import WRITES, identifiers, is_audited
from gateway.http import (
    PATH_CONVERTERS,
    ApiError,
    idempotency_key,
    in_scope,
    json_body,
    outside_scope,
    person_in_scope,
    require_role,
    require_scope,
    signed,
)
from gateway.keys import GATEWAY, ApiKeys, api_keys, key_hash, rate_limit
from gateway.openapi import OpenApi, Operation, link, route_template
from gateway.points_routes import add_points_routes
from gateway.ratelimit import RateLimiter, retry_after_seconds, table_path
from gateway.registry_routes import add_registry_routes
from gateway.rpc import Coalesced, RpcPool, ServiceTimeout, ServiceUnavailable
from gateway.staff import StaffAccounts, staff_accounts
from gateway.staff_account_routes import add_staff_account_routes
from gateway.staff_routes import add_staff_routes, session_caller
from shared.audit import AuditTrail
from shared.errors import Conflict, InvalidInput, NotFound
from shared.events import CADRE_EVALUATION, ISSUE_INTAKE
from shared.schemas import BATCH_MAX_ITEMS, ActRevocation, VolunteerActBatch, VolunteerActInput
from shared.settings import Settings, get_settings

log = logging.getLogger("gridlink.gateway")

PORTAL = Path(__file__).parent / "portal"
VERIFIER_OUTSIDE_SCOPE = "a verifying community outside the API key's scope"
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
SEARCHES = {"/api/v1/people:search"}  # reads sent by POST (the numbers stay out of URLs and logs)


def _with_subclasses(cls: type) -> set[str]:
    return {cls.__name__} | {name for sub in cls.__subclasses__() for name in _with_subclasses(sub)}


# A service's error arrives by class name: pymongo's "database unreachable" errors, a failover's
# NotPrimaryError and a full connection pool's WaitQueueTimeoutError included.
DATABASE_ERRORS = _with_subclasses(ConnectionFailure)


def create_app(
    settings: Settings | None = None,
    keys: ApiKeys | None = None,
    rpc: RpcPool | None = None,
    staff: StaffAccounts | None = None,
) -> Flask:
    settings = settings or get_settings()
    keys = keys or api_keys()
    staff = staff or staff_accounts()
    rpc = rpc or RpcPool(settings.amqp_uri, settings.rpc_timeout_seconds)
    # Gateways sharing one key database on this host count each key's requests together.
    limiter = RateLimiter(table_path(settings.mongo_url + settings.database_name(GATEWAY)))
    audit = AuditTrail(settings.audit_dir)
    # Concurrent POSTs of single acts share one RPC (see Coalesced): the flow's hot path.
    record_act = Coalesced(rpc, ISSUE_INTAKE, "record_volunteer_acts_apart")
    app = Flask(__name__)
    app.url_map.converters.update(PATH_CONVERTERS)
    if settings.proxy_hops:  # the client's address is the one the nearest trusted proxy saw
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.ensure_ascii = False  # names and places are Chinese; send them readable
    docs = OpenApi(
        "GridLink API",
        "1.0.0",
        "党建引领基层治理 — organisation registry, issue intake, points bank, cadre evaluation. "
        "Every /api/v1 call carries an `X-API-Key` header (the staff portal uses a signed-in "
        "session instead).",
    )

    def route(operation: Operation) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(view: Callable[..., Any]) -> Callable[..., Any]:
            docs.add(operation)
            app.add_url_rule(operation.path, view.__name__, view, methods=[operation.method])
            return view

        return register

    # --- requests in -----------------------------------------------------------------

    @app.before_request
    def authenticate() -> None:
        # A caller's own id ties its logs to ours, if it is one: it goes into the audit trail.
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        if not request.path.startswith("/api/"):
            return
        key = request.headers.get("X-API-Key", "")
        # A client system sends its key; the portal, its staff member's session cookie.
        record = keys.authenticate(key) if key else session_caller(staff, settings)
        if record is None:
            raise ApiError(
                401,
                "unauthorized",
                "missing, unknown, revoked or expired API key (header X-API-Key), and no staff session",
            )
        g.client_id = record["client_id"]
        g.key = record
        per_second, burst = rate_limit(record)
        wait = limiter.admit(record["client_id"], per_second, burst)
        if wait:
            seconds = retry_after_seconds(wait)
            raise ApiError(
                429,
                "rate_limited",
                f"over this API key's limit of {per_second:g} requests/s in bursts of {burst}; "
                f"retry after {seconds} s",
                headers={"Retry-After": str(seconds)},
            )
        if record.get("read_only") and request.method in WRITES and request.path not in SEARCHES:
            raise ApiError(403, "read_only_key", "this API key only reads; a write needs another key")

    @app.after_request
    def tag_response(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        audited = is_audited(request.method, response.status_code) or g.get("outside_scope", False)
        signing = request.path.startswith("/auth/") and request.method == "POST"
        if (request.path.startswith("/api/") and audited) or signing:
            entry = audit_record(response)
            try:
                audit.record(entry)
            except OSError:
                # The change is made: failing its answer would only make the client repeat it.
                # The record (which never holds a secret) goes to the error log instead.
                log.critical(
                    "audit trail not writable; its record: %s", json.dumps(entry, ensure_ascii=False)
                )
        return response

    def audit_record(response: Response) -> dict[str, Any]:
        key = g.get("key") or {}
        presented = request.headers.get("X-API-Key", "")
        path = route_template(request.url_rule.rule) if request.url_rule else request.path
        return {
            "request_id": g.get("request_id", ""),
            "actor": key.get("name") or g.get("claimed_username"),
            "client_id": key.get("client_id"),
            # Who tried with a key that is not valid, without keeping the key.
            "key_hint": None if key or not presented else key_hash(presented)[:12],
            "scope": key.get("scope"),
            "action": f"{request.method} {path}",
            "target": {
                **g.get("body_target", {}),
                **created(response),
                **(request.view_args or {}),
                **({"idempotency_key": idem} if (idem := request.headers.get("Idempotency-Key")) else {}),
            },
            "status": response.status_code,
            "error": g.get("error_code"),
            "remote_addr": request.remote_addr,
        }

    def created(response: Response) -> dict[str, str]:
        """The ids of what a write made, from its (small) answer: a person registered without
        an id gets one there."""
        size = response.content_length
        if response.status_code not in (201, 202) or not response.is_json or size is None or size > 4096:
            return {}
        body = response.get_json(silent=True)
        return identifiers(body.items()) if isinstance(body, dict) else {}

    # --- volunteer acts ----------------------------------------------------------------

    @route(
        Operation(
            "POST",
            "/api/v1/volunteer-acts",
            "Record a volunteer act",
            r.VolunteerActAccepted,
            status=202,
            request=VolunteerActInput,
            headers={"Idempotency-Key": "your unique key for this act; a retry with it records nothing new"},
            errors={
                400: "malformed body or missing Idempotency-Key",
                404: "unknown person",
                403: VERIFIER_OUTSIDE_SCOPE,
                409: "Idempotency-Key already used for a different act",
                422: "invalid field",
            },
            links={
                "act": link("GET", "/api/v1/volunteer-acts/<id:act_id>", act_id="act_id"),
                "revoke": link("POST", "/api/v1/volunteer-acts/<id:act_id>:revoke", act_id="act_id"),
            },
            tag="Volunteer acts",
        )
    )
    def record_volunteer_act() -> Any:
        key = idempotency_key()
        act = json_body(VolunteerActInput)
        require_scope(rpc, act.community_id)  # a scoped key records acts its subtree verifies
        result = record_act(g.client_id, key, act.model_dump(mode="json"))
        return jsonify(result), 202

    @route(
        Operation(
            "POST",
            "/api/v1/volunteer-acts:batch",
            f"Record up to {BATCH_MAX_ITEMS} volunteer acts at once",
            r.VolunteerActBatchAccepted,
            status=202,
            request=VolunteerActBatch,
            errors={
                400: "malformed body",
                403: VERIFIER_OUTSIDE_SCOPE,
                422: "an invalid item (named by index); nothing is recorded",
            },
            tag="Volunteer acts",
        )
    )
    def record_volunteer_acts() -> Any:
        batch = json_body(VolunteerActBatch)
        if len(batch.items) > settings.batch_max_items:
            raise ApiError(
                422,
                "validation_error",
                f"at most {settings.batch_max_items} items per batch",
                [{"field": "items", "message": f"at most {settings.batch_max_items} items"}],
            )
        require_scope(rpc, *sorted({item.community_id for item in batch.items}))
        items = [item.model_dump(mode="json") for item in batch.items]
        return jsonify(rpc.call(ISSUE_INTAKE, "record_volunteer_acts", g.client_id, items)), 202

    @route(
        Operation(
            "GET",
            "/api/v1/volunteer-acts/<id:act_id>",
            "A recorded volunteer act",
            r.VolunteerAct,
            errors={404: "unknown act"},
            tag="Volunteer acts",
        )
    )
    def get_volunteer_act(act_id: str) -> Any:
        act = rpc.call(ISSUE_INTAKE, "get_volunteer_act", act_id)
        if not in_scope(rpc, act["community_id"]):
            raise outside_scope(f"act {act_id}")
        return jsonify(act)

    @route(
        Operation(
            "POST",
            "/api/v1/volunteer-acts/<id:act_id>:revoke",
            "Revoke a recorded act: the points it earned are taken back, pointing at the credit",
            r.VolunteerAct,
            request=ActRevocation,
            errors={403: "the API key lacks the approver role for the act's community", 404: "unknown act"},
            tag="Volunteer acts",
        )
    )
    def revoke_volunteer_act(act_id: str) -> Any:
        revocation = json_body(ActRevocation)
        act = rpc.call(ISSUE_INTAKE, "get_volunteer_act", act_id)
        require_role(rpc, "approver", act["community_id"])
        return jsonify(rpc.call(ISSUE_INTAKE, "revoke_volunteer_act", act_id, signed(revocation)))

    @route(
        Operation(
            "GET",
            "/api/v1/volunteer-act-types",
            "The catalogue of volunteer act types",
            r.ActTypes,
            tag="Volunteer acts",
        )
    )
    def list_volunteer_act_types() -> Any:
        return jsonify({"items": rpc.call(ISSUE_INTAKE, "list_volunteer_act_types")})

    # --- points, cadres --------------------------------------------------------

    @route(
        Operation(
            "GET",
            "/api/v1/cadres/<person_id>/dossier",
            "A cadre's dossier of community records",
            r.Dossier,
            errors={404: "unknown person, or not a cadre"},
            tag="Cadre evaluation",
        )
    )
    def get_cadre_dossier(person_id: str) -> Any:
        person_in_scope(rpc, person_id)
        return jsonify(rpc.call(CADRE_EVALUATION, "get_dossier", person_id))

    add_registry_routes(route, rpc, settings)
    add_points_routes(route, rpc)
    add_staff_routes(app, staff, limiter, settings)
    add_staff_account_routes(route, rpc, staff)

    @route(
        Operation(
            "GET",
            "/api/v1/ping",
            "Round trip gateway → issue intake (no work done)",
            r.Pong,
            tag="Operations",
        )
    )
    def ping() -> Any:
        return jsonify({"service": ISSUE_INTAKE, "answer": rpc.call(ISSUE_INTAKE, "ping")})

    # --- documents and pages -----------------------------------------------------------

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify({"status": "ok"})

    @app.get("/openapi.json")
    def openapi() -> Any:
        return jsonify(docs.document())

    @app.get("/docs")
    def swagger_ui() -> Any:
        return Response(SWAGGER_PAGE, mimetype="text/html")

    @app.get("/docs/static/<path:name>")
    def swagger_assets(name: str) -> Any:
        return send_from_directory(swagger_ui_path, name)

    @app.get("/")
    def home() -> Any:
        return redirect("/portal/")

    @app.get("/portal/")
    def portal() -> Any:
        return send_from_directory(PORTAL, "index.html")

    # --- failures out --------------------------------------------------------------------

    def error(status: int, code: str, message: str, fields: list[dict[str, str]] | None = None) -> Any:
        g.error_code = code
        body = {
            "error": {"code": code, "message": message, "fields": fields or []},
            "request_id": g.get("request_id", ""),
        }
        return jsonify(body), status

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Any:
        response, status = error(exc.status, exc.code, exc.message, exc.fields)
        response.headers.update(exc.headers)
        return response, status

    @app.errorhandler(InvalidInput)
    def invalid_input(exc: InvalidInput) -> Any:
        # nameko sends exception arguments as text; ledger rows name their line as a number.
        fields = [{**e, "line": int(e["line"])} if "line" in e else e for e in exc.errors]
        return error(422, "validation_error", str(exc), fields)

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> Any:
        return error(404, "not_found", str(exc))

    @app.errorhandler(Conflict)
    def conflict(exc: Conflict) -> Any:
        fields = [{"field": exc.field, "message": exc.message}] if exc.field else []
        return error(409, exc.code, exc.message, fields)

    @app.errorhandler(ServiceUnavailable)
    def unavailable(exc: ServiceUnavailable) -> Any:
        return error(503, "service_unavailable", str(exc))

    @app.errorhandler(ConnectionFailure)
    def own_database_unavailable(exc: ConnectionFailure) -> Any:
        # The gateway's own database (API keys, staff sessions): a key not read lately is
        # checked there, so its outage is an outage of the API, not a fault of the request.
        log.warning("the gateway's database is unavailable: %s (request %s)", exc, g.get("request_id"))
        return error(
            503, "database_unavailable", "the gateway's database is unavailable; nothing was changed"
        )

    @app.errorhandler(ServiceTimeout)
    def timeout(exc: ServiceTimeout) -> Any:
        return error(504, "service_timeout", str(exc))

    @app.errorhandler(RemoteError)
    def remote_error(exc: RemoteError) -> Any:
        if exc.exc_type in DATABASE_ERRORS:
            return error(
                503,
                "database_unavailable",
                "the service's database is unavailable; nothing was changed",
            )
        log.error("service error %s: %s (request %s)", exc.exc_type, exc.value, g.get("request_id"))
        return error(500, "internal_error", "the service failed; the request id helps trace it")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        response, status = error(
            exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), exc.description or ""
        )
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:  # RFC 9110: say which ones
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return response, status

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unexpected gateway error (request %s)", g.get("request_id"))
        return error(500, "internal_error", "unexpected error; the request id helps trace it")

    return app


SWAGGER_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>GridLink API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>"""
