"""Points bank service (积分银行): nameko entrypoints, kept thin."""

from __future__ import annotations

from datetime import date
from typing import Any

from nameko.rpc import rpc

from services.points import domain
from services.points.store import PointsStore
from shared.cache import RecentlyFound
from shared.consumer import consumes
from shared.errors import DOMAIN_ERRORS, Conflict, NotFound
from shared.events import POINTS_BANK, Envelope, VolunteerActRecorded
from shared.health import HealthEntrypoints
from shared.mongo import StoreProvider
from shared.schemas import validated
from shared.schemas.points import ApprovalDecision, Inspection, ManualAward, Reversal
from shared.settings import get_settings

# Rules change rarely and take effect from a date: a community's list is reused this long.
RULES_SECONDS = 10.0
_rules = RecentlyFound(seconds=RULES_SECONDS)


class PointsBank(HealthEntrypoints):
    name = POINTS_BANK

    store: PointsStore = StoreProvider(POINTS_BANK, PointsStore)

    # --- earning -------------------------------------------------------------------------------

    @consumes(VolunteerActRecorded)
    def credit_volunteer_act(self, envelope: Envelope, act: VolunteerActRecorded) -> None:
        rule = self._rule_for(act.community_id, act.act_type, act.occurred_on)
        if domain.needs_approval(rule, act.hours):
            self.store.hold_for_approval(
                act.act_id,
                {
                    "community_id": act.community_id,
                    "person_id": act.person_id,
                    "rule": domain.rule_text(rule),
                    "envelope": envelope.model_dump(mode="json"),
                },
            )
            return
        self._credit_act(envelope, act, rule)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def add_earning_rule(self, rule: dict[str, Any]) -> dict[str, Any]:
        new = validated(domain.EarningRule, rule)
        if not self.store.add_rule(new.model_dump(mode="json")):
            raise Conflict(
                "rule_exists", f"rule {new.rule_id!r} exists; rules are never changed, add a new one"
            )
        _rules.forget(new.community_id)
        return new.model_dump(mode="json")

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_earning_rules(self, community_id: str) -> dict[str, Any]:
        rules = sorted(self.store.rules_of(community_id), key=lambda r: (r["valid_from"], r["rule_id"]))
        return {"items": [{k: v for k, v in r.items() if k != "_id"} for r in rules], "total": len(rules)}

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_pending_approvals(self, community_id: str) -> dict[str, Any]:
        pending = self.store.pending_approvals(community_id)
        return {"items": [domain.pending_view(p) for p in pending], "total": len(pending)}

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def decide_approval(self, act_id: str, decision: dict[str, Any]) -> dict[str, Any]:
        wanted = validated(ApprovalDecision, decision)
        pending = self.store.approval(act_id)
        if pending is None:
            raise NotFound("act awaiting approval", act_id)
        standing = self.store.decide(domain.decision(act_id, pending, wanted))
        if standing["approved"] != wanted.approve:
            raise Conflict(
                "already_decided", f"{act_id} was {'approved' if standing['approved'] else 'rejected'}"
            )
        if standing["approved"]:
            envelope = Envelope.model_validate(pending["envelope"])
            act = VolunteerActRecorded.model_validate(envelope.data)
            self._credit_act(envelope, act, self._rule_for(act.community_id, act.act_type, act.occurred_on))
        return domain.decision_view(standing)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def award_points(self, key: str, award: dict[str, Any]) -> dict[str, Any]:
        """A manual award by an authorised staff member, with a reason; once per key."""
        new = validated(ManualAward, award)
        return self._move(domain.award_transfer(key, new))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def record_inspection(self, key: str, inspection: dict[str, Any]) -> dict[str, Any]:
        """A doorstep or household check (门前三包); a passed one earns its points once."""
        new = validated(Inspection, inspection)
        return self._move(domain.inspection_transfer(key, new))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def reverse_transfer(self, transfer_id: str, reversal: dict[str, Any]) -> dict[str, Any]:
        wanted = validated(Reversal, reversal)
        legs = self.store.legs_of(transfer_id)
        if not legs:
            raise NotFound("transfer", transfer_id)
        if legs[0]["kind"] == "reversal":
            raise Conflict("is_a_reversal", "a reversal is not reversed; make a new transfer")
        return self._move(domain.reversal_of(legs[0], wanted.actor, wanted.reason))

    # --- reading -------------------------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_account(self, person_id: str) -> dict[str, Any]:
        """An account nobody has credited yet answers with balance 0 and no entries."""
        summary = self.store.account(person_id) or domain.empty_account(person_id)
        return {
            "person_id": person_id,
            "balance": summary["balance"],
            "entries_total": summary["seq"],
            "entries": [domain.entry_view(e) for e in summary["recent"]],
        }

    # --- helpers -------------------------------------------------------------------------------

    def _rule_for(self, community_id: str, act_type: str, day: date) -> domain.EarningRule:
        rules = _rules.get(
            community_id, lambda: [domain.EarningRule.model_validate(r) for r in self._stored(community_id)]
        )
        return domain.rule_for(rules, community_id, act_type, day) or domain.default_rule(
            community_id, get_settings().points_per_hour
        )

    def _stored(self, community_id: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "_id"} for r in self.store.rules_of(community_id)]

    def _credit_act(self, envelope: Envelope, act: VolunteerActRecorded, rule: domain.EarningRule) -> None:
        requested = points = domain.points_by_rule(rule, act.hours)
        capped = None
        for key, cap, label in domain.caps(rule, act.person_id, act.occurred_on):
            granted = self.store.count(key, f"{envelope.id}@{key}", domain.grant_within(cap, label, points))
            if granted["points"] < points:
                capped = {"requested": requested, "granted": granted["points"], "cap": f"{label} {cap}"}
            points = granted["points"]
        self.store.execute(domain.volunteer_act_transfer(envelope, act, rule, points, capped))

    def _move(self, transfer: domain.Transfer) -> dict[str, Any]:
        try:
            applied = self.store.execute(transfer)
        except domain.Refused as exc:
            raise Conflict(exc.code, exc.message) from None
        return {**domain.transfer_view(transfer), "replayed": not applied}
