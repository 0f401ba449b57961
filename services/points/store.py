"""Points bank persistence: every account is a journal chain (see shared/journal.py), so a
balance is exact without transactions and each source event credits an account once."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from services.points import domain
from shared.journal import Journal
from shared.mongo import BaseStore
from shared.partitions import Partitioned


class PointsStore(BaseStore):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.ledger = Journal(
            db["ledger_entries"],
            Partitioned(db, "accounts"),
            empty=domain.empty_account,
            fold=domain.with_entry,
        )

    def ensure_indexes(self) -> None:
        self.ledger.ensure_indexes()

    def account(self, account_id: str) -> dict[str, Any] | None:
        return self.ledger.summary(account_id)

    def post(self, account_id: str, event_id: str, entry: dict[str, Any]) -> bool:
        """Post an entry once per (event, account). Returns False if it was posted before."""
        return self.ledger.append(
            account_id,
            f"{event_id}@{account_id}",
            lambda account: domain.with_running_balance(entry, account),
        )
