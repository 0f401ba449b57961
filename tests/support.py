"""Helpers for tests: waiting on asynchronous effects, and events to feed consumers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from shared.events import Envelope, VolunteerActRecorded, new_event

T = TypeVar("T")


def eventually(probe: Callable[[], T], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Call `probe` until it returns a truthy value or raises no AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = probe()
            if result:
                return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout}s: {probe}")
        time.sleep(interval)


def act_recorded(**overrides: Any) -> VolunteerActRecorded:
    """A recorded volunteer act (a fresh act id each time); override what the test is about."""
    fields: dict[str, Any] = {
        "act_id": f"va_{uuid.uuid4().hex[:12]}",
        "person_id": "p-1",
        "act_type": "clean_up",
        "hours": Decimal(1),
        "occurred_on": date(2026, 11, 20),
        "community_id": "420391-001-001",
        "recorded_at": datetime.now(UTC),
    }
    return VolunteerActRecorded(**{**fields, **overrides})


def act_recorded_event(**overrides: Any) -> Envelope:
    act = act_recorded(**overrides)
    return new_event(act, subject=act.act_id)


def outbox_events(db) -> list[dict]:
    """Every event still waiting in a service's outbox, as {id, aggregate_id} (a record lists
    the events of one write; the events themselves are in their aggregates)."""
    return [event for record in db.outbox.find({}) for event in record["events"]]
