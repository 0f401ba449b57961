"""Cadre evaluation persistence.

Each cadre's dossier is a journal chain (see shared/journal.py): an act reaches it once.
Acts and points moves are kept for cadres and for people not yet known, never for people known
not to be cadres (`domain.may_be_cadre`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.cadres import domain
from shared.cache import RecentlyFound
from shared.group_commit import GroupCommit
from shared.journal import Journal
from shared.mongo import BaseStore, insert_new
from shared.read_models import remember_newer


class CadreStore(BaseStore):
    def __init__(self, db: Database, reads: Database | None = None) -> None:
        super().__init__(db, reads)
        self.people = db["people"]
        self.dual_reports = db["dual_reports"]
        self.claimed_posts = db["claimed_posts"]
        self.points_moves_of = db["points_moves"]
        self.journal = Journal(
            db, "dossier_acts", "dossiers", empty=domain.empty_dossier, fold=domain.with_act, reads=self.reads
        )
        self._people = RecentlyFound()
        self._insert_moves = GroupCommit(self._insert_moves_batch)

    def ensure_indexes(self) -> None:
        self.journal.ensure_indexes()

    def write_behind(self) -> None:
        self.journal.write_summaries()

    def person(self, person_id: str) -> dict[str, Any] | None:
        # On the read connections: on the writing one a lookup waits behind every write.
        return self._people.get(person_id, lambda: self.reads["people"].find_one({"_id": person_id}))

    def remember_person(self, person: dict[str, Any]) -> None:
        """Keep the registry's person (with its `version`) unless a newer one is here."""
        if remember_newer(self.people, person):
            self._people.put(person["_id"], person)

    def remember_dual_report(self, person_id: str, report: dict[str, Any]) -> None:
        """A person reports once (双报到); a redelivered event changes nothing."""
        with suppress(DuplicateKeyError):
            self.dual_reports.insert_one({"_id": person_id, **report})

    def remember_claimed_post(self, person_id: str, post: str, claimed_on: str) -> None:
        """Claims are their own documents (unique per person and post), so a claim arriving
        before the report it belongs to, or twice, is kept exactly once."""
        with suppress(DuplicateKeyError):
            self.claimed_posts.insert_one(
                {"_id": f"{person_id}#{post}", "person_id": person_id, "post": post, "claimed_on": claimed_on}
            )

    def remember_points_move(self, move: dict[str, Any]) -> None:
        """One document per transfer and person: a redelivery is a no-op. Moves that arrive
        together share one insert (group commit)."""
        self._insert_moves(move)

    def _insert_moves_batch(self, moves: Sequence[dict[str, Any]]) -> list[None]:
        insert_new(self.points_moves_of, moves)
        return [None] * len(moves)

    def points_moves(self, person_id: str) -> list[dict[str, Any]]:
        return list(self.points_moves_of.find({"person_id": person_id}))

    def dual_report(self, person_id: str) -> dict[str, Any] | None:
        report = self.dual_reports.find_one({"_id": person_id}, {"_id": 0})
        if report is None:
            return None
        claimed = [c["post"] for c in self.claimed_posts.find({"person_id": person_id})]
        return {**report, "posts": sorted({*report["posts"], *claimed})}

    def dossier(self, person_id: str) -> dict[str, Any] | None:
        return self.journal.summary(person_id)

    def recent_acts(self, dossier: dict[str, Any], count: int) -> list[dict[str, Any]]:
        return self.journal.recent_entries(dossier, count)

    def add_act(self, person_id: str, act: dict[str, Any]) -> bool:
        """Add an act to a dossier once. Returns False if it was there already."""
        return self.journal.append(person_id, f"{act['act_id']}@{person_id}", lambda dossier: act)
