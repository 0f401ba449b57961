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
from shared.journal import Journal
from shared.mongo import BaseStore
from shared.partitions import Partitioned

Entry = dict[str, Any]


class PointsStore(BaseStore):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.ledger = Journal(
            db["ledger_entries"],
            Partitioned(db, "accounts"),
            empty=domain.empty_account,
            fold=domain.with_entry,
        )
        self.counters = Journal(
            db["counter_entries"],
            Partitioned(db, "counters", partitions=2),
            empty=domain.empty_account,
            fold=domain.with_entry,
        )
        self.rules = db["earning_rules"]
        self.approvals = db["approvals"]
        self.decisions = db["approval_decisions"]
        self.items = db["catalogue_items"]
        self.orders = db["orders"]
        self.outcomes = db["order_outcomes"]

    def ensure_indexes(self) -> None:
        self.ledger.ensure_indexes()
        self.counters.ensure_indexes()

    # --- accounts ---------------------------------------------------------------------------

    def account(self, account_id: str) -> dict[str, Any] | None:
        return self.ledger.summary(account_id)

    def accounts(self, account_ids: Sequence[str]) -> list[dict[str, Any]]:
        return self.ledger.summaries.find_many(account_ids)

    def statement(self, account_id: str) -> list[Entry]:
        return self.ledger.entries_of(account_id)

    def leg(self, transfer_id: str, account_id: str) -> Entry | None:
        return self.ledger.entries.find_one({"guard": f"{transfer_id}@{account_id}"})

    def legs_of(self, transfer_id: str) -> list[Entry]:
        return list(self.ledger.entries.find({"transfer_id": transfer_id}))

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

    # --- counters (caps, stock, purchases) -------------------------------------------------

    def count(self, key: str, cause: str, entry_for: Callable[[dict[str, Any]], Entry]) -> Entry:
        """Append to a counter once per cause (one cause may move several counters); the
        entry appended now or before."""
        entry, _ = self.counters.append_entry(key, f"{cause}@{key}", entry_for)
        return entry

    def counter(self, key: str) -> dict[str, Any]:
        return self.counters.summary(key) or domain.empty_account(key)

    # --- redemptions ----------------------------------------------------------------------

    def add_item(self, item: dict[str, Any]) -> bool:
        return self._insert_once(self.items, item)

    def item(self, item_id: str) -> dict[str, Any] | None:
        return self.items.find_one({"_id": item_id})

    def items_of(self, community_id: str) -> list[dict[str, Any]]:
        return list(self.items.find({"community_id": community_id}).sort("_id", 1))

    def stock_levels(self, item_ids: Sequence[str]) -> dict[str, int]:
        keys = {f"stock:{item_id}": item_id for item_id in item_ids}
        return {keys[s["_id"]]: s["balance"] for s in self.counters.summaries.find_many(list(keys))}

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
        return list(self.rules.find({"community_id": community_id}))

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
