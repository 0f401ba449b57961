"""Append-only journals that stay exact without transactions.

A journal keeps, per key (an account, a cadre), a chain of entries and a summary of them.
Entry n of key k has `_id` "k#n", so two writers can never both take slot n (primary key),
and a unique `guard` (e.g. "<event id>@k") so a source event lands at most once however often
and however concurrently it is delivered. One insert is therefore at once the idempotency
guard and the change itself (a running balance, say, travels in the entry).

The summary (`fold` of all entries) is what reads use. It is written after the entry, under a
per-key lock inside the process, and cached in memory. It can be behind the chain (a crash
between the two writes, another instance appending, a stale cache): the next append then finds
its slot taken, folds the entry it finds there and moves on, so the summary heals itself.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from shared.locks import KeyedLocks

Summary = dict[str, Any]
Entry = dict[str, Any]


def slot_id(key: str, seq: int) -> str:
    return f"{key}#{seq:010d}"


class Journal:
    def __init__(
        self,
        entries: Collection,
        summaries: Collection,
        *,
        empty: Callable[[str], Summary],
        fold: Callable[[Summary, Entry], Summary],
        cache_size: int = 10_000,
    ) -> None:
        self.entries = entries
        self.summaries = summaries
        self.empty = empty
        self.fold = fold
        self.locks = KeyedLocks()
        self._cache: OrderedDict[str, Summary] = OrderedDict()
        self._cache_size = cache_size

    def ensure_indexes(self) -> None:
        self.entries.create_index("guard", unique=True, name="one_entry_per_guard")

    def summary(self, key: str) -> Summary | None:
        return self.summaries.find_one({"_id": key})

    def append(self, key: str, guard: str, entry_for: Callable[[Summary], Entry]) -> bool:
        """Append `entry_for(summary)` to key's chain unless `guard` is there already.

        Returns True if appended, False if the guard shows it was appended before.
        """
        with self.locks(key):
            summary = self._cached(key)
            known = summary
            appended = False
            while True:
                seq = summary["seq"] + 1
                entry = {
                    **entry_for(summary),
                    "_id": slot_id(key, seq),
                    "key": key,
                    "seq": seq,
                    "guard": guard,
                }
                try:
                    self.entries.insert_one(entry)
                except DuplicateKeyError:
                    taken = self.entries.find_one({"_id": slot_id(key, seq)})
                    if taken is None:
                        break  # the slot is free, so the guard refused: appended before
                    summary = self.fold(summary, taken)  # the summary was behind; walk on
                    continue
                summary = self.fold(summary, entry)
                appended = True
                break
            if summary is not known:
                self.summaries.replace_one({"_id": key}, summary, upsert=True)
                self._remember(key, summary)
            return appended

    def _cached(self, key: str) -> Summary:
        summary = self._cache.get(key)
        if summary is None:
            summary = self.summary(key) or self.empty(key)
            self._remember(key, summary)
        return summary

    def _remember(self, key: str, summary: Summary) -> None:
        self._cache[key] = summary
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
