"""Points rules."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.points import domain as points
from shared.events import new_event
from tests.support import act_recorded


@pytest.mark.parametrize(
    ("hours", "per_hour", "expected"),
    [
        ("1", "10", 10),
        ("2.25", "10", 23),
        ("0.04", "10", 0),
        ("0.05", "10", 1),
        ("24", "10", 240),
        ("1.5", "3", 5),
    ],
)
def test_points_are_whole_and_half_rounds_up(hours, per_hour, expected):
    assert points.points_for_hours(Decimal(hours), Decimal(per_hour)) == expected


def test_credit_entry_names_its_act_and_rule():
    act = act_recorded(act_id="va_1", hours=Decimal("3"))
    envelope = new_event(act, subject="va_1")
    entry = points.volunteer_act_credit(envelope, act, Decimal(10), applied_at=datetime.now(UTC))
    assert entry["act_id"] == "va_1"
    assert entry["event_id"] == envelope.id
    assert entry["points"] == 30
    assert entry["rule"] == "10 points per hour"
