"""Shapes of the gateway's answers, for the OpenAPI document and for contract tests."""

from __future__ import annotations

from pydantic import BaseModel


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    fields: list[FieldError] = []


class ErrorResponse(BaseModel):
    error: ErrorBody
    request_id: str


class VolunteerActAccepted(BaseModel):
    act_id: str
    status: str
    replayed: bool


class VolunteerActBatchAccepted(BaseModel):
    items: list[VolunteerActAccepted]


class VolunteerAct(BaseModel):
    act_id: str
    person_id: str
    act_type: str
    hours: str
    occurred_on: str
    community_id: str
    recorded_at: str
    event_ids: list[str]


class ActType(BaseModel):
    code: str
    name_zh: str
    name_en: str
    source: str


class ActTypes(BaseModel):
    items: list[ActType]


class LedgerEntry(BaseModel):
    seq: int
    kind: str
    event_id: str
    act_id: str | None = None
    act_type: str | None = None
    hours: str | None = None
    points: int
    balance_after: int
    applied_at: str


class Account(BaseModel):
    person_id: str
    balance: int
    entries_total: int
    entries: list[LedgerEntry]


class DossierAct(BaseModel):
    seq: int
    act_id: str
    act_type: str
    hours: str
    occurred_on: str
    community_id: str
    applied_at: str


class Dossier(BaseModel):
    person_id: str
    name: str
    employer: str | None
    acts_total: int
    hours_total: str
    volunteer_acts: list[DossierAct]


class Person(BaseModel):
    id: str
    name: str
    community_id: str
    is_party_member: bool
    is_cadre: bool
    employer: str | None


class PeoplePage(BaseModel):
    items: list[Person]
    total: int
    offset: int


class Organisation(BaseModel):
    id: str
    code: str
    name: str
    classification: str
    parent_id: str | None


class Organisations(BaseModel):
    items: list[Organisation]


class Pong(BaseModel):
    service: str
    answer: str
