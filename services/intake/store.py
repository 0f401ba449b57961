"""Issue intake persistence: the only module of this service that talks to MongoDB."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pymongo.database import Database

from shared.cache import RecentlyFound
from shared.events import Envelope, OrganisationCreated
from shared.group_commit import GroupCommit
from shared.mongo import BaseStore, find_by_ids
from shared.outbox import insert_with_events, update_with_events
from shared.read_models import remember_newer

ACTS = "volunteer_acts"
Changes = Sequence[tuple[dict[str, Any], Sequence[Envelope]]]


class IntakeStore(BaseStore):
    def __init__(self, db: Database, reads: Database | None = None) -> None:
        super().__init__(db, reads)
        self.acts = db[ACTS]
        # Read models of the registry, fed by its events. Lookups use the read connections: on
        # the writing one they would wait behind every write of the service.
        self.people = db["people"]
        self.organisations = db["organisations"]
        self._people, self._organisations = self.reads["people"], self.reads["organisations"]
        self._known_people, self._known_organisations = RecentlyFound(), RecentlyFound()
        self._insert = GroupCommit(self._insert_batch)

    def people_by_id(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return self._known_people.get_many(ids, lambda missing: find_by_ids(self._people, missing))

    def organisations_by_id(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return self._known_organisations.get_many(
            ids, lambda missing: find_by_ids(self._organisations, missing)
        )

    def remember_person(self, person: dict[str, Any]) -> None:
        """Keep the registry's person (with its `version`) unless a newer one is here."""
        if remember_newer(self.people, person):
            self._known_people.put(person["_id"], person)

    def remember_organisation(self, data: OrganisationCreated) -> None:
        self.organisations.update_one(
            {"_id": data.organisation_id}, {"$set": data.model_dump(mode="json")}, upsert=True
        )

    def close_organisation(self, organisation_id: str, closed_on: str) -> None:
        self._change_organisation(organisation_id, {"closed_on": closed_on})

    def move_organisation(self, organisation_id: str, parent_id: str) -> None:
        self._change_organisation(organisation_id, {"parent_id": parent_id})

    def _change_organisation(self, organisation_id: str, change: dict[str, Any]) -> None:
        key = {"_id": organisation_id}
        self.organisations.update_one(key, {"$set": change}, upsert=True)
        self._known_organisations.put(organisation_id, self.organisations.find_one(key))

    def insert_acts(self, changes: Changes) -> tuple[list[dict[str, Any]], set[int]]:
        """Insert acts with their events. Returns the outbox records written and the positions
        in `changes` of acts recorded before (same id: same client and idempotency key).
        Concurrent callers share one write (group commit)."""
        return self._insert(changes)

    def _insert_batch(self, callers: Sequence[Changes]) -> list[tuple[list[dict[str, Any]], set[int]]]:
        records, existing = insert_with_events(self.db, ACTS, [c for changes in callers for c in changes])
        results, offset = [], 0
        for changes in callers:
            mine = {i - offset for i in existing if offset <= i < offset + len(changes)}
            # Only the caller whose document was inserted gets its events: a retry of the same
            # act in the same flush (same id) finds it existing and must not hand them over again.
            inserted = {document["_id"] for i, (document, _) in enumerate(changes) if i not in mine}
            results.append(([r for r in records if r["aggregate_id"] in inserted], mine))
            offset += len(changes)
        return results

    def act(self, act_id: str) -> dict[str, Any] | None:
        return self.acts.find_one({"_id": act_id})

    def update_act(
        self, current: dict[str, Any], change: dict[str, Any], events: Sequence[Envelope]
    ) -> list[dict[str, Any]] | None:
        return update_with_events(self.db, self.acts.name, current, change, events)
