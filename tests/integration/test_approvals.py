"""Approvals on the real broker and database: an approved act is credited even when the call
that approved it died before the credit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.points import domain
from shared.schemas.points import ApprovalDecision
from tests.conftest import new_id
from tests.support import act_recorded_event, eventually, points_bank_store, publish_as_intake

pytestmark = pytest.mark.integration


def test_approvals_whose_call_died_are_finished_an_approved_act_credited(rpc, databases):
    community, approved_person, undecided_person = new_id("c"), new_id("p"), new_id("p")
    rule = {"rule_id": new_id("rule"), "community_id": community, "valid_from": "2026-01-01"}
    rpc.points_bank.add_earning_rule({**rule, "points_per_hour": "10", "approval_above_hours": "4"})
    approved, undecided = (
        act_recorded_event(person_id=person_id, community_id=community, hours=Decimal(6))
        for person_id in (approved_person, undecided_person)
    )
    publish_as_intake(approved, undecided)
    eventually(lambda: rpc.points_bank.list_pending_approvals(community)["total"] == 2)
    # Two calls died: one after recording its approval, one before deciding at all. The
    # first left its decision, so its act is off the list and not credited ...
    points_bank = databases["points_bank"]
    act_id = approved.data["act_id"]
    approval = points_bank.approvals.find_one({"_id": act_id})
    points_bank.approval_decisions.insert_one(
        domain.decision(act_id, approval, ApprovalDecision(approve=True, approver="tests"))
    )
    [waiting] = rpc.points_bank.list_pending_approvals(community)["items"]
    assert waiting["person_id"] == undecided_person
    assert rpc.points_bank.get_account(approved_person)["balance"] == 0
    # ... and each left the mark it made first.
    marks = [f"approval:{event.data['act_id']}" for event in (approved, undecided)]
    store = points_bank_store()
    for event in (approved, undecided):
        store.under_way("approval", event.data["act_id"])

    eventually(lambda: points_bank.calls_under_way.find_one({"_id": marks[0]}) is None, timeout=30)
    account = rpc.points_bank.get_account(approved_person)
    assert (account["balance"], account["entries_total"]) == (60, 1)
    assert account["entries"][0]["transfer_id"] == domain.act_transfer_id(approved.id)
    # The undecided act still waits for its approver, uncredited; its mark stays (a slow call
    # may still decide it) until it is a day old.
    assert rpc.points_bank.list_pending_approvals(community)["items"] == [waiting]
    assert rpc.points_bank.get_account(undecided_person)["balance"] == 0
    assert points_bank.calls_under_way.find_one({"_id": marks[1]}) is not None
    points_bank.calls_under_way.update_one(
        {"_id": marks[1]}, {"$set": {"since": datetime.now(UTC) - timedelta(days=2)}}
    )
    eventually(lambda: points_bank.calls_under_way.find_one({"_id": marks[1]}) is None, timeout=30)
    assert rpc.points_bank.list_pending_approvals(community)["items"] == [waiting]


def test_an_approval_credits_by_the_rule_its_approver_saw_and_unmarks_the_act(rpc, databases):
    community, person_id = new_id("c"), new_id("p")
    rule = {"rule_id": new_id("rule"), "community_id": community, "valid_from": "2026-01-01"}
    rpc.points_bank.add_earning_rule({**rule, "points_per_hour": "10", "approval_above_hours": "4"})
    event = act_recorded_event(person_id=person_id, community_id=community, hours=Decimal(5))
    publish_as_intake(event)
    [waiting] = eventually(lambda: rpc.points_bank.list_pending_approvals(community)["items"])
    # A rule for the act's type and date, added while it waits, is not what was approved.
    later = {**rule, "rule_id": new_id("rule"), "act_type": event.data["act_type"], "points_per_hour": "20"}
    rpc.points_bank.add_earning_rule(later)
    assert waiting["rule"] == f"{rule['rule_id']}: 10 points per hour"
    decided = rpc.points_bank.decide_approval(event.data["act_id"], {"approve": True, "approver": "tests"})
    assert decided["approved"] and rpc.points_bank.get_account(person_id)["balance"] == 50
    mark = {"_id": f"approval:{event.data['act_id']}"}
    assert databases["points_bank"].calls_under_way.find_one(mark) is None
