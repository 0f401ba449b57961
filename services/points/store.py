"""Points bank persistence: every account and every counter is a journal chain (see
shared/journal.py), so balances and stock are exact without transactions, bounds hold under
concurrent use, and each cause moves points once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.points import domain
from shared.group_commit import GroupCommit
from shared.journal import Journal
from shared.mongo import BaseStore
from shared.outbox import record_events_of_done
from shared.read_models import remember_newer

Entry = dict[str, Any]


class PointsStore(BaseStore):
    def __init__(self, db: Database, reads: Database | None = None) -> None:
        super().__init__(db, reads)
        # Counters (stock, purchases, caps) are chains like accounts, with the same summaries.
        empty, fold = domain.empty_account, domain.with_entry
        self.ledger = Journal(db, "ledger_entries", "accounts", empty=empty, fold=fold, reads=self.reads)
        self.counters = Journal(
            db, "counter_entries", "counters", partitions=2, empty=empty, fold=fold, reads=self.reads
        )
        # The events of applied transfers are recorded in batches: one outbox insert for all
        # the transfers that finish together.
        self._record = GroupCommit(self._record_batch)
        self.rules = db["earning_rules"]
        self.approvals = db["approvals"]
        self.decisions = db["approval_decisions"]
        self.items = db["catalogue_items"]
        self.orders = db["orders"]
        self.outcomes = db["order_outcomes"]

    def ensure_indexes(self) -> None:
        self.ledger.ensure_indexes()
        self.counters.ensure_indexes()

    def write_behind(self) -> None:
        self.ledger.write_summaries()
        self.counters.write_summaries()

    # --- accounts ---------------------------------------------------------------------------

    def account(self, account_id: str) -> dict[str, Any] | None:
        return self.ledger.summary(account_id)

    def recent_entries(self, account: dict[str, Any], count: int) -> list[Entry]:
        return self.ledger.recent_entries(account, count)

    def accounts(self, account_ids: Sequence[str]) -> list[dict[str, Any]]:
        return list(self.ledger.summaries_of(account_ids).values())

    def leg(self, transfer_id: str, account_id: str) -> Entry | None:
        return self.ledger.entries.find_one({"guard": f"{transfer_id}@{account_id}"})

    def legs_of(self, transfer_id: str) -> list[Entry]:
        return list(self.ledger.entries.find({"transfer_id": transfer_id}))

    def chain_totals(self) -> list[dict[str, Any]]:
        """Per account: the sum of its entries' points, their number and the sum of their seqs."""
        # One accumulator per pass: FerretDB 1.24 fills only the first of several in a $group.
        totals: dict[str, dict[str, Any]] = {}
        for name, accumulator in (("sum", "$points"), ("count", 1), ("seq_sum", "$seq")):
            for row in self.ledger.entries.aggregate(
                [{"$group": {"_id": "$key", name: {"$sum": accumulator}}}]
            ):
                totals.setdefault(row["_id"], {"_id": row["_id"]})[name] = row[name]
        return list(totals.values())

    def stored_summaries_of(self, account_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return self.ledger.stored_summaries_of(account_ids)

    def one_legged_transfers(self) -> list[str]:
        legs = [{"$group": {"_id": "$transfer_id", "legs": {"$sum": 1}}}, {"$match": {"legs": {"$ne": 2}}}]
        # Entries from before double entry have no transfer; they show as one group.
        return [t["_id"] or "(entries without a transfer)" for t in self.ledger.entries.aggregate(legs)]

    def execute(self, transfer: domain.Transfer) -> bool:
        """Apply both legs of a transfer. True if applied now, False if it had been before.
        Raises `domain.Refused` (nothing moved) if the debit would break its account's bound.

        A debit that may fail goes first and alone; a credit never fails, so when the debit
        cannot fail either (a pool's) both legs share one write."""
        debit, credit = domain.legs(transfer, datetime.now(UTC))
        if domain.may_go_negative(transfer.from_account):
            results = self.ledger.append_together([debit, credit])
        else:
            first = self.ledger.append_together([debit])
            if isinstance(first[0], Exception):
                raise first[0]
            results = [first[0], *self.ledger.append_together([credit])]
        for result in results:
            if isinstance(result, Exception):
                raise result
        return any(result is not None for result in results)

    def record(self, transfer: domain.Transfer) -> list[dict[str, Any]]:
        """Record the `points.transferred` event of an applied transfer; the events to relay.
        Only for transfers a caller asks for: a consumed event's transfer publishes its event
        at once instead (`PointsBank._apply`).

        The legs are the transfer's record; the event is written after them. A retry (the
        caller sending the same request again) finds the legs applied and writes the event
        again under the same id, which its consumers absorb."""
        return self._record(transfer)

    def _record_batch(self, transfers: Sequence[domain.Transfer]) -> list[list[dict[str, Any]]]:
        # A transfer twice in a batch (a cause delivered twice at once) is recorded once, and
        # its events are handed to the first caller: the record then expects exactly those.
        unique = {t.id: t for t in transfers}.values()
        events = record_events_of_done(self.db, [(t.id, domain.transfer_events(t)) for t in unique])
        by_transfer: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            by_transfer.setdefault(event["aggregate_id"], []).append(event)
        return [by_transfer.pop(t.id, []) for t in transfers]

    # --- counters (caps, stock, purchases) -------------------------------------------------

    def count(self, key: str, cause: str, entry_for: Callable[[dict[str, Any]], Entry]) -> Entry:
        """Append to a counter once per cause (one cause may move several counters); the
        entry appended now or before."""
        entry, _ = self.counters.append_entry(key, f"{cause}@{key}", entry_for)
        return entry

    # --- redemptions ----------------------------------------------------------------------

    def add_item(self, item: dict[str, Any]) -> bool:
        return self._insert_once(self.items, item)

    def item(self, item_id: str) -> dict[str, Any] | None:
        return self.items.find_one({"_id": item_id})

    def items_of(self, community_id: str) -> list[dict[str, Any]]:
        return list(self.items.find({"community_id": community_id}).sort("_id", 1))

    def stock_levels(self, item_ids: Sequence[str]) -> dict[str, int]:
        keys = {f"stock:{item_id}": item_id for item_id in item_ids}
        return {keys[key]: s["balance"] for key, s in self.counters.summaries_of(list(keys)).items()}

    def add_order(self, order: dict[str, Any]) -> bool:
        return self._insert_once(self.orders, order)

    def order(self, order_id: str) -> dict[str, Any] | None:
        return self.orders.find_one({"_id": order_id})

    def orders_of(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.orders.find(query).sort("_id", 1))

    def outcome(self, order_id: str) -> dict[str, Any] | None:
        return self.outcomes.find_one({"_id": order_id})

    def outcomes_of(self, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {o["_id"]: o for o in self.outcomes.find({"_id": {"$in": list(order_ids)}})}

    def settle(self, outcome: dict[str, Any]) -> dict[str, Any]:
        """Record how an order ended, once: the first outcome stands; returns it."""
        if self._insert_once(self.outcomes, outcome):
            return outcome
        return self.outcomes.find_one({"_id": outcome["_id"]})

    @staticmethod
    def _insert_once(collection: Any, document: dict[str, Any]) -> bool:
        try:
            collection.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    # --- earning rules and approvals -----------------------------------------------------

    def add_rule(self, rule: dict[str, Any]) -> bool:
        try:
            self.rules.insert_one({"_id": rule["rule_id"], **rule})
        except DuplicateKeyError:
            return False
        return True

    def rules_of(self, community_id: str) -> list[dict[str, Any]]:
        return list(self.reads[self.rules.name].find({"community_id": community_id}))

    def hold_for_approval(self, act_id: str, pending: dict[str, Any]) -> None:
        with suppress(DuplicateKeyError):  # a redelivered act waits once
            self.approvals.insert_one({"_id": act_id, **pending})

    def pending_approvals(self, community_id: str) -> list[dict[str, Any]]:
        decided = {d["_id"] for d in self.decisions.find({"community_id": community_id}, {"_id": 1})}
        waiting = self.approvals.find({"community_id": community_id}).sort("_id", 1)
        return [a for a in waiting if a["_id"] not in decided]

    def approval(self, act_id: str) -> dict[str, Any] | None:
        return self.approvals.find_one({"_id": act_id})

    def decide(self, decision: dict[str, Any]) -> dict[str, Any]:
        """Record a decision once: the first one stands; returns the one that stands."""
        try:
            self.decisions.insert_one(decision)
        except DuplicateKeyError:
            return self.decisions.find_one({"_id": decision["_id"]})
        return decision

    # --- reports ---

    # What leaderboards and disclosures read of an entry.
    REPORT_FIELDS = ("key", "kind", "points", "transfer_id", "reverses", "hours", "community_id")

    @property
    def people(self) -> Any:
        """The registry's people as reports need them, fed by its events."""
        return self.db["people"]

    def remember_person(self, person: dict[str, Any]) -> None:
        remember_newer(self.people, person)

    def people_where(self, field: str, values: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {p["_id"]: p for p in self.people.find({field: {"$in": sorted(set(values))}})}

    def period_entries(
        self, account_id: str, start: datetime, end: datetime
    ) -> tuple[Entry | None, list[Entry]]:
        """The entry before [start, end), whose balance opens it, and the entries within, in
        chain order. Within is a stretch of the chain, from where it reaches `start` up to where
        it reaches `end` (found by bisection, `Journal.first_seq_where`): clocks of two processes
        can stamp neighbouring entries a moment out of order, and a stretch keeps opening +
        movements = closing, with each entry in exactly one period. Every read is by `_id`."""
        account = self.ledger.summary(account_id)
        if account is None:
            return None, []
        last = account["seq"]
        first = self.ledger.first_seq_where(account_id, "applied_at", start, last)
        if first is None:
            return self.ledger.entry(account_id, last), []
        after = self.ledger.first_seq_where(account_id, "applied_at", end, last)
        stretch = self.ledger.stretch(account_id, max(first - 1, 1), last if after is None else after - 1)
        if stretch and stretch[0]["seq"] < first:
            return stretch[0], stretch[1:]
        return None, stretch

    def applied_between(self, start: datetime, end: datetime) -> list[Entry]:
        """Every leg applied in [start, end), slim. Kinds are picked in Python: FerretDB scans the
        ledger anyway, and holds its write lock while it matches an `$in`."""
        return list(self.ledger.entries.find({"applied_at": {"$gte": start, "$lt": end}}, self.REPORT_FIELDS))

    def legs_of_transfers(self, transfer_ids: Sequence[str]) -> list[Entry]:
        return [leg for transfer_id in transfer_ids for leg in self.legs_of(transfer_id)]

    def community_acts(self, community_id: str, first: str, last: str) -> list[Entry]:
        """Legs of the community's volunteer acts done from `first` to `last` (ISO dates)."""
        query = {
            "kind": "volunteer_act",
            "community_id": community_id,
            "occurred_on": {"$gte": first, "$lte": last},
        }
        return list(self.ledger.entries.find(query, self.REPORT_FIELDS))

    def reversed_transfers(self, community_id: str) -> set[str]:
        found = self.ledger.entries.find({"kind": "reversal", "community_id": community_id}, {"reverses": 1})
        return {e["reverses"] for e in found}
