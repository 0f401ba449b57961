"""Points bank service (积分银行): nameko entrypoints, kept thin."""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from typing import Any

from nameko.timer import timer

from services.points import domain, redemptions, reports
from services.points.store import PointsStore
from shared.cache import RecentlyFound
from shared.consumer import NotYet, consumes
from shared.errors import DOMAIN_ERRORS, Conflict, NotFound
from shared.events import (
    POINTS_BANK,
    Envelope,
    PersonRegistered,
    PersonUpdated,
    VolunteerActRecorded,
    VolunteerActRevoked,
)
from shared.health import HealthEntrypoints
from shared.mongo import StoreProvider
from shared.outbox import OutboxRelay
from shared.rpc import rpc
from shared.schemas import validated
from shared.schemas.points import (
    ApprovalDecision,
    EarningRule,
    Inspection,
    ManualAward,
    NewCatalogueItem,
    NewOrder,
    OrderOutcome,
    Restock,
    Reversal,
)
from shared.settings import get_settings, local_today, local_zone

# Rules change rarely and take effect from a date: a community's list is reused this long.
RULES_SECONDS = 10.0
_rules = RecentlyFound(seconds=RULES_SECONDS)
# An approval marked under way but never decided is let go after this (its act still waits).
ABANDONED = timedelta(days=1)
log = logging.getLogger(__name__)


class PointsBank(HealthEntrypoints):
    name = POINTS_BANK

    store: PointsStore = StoreProvider(POINTS_BANK, PointsStore)
    relay: OutboxRelay = OutboxRelay(POINTS_BANK)

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
                    "held_rule": rule.model_dump(mode="json"),
                    "envelope": envelope.model_dump(mode="json"),
                },
            )
            return
        self._credit_act(envelope, act, rule, consumed=True)

    @consumes(VolunteerActRevoked)
    def reverse_volunteer_act(self, envelope: Envelope, revoked: VolunteerActRevoked) -> None:
        """Take back what a revoked act earned, pointing at its credit. An act still waiting for
        approval is rejected instead; one not credited yet (its event is on another queue) is
        waited for, so the end result is the same in either order."""
        credit = self.store.leg(domain.act_transfer_id(revoked.recorded_event_id), revoked.person_id)
        if credit is not None:
            reason = f"志愿服务记录撤销：{revoked.reason}"
            self._reverse(credit, revoked.revoked_by, reason, consumed=True)
            return
        pending = self.store.approval(revoked.act_id)
        if pending is None:
            raise NotYet(f"the credit of {revoked.act_id} is not there yet")
        refusal = ApprovalDecision(
            approve=False, approver=revoked.revoked_by, reason=f"revoked: {revoked.reason}"
        )
        standing = self.store.decide(domain.decision(revoked.act_id, pending, refusal))
        if standing["approved"]:  # approved meanwhile: its credit is on its way, then reversed
            raise NotYet(f"{revoked.act_id} was approved; its credit is not there yet")

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def add_earning_rule(self, rule: dict[str, Any]) -> dict[str, Any]:
        new = validated(EarningRule, rule)
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
        mark = self.store.under_way("approval", act_id) if wanted.approve else None
        standing = self.store.decide(domain.decision(act_id, pending, wanted))
        if standing["approved"]:
            self._credit_approved(pending)  # also for a refusal that came late: it credits once
        if mark:
            self.store.done(mark)
        if standing["approved"] != wanted.approve:
            raise Conflict(
                "already_decided", f"{act_id} was {'approved' if standing['approved'] else 'rejected'}"
            )
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
        if legs[0]["kind"] not in domain.REVERSIBLE:
            # An order's transfers move reserved points: reversing one would refund twice, or
            # strand points in `held`. Orders change only through their cancellation.
            raise Conflict(
                "not_reversible", f"a {legs[0]['kind']} transfer is not reversed; cancel the order"
            )
        # Marked: a call that dies after the reversal, before its event is recorded or the act's
        # caps are given back, is finished by `finish_interrupted_calls`. A refused one moved nothing.
        mark = self.store.under_way(
            "reversal", transfer_id, leg=legs[0], actor=wanted.actor, reason=wanted.reason
        )
        try:
            reversed_ = self._reverse(legs[0], wanted.actor, wanted.reason)
        except Conflict:
            self.store.done(mark)
            raise
        self.store.done(mark)
        return reversed_

    # --- redemptions ---------------------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def add_catalogue_item(self, item: dict[str, Any]) -> dict[str, Any]:
        new = validated(NewCatalogueItem, item)
        document = redemptions.new_item(new)
        if not self.store.add_item(document):
            raise Conflict("item_exists", f"catalogue item {new.item_id!r} exists")
        return redemptions.item_view(document, 0)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def restock_item(self, item_id: str, key: str, restock: dict[str, Any]) -> dict[str, Any]:
        """Add stock once per key (a delivery counted twice adds once)."""
        wanted = validated(Restock, restock)
        item = self.store.item(item_id)
        if item is None:
            raise NotFound("catalogue item", item_id)
        entry = self.store.count(
            redemptions.stock_key(item_id), f"restock:{key}", redemptions.give_back(wanted.quantity)
        )
        return redemptions.item_view(item, entry["balance_after"])

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_catalogue(self, community_id: str) -> dict[str, Any]:
        items = self.store.items_of(community_id)
        stock = self.store.stock_levels([i["_id"] for i in items])
        return {
            "items": [redemptions.item_view(i, stock.get(i["_id"], 0)) for i in items],
            "total": len(items),
        }

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def place_order(self, client_id: str, key: str, order: dict[str, Any]) -> dict[str, Any]:
        """Reserve stock, the buyer's quota and the points; all or nothing, once per key."""
        wanted = validated(NewOrder, order)
        identifier = redemptions.order_id(client_id, key)
        earlier, outcome = self.store.order(identifier), self.store.outcome(identifier)
        if earlier is not None:
            redemptions.check_same_order(earlier, wanted)
            return {**redemptions.order_view(earlier, outcome), "replayed": True}
        if outcome is not None:  # refused before: the key stays refused
            raise Conflict(outcome["code"], outcome["reason"])
        item = self.store.item(wanted.item_id)
        intended = self.store.intended_order(identifier)  # a call of this key ran before
        if intended is None:
            redemptions.check_orderable(item, wanted, local_today())
            intended = self.store.intend(redemptions.new_order(identifier, item, wanted, client_id))
        redemptions.check_same_order(intended, wanted)
        self._place(intended, item, self.store.under_way("order", identifier, order=intended))
        return {**redemptions.order_view(intended, None), "replayed": False}

    def _place(self, order: dict[str, Any], item: dict[str, Any], mark: str) -> None:
        """Take stock, quota and points for the order, then settle its fate, placed or refused:
        the first fate recorded stands (a unique insert). Several runs of one order may meet
        (a retry, the recovery check, in any process); each take is made once whoever makes
        it, and once the fate is refused every take is closed (`_close`), so nothing a run
        takes stays taken. Raises Conflict if refused."""
        try:
            for key, take, _ in redemptions.counter_steps(order, item):
                self.store.count(key, f"order:{order['_id']}", take)
            self._apply(redemptions.reservation(order))
        except domain.Refused as exc:
            fate = self.store.settle_fate(redemptions.refused_fate(order, exc))
            if fate["fate"] == "refused":
                self._refuse(order, fate, mark, reserved=False)
            # else another run placed it meanwhile, and what this one took counts for that run
        else:
            fate = self.store.settle_fate({"_id": order["_id"], "fate": "placed"})
            if fate["fate"] == "refused":
                self._refuse(order, fate, mark, reserved=True)
        self.store.add_order(order)
        self.store.done(mark)

    def _refuse(self, order: dict[str, Any], fate: dict[str, Any], mark: str, reserved: bool) -> None:
        """Settle the refusal (`reserved`: this run reserved the points) and raise it."""
        self._settle_refusal(order, fate, reserved)
        self.store.done(mark)
        raise Conflict(fate["code"], fate["reason"])

    def _settle_refusal(self, order: dict[str, Any], fate: dict[str, Any], reserved: bool) -> None:
        """Close the refused order's takes, give back its points if they were reserved, and
        record the refusal for replays."""
        self._close(order)
        if reserved:
            self._apply(redemptions.cancellation(order, "system", redemptions.NOT_PLACED))
        self.store.settle(redemptions.refused_outcome(fate))

    def _close(self, order: dict[str, Any]) -> None:
        """Close each counter step of a refused order: its take, if a run made one, is given
        back (once); if none did, an empty take is made in its place, so that none can now."""
        guard = f"order:{order['_id']}"
        for key, _, give_back in redemptions.counter_steps(order):
            if self.store.count(key, guard, redemptions.give_back(0))["points"]:
                self.store.count(key, f"{guard}:refused", give_back)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def fulfil_order(self, order_id: str, outcome: dict[str, Any]) -> dict[str, Any]:
        wanted = validated(OrderOutcome, outcome)
        order, settled = self._settle(order_id, "fulfilled", wanted)
        self._apply(redemptions.fulfilment(order, settled["actor"]))
        return redemptions.order_view(order, settled)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def cancel_order(self, order_id: str, outcome: dict[str, Any]) -> dict[str, Any]:
        wanted = validated(OrderOutcome, outcome)
        order, settled = self._settle(order_id, "cancelled", wanted)
        self._release(order, f"cancel:{order_id}")
        self._apply(redemptions.cancellation(order, settled["actor"], settled.get("reason")))
        return redemptions.order_view(order, settled)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def list_orders(self, community_id: str | None = None, person_id: str | None = None) -> dict[str, Any]:
        query = {k: v for k, v in (("community_id", community_id), ("person_id", person_id)) if v}
        orders = self.store.orders_of(query)
        outcomes = self.store.outcomes_of([o["_id"] for o in orders])
        return {
            "items": [redemptions.order_view(o, outcomes.get(o["_id"])) for o in orders],
            "total": len(orders),
        }

    # --- calls that died midway ---------------------------------------------------------------

    @timer(interval=get_settings().recovery_seconds)
    def finish_interrupted_calls(self) -> None:
        """Finish the calls that died midway (a crash, a lost connection), which would leave:
        - an approval decided but its act never credited, and gone from the waiting list;
        - an order's stock, quota or points reserved but no order to fulfil or cancel;
        - a staff reversal made, but its event not recorded or its act's caps not given back.
        Each marks itself under way first and unmarks itself when done; a mark older than
        GRIDLINK_RECOVERY_GRACE_SECONDS (its call is over by then) is finished here as the call
        would have finished. Runs that meet all the same (a call slower than that, the check
        of another process) agree: each step is made once whoever makes it, and an order's
        fate and an approval's decision are each recorded once."""
        grace = timedelta(seconds=get_settings().recovery_grace_seconds)
        finishers = {
            "approval": self._finish_approval,
            "order": self._finish_order,
            "reversal": self._finish_reversal,
        }
        for mark in self.store.left_under_way(datetime.now(UTC) - grace):
            try:
                finishers[mark["kind"]](mark)
            except Exception:  # the mark stays: tried again next time, the others meanwhile
                log.exception("could not finish the call under way %s", mark.get("_id"))

    def _finish_approval(self, mark: dict[str, Any]) -> None:
        act_id = mark["identifier"]
        decided = self.store.decision(act_id)
        if decided is None and datetime.now(UTC) - mark["since"] < ABANDONED:
            return  # not decided: the call died before deciding, or is slow; the act still waits
        if decided is not None and decided["approved"]:  # else it still waits, or was rejected
            log.warning("the approval of act %s died before its credit; crediting it now", act_id)
            self._credit_approved(self.store.approval(act_id))
        self.store.done(mark["_id"])

    def _finish_order(self, mark: dict[str, Any]) -> None:
        order = mark["order"]
        if self.store.order(order["_id"]) is None:
            log.warning("a call placing order %s died; finishing it", order["_id"])
            fate = self.store.fate(order["_id"])
            if fate is None:
                with suppress(Conflict):  # refused now: settled so, as the call would have
                    self._place(order, self.store.item(order["item_id"]), mark["_id"])
                return
            if fate["fate"] == "placed":
                self.store.add_order(order)
            else:  # the call may have reserved the points before it died
                reservation = redemptions.reservation(order).id
                reserved = self.store.leg(reservation, order["person_id"]) is not None
                self._settle_refusal(order, fate, reserved)
        self.store.done(mark["_id"])

    def _finish_reversal(self, mark: dict[str, Any]) -> None:
        log.warning("a staff reversal of transfer %s died midway; finishing it", mark["identifier"])
        with suppress(Conflict):  # refused: it moved nothing, and gives nothing back
            self._reverse(mark["leg"], mark["actor"], mark["reason"])
        self.store.done(mark["_id"])

    def _release(self, order: dict[str, Any], guard: str) -> None:
        for key, _, give_back in redemptions.counter_steps(order):
            self.store.count(key, guard, give_back)

    def _settle(
        self, order_id: str, status: str, wanted: OrderOutcome
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        order = self.store.order(order_id)
        if order is None:
            raise NotFound("order", order_id)
        settled = self.store.settle(
            {"_id": order_id, "status": status, "actor": wanted.actor, "reason": wanted.reason}
        )
        if settled["status"] != status:
            raise Conflict("order_settled", f"order {order_id} was {settled['status']}")
        return order, settled

    # --- reading -------------------------------------------------------------------------------

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def community_accounts(self, community_id: str) -> dict[str, Any]:
        """The community's pool (minus the points it has issued, plus those spent back) and the
        points held by open orders, each summed over its shards."""
        pools, held = domain.community_accounts(community_id)
        return {
            "community_id": community_id,
            "pool": sum(s["balance"] for s in self.store.accounts(pools)),
            "held": sum(s["balance"] for s in self.store.accounts(held)),
        }

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def community_of(self, kind: str, identifier: str) -> str:
        """The community a waiting approval, a transfer, an item or an order belongs to (the
        gateway checks a staff key's scope with it)."""
        found = {
            "approval": lambda: self.store.approval(identifier),
            "transfer": lambda: next(iter(self.store.legs_of(identifier)), None),
            "item": lambda: self.store.item(identifier),
            "order": lambda: self.store.order(identifier),
        }[kind]()
        if found is None:
            raise NotFound(kind, identifier)
        return found["community_id"]

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_account(self, person_id: str) -> dict[str, Any]:
        """An account nobody has credited yet answers with balance 0 and no entries."""
        summary = self.store.account(person_id) or domain.empty_account(person_id)
        recent = self.store.recent_entries(summary, domain.RECENT_ENTRIES)
        return {
            "person_id": person_id,
            "balance": summary["balance"],
            "entries_total": summary["seq"],
            "entries": [domain.entry_view(e) for e in recent],
        }

    # --- helpers -------------------------------------------------------------------------------

    def _rule_for(self, community_id: str, act_type: str, day: date) -> EarningRule:
        rules = _rules.get(
            community_id, lambda: [EarningRule.model_validate(r) for r in self._stored(community_id)]
        )
        return domain.rule_for(rules, community_id, act_type, day) or domain.default_rule(
            community_id, get_settings().points_per_hour
        )

    def _stored(self, community_id: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "_id"} for r in self.store.rules_of(community_id)]

    def _credit_approved(self, pending: dict[str, Any]) -> None:
        """Credit an approved act by the rule it was held under, the one its approver saw (a
        rule added since for its date does not change what was approved). Acts held before
        the rule was kept with them get the rule of their date."""
        envelope = Envelope.model_validate(pending["envelope"])
        act = VolunteerActRecorded.model_validate(envelope.data)
        held = pending.get("held_rule")
        if held:
            rule = EarningRule.model_validate(held)
        else:
            rule = self._rule_for(act.community_id, act.act_type, act.occurred_on)
        self._credit_act(envelope, act, rule)

    def _credit_act(
        self, envelope: Envelope, act: VolunteerActRecorded, rule: EarningRule, consumed: bool = False
    ) -> None:
        requested = points = domain.points_by_rule(rule, act.hours)
        capped, used = None, {}
        for key, cap, label in domain.caps(rule, act.person_id, act.occurred_on):
            granted = self.store.count(key, envelope.id, domain.grant_within(cap, label, points))
            if granted["points"] < points:
                capped = {"requested": requested, "granted": granted["points"], "cap": f"{label} {cap}"}
            points = used[key] = granted["points"]
        for key, held in used.items():  # a later cap granted less: an earlier one gives back the rest
            if held > points:  # once per event and cap (`count` guards by cause and key)
                self.store.count(
                    key, f"{envelope.id}:beyond-later-cap", domain.released_from_cap(held - points)
                )
                used[key] = points
        self._apply(domain.volunteer_act_transfer(envelope, act, rule, points, capped, used), consumed)

    def _apply(self, transfer: domain.Transfer, consumed: bool = False) -> bool:
        """Move the points, then tell the others (a retry completes both). A transfer caused by
        a `consumed` event publishes its event before that event is acknowledged, so a
        redelivery publishes it again; any other is recorded in the outbox first."""
        applied = self.store.execute(transfer)
        if consumed:
            self.relay.publish_now(transfer.id, domain.transfer_events(transfer))
        else:
            self.relay.publish_soon(self.store.record(transfer))
        return applied

    def _reverse(
        self, leg: domain.Entry, actor: str | None, reason: str, consumed: bool = False
    ) -> dict[str, Any]:
        """Reverse the transfer of `leg`; a volunteer act also gives back what it used of its
        caps (once: a retry finds both done)."""
        reversal = domain.reversal_of(leg, actor, reason)
        moved = self._move(reversal, consumed)
        for key, used in (leg.get("caps_used") or {}).items():
            if used:
                self.store.count(key, reversal.id, domain.released_from_cap(used))
        return moved

    def _move(self, transfer: domain.Transfer, consumed: bool = False) -> dict[str, Any]:
        try:
            applied = self._apply(transfer, consumed)
        except domain.Refused as exc:
            raise Conflict(exc.code, exc.message) from None
        return {**domain.transfer_view(transfer), "replayed": not applied}

    # --- reports ---

    @consumes(PersonRegistered)
    def remember_person(self, envelope: Envelope, data: PersonRegistered) -> None:
        self.store.remember_person(data.read_model(reports.PERSON_FIELDS))

    @consumes(PersonUpdated)
    def update_person(self, envelope: Envelope, data: PersonUpdated) -> None:
        self.store.remember_person(data.read_model(reports.PERSON_FIELDS))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def statement(self, account_id: str, period_from: str, period_to: str) -> dict[str, Any]:
        """An account's entries from one local day to another (both included), with balances."""
        within = reports.period(period_from, period_to)
        zone = local_zone()
        before, entries = self.store.period_entries(account_id, *within.bounds(zone))
        return reports.statement(account_id, within, before, entries, zone)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def leaderboard(
        self, scope_kind: str, scope_ids: list[str], community_ids: list[str], month: str, limit: int = 20
    ) -> dict[str, Any]:
        """People of a grid, community or street ranked by the points they earned in a month
        from the pools of `community_ids`. The caller resolves the scope to its communities
        (the registry knows the tree): a grid's, a community itself, a street's."""
        wanted = reports.board(scope_kind, scope_ids, month, limit)
        earned = self.store.pool_month_tallies(community_ids, month).earned
        return reports.leaderboard(wanted, earned, self.store.people_by_id(earned))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def monthly_disclosure(self, community_id: str, month: str) -> dict[str, Any]:
        """志愿服务情况按月公示: who served the community, by what its ledger recorded in the
        month; names masked."""
        within = reports.month_period(month)
        served = self.store.pool_month_tallies([community_id], month).served
        return reports.disclosure(community_id, within, served, self.store.people_by_id(served))

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def monthly_disclosure_xlsx(self, community_id: str, month: str) -> dict[str, Any]:
        """The disclosure as an .xlsx file: {"filename", "content" (base64)}."""
        return reports.disclosure_file(self.monthly_disclosure(community_id, month))
