"""Points rules and the registry's tree rules."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.points import domain as points
from services.registry import domain as registry
from shared.errors import InvalidInput
from shared.events import new_event
from shared.schemas import validated
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


def org(code, classification, parent=None):
    return registry.NewOrganisation(code=code, name=code, classification=classification, parent_id=parent)


def test_tree_levels_must_nest_street_community_grid_building():
    street = {"_id": "s1", "classification": "street_working_committee"}
    community = {"_id": "c1", "classification": "community_party_committee"}
    registry.check_parent(org("s1", "street_working_committee"), None)
    registry.check_parent(org("c1", "community_party_committee", "s1"), street)
    registry.check_parent(org("g1", "grid_party_branch", "c1"), community)
    with pytest.raises(InvalidInput) as caught:
        registry.check_parent(org("g1", "grid_party_branch", "s1"), street)
    assert caught.value.errors[0]["field"] == "parent_id"
    with pytest.raises(InvalidInput):
        registry.check_parent(org("g1", "grid_party_branch", "nowhere"), None)
    with pytest.raises(InvalidInput):
        registry.check_parent(org("c1", "community_party_committee"), None)


def test_a_cadre_is_an_in_service_party_member():
    base = {"name": "王建国", "community_id": "c"}
    validated(registry.NewPerson, {**base, "is_party_member": True, "is_cadre": True, "employer": "住建局"})
    with pytest.raises(InvalidInput):
        validated(
            registry.NewPerson, {**base, "is_party_member": False, "is_cadre": True, "employer": "住建局"}
        )
    with pytest.raises(InvalidInput):
        validated(registry.NewPerson, {**base, "is_party_member": True, "is_cadre": True})


def test_malformed_codes_are_refused_naming_the_field():
    with pytest.raises(InvalidInput) as caught:
        validated(
            registry.NewOrganisation,
            {"code": "bad code!", "name": "x", "classification": "grid_party_branch"},
        )
    assert caught.value.errors[0]["field"] == "code"
