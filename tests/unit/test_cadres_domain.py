"""The cadre dossier's fold and view (services/cadres/domain.py): acts and their revocations."""

from __future__ import annotations

from datetime import UTC, datetime

from services.cadres import domain

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def act(seq: int, act_id: str, hours: str) -> dict:
    return {"seq": seq, "act_id": act_id, "act_type": "patrol_duty", "hours": hours, "applied_at": NOW}


def revocation(seq: int, act_id: str, hours: str) -> dict:
    entry = {"kind": domain.REVOCATION, "act_id": act_id, "hours": hours, "reason": "重复登记"}
    return {**entry, "seq": seq, "applied_at": NOW}


def test_a_revocation_takes_its_act_out_of_the_totals():
    dossier = domain.empty_dossier("p-1")
    for entry in (act(1, "va_1", "2.5"), act(2, "va_2", "1"), revocation(3, "va_1", "2.5")):
        dossier = domain.with_entry(dossier, entry)
    assert dossier == {"_id": "p-1", "seq": 3, "acts_total": 1, "hours_total": "1.0"}


def test_a_summary_stored_before_revocations_counts_each_entry_as_an_act():
    stored = {"_id": "p-1", "seq": 4, "hours_total": "6"}
    assert domain.with_entry(stored, revocation(5, "va_1", "2"))["acts_total"] == 3


def test_the_view_marks_revoked_acts_and_lists_no_revocation_of_its_own():
    person = {"_id": "p-1", "name": "张干部", "employer": "经开区测试局"}
    recent = [revocation(3, "va_1", "2.5"), act(2, "va_2", "1"), act(1, "va_1", "2.5")]  # newest first
    dossier = {"_id": "p-1", "seq": 3, "acts_total": 1, "hours_total": "1.0"}
    view = domain.dossier_view(person, dossier, recent, None)
    assert view["acts_total"] == 1
    assert [(a["act_id"], a["revoked"]) for a in view["volunteer_acts"]] == [
        ("va_2", None),
        ("va_1", {"reason": "重复登记"}),
    ]
