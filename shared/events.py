"""Event contracts: defined once here, used by every publisher and consumer.

Every event travels inside a CloudEvents 1.0 envelope. `data` follows one versioned contract
model; a breaking change adds a new model with `version = 2` beside the old one, so consumers
can move over one at a time.

Routing follows nameko's conventions so that plain `@event_handler` entrypoints receive what
the outbox relay publishes: exchange `<source service>.events` (topic), routing key = event
name, one durable queue per subscribing handler. A message body is one CloudEvent in JSON, or
a CloudEvents JSON batch (an array of them, all of one type) when the relay sends several at
once; `shared/consumer.py` takes both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, ValidationError

# nameko service names; they name exchanges and queues, so they never change.
REGISTRY = "registry"
ISSUE_INTAKE = "issue_intake"
POINTS_BANK = "points_bank"
CADRE_EVALUATION = "cadre_evaluation"

# Decimals travel as strings so that 2.25 hours stays exactly 2.25 hours.
ExactDecimal = Annotated[Decimal, PlainSerializer(lambda value: str(value), return_type=str)]


class EventData(BaseModel):
    """Base of every event payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_name: ClassVar[str]
    version: ClassVar[int] = 1
    source_service: ClassVar[str]

    @classmethod
    def cloudevent_type(cls) -> str:
        return f"cn.gridlink.{cls.event_name}.v{cls.version}"


class Envelope(BaseModel):
    """CloudEvents 1.0 attributes, JSON format."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=100)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    time: AwareDatetime  # RFC 3339, with its offset
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]


# --- registry ---------------------------------------------------------------------------


class OrganisationCreated(EventData):
    event_name: ClassVar[str] = "organisation.created"
    source_service: ClassVar[str] = REGISTRY

    organisation_id: str
    code: str
    name: str
    classification: str
    parent_id: str | None


class PersonFacts(EventData):
    """A person's public details, as both person events carry them. No phone or ID number,
    by design."""

    source_service: ClassVar[str] = REGISTRY

    person_id: str
    name: str
    community_id: str
    is_party_member: bool
    is_cadre: bool
    employer: str | None = None
    grid_id: str | None = None  # the grid of the person's household

    def copy_version(self) -> int:
        """Orders copies of one person: registration is 1, updates carry their revision."""
        return 1

    def read_model(self, fields: Iterable[str] | None = None) -> dict[str, Any]:
        """The person as another service keeps them: `_id`, the `fields` it needs (all by
        default) and the `version` that orders copies (see shared/read_models.py)."""
        wanted = set(fields) if fields is not None else None
        facts = self.model_dump(mode="json", include=wanted, exclude={"person_id", "revision"})
        return {"_id": self.person_id, **facts, "version": self.copy_version()}


class PersonRegistered(PersonFacts):
    """A person entered the registry."""

    event_name: ClassVar[str] = "person.registered"


class OrganisationMoved(EventData):
    """The organisation, and with it its whole subtree, has a new parent."""

    event_name: ClassVar[str] = "organisation.moved"
    source_service: ClassVar[str] = REGISTRY

    organisation_id: str
    from_parent_id: str | None
    to_parent_id: str


class OrganisationClosed(EventData):
    event_name: ClassVar[str] = "organisation.closed"
    source_service: ClassVar[str] = REGISTRY

    organisation_id: str
    classification: str
    closed_on: date


class PersonUpdated(PersonFacts):
    """The person's public details after a change; `revision` orders updates of one person
    (registration is revision 1)."""

    event_name: ClassVar[str] = "person.updated"

    revision: int

    def copy_version(self) -> int:
        return self.revision


class MembershipStarted(EventData):
    """A person took a post or joined an organisation (or is a building/unit head of a place)."""

    event_name: ClassVar[str] = "membership.started"
    source_service: ClassVar[str] = REGISTRY

    membership_id: str
    person_id: str
    role: str
    organisation_id: str | None
    place_id: str | None
    start_on: date
    end_on: date | None
    on_behalf_of: str | None


class MembershipEnded(EventData):
    event_name: ClassVar[str] = "membership.ended"
    source_service: ClassVar[str] = REGISTRY

    membership_id: str
    person_id: str
    role: str
    end_on: date


class DualReportRegistered(EventData):
    """双报到: an in-service member or a unit reported to the community where it serves."""

    event_name: ClassVar[str] = "dual_report.registered"
    source_service: ClassVar[str] = REGISTRY

    report_id: str
    person_id: str | None
    unit_id: str | None
    community_id: str
    reported_on: date
    posts: list[str]


class ServicePostClaimed(EventData):
    """A reporter of 双报到 claimed one more service post (认岗) after reporting."""

    event_name: ClassVar[str] = "dual_report.post_claimed"
    source_service: ClassVar[str] = REGISTRY

    report_id: str
    person_id: str | None
    unit_id: str | None
    post: str
    claimed_on: date


# --- issue intake -----------------------------------------------------------------------


class VolunteerActRecorded(EventData):
    event_name: ClassVar[str] = "volunteer_act.recorded"
    source_service: ClassVar[str] = ISSUE_INTAKE

    act_id: str
    person_id: str
    act_type: str
    hours: ExactDecimal
    occurred_on: date
    community_id: str
    recorded_at: datetime

    def facts(self) -> dict[str, str]:
        """The act as ledgers and dossiers record it: decimals and dates as text."""
        return {
            "act_id": self.act_id,
            "act_type": self.act_type,
            "hours": str(self.hours),
            "occurred_on": self.occurred_on.isoformat(),
            "community_id": self.community_id,
        }


# --- points bank ------------------------------------------------------------------------


class PointsTransferred(EventData):
    """Points moved between two accounts: a credit, a debit, a redemption or a reversal.
    Accounts are person ids, `team:<id>`, `pool:<community>:<n>` or `held:<community>:<n>`."""

    event_name: ClassVar[str] = "points.transferred"
    source_service: ClassVar[str] = POINTS_BANK

    transfer_id: str
    kind: str
    from_account: str
    to_account: str
    points: int
    community_id: str
    reverses: str | None = None


class VolunteerActRevoked(EventData):
    """A recorded act turned out wrong: what it earned is taken back, pointing at the credit."""

    event_name: ClassVar[str] = "volunteer_act.revoked"
    source_service: ClassVar[str] = ISSUE_INTAKE

    act_id: str
    person_id: str
    community_id: str
    recorded_event_id: str  # the `volunteer_act.recorded` event the credit came from
    reason: str
    revoked_by: str | None


ContractT = TypeVar("ContractT", bound=EventData)


def new_event(data: EventData, subject: str, event_id: str | None = None) -> Envelope:
    """An event about `subject`; `event_id` for one that must keep its id when made again."""
    return Envelope(
        id=event_id or str(uuid.uuid4()),
        source=f"/gridlink/{data.source_service}",
        type=data.cloudevent_type(),
        subject=subject,
        time=datetime.now(UTC),
        data=data.model_dump(mode="json"),
    )


class InvalidEvent(ValueError):
    """A message that no retry can make valid; consumers park it."""


def parse_event(payload: Any, contract: type[ContractT]) -> tuple[Envelope, ContractT]:
    try:
        envelope = Envelope.model_validate(payload)
    except ValidationError as exc:
        raise InvalidEvent(f"not a GridLink CloudEvent: {exc.errors(include_url=False)}") from exc
    if envelope.type != contract.cloudevent_type():
        raise InvalidEvent(f"expected type {contract.cloudevent_type()}, got {envelope.type}")
    try:
        return envelope, contract.model_validate(envelope.data)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid {envelope.type} data: {exc.errors(include_url=False)}") from exc


# --- topology ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscription:
    contract: type[EventData]
    service: str
    handler: str

    @property
    def source(self) -> str:
        return self.contract.source_service

    @property
    def routing_key(self) -> str:
        return self.contract.event_name

    @property
    def queue(self) -> str:
        # nameko's SERVICE_POOL queue name: one queue per (event, consuming handler).
        return f"evt-{self.source}-{self.contract.event_name}--{self.service}.{self.handler}"


def exchange_name(source_service: str) -> str:
    return f"{source_service}.events"


# Who listens to what. The relay declares these queues before its first publish, so an event
# published while a consumer is down waits in the consumer's queue instead of being dropped.
SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription(OrganisationCreated, ISSUE_INTAKE, "remember_organisation"),
    Subscription(PersonRegistered, ISSUE_INTAKE, "remember_person"),
    Subscription(OrganisationClosed, ISSUE_INTAKE, "close_organisation"),
    Subscription(PersonUpdated, ISSUE_INTAKE, "update_person"),
    Subscription(OrganisationMoved, ISSUE_INTAKE, "move_organisation"),
    Subscription(PersonRegistered, CADRE_EVALUATION, "remember_person"),
    Subscription(PersonUpdated, CADRE_EVALUATION, "update_person"),
    Subscription(DualReportRegistered, CADRE_EVALUATION, "add_dual_report_to_dossier"),
    Subscription(ServicePostClaimed, CADRE_EVALUATION, "add_claimed_post_to_dossier"),
    Subscription(VolunteerActRecorded, POINTS_BANK, "credit_volunteer_act"),
    Subscription(PointsTransferred, CADRE_EVALUATION, "note_points"),
    Subscription(VolunteerActRevoked, POINTS_BANK, "reverse_volunteer_act"),
    Subscription(PersonRegistered, POINTS_BANK, "remember_person"),
    Subscription(PersonUpdated, POINTS_BANK, "update_person"),
    Subscription(VolunteerActRecorded, CADRE_EVALUATION, "add_act_to_dossier"),
    Subscription(VolunteerActRevoked, CADRE_EVALUATION, "take_revoked_act_out_of_dossier"),
)


def subscriptions_from(source_service: str) -> list[Subscription]:
    return [s for s in SUBSCRIPTIONS if s.source == source_service]


CONTRACTS: tuple[type[EventData], ...] = (
    OrganisationCreated,
    OrganisationMoved,
    OrganisationClosed,
    PersonRegistered,
    PersonUpdated,
    MembershipStarted,
    MembershipEnded,
    DualReportRegistered,
    ServicePostClaimed,
    VolunteerActRecorded,
    VolunteerActRevoked,
    PointsTransferred,
)
_CONTRACT_BY_TYPE = {contract.cloudevent_type(): contract for contract in CONTRACTS}


def routing_key(envelope: Envelope) -> str:
    return _CONTRACT_BY_TYPE[envelope.type].event_name
