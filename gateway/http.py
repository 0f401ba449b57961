"""Reading requests: JSON bodies, headers and query parameters, refused with named fields."""

from __future__ import annotations

import base64
import json
from datetime import date
from typing import Any

from flask import Response, g, request
from pydantic import BaseModel

from shared.events import REGISTRY
from shared.schemas import validated


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or []


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"{field}: {message}", [{"field": field, "message": message}])


def json_body(model: type[BaseModel]) -> Any:
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        payload = json.loads(request.get_data(cache=False) or b"null")
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ApiError(
            400,
            "malformed_json",
            "body must be a JSON object",
            [{"field": "body", "message": "must be an object"}],
        )
    return validated(model, payload)


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


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise invalid(name, f"whole number from {low} to {high}")
    return int(raw)


def bool_arg(name: str) -> bool:
    raw = request.args.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise invalid(name, "true or false")
    return raw in ("true", "1")


def date_arg(name: str) -> str | None:
    """An ISO date from the query string, checked here so services get only valid ones."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw).isoformat()
    except ValueError:
        raise invalid(name, "a date, YYYY-MM-DD") from None


def choice_arg(name: str, choices: list[str]) -> str | None:
    raw = request.args.get(name)
    if raw is not None and raw not in choices:
        raise invalid(name, f"one of {', '.join(choices)}")
    return raw


def require_role(rpc: Any, role: str, community_id: str) -> None:
    """The request's API key has `role`, and `community_id` lies within the key's scope (the
    subtree of its organisation)."""
    key = g.key
    if role not in key.get("roles", []):
        raise ApiError(403, "forbidden", f"this API key lacks the {role} role")
    scope = key.get("scope")
    if scope and scope != community_id:
        path = rpc.call(REGISTRY, "get_organisation", community_id)["path"]
        if scope not in path:
            raise ApiError(403, "forbidden", f"this API key acts within {scope}, not {community_id}")


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
        headers={"Content-Disposition": f'attachment; filename="{exported["filename"]}"'},
    )
