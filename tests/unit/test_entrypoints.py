"""Service entrypoints in isolation (nameko's worker_factory stands in for dependencies)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from nameko.exceptions import deserialize
from nameko.testing.services import worker_factory

from services.cadres.service import CadreEvaluation
from services.intake import domain
from services.intake.service import IssueIntake
from services.points.service import PointsBank
from shared.consumer import NotYet
from shared.errors import Conflict, InvalidInput, NotFound
from shared.events import PointsTransferred, VolunteerActRevoked, new_event
from shared.schemas import VolunteerActInput
from tests.support import act_recorded_event

ACT = {
    "person_id": "p-1",
    "act_type": "patrol_duty",
    "hours": "2",
    "occurred_on": "2026-11-20",
    "community_id": "c-1",
}


def intake_with(person=True):
    service = worker_factory(IssueIntake)
    known = {"p-1": {"_id": "p-1"}} if person else {}
    service.store.people_by_id.side_effect = lambda ids: {i: known[i] for i in ids if i in known}
    community = {"_id": "c-1", "classification": "community_party_committee"}
    service.store.organisations_by_id.side_effect = lambda ids: {i: community for i in ids if i == "c-1"}
    service.store.insert_acts.side_effect = lambda changes: (["record"], set())
    return service


def record_one(service, act):
    """One act sent alone through the entrypoint the gateway calls; its error raised."""
    [outcome] = service.record_volunteer_acts_apart([("client-a", "k-1", act)])
    if "error" in outcome:
        raise deserialize(outcome["error"])
    return outcome["result"]


def test_recorded_act_is_handed_to_the_relay():
    service = intake_with()
    result = record_one(service, ACT)
    assert result == {"act_id": domain.act_id_for("client-a", "k-1"), "status": "accepted", "replayed": False}
    service.relay.publish_soon.assert_called_once_with(["record"])


def test_unknown_person_stores_nothing():
    service = intake_with(person=False)
    with pytest.raises(NotFound):
        record_one(service, ACT)
    service.store.insert_acts.assert_not_called()


def test_invalid_act_stores_nothing():
    service = intake_with()
    with pytest.raises(InvalidInput):
        record_one(service, {**ACT, "hours": "0"})
    service.store.insert_acts.assert_not_called()


def test_acts_sent_apart_are_answered_each_on_its_own_and_share_one_write():
    service = intake_with()
    outcomes = service.record_volunteer_acts_apart(
        [
            ("client-a", "k-1", ACT),
            ("client-b", "k-2", {**ACT, "person_id": "p-unknown"}),
            ("client-a", "k-3", {**ACT, "hours": "0"}),
            ("client-a", "", ACT),
            ("client-b", "k-1", ACT),
        ]
    )
    assert outcomes[0] == {
        "result": {"act_id": domain.act_id_for("client-a", "k-1"), "status": "accepted", "replayed": False}
    }
    assert outcomes[4]["result"]["act_id"] == domain.act_id_for("client-b", "k-1")
    not_found, invalid, no_key = (deserialize(o["error"]) for o in outcomes[1:4])
    assert isinstance(not_found, NotFound) and not_found.identifier == "p-unknown"
    assert isinstance(invalid, InvalidInput) and [e["field"] for e in invalid.errors] == ["hours"]
    assert isinstance(no_key, InvalidInput) and no_key.errors[0]["field"] == "Idempotency-Key"
    [(changes,), _] = service.store.insert_acts.call_args
    assert [document["_id"] for document, _ in changes] == [
        domain.act_id_for("client-a", "k-1"),
        domain.act_id_for("client-b", "k-1"),
    ]


def test_an_act_sent_apart_whose_key_was_used_for_another_act_is_a_conflict():
    service = intake_with()
    service.store.insert_acts.side_effect = lambda changes: ([], {0})
    service.store.act.return_value = {"_id": "va", "fingerprint": "something else"}
    [outcome] = service.record_volunteer_acts_apart([("client-a", "k-1", ACT)])
    conflict = deserialize(outcome["error"])
    assert isinstance(conflict, Conflict) and conflict.code == "idempotency_key_reused"


def test_batch_refuses_repeated_keys_naming_the_item():
    service = intake_with()
    items = [{**ACT, "idempotency_key": "same"}, {**ACT, "idempotency_key": "same"}]
    with pytest.raises(InvalidInput) as caught:
        service.record_volunteer_acts("client-a", items)
    assert caught.value.errors[0]["field"] == "items[1].idempotency_key"
    service.store.insert_acts.assert_not_called()


def test_revoking_an_act_that_another_call_revoked_meanwhile_answers_the_revoked_act():
    service = intake_with()
    document, events = domain.new_act(
        "va_1", VolunteerActInput(**ACT), client_id="client-a", recorded_at=datetime.now(UTC)
    )
    document["events"] = [event.model_dump(mode="json") for event in events]
    revoked_meanwhile = {**document, "revoked": {"reason": "重复登记", "by": "other"}, "version": 2}
    service.store.act.side_effect = [document, revoked_meanwhile]
    service.store.update_act.return_value = None  # the version moved on since it was read
    answer = service.revoke_volunteer_act("va_1", {"reason": "登记有误", "actor": "tests"})
    assert answer["revoked"] == {"reason": "重复登记", "by": "other"}
    service.relay.publish_soon.assert_not_called()


def recorded_event(hours="1.5"):
    return act_recorded_event(act_id="va_1", hours=Decimal(hours)).model_dump(mode="json")


def test_points_bank_credits_the_person_by_the_rule():
    service = worker_factory(PointsBank)
    service.store.rules_of.return_value = []  # no community rule: the default, 10 per hour
    event = recorded_event(hours="1.5")
    service.credit_volunteer_act(event)
    [transfer] = service.store.execute.call_args.args
    assert (transfer.to_account, transfer.points, transfer.facts["act_id"]) == ("p-1", 15, "va_1")
    assert transfer.id == f"va:{event['id']}" and transfer.from_account.startswith("pool:")
    # A consumed event's transfer is published before the event is acknowledged: no outbox.
    [(aggregate_id, [published])] = [c.args for c in service.relay.publish_now.call_args_list]
    assert aggregate_id == transfer.id and published.data["transfer_id"] == transfer.id
    service.store.record.assert_not_called()
    service.relay.publish_soon.assert_not_called()


def test_a_transfer_a_caller_asks_for_is_recorded_in_the_outbox_first():
    service = worker_factory(PointsBank)
    service.store.record.return_value = ["record"]
    award = {"person_id": "p-1", "community_id": "c-1", "points": 5, "reason": "表彰", "actor": "staff"}
    service.award_points("k-1", award)
    [transfer] = service.store.record.call_args.args
    assert transfer.id == "award:k-1" and transfer.points == 5
    service.relay.publish_soon.assert_called_once_with(["record"])
    service.relay.publish_now.assert_not_called()


def test_invalid_event_is_parked_not_applied():
    service = worker_factory(PointsBank)
    service.credit_volunteer_act({"id": "e-1", "type": "nonsense"})
    service.store.execute.assert_not_called()
    payload, reason, handler = service.store.park_event.call_args.args
    assert payload["id"] == "e-1" and handler == "credit_volunteer_act" and reason


def test_dossier_ignores_people_known_not_to_be_cadres():
    service = worker_factory(CadreEvaluation)
    service.store.person.return_value = {"_id": "p-1", "is_cadre": False}
    service.add_act_to_dossier(recorded_event())
    service.store.add_act.assert_not_called()


def test_dossier_keeps_acts_of_people_not_yet_known():
    """The person event may arrive after the act: keep the act, decide when reading."""
    service = worker_factory(CadreEvaluation)
    service.store.person.return_value = None
    service.add_act_to_dossier(recorded_event())
    assert service.store.add_act.call_args.args[0] == "p-1"


def revoked_event(act_id="va_1"):
    revoked = VolunteerActRevoked(
        act_id=act_id,
        person_id="p-1",
        community_id="c-1",
        recorded_event_id="e-1",
        reason="重复登记",
        revoked_by="tests",
    )
    return new_event(revoked, subject=act_id).model_dump(mode="json")


def test_a_revoked_act_leaves_the_dossier_with_its_hours():
    service = worker_factory(CadreEvaluation)
    service.store.person.return_value = {"_id": "p-1", "is_cadre": True}
    service.store.act_entry.return_value = {"act_id": "va_1", "hours": "2.5", "seq": 7}
    service.take_revoked_act_out_of_dossier(revoked_event())
    person_id, entry = service.store.add_revocation.call_args.args
    assert (person_id, entry["kind"], entry["act_id"], entry["hours"]) == ("p-1", "revocation", "va_1", "2.5")


def test_a_revocation_whose_act_is_not_in_the_dossier_yet_waits_for_it():
    service = worker_factory(CadreEvaluation)
    service.store.person.return_value = {"_id": "p-1", "is_cadre": True}
    service.store.act_entry.return_value = None
    failures = service.take_revoked_act_out_of_dossier(revoked_event())
    assert isinstance(failures[0], NotYet)  # goes back to the queue; nothing parked yet
    service.store.add_revocation.assert_not_called()
    service.store.park_event.assert_not_called()


def test_a_revocation_for_someone_known_not_to_be_a_cadre_changes_no_dossier():
    service = worker_factory(CadreEvaluation)
    service.store.person.return_value = {"_id": "p-1", "is_cadre": False}
    service.take_revoked_act_out_of_dossier(revoked_event())
    service.store.act_entry.assert_not_called()
    service.store.add_revocation.assert_not_called()


def test_a_revocation_of_an_act_approved_meanwhile_waits_for_its_credit():
    """The approval won the race: its credit is on its way, and must then be taken back."""
    service = worker_factory(PointsBank)
    service.store.leg.return_value = None  # not credited yet
    service.store.approval.return_value = {"community_id": "c-1", "person_id": "p-1"}
    service.store.decide.return_value = {"_id": "va_1", "approved": True}
    failures = service.reverse_volunteer_act(revoked_event())
    assert isinstance(failures[0], NotYet)
    service.store.park_event.assert_not_called()


def test_points_moves_are_kept_for_cadres_and_people_not_yet_known_only():
    service = worker_factory(CadreEvaluation)
    known = {"p-cadre": {"is_cadre": True}, "p-resident": {"is_cadre": False}}
    service.store.person.side_effect = known.get
    for person_id in ("p-cadre", "p-resident", "p-unknown"):
        transfer = PointsTransferred(
            transfer_id=f"va:{person_id}",
            kind="volunteer_act",
            from_account="pool:c1:0",
            to_account=person_id,
            points=10,
            community_id="c1",
        )
        service.note_points(new_event(transfer, subject=transfer.transfer_id).model_dump(mode="json"))
    kept = [c.args[0] for c in service.store.remember_points_move.call_args_list]
    assert [(m["person_id"], m["points"]) for m in kept] == [("p-cadre", 10), ("p-unknown", 10)]
