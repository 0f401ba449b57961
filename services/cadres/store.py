"""Cadre evaluation persistence.

Each cadre's dossier is a journal chain (see shared/journal.py): an act reaches it once, and so
does its revocation, which takes it out of the totals. So are the cadre's points moves, whose
summary holds the points earned and spent: a dossier reads them by `_id`, never by scanning
every move. Acts and points moves are kept for cadres and for people not yet known, never for
people known not to be cadres (`domain.may_be_cadre`).
"""

from __future__ import annotations

import itertools
from contextlib import suppress
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.cadres import domain
from shared.cache import RecentlyFound
from shared.journal import Journal
from shared.mongo import BaseStore
from shared.read_models import remember_newer

# Where points moves were kept before they were journals: flat documents, one per transfer and
# person, that a dossier read found by scanning them all. Moved into the journals at start-up.
OLD_POINTS_MOVES = "points_moves"
POINTS_TOTALS_WRITE_SECONDS = 10.0
# Entries of a dossier a revocation looks along for its act (a lookup by `_id` each, about a
# millisecond) before it asks the guard's index: about a year of a cadre's acts. A revocation
# that overtakes its act walks them all on each of its tries until the act is there.
DOSSIER_WALKED = 200


class CadreStore(BaseStore):
    def __init__(self, db: Database, reads: Database | None = None) -> None:
        super().__init__(db, reads)
        self.people = db["people"]
        self.dual_reports = db["dual_reports"]
        self.claimed_posts = db["claimed_posts"]
        self.journal = Journal(
            db,
            "dossier_acts",
            "dossiers",
            empty=domain.empty_dossier,
            fold=domain.with_entry,
            reads=self.reads,
        )
        self.points = Journal(
            db,
            "points_entries",
            "points_totals",
            empty=domain.no_points,
            fold=domain.with_points_move,
            reads=self.reads,
            # Only this service reads the totals, from memory; a stored one only shortens the
            # fold after a restart, so it is rewritten less often than a dossier (measured: at
            # once a second these rewrites cost FerretDB about 0.2 ms per act in the bench).
            summary_write_seconds=POINTS_TOTALS_WRITE_SECONDS,
        )
        self._people = RecentlyFound()

    def ensure_indexes(self) -> None:
        self.journal.ensure_indexes()
        self.points.ensure_indexes()
        self._journal_old_points_moves()

    def write_behind(self) -> None:
        self.journal.write_summaries()
        self.points.write_summaries()

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
        """Add a move to the person's points chain once per transfer: a redelivery is a no-op."""
        self.points.append(move["person_id"], _points_guard(move), lambda totals: move)

    def points_totals(self, person_id: str) -> dict[str, Any]:
        return self.points.summary(person_id) or domain.no_points(person_id)

    def _journal_old_points_moves(self, batch: int = 5000) -> None:
        """Append the moves kept the old way to the journals in one pass, then drop them. A
        start that stops halfway appends them all again next time; the guards keep each move
        once. (Deleting them as they go would read the whole old collection per delete.)"""
        if OLD_POINTS_MOVES not in self.db.list_collection_names():
            return
        moves = self.db[OLD_POINTS_MOVES].find()
        while chunk := [_moved(old) for old in itertools.islice(moves, batch)]:
            results = self.points.append_together(
                [(m["person_id"], _points_guard(m), lambda totals, m=m: m) for m in chunk]
            )
            if failed := next((r for r in results if isinstance(r, Exception)), None):
                raise failed
        self.db.drop_collection(OLD_POINTS_MOVES)

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
        return self.journal.append(person_id, _act_guard(act["act_id"], person_id), lambda dossier: act)

    def act_entry(self, person_id: str, act_id: str) -> dict[str, Any] | None:
        """The act's entry in the person's dossier, found along the dossier's chain by `_id`
        (a query by guard reads every dossier's entries on FerretDB); only a dossier longer
        than `DOSSIER_WALKED` entries is then queried."""
        return self.journal.entry_by_guard(person_id, _act_guard(act_id, person_id), DOSSIER_WALKED)

    def add_revocation(self, person_id: str, revocation: dict[str, Any]) -> bool:
        """Add the revocation of an act to a dossier once. Returns False if it was there already."""
        guard = f"revoked:{_act_guard(revocation['act_id'], person_id)}"
        return self.journal.append(person_id, guard, lambda dossier: revocation)


def _act_guard(act_id: str, person_id: str) -> str:
    return f"{act_id}@{person_id}"


def _points_guard(move: dict[str, Any]) -> str:
    return f"{move['transfer_id']}@{move['person_id']}"


def _moved(old: dict[str, Any]) -> dict[str, Any]:
    """A move as kept before the journals, whose `_id` was `<transfer>@<person>`."""
    return {
        "person_id": old["person_id"],
        "transfer_id": old["_id"].rsplit("@", 1)[0],
        "kind": old["kind"],
        "points": old["points"],
    }
