"""Cadre evaluation's store on the real database: the dossier's points figures."""

from __future__ import annotations

import pytest
from pymongo.collection import Collection

from services.cadres import domain
from services.cadres.store import OLD_POINTS_MOVES, CadreStore
from shared.partitions import Partitioned

pytestmark = pytest.mark.integration


def move(person_id: str, transfer_id: str, points: int) -> dict:
    return {"person_id": person_id, "transfer_id": transfer_id, "kind": "test", "points": points}


def test_a_points_move_counts_once_however_often_it_arrives_and_the_totals_are_kept_as_a_summary(scratch):
    store = CadreStore(scratch)
    store.ensure_indexes()
    for each in (
        move("p-1", "va:1", 10),
        move("p-1", "rd:1", -3),
        move("p-1", "va:1", 10),
        move("p-2", "va:2", 5),
    ):
        store.remember_points_move(each)
    assert domain.points_figures(store.points_totals("p-1")) == {"earned": 10, "spent": 3, "balance": 7}
    assert domain.points_figures(store.points_totals("p-2")) == {"earned": 5, "spent": 0, "balance": 5}
    assert domain.points_figures(store.points_totals("p-3")) == {"earned": 0, "spent": 0, "balance": 0}
    # Another instance, with nothing in memory and no summary stored yet, reads the same.
    assert CadreStore(scratch).points_totals("p-1")["earned"] == 10
    store.write_behind()
    stored = Partitioned(scratch, "points_totals").find_one("p-1")
    assert (stored["seq"], stored["earned"], stored["spent"]) == (2, 10, 3)


def test_points_moves_kept_the_old_way_move_into_the_journals_once_also_after_a_halted_start(scratch):
    old = [
        {"_id": "va:1@p-1", "person_id": "p-1", "kind": "volunteer_act", "points": 10},
        {"_id": "rd:1@p-1", "person_id": "p-1", "kind": "redemption", "points": -3},
        {"_id": "va:2@p-2", "person_id": "p-2", "kind": "volunteer_act", "points": 5},
    ]
    scratch[OLD_POINTS_MOVES].insert_many(old)
    # An earlier start that appended the first move, then stopped before deleting it.
    halted = CadreStore(scratch)
    halted.points.ensure_indexes()
    halted.remember_points_move(move("p-1", "va:1", 10))

    store = CadreStore(scratch)
    store.ensure_indexes()
    assert OLD_POINTS_MOVES not in scratch.list_collection_names()
    assert domain.points_figures(store.points_totals("p-1")) == {"earned": 10, "spent": 3, "balance": 7}
    assert domain.points_figures(store.points_totals("p-2")) == {"earned": 5, "spent": 0, "balance": 5}
    assert scratch["points_entries"].count_documents({}) == 3
    # A redelivered event of a moved transfer changes nothing.
    store.remember_points_move(move("p-1", "rd:1", -3))
    assert store.points_totals("p-1")["spent"] == 3


def test_a_revoked_acts_entry_is_found_along_its_dossier_not_by_a_query_of_all(scratch, monkeypatch):
    store = CadreStore(scratch)
    store.ensure_indexes()
    for n in range(12):
        store.add_act("p-1", {"act_id": f"va_{n}", "hours": "1"})
    store.add_act("p-2", {"act_id": "va_3", "hours": "2"})
    asked = []
    look_up = Collection.find_one

    def find_one(collection, query, *args, **kwargs):
        if collection.name == store.journal.entries.name:
            asked.append(query)
        return look_up(collection, query, *args, **kwargs)

    monkeypatch.setattr(Collection, "find_one", find_one)
    found = store.act_entry("p-1", "va_3")
    assert (found["key"], found["act_id"]) == ("p-1", "va_3")
    assert store.act_entry("p-1", "va_99") is None
    assert asked and all(set(query) == {"_id"} for query in asked)  # along the chain only
    # A dossier longer than the walk asks the guard's index for what lies further back.
    monkeypatch.setattr("services.cadres.store.DOSSIER_WALKED", 5)
    assert store.act_entry("p-1", "va_3")["act_id"] == "va_3"
    assert {"guard": "va_3@p-1"} in asked
