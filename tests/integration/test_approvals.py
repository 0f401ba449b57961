"""Calls that change several documents, on the real broker and database: an approved act is
credited even when the call that approved it died before the credit, and a staff reversal
gives back its act's caps even when its call died before that."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.points import domain
from shared.errors import Conflict
from shared.events import Envelope
from shared.schemas.points import ApprovalDecision
from tests.conftest import new_id
from tests.support import act_recorded_event, eventually, points_bank_store, publish_as_intake

pytestmark = pytest.mark.integration


def acts_held(rpc, *people: str, hours: int) -> tuple[str, dict, list[Envelope]]:
    """A new community whose rule credits 10 points an hour and holds acts over 4 hours for
    approval, and an act of `hours` by each person, waiting there: the community, the rule,
    the acts' events."""
    community = new_id("c")
    rule = {"rule_id": new_id("rule"), "community_id": community, "valid_from": "2026-01-01"}
    rpc.points_bank.add_earning_rule({**rule, "points_per_hour": "10", "approval_above_hours": "4"})
    events = [act_recorded_event(person_id=p, community_id=community, hours=Decimal(hours)) for p in people]
    publish_as_intake(*events)
    eventually(lambda: rpc.points_bank.list_pending_approvals(community)["total"] == len(events))
    return community, rule, events


def approved_by_a_call_that_died(databases, event: Envelope) -> None:
    """What an approval's call leaves when it dies after recording its decision: the act is
    decided, off the list of those waiting, and not credited."""
    act_id = event.data["act_id"]
    approval = databases["points_bank"].approvals.find_one({"_id": act_id})
    databases["points_bank"].approval_decisions.insert_one(
        domain.decision(act_id, approval, ApprovalDecision(approve=True, approver="approver-a"))
    )


def test_approvals_whose_call_died_are_finished_an_approved_act_credited(rpc, databases):
    approved_person, undecided_person = new_id("p"), new_id("p")
    community, _, (approved, undecided) = acts_held(rpc, approved_person, undecided_person, hours=6)
    # Two calls died: one after recording its approval, one before deciding at all.
    approved_by_a_call_that_died(databases, approved)
    [waiting] = rpc.points_bank.list_pending_approvals(community)["items"]
    assert waiting["person_id"] == undecided_person
    assert rpc.points_bank.get_account(approved_person)["balance"] == 0
    # Each left the mark it made first.
    store, calls = points_bank_store(), databases["points_bank"].calls_under_way
    marks = [store.under_way("approval", event.data["act_id"]) for event in (approved, undecided)]

    eventually(lambda: calls.find_one({"_id": marks[0]}) is None, timeout=30)
    account = rpc.points_bank.get_account(approved_person)
    assert (account["balance"], account["entries_total"]) == (60, 1)
    assert account["entries"][0]["transfer_id"] == domain.act_transfer_id(approved.id)
    # The undecided act still waits for its approver, uncredited; its mark stays (a slow call
    # may still decide it) until it is a day old.
    assert rpc.points_bank.list_pending_approvals(community)["items"] == [waiting]
    assert rpc.points_bank.get_account(undecided_person)["balance"] == 0
    assert calls.find_one({"_id": marks[1]}) is not None
    calls.update_one({"_id": marks[1]}, {"$set": {"since": datetime.now(UTC) - timedelta(days=2)}})
    eventually(lambda: calls.find_one({"_id": marks[1]}) is None, timeout=30)
    assert rpc.points_bank.list_pending_approvals(community)["items"] == [waiting]


def test_an_approval_credits_by_the_rule_its_approver_saw_and_unmarks_the_act(rpc, databases):
    person_id = new_id("p")
    community, rule, [event] = acts_held(rpc, person_id, hours=5)
    [waiting] = rpc.points_bank.list_pending_approvals(community)["items"]
    # A rule for the act's type and date, added while it waits, is not what was approved.
    later = {**rule, "rule_id": new_id("rule"), "act_type": event.data["act_type"], "points_per_hour": "20"}
    rpc.points_bank.add_earning_rule(later)
    assert waiting["rule"] == f"{rule['rule_id']}: 10 points per hour"
    decided = rpc.points_bank.decide_approval(event.data["act_id"], {"approve": True, "approver": "tests"})
    assert decided["approved"] and rpc.points_bank.get_account(person_id)["balance"] == 50
    marks = databases["points_bank"].calls_under_way
    assert marks.find_one({"identifier": event.data["act_id"]}) is None


def test_a_rejection_that_comes_after_an_approval_whose_call_died_leaves_the_act_credited(rpc, databases):
    person_id = new_id("p")
    _, _, [event] = acts_held(rpc, person_id, hours=5)
    approved_by_a_call_that_died(databases, event)
    with pytest.raises(Conflict) as caught:  # another approver, from a page shown before
        rpc.points_bank.decide_approval(event.data["act_id"], {"approve": False, "approver": "approver-b"})
    assert caught.value.code == "already_decided"
    account = rpc.points_bank.get_account(person_id)
    assert (account["balance"], account["entries_total"]) == (50, 1)


def test_a_staff_reversal_whose_call_died_before_giving_back_the_caps_is_finished(rpc, databases):
    """The reversal of an act recorded in error was made, then its call died before the act's
    share of the daily cap was given back: the check gives it back, once, so the act recorded
    instead earns in full."""
    person, community = new_id("p"), new_id("c")
    rule = {"rule_id": new_id("rule"), "community_id": community, "valid_from": "2026-01-01"}
    rpc.points_bank.add_earning_rule({**rule, "points_per_hour": "10", "daily_cap": 25})
    wrong = act_recorded_event(person_id=person, community_id=community, hours=Decimal(2))
    publish_as_intake(wrong)
    eventually(lambda: rpc.points_bank.get_account(person)["balance"] == 20)
    store, calls = points_bank_store(), databases["points_bank"].calls_under_way
    transfer_id = domain.act_transfer_id(wrong.id)
    debit = store.legs_of(transfer_id)[0]  # the leg a staff reversal starts from
    store.execute(domain.reversal_of(debit, "staff-1", "录入错误"))  # made; then the call died
    mark = store.under_way("reversal", transfer_id, leg=debit, actor="staff-1", reason="录入错误")

    eventually(lambda: calls.find_one({"_id": mark}) is None, timeout=30)
    released = databases["points_bank"].counter_entries.find(
        {"kind": "cap_released", "key": {"$regex": person}}
    )
    assert [entry["points"] for entry in released] == [-20]
    publish_as_intake(act_recorded_event(person_id=person, community_id=community, hours=Decimal(2)))
    eventually(lambda: rpc.points_bank.get_account(person)["entries_total"] == 3)
    account = rpc.points_bank.get_account(person)
    assert account["balance"] == 20  # the first act reversed once, the second in full
    assert (account["entries"][0]["points"], account["entries"][0].get("capped")) == (20, None)
