"""Organisation registry service (组织): nameko entrypoints, kept thin."""

from __future__ import annotations

from typing import Any

from nameko.rpc import rpc

from services.registry import domain
from services.registry.store import ORGANISATIONS, PEOPLE, RegistryStore
from shared.errors import DOMAIN_ERRORS, Conflict, NotFound
from shared.events import REGISTRY
from shared.health import HealthEntrypoints
from shared.mongo import StoreProvider
from shared.outbox import OutboxRelay
from shared.schemas import validated


class OrganisationRegistry(HealthEntrypoints):
    name = REGISTRY

    store: RegistryStore = StoreProvider(REGISTRY, RegistryStore)
    relay: OutboxRelay = OutboxRelay(REGISTRY)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def register_organisation(self, organisation: dict[str, Any]) -> dict[str, Any]:
        new = validated(domain.NewOrganisation, organisation)
        domain.check_parent(new, self.store.organisation(new.parent_id) if new.parent_id else None)
        document, events = domain.new_organisation(new)
        return domain.organisation_view(self._insert_once(ORGANISATIONS, document, events))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def register_person(self, person: dict[str, Any]) -> dict[str, Any]:
        new = validated(domain.NewPerson, person)
        domain.check_community(self.store.organisation(new.community_id), new.community_id)
        document, events = domain.new_person(new)
        return domain.person_view(self._insert_once(PEOPLE, document, events))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_person(self, person_id: str) -> dict[str, Any]:
        document = self.store.person(person_id)
        if document is None:
            raise NotFound("person", person_id)
        return domain.person_view(document)

    @rpc
    def list_people(
        self, community_id: str | None = None, offset: int = 0, limit: int = 50
    ) -> dict[str, Any]:
        documents, total = self.store.list_people(community_id, offset, limit)
        return {
            "items": [domain.person_view(d) for d in documents],
            "total": total,
            "offset": offset,
        }

    @rpc
    def list_organisations(self) -> dict[str, Any]:
        return {"items": [domain.organisation_view(d) for d in self.store.list_organisations()]}

    def _insert_once(self, collection: str, document: dict[str, Any], events: list) -> dict[str, Any]:
        """Registering the same record again is a no-op; a different one under its id is a conflict."""
        records, existed = self.store.insert(collection, document, events)
        if not existed:
            self.relay.publish_soon(records)
            return document
        earlier = self.store.document(collection, document["_id"])
        if {k: v for k, v in earlier.items() if k != "events"} != document:
            raise Conflict("already_registered", f"{document['_id']!r} is registered with other details")
        return earlier
