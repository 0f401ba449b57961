"""Cadre evaluation service (干部考察): nameko entrypoints, kept thin."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.cadres import domain
from services.cadres.store import CadreStore
from shared.consumer import NotYet, consumes
from shared.errors import DOMAIN_ERRORS, NotFound
from shared.events import (
    CADRE_EVALUATION,
    DualReportRegistered,
    Envelope,
    PersonRegistered,
    PersonUpdated,
    PointsTransferred,
    ServicePostClaimed,
    VolunteerActRecorded,
    VolunteerActRevoked,
)
from shared.health import HealthEntrypoints
from shared.mongo import StoreProvider
from shared.rpc import rpc


class CadreEvaluation(HealthEntrypoints):
    name = CADRE_EVALUATION

    store: CadreStore = StoreProvider(CADRE_EVALUATION, CadreStore)

    @consumes(PersonRegistered)
    def remember_person(self, envelope: Envelope, data: PersonRegistered) -> None:
        self.store.remember_person(data.read_model(domain.PERSON_FIELDS))

    @consumes(PersonUpdated)
    def update_person(self, envelope: Envelope, data: PersonUpdated) -> None:
        self.store.remember_person(data.read_model(domain.PERSON_FIELDS))

    @consumes(ServicePostClaimed)
    def add_claimed_post_to_dossier(self, envelope: Envelope, claim: ServicePostClaimed) -> None:
        if claim.person_id is not None:
            self.store.remember_claimed_post(claim.person_id, claim.post, claim.claimed_on.isoformat())

    @consumes(DualReportRegistered)
    def add_dual_report_to_dossier(self, envelope: Envelope, report: DualReportRegistered) -> None:
        if report.person_id is not None:  # units report too; only people have dossiers
            self.store.remember_dual_report(report.person_id, domain.dual_report_facts(report))

    @consumes(PointsTransferred)
    def note_points(self, envelope: Envelope, transfer: PointsTransferred) -> None:
        """The points bank's movements of people's points, for the dossier's points figures."""
        for move in domain.points_moves(transfer):
            if domain.may_be_cadre(self.store.person(move["person_id"])):
                self.store.remember_points_move(move)

    @consumes(VolunteerActRecorded)
    def add_act_to_dossier(self, envelope: Envelope, act: VolunteerActRecorded) -> None:
        if not domain.may_be_cadre(self.store.person(act.person_id)):
            return
        self.store.add_act(act.person_id, domain.dossier_act(envelope, act, datetime.now(UTC)))

    @consumes(VolunteerActRevoked)
    def take_revoked_act_out_of_dossier(self, envelope: Envelope, revoked: VolunteerActRevoked) -> None:
        """A revoked act leaves the dossier's totals, and its listing shows why. Its act travels
        on another queue: a revocation that overtakes it waits for it."""
        if not domain.may_be_cadre(self.store.person(revoked.person_id)):
            return
        act = self.store.act_entry(revoked.person_id, revoked.act_id)
        if act is None:
            raise NotYet(f"{revoked.act_id} is not in the dossier of {revoked.person_id} yet")
        now = datetime.now(UTC)
        self.store.add_revocation(revoked.person_id, domain.dossier_revocation(envelope, revoked, act, now))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_dossier(self, person_id: str) -> dict[str, Any]:
        person = self.store.person(person_id)
        if person is None or not person["is_cadre"]:
            raise NotFound("cadre", person_id)
        dossier = self.store.dossier(person_id) or domain.empty_dossier(person_id)
        recent = self.store.recent_acts(dossier, domain.RECENT_ACTS)
        view = domain.dossier_view(person, dossier, recent, self.store.dual_report(person_id))
        return {**view, "points": domain.points_figures(self.store.points_totals(person_id))}
