"""Cadre evaluation persistence.

Each cadre's dossier is a journal chain (see shared/journal.py): an act reaches it once.
Acts of people not yet known are kept too, because the registry's person event may arrive
after the act (they travel on different queues); acts of people known not to be cadres are
not kept (see the service).
"""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from services.cadres import domain
from shared.cache import RecentlyFound
from shared.events import PersonRegistered
from shared.journal import Journal
from shared.mongo import BaseStore
from shared.partitions import Partitioned


class CadreStore(BaseStore):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.people = db["people"]
        self.journal = Journal(
            db["dossier_acts"], Partitioned(db, "dossiers"), empty=domain.empty_dossier, fold=domain.with_act
        )
        self._people = RecentlyFound()

    def ensure_indexes(self) -> None:
        self.journal.ensure_indexes()

    def person(self, person_id: str) -> dict[str, Any] | None:
        return self._people.get(person_id, lambda: self.people.find_one({"_id": person_id}))

    def remember_person(self, data: PersonRegistered) -> None:
        person = {
            "_id": data.person_id,
            "name": data.name,
            "is_cadre": data.is_cadre,
            "employer": data.employer,
            "community_id": data.community_id,
        }
        self.people.replace_one({"_id": data.person_id}, person, upsert=True)
        self._people.put(data.person_id, person)

    def dossier(self, person_id: str) -> dict[str, Any] | None:
        return self.journal.summary(person_id)

    def add_act(self, person_id: str, act: dict[str, Any]) -> bool:
        """Add an act to a dossier once. Returns False if it was there already."""
        return self.journal.append(person_id, f"{act['act_id']}@{person_id}", lambda dossier: act)
