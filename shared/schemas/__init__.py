"""Payloads that cross the gateway → service RPC boundary.

The gateway validates requests with these models (and documents them in OpenAPI); the owning
service validates again, because RPC callers other than the gateway exist (tests, tools).
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import InvalidInput

CROSS_FIELD_MESSAGE = re.compile(r"^Value error, (?P<field>[a-z_]+): (?P<message>.+)$", re.DOTALL)
# The syntax of every code and id a caller sends (organisations, people, items...).
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
# A month, YYYY-MM, of a year this system can reckon in (its periods end in the next month).
MONTH = re.compile(r"([12]\d{3})-(0[1-9]|1[0-2])")
Identifier = Field(min_length=1, max_length=64, pattern=f"^{IDENTIFIER.pattern}$")


class VolunteerActInput(BaseModel):
    """One volunteer act as a community reports it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    person_id: str = Identifier
    act_type: str = Field(min_length=1, max_length=40, description="code from /volunteer-act-types")
    hours: Decimal = Field(gt=0, le=24, decimal_places=2, description="0 < hours ≤ 24, two decimals at most")
    occurred_on: date = Field(description="the day of the act; not in the future (China Standard Time)")
    community_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="the verifying community",
    )


# The most acts one batch may carry; GRIDLINK_BATCH_MAX_ITEMS can lower it, never raise it.
BATCH_MAX_ITEMS = 500


class VolunteerActBatchItem(VolunteerActInput):
    idempotency_key: str = Field(min_length=1, max_length=200)


class VolunteerActBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[VolunteerActBatchItem] = Field(min_length=1, max_length=BATCH_MAX_ITEMS)


class ActRevocation(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(min_length=2, max_length=200)
    actor: str | None = Field(None, max_length=64, description="the gateway sets the API key's name")


def field_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """pydantic errors as [{"field": "items[3].hours", "message": ...}]."""
    errors = []
    for error in exc.errors(include_url=False):
        location, message = list(error["loc"]), error["msg"]
        # A rule across fields (model validator) names its field: ValueError("end_on: ...").
        named = CROSS_FIELD_MESSAGE.match(message)
        if named:
            location, message = [*location, named["field"]], named["message"]
        path = prefix
        for part in location:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        errors.append({"field": path or "body", "message": message})
    return errors


def validated(model: type[BaseModel], payload: object, prefix: str = "") -> BaseModel:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidInput(field_errors(exc, prefix)) from exc
