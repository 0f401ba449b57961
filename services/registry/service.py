"""Organisation registry service (组织): nameko entrypoints, kept thin.

Dates travel as ISO strings; pages as {"items", "total", "offset"}.
"""

from __future__ import annotations

import base64
import logging
import uuid
from datetime import date
from functools import lru_cache
from typing import Any

from services.registry.domain import imports, ledgers, people, posts, statistics, tree
from services.registry.store import (
    DUAL_REPORTS,
    IMPORTS,
    MEMBERSHIPS,
    ORGANISATIONS,
    PEOPLE,
    PLACES,
    POST_CLAIMS,
    RegistryStore,
)
from shared.background import BackgroundJobs
from shared.errors import DOMAIN_ERRORS, Conflict, InvalidInput, NotFound
from shared.events import REGISTRY
from shared.health import HealthEntrypoints
from shared.mongo import StoreProvider
from shared.outbox import OutboxRelay
from shared.pii import NumberKind, PiiVault
from shared.rpc import rpc
from shared.schemas import validated
from shared.schemas.registry import (
    Classification,
    MembershipEnd,
    NewDualReport,
    NewMembership,
    NewOrganisation,
    NewPerson,
    NewPlace,
    OrganisationClosure,
    OrganisationMove,
    PersonDetails,
    PersonSearch,
    PostClaim,
)
from shared.settings import get_settings, local_today

# Two appointments to one post at once: the loser re-reads the chain and tries again.
APPOINTMENT_ATTEMPTS = 3
IMPORT_CHUNK = 200  # rows per write: each chunk is one insert and one progress update
LEDGER_COLLECTIONS = {
    "organisations": ORGANISATIONS,
    "places": PLACES,
    "people": PEOPLE,
    "memberships": MEMBERSHIPS,
}

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def vault() -> PiiVault:
    return PiiVault(get_settings().pii_secret.get_secret_value())


def page(items: list[Any], offset: int, limit: int | None) -> dict[str, Any]:
    chosen = items[offset : offset + limit] if limit is not None else items[offset:]
    return {"items": chosen, "total": len(items), "offset": offset}


def day(value: str | None, field: str = "on") -> date:
    if value is None:
        return local_today()
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidInput.single(field, "a date, YYYY-MM-DD") from None


def import_view(job: dict[str, Any]) -> dict[str, Any]:
    fields = ("kind", "status", "total", "processed", "unchanged", "message")
    return {"id": job["_id"], **{name: job.get(name) for name in fields}}


class OrganisationRegistry(HealthEntrypoints):
    name = REGISTRY

    store: RegistryStore = StoreProvider(REGISTRY, RegistryStore)
    relay: OutboxRelay = OutboxRelay(REGISTRY)
    jobs: BackgroundJobs = BackgroundJobs()

    # --- organisations --------------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def register_organisation(self, organisation: dict[str, Any]) -> dict[str, Any]:
        new = validated(NewOrganisation, organisation)
        nodes = self.store.tree()
        if new.code in nodes:
            return tree.organisation_view(self._same_or_conflict(nodes[new.code], new))
        tree.check_new_organisation(new, nodes, self.store.places())
        document, events = tree.new_organisation(new)
        return tree.organisation_view(self._insert_once(ORGANISATIONS, document, events, new))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_organisation(self, code: str) -> dict[str, Any]:
        nodes = self.store.tree()
        if code not in nodes:
            raise NotFound("organisation", code)
        view = tree.organisation_view(nodes[code], nodes)
        view["children"] = sorted(c["_id"] for c in tree.children(nodes, code))
        return view

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_organisations(
        self,
        within: str | None = None,
        classification: str | None = None,
        include_closed: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> dict[str, Any]:
        nodes = self._subtree_nodes(within)
        items = [
            tree.organisation_view(node)
            for node in tree.in_order(nodes)
            if (classification is None or node["classification"] == classification)
            and (include_closed or tree.is_open(node))
        ]
        return page(items, offset, limit)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def move_organisation(self, code: str, move: dict[str, Any]) -> dict[str, Any]:
        target = validated(OrganisationMove, move)
        nodes = self.store.tree()
        organisation = self._organisation(nodes, code)
        change, events = tree.move(organisation, target.parent_id, nodes)
        return tree.organisation_view(self._update(ORGANISATIONS, organisation, change, events))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def close_organisation(self, code: str, closure: dict[str, Any]) -> dict[str, Any]:
        closing = validated(OrganisationClosure, closure)
        nodes = self.store.tree()
        organisation = self._organisation(nodes, code)
        change, events = tree.close(organisation, closing.closed_on, nodes)
        return tree.organisation_view(self._update(ORGANISATIONS, organisation, change, events))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def organisation_statistics(self, code: str, on: str | None = None) -> dict[str, Any]:
        nodes = self.store.tree()
        self._organisation(nodes, code)
        within = tree.subtree(nodes, code)
        when = day(on)
        active = posts.active_on(posts.all_effective(self.store.tenures()), when)
        figures = statistics.subtree_statistics(
            code, when, within, nodes, self.store.people(), active, self.store.all(DUAL_REPORTS).values()
        )
        return {**figures, "on": when.isoformat()}

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def property_company_ledger(self, within: str | None = None) -> dict[str, Any]:
        nodes = self._subtree_nodes(within)
        companies = [n for n in nodes.values() if n["classification"] == Classification.PROPERTY_COMPANY]
        rows = statistics.property_ledger(companies, self.store.tree(), self.store.people().values())
        return {"items": rows, "total": len(rows), "offset": 0}

    # --- places -----------------------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def register_place(self, place: dict[str, Any]) -> dict[str, Any]:
        new = validated(NewPlace, place)
        known = self.store.places()
        if new.code in known:
            return tree.place_view(self._same_or_conflict(known[new.code], new))
        document = tree.new_place(new, self.store.tree(), known)
        if not self.store.insert_plain(PLACES, document):
            return tree.place_view(self._same_or_conflict(self.store.document(PLACES, new.code), new))
        return tree.place_view(document)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_place(self, code: str) -> dict[str, Any]:
        place = self.store.document(PLACES, code)
        if place is None:
            raise NotFound("place", code)
        return tree.place_view(place)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_places(
        self, within: str | None = None, kind: str | None = None, offset: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        known = list(self.store.places().values())
        if within is not None:
            known = tree.places_within(known, set(self._subtree_nodes(within)))
        items = [
            tree.place_view(p) for p in sorted(known, key=lambda p: p["_id"]) if kind in (None, p["kind"])
        ]
        return page(items, offset, limit)

    # --- people -----------------------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def register_person(self, person: dict[str, Any]) -> dict[str, Any]:
        new = validated(NewPerson, person)
        nodes, places = self.store.tree(), self.store.places()
        people.check_person(new.model_dump(), nodes, places)
        if new.person_id is not None:
            earlier = self.store.document(PEOPLE, new.person_id)
            if earlier is not None:
                return people.person_view(self._same_person_or_conflict(earlier, new))
        self._refuse_taken_id_number(new.id_number, new.person_id)
        document, events = people.new_person(new, vault(), nodes, places)
        records = self.store.insert(PEOPLE, document, events)
        if records is None:
            return people.person_view(
                self._same_person_or_conflict(self.store.document(PEOPLE, document["_id"]), new)
            )
        self.relay.publish_soon(records)
        return people.person_view(document)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def update_person(self, person_id: str, details: dict[str, Any]) -> dict[str, Any]:
        change = validated(PersonDetails, details)
        person = self._person(person_id)
        places = self.store.places()
        after, fields, events = people.updated(person, change, vault(), places)
        people.check_person(after, self.store.tree(), places)
        if change.id_number:
            self._refuse_taken_id_number(change.id_number, person_id)
        return people.person_view(self._update(PEOPLE, person, fields, events))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_person(self, person_id: str) -> dict[str, Any]:
        person = people.person_view(self._person(person_id))
        held = [t for t in self._held({"person_id": person_id}) if t["person_id"] == person_id]
        person["memberships"] = [posts.membership_view(t) for t in sorted(held, key=lambda t: t["start_on"])]
        return person

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_people(
        self,
        community_id: str | None = None,
        offset: int = 0,
        limit: int = 50,
        within: str | None = None,
        party_members_only: bool = False,
        in_service_only: bool = False,
        scope: str | None = None,
    ) -> dict[str, Any]:
        """People of a community, and of what lies `within` an organisation: the people of
        its communities and grids (a grid's are those whose household is in it); within a
        building's party group or the like, its grid's or community's. With `scope` (the
        caller's), only people whose community or grid lies in it."""
        areas = []
        if community_id is not None:
            areas.append({community_id})
        if within is not None:
            areas.append(self._homes_within(within))
        if scope is not None:
            areas.append(set(self._subtree_nodes(scope)))
        shown = people.listing(
            self.store.people().values(),
            areas,
            party_members_only=party_members_only,
            in_service_only=in_service_only,
        )
        page = shown[offset : offset + limit]
        return {"items": [people.person_view(d) for d in page], "total": len(shown), "offset": offset}

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def find_people(self, search: dict[str, Any]) -> dict[str, Any]:
        """By phone or ID number, through the keyed hash: the number itself is never queried."""
        wanted = validated(PersonSearch, search)
        kind = "phone" if wanted.phone else "id_number"
        found = self._people_with_number(kind, getattr(wanted, kind))
        return {"items": [people.person_view(p) for p in found], "total": len(found), "offset": 0}

    # --- memberships --------------------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def start_membership(self, membership: dict[str, Any]) -> dict[str, Any]:
        new = validated(NewMembership, membership)
        posts.check_membership(
            new, self.store.document(PEOPLE, new.person_id), self.store.tree(), self.store.places()
        )
        for _ in range(APPOINTMENT_ATTEMPTS):
            tenure, events = posts.next_tenure(new, self.store.chain(posts.chain_key(new)))
            records = self.store.insert(MEMBERSHIPS, tenure, events)
            if records is not None:
                self.relay.publish_soon(records)
                return posts.membership_view(tenure)
        raise Conflict("busy_post", "the post changed several times meanwhile; try again")

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def end_membership(self, membership_id: str, ending: dict[str, Any]) -> dict[str, Any]:
        end = validated(MembershipEnd, ending)
        tenure = self.store.tenure(membership_id)
        if tenure is None:
            raise NotFound("membership", membership_id)
        change, events = posts.end(tenure, self.store.chain(tenure["chain"]), end.end_on)
        return posts.membership_view(self._update(MEMBERSHIPS, tenure, change, events))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_memberships(
        self, organisation_id: str | None = None, place_id: str | None = None, on: str | None = None
    ) -> dict[str, Any]:
        """Who held posts in an organisation (or place): the whole history, or on one day."""
        held = self._held({"organisation_id": organisation_id} if organisation_id else {"place_id": place_id})
        if on is not None:
            held = posts.active_on(held, day(on))
        held.sort(key=lambda t: (t["role"], t["start_on"], t["person_id"]))
        return {"items": [posts.membership_view(t) for t in held], "total": len(held), "offset": 0}

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def cross_appointments(self, within: str | None = None, on: str | None = None) -> dict[str, Any]:
        nodes = self.store.tree()
        codes = tree.subtree(nodes, within) if within else None
        if within and within not in nodes:
            raise NotFound("organisation", within)
        active = posts.active_on(posts.all_effective(self.store.tenures()), day(on))
        found = posts.cross_appointments(active, nodes, codes)
        return {
            "items": found,
            "total": len(found),
            "one_shoulder": sum(1 for c in found if c["one_shoulder"]),
        }

    # --- 双报到 ---------------------------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def register_dual_report(self, report: dict[str, Any]) -> dict[str, Any]:
        new = validated(NewDualReport, report)
        person = self.store.document(PEOPLE, new.person_id) if new.person_id else None
        document, events = posts.new_dual_report(new, person, self.store.tree())
        records = self.store.insert(DUAL_REPORTS, document, events)
        if records is None:
            raise Conflict("already_reported", f"{document['_id']} has reported already; claim posts instead")
        self.relay.publish_soon(records)
        return posts.dual_report_view(document)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def claim_service_post(self, report_id: str, claim: dict[str, Any]) -> dict[str, Any]:
        wanted = validated(PostClaim, claim)
        report = self.store.document(DUAL_REPORTS, report_id)
        if report is None:
            raise NotFound("dual report", report_id)
        claim, events = posts.claimed_post(report, wanted)
        records = self.store.insert(POST_CLAIMS, claim, events)
        if records is not None:  # None: claimed before, nothing changes
            self.relay.publish_soon(records)
        return posts.dual_report_view(report, self.store.claims([report_id]))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def dual_report_status(self, community_id: str) -> dict[str, Any]:
        nodes = self.store.tree()
        community = nodes.get(community_id)
        if community is None or community["classification"] != Classification.COMMUNITY:
            raise NotFound("community", community_id)
        reports = self.store.all(DUAL_REPORTS, {"community_id": community_id})
        residents = people.listing(self.store.people().values(), [{community_id}])
        reported_units = {r["unit_id"] for r in reports.values() if r.get("unit_id")}
        units = [
            n
            for n in nodes.values()
            if n["_id"] in reported_units
            or (n.get("parent_id") == community_id and n["classification"] == Classification.CO_BUILDING_UNIT)
        ]
        return posts.dual_report_status(community_id, residents, units, reports)

    # --- ledgers (台账) ----------------------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def start_import(self, kind: str, file_format: str, content: str) -> dict[str, Any]:
        """Check every row, then (only if all are good) write them in the background.
        Bad rows are refused together, each named by line and field; nothing is written."""
        if kind not in ledgers.LEDGER_KINDS:
            raise NotFound("ledger", kind)
        try:
            rows = ledgers.read_rows(
                kind, file_format, base64.b64decode(content), get_settings().ledger_max_rows
            )
        except ledgers.LedgerFormatError as exc:
            raise InvalidInput.single(exc.field, exc.message) from None
        valid, errors = ledgers.parse_rows(kind, imports.without_masked_numbers(rows))
        plan = imports.plan_import(
            kind,
            valid,
            nodes=self.store.tree(),
            places=self.store.places(),
            known_people=self.store.people(),
            tenures=self.store.tenures() if kind == "memberships" else [],
            vault=vault(),
        )
        errors = sorted(errors + plan.errors, key=lambda e: e["line"])
        if errors:
            raise InvalidInput(errors)
        job = {
            "_id": f"imp-{uuid.uuid4().hex[:16]}",
            "kind": kind,
            "status": "running",
            "total": len(rows),
            "processed": plan.unchanged,
            "unchanged": plan.unchanged,
            "message": None,
        }
        self.store.start_import(job)
        self.jobs.spawn(lambda: self._write_import(job["_id"], plan))
        return import_view(job)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_import(self, import_id: str) -> dict[str, Any]:
        job = self.store.document(IMPORTS, import_id)
        if job is None:
            raise NotFound("import", import_id)
        return import_view(job)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def export_ledger(self, kind: str, file_format: str, within: str | None = None) -> dict[str, Any]:
        if kind not in ledgers.LEDGER_KINDS:
            raise NotFound("ledger", kind)
        nodes = self._subtree_nodes(within)
        rows = imports.ledger_rows(
            kind,
            nodes=nodes,
            places=self.store.places(),
            known_people=self.store.people(),
            tenures=self.store.tenures() if kind == "memberships" else [],
            within=within is not None,
        )
        if len(rows) > get_settings().ledger_max_rows:
            raise InvalidInput.single("within", f"{len(rows)} rows; export a smaller subtree")
        content = ledgers.write(kind, file_format, rows)
        return {
            "filename": f"gridlink-{kind}-{local_today().isoformat()}.{file_format}",
            "content": base64.b64encode(content).decode(),
            "rows": len(rows),
        }

    def _write_import(self, job_id: str, plan: imports.ImportPlan) -> None:
        collection = LEDGER_COLLECTIONS[plan.kind]
        processed = plan.unchanged
        try:
            for start in range(0, len(plan.changes), IMPORT_CHUNK):
                chunk = plan.changes[start : start + IMPORT_CHUNK]
                if collection == PLACES:
                    self.store.insert_plain_many(PLACES, [document for document, _ in chunk])
                else:
                    records, _ = self.store.insert_many(collection, chunk)
                    self.relay.publish_soon(records)
                processed += len(chunk)
                self.store.import_progress(job_id, {"processed": processed})
            self.store.import_progress(job_id, {"status": "done"})
        except Exception as exc:  # recorded for the caller; sending the file again finishes it
            log.exception("import %s failed", job_id)
            self.store.import_progress(
                job_id, {"status": "failed", "message": f"{type(exc).__name__}: {exc}"}
            )

    # --- helpers ------------------------------------------------------------------------------

    def _held(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Tenures matching `query` with their effective ends, which need their whole chains
        (a successor's start ends an open tenure)."""
        chains = {t["chain"] for t in self.store.tenures(query)}
        return posts.all_effective(self.store.tenures({"chain": {"$in": sorted(chains)}}))

    def _homes_within(self, organisation: str) -> set[str]:
        """The organisations people of `organisation` live in (`people.lives_in`): those of its
        subtree if it holds a community or a grid, else the nearest grid or community above."""
        homes = (Classification.GRID, Classification.COMMUNITY)
        nodes = self._subtree_nodes(organisation)
        if any(n["classification"] in homes for n in nodes.values()):
            return set(nodes)
        home = tree.nearest(self.store.tree(), organisation, homes)
        return {home} if home else set()

    def _subtree_nodes(self, within: str | None) -> dict[str, dict[str, Any]]:
        nodes = self.store.tree()
        if within is None:
            return nodes
        if within not in nodes:
            raise NotFound("organisation", within)
        return {code: nodes[code] for code in tree.subtree(nodes, within)}

    def _organisation(self, nodes: dict[str, dict[str, Any]], code: str) -> dict[str, Any]:
        if code not in nodes:
            raise NotFound("organisation", code)
        return self.store.document(ORGANISATIONS, code)

    def _person(self, person_id: str) -> dict[str, Any]:
        person = self.store.document(PEOPLE, person_id)
        if person is None:
            raise NotFound("person", person_id)
        return person

    def _people_with_number(self, kind: NumberKind, number: str) -> list[dict[str, Any]]:
        """Through the keyed hash: the number itself is never compared."""
        return people.with_number(self.store.people().values(), kind, vault().index(kind, number))

    def _refuse_taken_id_number(self, id_number: str | None, person_id: str | None) -> None:
        if id_number is None:
            return
        holders = self._people_with_number("id_number", id_number)
        if any(holder["_id"] != person_id for holder in holders):
            raise InvalidInput.single("id_number", "another person is registered with this ID number")

    def _insert_once(
        self, collection: str, document: dict[str, Any], events: list, new: Any
    ) -> dict[str, Any]:
        records = self.store.insert(collection, document, events)
        if records is None:  # registered meanwhile by another call
            return self._same_or_conflict(self.store.document(collection, document["_id"]), new)
        self.relay.publish_soon(records)
        return document

    def _update(
        self, collection: str, current: dict[str, Any], change: dict[str, Any], events: list
    ) -> dict[str, Any]:
        records = self.store.update(collection, current, change, events)
        if records is None:
            raise Conflict(
                "changed_meanwhile", f"{current['_id']!r} changed meanwhile; read it again and retry"
            )
        self.relay.publish_soon(records)
        return {**current, **change}

    @staticmethod
    def _same_or_conflict(earlier: dict[str, Any], new: Any) -> dict[str, Any]:
        """Registering the same record again is a no-op; other details under its code conflict."""
        given = new.model_dump(mode="json", exclude_unset=True)
        if any(earlier.get(field) != value for field, value in given.items()):
            raise Conflict("already_registered", f"{earlier['_id']!r} is registered with other details")
        return earlier

    @staticmethod
    def _same_person_or_conflict(earlier: dict[str, Any], new: NewPerson) -> dict[str, Any]:
        given = new.model_dump(mode="json", exclude_unset=True, exclude={"person_id", "phone", "id_number"})
        differs = any(
            bool(earlier.get(f)) != bool(v) if f in people.FLAGS else earlier.get(f) != v
            for f, v in given.items()
        )
        for kind in people.NUMBERS:
            number = getattr(new, kind)
            if number and (earlier.get(kind) or {}).get("index") != vault().index(kind, number):
                differs = True
        if differs:
            raise Conflict("already_registered", f"{earlier['_id']!r} is registered with other details")
        return earlier
