"""Cadre evaluation persistence.

An act reaches a dossier once: its record's `_id` is "<person>:<act id>" (primary key), and
the dossier summary is written after it under a per-person lock. Acts of people not yet known
are kept too, because the registry's person event may arrive after the act (they travel on
different queues); acts of people known not to be cadres are not kept.
"""

from __future__ import annotations

from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.cadres import domain
from shared.events import PersonRegistered
from shared.locks import KeyedLocks
from shared.mongo import BaseStore


class CadreStore(BaseStore):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.people = db["people"]
        self.acts = db["dossier_acts"]
        self.dossiers = db["dossiers"]
        self.locks = KeyedLocks()

    def person(self, person_id: str) -> dict[str, Any] | None:
        return self.people.find_one({"_id": person_id})

    def remember_person(self, data: PersonRegistered) -> None:
        self.people.update_one(
            {"_id": data.person_id},
            {
                "$set": {
                    "name": data.name,
                    "is_cadre": data.is_cadre,
                    "employer": data.employer,
                    "community_id": data.community_id,
                }
            },
            upsert=True,
        )

    def dossier(self, person_id: str) -> dict[str, Any] | None:
        return self.dossiers.find_one({"_id": person_id})

    def add_act(self, person_id: str, act: dict[str, Any]) -> bool:
        """Add an act to a dossier once. Returns False if it was there already."""
        with self.locks(person_id):
            try:
                self.acts.insert_one({"_id": f"{person_id}:{act['act_id']}", "person_id": person_id, **act})
            except DuplicateKeyError:
                return False
            dossier = self.dossier(person_id) or domain.empty_dossier(person_id)
            self.dossiers.replace_one({"_id": person_id}, domain.with_act(dossier, act), upsert=True)
            return True
