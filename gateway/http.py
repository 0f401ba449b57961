"""Reading requests: JSON bodies, headers and query parameters, refused with named fields."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar
from urllib.parse import quote

from flask import Response, g, request
from pydantic import BaseModel, ValidationError
from werkzeug.routing import BaseConverter

from gateway.audit import identifiers
from shared.errors import InvalidInput, NotFound
from shared.events import REGISTRY
from shared.schemas import IDENTIFIER, MONTH, field_errors


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or []
        self.headers = headers or {}


class PathIdentifier(BaseConverter):
    """`<id:name>`: a path segment without ':', so that `…/<id:code>` and its custom methods
    (`…/<id:code>:close`, as in Google's AIP-136) never both match one path."""

    regex = r"[^/:]+"
    schema: ClassVar[dict[str, str]] = {"type": "string", "pattern": "^[^/:]+$"}


class ImportId(BaseConverter):
    """`<import_id:name>`: an import's id as the registry makes it, so that reading one and
    starting one (`/registry/imports/<kind>`) never both match one path."""

    regex = r"imp-[0-9a-f]{16}"
    schema: ClassVar[dict[str, str]] = {"type": "string", "pattern": f"^{regex}$"}


# Each converter routes by its regex and is documented by its schema (gateway/openapi.py), as
# Werkzeug's own `any(a, b)` is documented by an enum.
PATH_CONVERTERS = {"id": PathIdentifier, "import_id": ImportId}


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"{field}: {message}", [{"field": field, "message": message}])


def json_body(model: type[BaseModel]) -> Any:
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    # One parse, strict: a value must have the JSON type the document gives it. Lax, pydantic
    # would take 0 for the date 1970-01-01 and false for the number 0.
    try:
        body = model.model_validate_json(request.get_data(cache=False) or b"null", strict=True)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid" and "recursion limit" in first["msg"]:
            # Well-formed perhaps, but nested deeper than any body of this API: refused unread.
            raise body_refused(422, "nested_too_deep", "body is nested too deep", "nested too deep") from exc
        if first["type"] == "json_invalid":
            reason = first["msg"].removeprefix("Invalid JSON: ")
            raise ApiError(400, "malformed_json", f"body is not valid JSON: {reason}") from exc
        if first["type"] == "model_type" and not first["loc"]:
            raise body_refused(
                400, "malformed_json", "body must be a JSON object", "must be an object"
            ) from exc
        raise InvalidInput(field_errors(exc)) from exc
    g.body_target = identifiers(body)  # what the request is about, for the audit trail
    return body


def body_refused(status: int, code: str, message: str, why: str) -> ApiError:
    """The body as a whole is refused (not one of its fields)."""
    return ApiError(status, code, message, [{"field": "body", "message": why}])


def idempotency_key() -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key or len(key) > 200:
        raise ApiError(
            400,
            "missing_idempotency_key",
            "an Idempotency-Key header (1 to 200 characters) is required",
            [{"field": "Idempotency-Key", "message": "required header, 1 to 200 characters"}],
        )
    return key


# Years 1000 to 2999, as shared.schemas.MONTH: a day's bounds in China's time zone, and the
# day after a period, stay within Python's dates.
ISO_DATE = re.compile(r"[12]\d{3}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Query:
    """A query parameter, documented in OpenAPI (`schema`) and read (`read`) from this one
    declaration, so the document and the checks cannot drift apart. A value given empty is
    refused like any other invalid one."""

    name: str
    description: str
    schema: dict[str, Any]
    parse: Callable[[str], Any]  # raises ValueError for a value it refuses
    refusal: str  # what the error says a valid value is
    required: bool = False
    default: Any = None

    def read(self) -> Any:
        raw = request.args.get(self.name)
        if raw is None:
            if self.required:
                raise invalid(self.name, f"required: {self.refusal}")
            return self.default
        try:
            return self.parse(raw)
        except ValueError:
            raise invalid(self.name, self.refusal) from None


def _matching(pattern: re.Pattern[str]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not pattern.fullmatch(raw):
            raise ValueError(raw)
        return raw

    return parse


def identifier_query(name: str, description: str, required: bool = False) -> Query:
    """An organisation, person or other code (the registry's identifier syntax)."""
    schema = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": f"^{IDENTIFIER.pattern}$"}
    refusal = "a code: letters, digits, _ . : -"
    return Query(name, description, schema, _matching(IDENTIFIER), refusal, required)


def integer_query(name: str, description: str, low: int, high: int, default: int) -> Query:
    def parse(raw: str) -> int:
        if not (raw.isascii() and raw.isdigit() and low <= int(raw) <= high):
            raise ValueError(raw)
        return int(raw)

    schema = {"type": "integer", "minimum": low, "maximum": high, "default": default}
    return Query(name, description, schema, parse, f"whole number from {low} to {high}", default=default)


def boolean_query(name: str, description: str) -> Query:
    def parse(raw: str) -> bool:
        if raw not in ("true", "false"):
            raise ValueError(raw)
        return raw == "true"

    schema = {"type": "boolean", "default": False}
    return Query(name, description, schema, parse, "true or false", default=False)


def date_query(name: str, description: str, required: bool = False) -> Query:
    """An ISO date, checked here so services get only valid ones."""

    def parse(raw: str) -> str:
        if not ISO_DATE.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw).isoformat()

    schema = {"type": "string", "format": "date", "pattern": f"^{ISO_DATE.pattern}$"}
    return Query(name, description, schema, parse, "a date, YYYY-MM-DD", required)


def month_query(name: str, description: str) -> Query:
    schema = {"type": "string", "pattern": f"^{MONTH.pattern}$"}
    return Query(name, description, schema, _matching(MONTH), "a month, YYYY-MM", required=True)


def choice_query(name: str, description: str, choices: list[str], default: str | None = None) -> Query:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(raw)
        return raw

    schema: dict[str, Any] = {"type": "string", "enum": choices} | ({"default": default} if default else {})
    return Query(name, description, schema, parse, f"one of {', '.join(choices)}", default=default)


def require_role(rpc: Any, role: str, *organisations: str | None) -> None:
    """The request's API key has `role`, and each organisation the change concerns lies within
    the key's scope (the subtree of its organisation). None stands for a change that names no
    organisation: only a key without scope may make it."""
    if role not in g.key.get("roles", []):
        raise ApiError(403, "forbidden", f"this API key lacks the {role} role")
    require_scope(rpc, *organisations)


def require_scope(rpc: Any, *organisations: str | None) -> None:
    """Each organisation a change concerns lies within the key's scope (None: see require_role)."""
    scope = g.key.get("scope")
    for code in organisations if scope else ():
        if code is None:
            raise ApiError(
                403,
                "forbidden",
                f"this API key acts within {scope}; this change names no organisation there, "
                "so it needs a key without scope",
            )
        if not in_known_scope(rpc, code):
            raise ApiError(403, "forbidden", f"this API key acts within {scope}, not {code}")


def in_scope(rpc: Any, organisation: str) -> bool:
    """`organisation` lies within the subtree of the key's scope (any, for a key without one)."""
    scope = g.key.get("scope")
    return (
        not scope
        or organisation == scope
        or scope in rpc.call(REGISTRY, "get_organisation", organisation)["path"]
    )


def in_known_scope(rpc: Any, organisation: str) -> bool:
    """`in_scope`, for checks that must not fail on an organisation the registry does not know
    (since removed, or never there): such an organisation lies in no key's scope."""
    try:
        return in_scope(rpc, organisation)
    except NotFound:
        return False


def outside_scope(what: str) -> ApiError:
    """A read of something outside the key's scope gets the answer an unknown one gets, 404, so
    nothing is learnt of what lies elsewhere; the refusal is audited (see gateway.app)."""
    g.outside_scope = True
    return ApiError(404, "not_found", f"no {what} within this API key's scope")


def within_scope(rpc: Any, organisation: str | None, what: str = "organisation") -> str | None:
    """What a read may cover: `organisation` if it lies within the key's scope, else 404; the
    scope itself if none is asked for, so that a scoped key's lists stay within its subtree."""
    if organisation is None:
        return g.key.get("scope")
    if not in_scope(rpc, organisation):
        raise outside_scope(f"{what} {organisation}")
    return organisation


def home_of(resident: Mapping[str, Any]) -> str:
    """Where a person (or a place) lies, as scopes see it: their grid (a person's is their
    household's) if they have one, else their community. A grid's key sees its residents; a
    community's, all of the community's."""
    return resident.get("grid_id") or resident["community_id"]


def household_home(rpc: Any, household_id: str | None, community_id: str | None) -> str | None:
    """Where a person registered or moved there would live: their household's grid (or
    community) if the registry knows the household, else the community given."""
    if household_id:
        with suppress(NotFound):  # the registry refuses an unknown household, naming the field
            return home_of(rpc.call(REGISTRY, "get_place", household_id))
    return community_id


def person_within_scope(rpc: Any, person_id: str) -> dict[str, Any]:
    """The person, from the registry: 404 if it does not know them, or they live outside the
    key's scope."""
    person = rpc.call(REGISTRY, "get_person", person_id)
    if g.key.get("scope") and not in_scope(rpc, home_of(person)):
        raise outside_scope(f"person {person_id}")
    return person


def person_in_scope(rpc: Any, person_id: str) -> None:
    """For a key with a scope only (no registry call otherwise): 404 unless the person is
    known and lives within it. For reads whose own service answers for unknown people."""
    if g.key.get("scope"):
        person_within_scope(rpc, person_id)


def account_within_scope(rpc: Any, account_id: str) -> None:
    """A points account's owner within the key's scope: a person, or a community's pool and
    held points (`pool:<community>:<n>`, `held:…`), or a volunteer team (`team:<code>`)."""
    if not g.key.get("scope"):
        return
    kind, _, rest = account_id.partition(":")
    if kind in ("pool", "held", "team"):
        within_scope(rpc, rest.split(":")[0], "account")
    else:
        person_within_scope(rpc, account_id)


def recipient_within_scope(rpc: Any, account_id: str) -> None:
    """Someone points may be given to, else 404: a person the registry knows, within the key's
    scope, or a volunteer team's account (`team:<code>`, an account only) within it."""
    if account_id.startswith("team:"):
        account_within_scope(rpc, account_id)
    else:
        person_within_scope(rpc, account_id)


def signed(model: BaseModel, field: str = "actor") -> dict[str, Any]:
    """The body with the acting staff member taken from the API key, not from the caller."""
    return model.model_copy(update={field: g.key.get("name")}).model_dump(mode="json")


FILE_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def download(exported: dict[str, str], file_format: str) -> Response:
    """A file a service made ({"filename", "content" in base64}) as an attachment."""
    return Response(
        base64.b64decode(exported["content"]),
        mimetype=FILE_TYPES[file_format],
        headers={"Content-Disposition": attachment(exported["filename"])},
    )


def attachment(filename: str) -> str:
    """Content-Disposition for a file name that may hold anything a caller put in its path
    (a control character made the header invalid: a 500, found by fuzzing): a plain-ASCII
    name for old clients, and the exact one percent-encoded (RFC 6266)."""
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"
