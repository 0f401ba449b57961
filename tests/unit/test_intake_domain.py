"""Issue intake rules for volunteer acts."""

from __future__ import annotations

from datetime import date

import pytest

from services.intake import domain
from shared.errors import InvalidInput, NotFound
from shared.schemas import VolunteerActBatch, VolunteerActInput, validated

TODAY = date(2026, 11, 23)
PERSON = {"_id": "p-1", "community_id": "c-1", "is_cadre": True}
COMMUNITY = {"_id": "c-1", "classification": "community_party_committee"}


def an_act(**overrides) -> VolunteerActInput:
    fields = {
        "person_id": "p-1",
        "act_type": "patrol_duty",
        "hours": "2.5",
        "occurred_on": "2026-11-20",
        "community_id": "c-1",
    }
    return VolunteerActInput.model_validate({**fields, **overrides})


def fields_of(exc: InvalidInput) -> set[str]:
    return {e["field"] for e in exc.errors}


def test_a_valid_act_passes():
    domain.check_volunteer_act(an_act(), person=PERSON, community=COMMUNITY, today=TODAY)


def test_act_id_is_stable_per_client_and_key():
    assert domain.act_id_for("client-a", "k1") == domain.act_id_for("client-a", "k1")
    assert domain.act_id_for("client-a", "k1") != domain.act_id_for("client-b", "k1")
    assert domain.act_id_for("client-a", "k1") != domain.act_id_for("client-a", "k2")


def test_unknown_person_is_not_found():
    with pytest.raises(NotFound):
        domain.check_volunteer_act(an_act(), person=None, community=COMMUNITY, today=TODAY)


def test_unknown_person_in_a_batch_names_the_item():
    with pytest.raises(InvalidInput) as caught:
        domain.check_volunteer_act(
            an_act(), person=None, community=COMMUNITY, today=TODAY, field_prefix="items[7]."
        )
    assert fields_of(caught.value) == {"items[7].person_id"}


def test_every_broken_rule_is_named():
    act = an_act(act_type="sleeping", occurred_on="2026-11-24", community_id="c-9")
    with pytest.raises(InvalidInput) as caught:
        domain.check_volunteer_act(act, person=PERSON, community=None, today=TODAY)
    assert fields_of(caught.value) == {"act_type", "occurred_on", "community_id"}


def test_a_grid_is_not_a_verifying_community():
    grid = {"_id": "c-1", "classification": "grid_party_branch"}
    with pytest.raises(InvalidInput) as caught:
        domain.check_volunteer_act(an_act(), person=PERSON, community=grid, today=TODAY)
    assert fields_of(caught.value) == {"community_id"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hours": 0}, "hours"),
        ({"hours": -1}, "hours"),
        ({"hours": "24.01"}, "hours"),
        ({"hours": "1.125"}, "hours"),
        ({"hours": "lots"}, "hours"),
        ({"occurred_on": "2026-02-30"}, "occurred_on"),
        ({"person_id": ""}, "person_id"),
        ({"person_id": "p 1; drop"}, "person_id"),
        ({"points": 9999}, "points"),
    ],
)
def test_input_errors_name_the_field(overrides, field):
    payload = {
        "person_id": "p-1",
        "act_type": "patrol_duty",
        "hours": "2",
        "occurred_on": "2026-11-20",
        "community_id": "c-1",
        **overrides,
    }
    with pytest.raises(InvalidInput) as caught:
        validated(VolunteerActInput, payload)
    assert field in fields_of(caught.value)


BATCH_ITEM = {
    "person_id": "p-1",
    "act_type": "patrol_duty",
    "hours": "2",
    "occurred_on": "2026-11-20",
    "community_id": "c-1",
    "idempotency_key": "k",
}


def test_batch_errors_name_item_and_field():
    with pytest.raises(InvalidInput) as caught:
        validated(VolunteerActBatch, {"items": [BATCH_ITEM, {**BATCH_ITEM, "hours": "30"}]})
    assert fields_of(caught.value) == {"items[1].hours"}


def test_batch_holds_at_most_500_items():
    with pytest.raises(InvalidInput):
        validated(VolunteerActBatch, {"items": [BATCH_ITEM] * 501})


def test_new_act_embeds_its_event():
    act = an_act(hours="2.25")
    document, [event] = domain.new_act(
        "va_x", act, client_id="client-a", recorded_at=domain.datetime(2026, 11, 21)
    )
    assert document["_id"] == "va_x"
    assert document["hours"] == "2.25"
    assert document["fingerprint"] == domain.fingerprint(act)
    assert event.subject == "va_x"
    assert event.data["act_id"] == "va_x"
    assert event.data["hours"] == "2.25"


def test_fingerprint_tells_different_acts_apart():
    assert domain.fingerprint(an_act()) == domain.fingerprint(an_act())
    assert domain.fingerprint(an_act()) != domain.fingerprint(an_act(hours="3"))
