"""Points bank persistence: an append-only ledger that stays exact without transactions.

Each account's entries form a chain: entry n has `_id` "<account>#<n>" and carries the
balance after it. Posting is a single insert that is at once
- the idempotency guard: `guard` = "<event id>@<account>" has a unique index, so a source
  event credits an account at most once, however often and however concurrently delivered;
- the balance change: `balance_after`; two writers cannot both take slot n (primary key).
The account document (balance, length of chain, latest entries) is a summary for fast reads,
written after the entry under a per-account lock; if it is stale (a crash between the two
writes, or another instance), the next posting walks the chain forward and repairs it.
"""

from __future__ import annotations

from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.points.domain import RECENT_ENTRIES
from shared.locks import KeyedLocks
from shared.mongo import BaseStore


def slot_id(account: str, seq: int) -> str:
    return f"{account}#{seq:010d}"


class PointsStore(BaseStore):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.accounts = db["accounts"]
        self.entries = db["ledger_entries"]
        self.locks = KeyedLocks()

    def ensure_indexes(self) -> None:
        self.entries.create_index("guard", unique=True, name="one_posting_per_event_and_account")

    def account(self, account: str) -> dict[str, Any] | None:
        return self.accounts.find_one({"_id": account})

    def post(self, account: str, event_id: str, entry: dict[str, Any]) -> bool:
        """Append an entry to an account once per event. Returns False if already posted."""
        with self.locks(account):
            summary = self.account(account) or {
                "_id": account,
                "balance": 0,
                "seq": 0,
                "recent": [],
            }
            stored = dict(summary)
            posted = False
            while True:
                seq = summary["seq"] + 1
                document = {
                    **entry,
                    "_id": slot_id(account, seq),
                    "account": account,
                    "seq": seq,
                    "guard": f"{event_id}@{account}",
                    "balance_after": summary["balance"] + entry["points"],
                }
                try:
                    self.entries.insert_one(document)
                    summary = _advance(summary, document)
                    posted = True
                    break
                except DuplicateKeyError:
                    taken = self.entries.find_one({"_id": slot_id(account, seq)})
                    if taken is None:
                        break  # the slot is free, so the guard refused: already posted
                    summary = _advance(summary, taken)  # the summary was stale; walk on
            if summary != stored:
                self.accounts.replace_one({"_id": account}, summary, upsert=True)
            return posted


def _advance(summary: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    recent = [e for e in summary["recent"] if e["_id"] != entry["_id"]]
    return {
        "_id": summary["_id"],
        "balance": entry["balance_after"],
        "seq": entry["seq"],
        "recent": [entry, *recent][:RECENT_ENTRIES],
    }
