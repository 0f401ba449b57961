"""Points rules."""

from __future__ import annotations

from datetime import UTC, date, datetime
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


def test_a_volunteer_act_moves_points_from_the_community_pool_naming_act_and_rule():
    act = act_recorded(act_id="va_1", hours=Decimal("3"), community_id="c1", person_id="p1")
    envelope = new_event(act, subject="va_1")
    rule = points.default_rule("c1", Decimal(10))
    transfer = points.volunteer_act_transfer(
        envelope, act, rule, points.points_by_rule(rule, act.hours), None
    )
    assert (transfer.id, transfer.from_account, transfer.to_account, transfer.points) == (
        f"va:{envelope.id}",
        points.pool_account("c1", "p1"),
        "p1",
        30,
    )
    debit, credit = points.legs(transfer, datetime.now(UTC))
    empty = points.empty_account("x")
    pool_leg, person_leg = debit[2](empty), credit[2](empty)
    assert (pool_leg["points"], person_leg["points"]) == (-30, 30)  # double entry
    assert person_leg["act_id"] == "va_1" and person_leg["event_id"] == envelope.id
    assert person_leg["rule"] == "default: 10 points per hour"
    assert (debit[1], credit[1]) == (f"{transfer.id}@{transfer.from_account}", f"{transfer.id}@p1")


def test_a_lost_leg_is_rebuilt_from_the_other_with_every_fact_of_its_transfer():
    """Reconciliation completes a transfer whose second leg a crash lost: the leg it writes is
    the one lost, down to what its act used of its caps."""
    from services.points.reconcile import missing_leg

    act = act_recorded(hours=Decimal("2"), community_id="c1", person_id="p1")
    envelope = new_event(act, subject=act.act_id)
    rule = points.default_rule("c1", Decimal(10))
    capped = {"requested": 20, "granted": 5, "cap": "daily 25"}
    transfer = points.volunteer_act_transfer(envelope, act, rule, 5, capped, {"cap:p1:default:2026-11-20": 5})
    at = datetime.now(UTC)

    def written(legs) -> list[tuple]:
        return [(account, guard, entry_for({"balance": 0})) for account, guard, entry_for in legs]

    debit, credit = written(points.legs(transfer, at))
    for present, lost in ((debit, credit), (credit, debit)):
        leg = {"_id": "x#1", "key": present[0], "seq": 1, "guard": present[1], **present[2]}
        assert lost in written(points.legs(missing_leg(leg), at))


def test_a_reversed_act_gives_back_what_it_used_of_its_caps():
    release = points.released_from_cap(5)({"balance": 25, "seq": 2})
    assert (release["points"], release["balance_after"]) == (-5, 20)


def test_a_person_cannot_spend_points_they_do_not_have():
    spend = points.Transfer(
        id="o1", kind="redemption", from_account="p1", to_account="held:c1:0", points=30, community_id="c1"
    )
    debit, _ = points.legs(spend, datetime.now(UTC))
    with pytest.raises(points.Refused) as caught:
        debit[2]({"balance": 20, "seq": 3})
    assert caught.value.code == "insufficient_points"
    assert debit[2]({"balance": 30, "seq": 3})["balance_after"] == 0


def rule(rule_id, **fields):
    return points.EarningRule.model_validate(
        {
            "rule_id": rule_id,
            "community_id": "c1",
            "valid_from": "2026-01-01",
            "points_per_hour": "10",
            **fields,
        }
    )


def test_the_rule_in_force_is_the_most_specific_latest_one():
    rules = [
        rule("any-2026"),
        rule("patrol-2026", act_type="patrol_duty", points_per_hour="12"),
        rule(
            "patrol-june",
            act_type="patrol_duty",
            points_per_hour="15",
            valid_from="2026-06-01",
            valid_to="2026-06-30",
        ),
    ]
    assert points.rule_for(rules, "c1", "patrol_duty", date(2026, 6, 10)).rule_id == "patrol-june"
    assert points.rule_for(rules, "c1", "patrol_duty", date(2026, 7, 1)).rule_id == "patrol-2026"
    assert points.rule_for(rules, "c1", "clean_up", date(2026, 7, 1)).rule_id == "any-2026"
    assert points.rule_for(rules, "c1", "clean_up", date(2025, 7, 1)) is None
    assert points.rule_for(rules, "c2", "clean_up", date(2026, 7, 1)) is None


def test_a_rule_has_one_measure_and_ordered_dates():
    with pytest.raises(ValueError):
        rule("both", fixed_points=5)
    with pytest.raises(ValueError):
        rule("backwards", valid_to="2025-01-01")
    assert points.points_by_rule(rule("fixed", points_per_hour=None, fixed_points=5), Decimal("7")) == 5


def test_caps_grant_what_fits_and_say_what_was_asked():
    grant = points.grant_within(50, "daily", 30)
    assert grant({"balance": 0})["points"] == 30
    partly = grant({"balance": 40})
    assert (partly["points"], partly["requested"], partly["balance_after"]) == (10, 30, 50)
    assert grant({"balance": 50})["points"] == 0
    keys = points.caps(rule("capped", daily_cap=50, yearly_cap=500), "p1", date(2026, 11, 20))
    assert [(k, c, label) for k, c, label in keys] == [
        ("cap:p1:capped:2026-11-20", 50, "daily"),
        ("cap:p1:capped:2026", 500, "yearly"),
    ]


def test_long_acts_wait_for_approval_above_the_threshold():
    strict = rule("strict", approval_above_hours="4")
    assert points.needs_approval(strict, Decimal("4.5")) and not points.needs_approval(strict, Decimal("4"))
    assert not points.needs_approval(rule("lenient"), Decimal("24"))


def test_a_reversal_moves_the_points_back_and_names_the_original():
    credit = {
        "key": "p1",
        "counterparty": "pool:c1:3",
        "points": 30,
        "transfer_id": "va:e1",
        "community_id": "c1",
    }
    reversal = points.reversal_of(credit, "staff-1", "act revoked")
    assert (reversal.from_account, reversal.to_account, reversal.points) == ("p1", "pool:c1:3", 30)
    assert (reversal.id, reversal.reverses) == ("reversal:va:e1", "va:e1")
    debit_leg = {**credit, "key": "pool:c1:3", "counterparty": "p1", "points": -30}
    assert points.reversal_of(debit_leg, None, "x").from_account == "p1"


def test_the_event_of_a_transfer_keeps_its_id_when_recorded_again():
    """A redelivered cause records the transfer's event again: the same event to consumers."""
    transfer = points.Transfer(
        id="va:e1",
        kind="volunteer_act",
        from_account="pool:c1:0",
        to_account="p1",
        points=5,
        community_id="c1",
    )
    [first], [again] = points.transfer_events(transfer), points.transfer_events(transfer)
    assert first.id == again.id and first.subject == "va:e1"
    assert (first.data["to_account"], first.data["points"]) == ("p1", 5)
    [other] = points.transfer_events(transfer.model_copy(update={"id": "va:e2"}))
    assert other.id != first.id
