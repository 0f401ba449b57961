"""Event contracts: the envelope, versions, and the topology the relay declares."""

from __future__ import annotations

import inspect
from datetime import date
from decimal import Decimal

import pytest
from nameko.events import EventHandler

from services.cadres.service import CadreEvaluation
from services.intake.service import IssueIntake
from services.points.service import PointsBank
from services.registry.service import OrganisationRegistry
from shared.events import (
    SUBSCRIPTIONS,
    InvalidEvent,
    PersonRegistered,
    VolunteerActRecorded,
    exchange_name,
    new_event,
    parse_event,
    routing_key,
)
from tests.support import act_recorded

SERVICE_CLASSES = {cls.name: cls for cls in (OrganisationRegistry, IssueIntake, PointsBank, CadreEvaluation)}


def act() -> VolunteerActRecorded:
    return act_recorded(act_id="va_1", hours=Decimal("2.25"))


def test_envelope_carries_cloudevents_attributes_and_exact_hours():
    envelope = new_event(act(), subject="va_1")
    wire = envelope.model_dump(mode="json")
    assert wire["specversion"] == "1.0"
    assert wire["type"] == "cn.gridlink.volunteer_act.recorded.v1"
    assert wire["source"] == "/gridlink/issue_intake"
    assert wire["subject"] == "va_1"
    assert wire["datacontenttype"] == "application/json"
    assert wire["data"]["hours"] == "2.25"  # a string: no float rounding on the way
    assert routing_key(envelope) == "volunteer_act.recorded"


def test_parse_event_round_trips():
    wire = new_event(act(), subject="va_1").model_dump(mode="json")
    envelope, data = parse_event(wire, VolunteerActRecorded)
    assert envelope.id == wire["id"]
    assert data.hours == Decimal("2.25")
    assert data.occurred_on == date(2026, 11, 20)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda w: "not an object",
        lambda w: {**w, "specversion": "0.3"},
        lambda w: {k: v for k, v in w.items() if k != "id"},
        lambda w: {**w, "type": "cn.gridlink.volunteer_act.recorded.v9"},
        lambda w: {**w, "data": {**w["data"], "hours": "many"}},
        lambda w: {**w, "data": {**w["data"], "points": 9999}},
        lambda w: {**w, "time": "2026-11-20T08:00:00"},
    ],
    ids=[
        "not-an-object",
        "wrong-specversion",
        "no-id",
        "unknown-version",
        "bad-data",
        "unknown-field",
        "time-without-offset",
    ],
)
def test_parse_event_refuses_what_no_retry_can_fix(mangle):
    wire = new_event(act(), subject="va_1").model_dump(mode="json")
    with pytest.raises(InvalidEvent):
        parse_event(mangle(wire), VolunteerActRecorded)


def test_events_never_carry_phone_or_id_numbers():
    for contract in (PersonRegistered, VolunteerActRecorded):
        fields = set(contract.model_fields)
        assert not fields & {"phone", "id_number", "id_card"}, contract


def test_queue_names_follow_nameko_service_pool_convention():
    credit = next(s for s in SUBSCRIPTIONS if s.handler == "credit_volunteer_act")
    assert exchange_name(credit.source) == "issue_intake.events"
    assert credit.queue == "evt-issue_intake-volunteer_act.recorded--points_bank.credit_volunteer_act"


@pytest.mark.parametrize("subscription", SUBSCRIPTIONS, ids=lambda s: f"{s.service}.{s.handler}")
def test_every_subscription_is_a_real_handler(subscription):
    """The relay pre-declares exactly the queues the handlers consume from."""
    service = SERVICE_CLASSES[subscription.service]
    method = getattr(service, subscription.handler)
    [entrypoint] = [e for e in getattr(method, "nameko_entrypoints", ()) if isinstance(e, EventHandler)]
    assert entrypoint.source_service == subscription.source
    assert entrypoint.event_type == subscription.routing_key
    assert entrypoint.handler_type == "service_pool"
    assert entrypoint.requeue_on_error is True


def test_every_event_handler_is_listed_in_the_topology():
    listed = {(s.service, s.handler) for s in SUBSCRIPTIONS}
    for name, service in SERVICE_CLASSES.items():
        for attribute, method in inspect.getmembers(service, inspect.isfunction):
            if any(isinstance(e, EventHandler) for e in getattr(method, "nameko_entrypoints", ())):
                assert (name, attribute) in listed, f"{name}.{attribute} consumes but is not in SUBSCRIPTIONS"
