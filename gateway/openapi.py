"""OpenAPI 3.1 document built from the same pydantic models that validate requests."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from gateway.http import PATH_CONVERTERS, Query
from gateway.responses import ErrorResponse

STANDARD_ERRORS = {
    401: "missing, unknown, revoked or expired API key",
    403: "a write with a read-only API key, or a staff session's write without its CSRF token, or by a "
    "session that must change its password first",
    413: "request body too large",
    429: "over the API key's request rate; the Retry-After header says when to try again",
    503: "a service, the message broker or a database is unavailable",
    504: "a service did not answer in time",
}
# What the gateway itself refuses before any service sees the request, by what it reads.
BODY_ERRORS = {
    400: "malformed JSON body",
    415: "body not sent as application/json",
    422: "invalid field",
}
HEADER_ERRORS = {400: "missing or invalid header"}
QUERY_ERRORS = {422: "invalid query parameter"}
RETRY_AFTER = {
    "description": "whole seconds until the key may send again",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
# A header the gateway reads, as its value must be (see gateway.http.idempotency_key).
HEADER_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"}


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    response: type[BaseModel] | None
    status: int = 200
    request: type[BaseModel] | None = None
    errors: dict[int, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    query: list[Query] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # media types of a file the answer may be
    # Calls the answer leads to, name → `link(...)`: clients and fuzzers follow them.
    links: dict[str, tuple[str, str, dict[str, str]]] = field(default_factory=dict)
    tag: str = "GridLink"


# How route modules declare an operation: `@route(Operation(...))` above its view.
Route = Callable[[Operation], Callable[[Callable[..., Any]], Callable[..., Any]]]


class OpenApi:
    def __init__(self, title: str, version: str, description: str) -> None:
        self.info = {"title": title, "version": version, "description": description}
        self.operations: list[Operation] = []
        self._document: dict[str, Any] | None = None

    def add(self, operation: Operation) -> None:
        self.operations.append(operation)
        self._document = None

    def document(self) -> dict[str, Any]:
        """The document, built once: building it (pydantic's schemas) took 0.7 to 1.4 s a
        request under the test suite's load."""
        if self._document is None:
            self._document = self._built()
        return self._document

    def _built(self) -> dict[str, Any]:
        schemas: dict[str, Any] = {}
        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            paths.setdefault(_openapi_path(op.path), {})[op.method.lower()] = self._operation(op, schemas)
        return {
            "openapi": "3.1.0",
            "info": self.info,
            "servers": [{"url": "/"}],
            "security": [{"ApiKey": []}],
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            },
        }

    def _operation(self, op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": _path_schema(converter)}
            | ({"example": PATH_EXAMPLES[name]} if name in PATH_EXAMPLES else {})
            for converter, name in PATH_PARAMETER.findall(op.path)
        ]
        parameters += [
            {
                "name": name,
                "in": "header",
                "required": True,
                "description": text,
                "schema": HEADER_SCHEMA,
            }
            for name, text in op.headers.items()
        ]
        parameters += [
            {
                "name": query.name,
                "in": "query",
                "required": query.required,
                "description": query.description,
                "schema": query.schema,
            }
            for query in op.query
        ]
        content = (_json(_ref(op.response, schemas)) if op.response else {}) | {
            kind: {"schema": {"type": "string", "contentMediaType": kind}} for kind in op.files
        }
        responses: dict[str, Any] = {
            str(op.status): {"description": op.summary} | ({"content": content} if content else {})
        }
        if op.links:
            responses[str(op.status)]["links"] = {
                name: {"operationId": _operation_id(method, path), "parameters": parameters}
                for name, (method, path, parameters) in op.links.items()
            }
        refused_here = {
            **(QUERY_ERRORS if op.query else {}),
            **(HEADER_ERRORS if op.headers else {}),
            **(BODY_ERRORS if op.request else {}),
        }
        for status, text in sorted({**STANDARD_ERRORS, **refused_here, **op.errors}.items()):
            responses[str(status)] = {
                "description": text,
                "content": _json(_ref(ErrorResponse, schemas)),
            }
        responses["429"]["headers"] = {"Retry-After": RETRY_AFTER}
        operation: dict[str, Any] = {
            "summary": op.summary,
            "operationId": _operation_id(op.method, op.path),
            "tags": [op.tag],
            "parameters": parameters,
            "responses": responses,
        }
        if op.request:
            operation["requestBody"] = {
                "required": True,
                "content": _json(_ref(op.request, schemas)),
            }
        return operation


def link(method: str, path: str, **parameters: str) -> tuple[str, str, dict[str, str]]:
    """An `Operation.links` entry: the operation at `method` `path`, each path parameter
    taken from the named field of this answer's body."""
    return method, path, {name: f"$response.body#/{field}" for name, field in parameters.items()}


def _operation_id(method: str, flask_path: str) -> str:
    path = route_template(flask_path).strip("/")
    return f"{method.lower()}_{path.replace('/', '_').replace('-', '_')}"


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


# Path parameters' examples, from the demo data (deploy/local/demo_data.py): the docs page's
# "Try it out" with the demo key, and the fuzzer, then reach records that exist.
PATH_EXAMPLES = {
    "code": "420391-001-001",
    "community_id": "420391-001-001",
    "person_id": "p-zg-001",
    "account_id": "p-zg-001",
}

# A Flask path parameter, "<name>" or "<converter:name>", possibly followed by ":action".
PATH_PARAMETER = re.compile(r"<(?:([^:<>]+):)?([^<>]+)>")


def route_template(flask_path: str) -> str:
    """The path as operations are named (in ids, the audit trail): `<name>`, without converters."""
    return PATH_PARAMETER.sub(r"<\2>", flask_path)


def _path_schema(converter: str) -> dict[str, Any]:
    if not converter:
        return {"type": "string"}
    if converter.startswith("any("):
        return {"type": "string", "enum": [choice.strip() for choice in converter[4:-1].split(",")]}
    return dict(PATH_CONVERTERS[converter].schema)


def _openapi_path(flask_path: str) -> str:
    return PATH_PARAMETER.sub(r"{\2}", flask_path)
