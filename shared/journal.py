"""Append-only journals that stay exact without transactions.

A journal keeps, per key (an account, a cadre), a chain of entries and a summary of them.
Entry n of key k has `_id` "k#n", so two writers can never both take slot n (primary key),
and a unique `guard` (e.g. "<event id>@k") so a source event lands at most once however often
and however concurrently it is delivered. One insert is therefore at once the idempotency
guard and the change itself (a running balance, say, travels in the entry).

An entry can be refused: `entry_for` raises (a debit beyond the balance, a stock below zero).
It is called with the summary of the true previous entry, so such bounds hold exactly under
concurrent appends, from any number of processes.

The summary (`fold` of all entries) is what reads use. Appends that arrive together share
their database writes (group commit). Summaries are kept in memory and written behind, each
at most once per `SUMMARY_WRITE_SECONDS` (unless the journal is given another period): a busy
key (a community's pool) costs one rewrite a second instead of one per entry. A stored
summary can therefore be behind its chain (also after a crash, or when another instance
appends); it is never wrong, only early:
- a read folds in the entries after it (`summary`, `summaries_of`: one lookup by `_id` for
  a summary that is current), so what callers see is exact;
- an append finds its slot taken, folds the entry there and moves on, so it heals itself.

A refusal must tell a first attempt from a redelivery of an entry appended long ago (the
chain has moved on since, so `entry_for` refuses a state after it). On FerretDB a query by
guard reads every entry of every chain, so the guards of entries that could have been
refused (a debit, a take) are recorded by `_id`, with the slot tried, before those entries
are inserted: no record, never appended; with one, the entry lies at or after that slot
(the chain had reached it when the record was written).
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import eventlet
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from shared.group_commit import GroupCommit
from shared.mongo import insert_new
from shared.partitions import PARTITIONS, Partitioned

Summary = dict[str, Any]
Entry = dict[str, Any]
Append = tuple[str, str, Callable[[Summary], Entry]]
Result = Entry | None | Exception  # the entry appended; None: appended before; or why not
SUMMARY_WRITE_SECONDS = 1.0
WALKED = 32  # entries looked at by `_id` before the guard's index is asked
BACKFILLED = "#backfilled"  # in a journal's guard records: the entries before them are recorded
log = logging.getLogger(__name__)


def slot_id(key: str, seq: int) -> str:
    return f"{key}#{seq:010d}"


class Journal:
    def __init__(
        self,
        db: Database,
        entries: str,
        summaries: str,
        *,
        empty: Callable[[str], Summary],
        fold: Callable[[Summary, Entry], Summary],
        partitions: int = PARTITIONS,
        reads: Database | None = None,
        cache_size: int = 10_000,
        summary_write_seconds: float = SUMMARY_WRITE_SECONDS,
        nothing_to_append: tuple[type[Exception], ...] = (),
        refusable: Callable[[Entry], bool] | None = None,
    ) -> None:
        """Entries in the collection `entries`, summaries partitioned under `summaries`; reads
        go to `reads`, the same database on read-only connections. What `entry_for` raises
        is a refusal, checked against a redelivery's guard and a newer summary, unless it is
        one of `nothing_to_append` (an answer, not a refusal), which the caller gets as is.
        `refusable` tells the entries whose `entry_for` could refuse: their guards are
        recorded in `<entries>_guards` (see the module doc). It must hold for every entry
        appended by an `entry_for` that may raise."""
        self.entries = db[entries]
        self.summaries = Partitioned(db, summaries, partitions)
        reads = db if reads is None else reads
        self._read_entries, self._read_summaries = reads[entries], Partitioned(reads, summaries, partitions)
        self.empty = empty
        self.fold = fold
        self._cache: OrderedDict[str, Summary] = OrderedDict()
        self._cache_size = cache_size
        self._summary_write_seconds = summary_write_seconds
        self._answers = nothing_to_append
        self._refusable = refusable
        self.guards = db[f"{entries}_guards"]
        self._every_guard_recorded = False  # known once `ensure_indexes` has seen the backfill
        # Appends of a process go through one flusher, in batches: no two run at once here.
        self._append = GroupCommit(self._append_batch)
        self._unwritten: dict[str, Summary] = {}  # summaries newer than the stored ones
        self._writer: Any = None

    def ensure_indexes(self) -> None:
        self.entries.create_index("guard", unique=True, name="one_entry_per_guard")
        if self._refusable is None:
            return
        if self.guards.find_one({"_id": BACKFILLED}) is None:
            # Entries from before guards were recorded (an upgrade, with every process of the
            # old version stopped): read once, here.
            entries = self.entries.find()
            while batch := list(itertools.islice(entries, 1000)):
                self._record_guards(batch)
            insert_new(self.guards, [{"_id": BACKFILLED}])
        self._every_guard_recorded = True

    def summary(self, key: str) -> Summary | None:
        """Key's summary, exact: None if its chain is empty."""
        return self.summaries_of([key]).get(key)

    def summaries_of(self, keys: Sequence[str]) -> dict[str, Summary]:
        """Exact summaries of the keys that have entries: the newest known, folded over any
        entries appended after it (by another instance, or before a crash)."""
        return self._folded(keys, {key: self._in_memory(key) for key in keys})

    def refreshed(self, key: str) -> Summary | None:
        """Key's exact summary, kept as this process's own: the next append is built on it
        rather than on one another process has moved past since (an append refused by
        `entry_for` is decided on the summary at hand)."""
        summary = self.summary(key)
        if summary is not None:
            self._remember(key, summary)
            if key in self._unwritten:
                self._unwritten[key] = summary
        return summary

    def stored_summaries_of(self, keys: Sequence[str]) -> dict[str, Summary]:
        """Like `summaries_of`, from the stored summaries alone: what reconciliation checks."""
        return self._folded(keys, {key: None for key in keys})

    def _folded(self, keys: Sequence[str], known: dict[str, Summary | None]) -> dict[str, Summary]:
        missing = [key for key, summary in known.items() if summary is None]
        known.update({s["_id"]: s for s in self._read_summaries.find_many(missing)})
        exact = {}
        for key in keys:
            summary = known.get(key) or self.empty(key)
            while (
                entry := self._read_entries.find_one({"_id": slot_id(key, summary["seq"] + 1)})
            ) is not None:
                summary = self.fold(summary, entry)
            if summary["seq"]:
                exact[key] = summary
        return exact

    def recent_entries(self, summary: Summary, count: int) -> list[Entry]:
        """The last `count` entries of a summary's chain, newest first (each found by `_id`)."""
        seqs = range(summary["seq"], max(summary["seq"] - count, 0), -1)
        found = (self._read_entries.find_one({"_id": slot_id(summary["_id"], seq)}) for seq in seqs)
        return [entry for entry in found if entry is not None]

    def append(self, key: str, guard: str, entry_for: Callable[[Summary], Entry]) -> bool:
        """Append `entry_for(summary)` to key's chain unless `guard` is there already.

        Returns True if appended, False if the guard shows it was appended before. What
        `entry_for` raises (a refusal) is raised here.
        """
        return self._append((key, guard, entry_for)) is not None

    def append_entry(self, key: str, guard: str, entry_for: Callable[[Summary], Entry]) -> tuple[Entry, bool]:
        """Like `append`, returning the entry: the one appended now (True) or before (False)."""
        entry = self._append((key, guard, entry_for))
        if entry is not None:
            return entry, True
        return self.entry_by_guard(key, guard), False

    def append_together(self, appends: Sequence[Append]) -> list[Result]:
        """Several appends to different keys submitted together (both legs of a transfer), so
        they usually share a flush; each is guarded on its own. Each result is the entry, None
        (appended before) or the exception that refused it."""
        return self._append.together(appends)

    def entries_of(self, key: str) -> list[Entry]:
        """Key's whole chain, in order, in one query (reconciliation): on FerretDB it reads
        every entry of every key once, which beats a lookup per entry of a long chain."""
        return list(self._read_entries.find({"key": key}).sort("seq", 1))

    def stretch(self, key: str, first_seq: int, last_seq: int) -> list[Entry]:
        """Entries `first_seq` to `last_seq` of key's chain (a statement), a lookup by `_id`
        each: any other query, `$in` and ranges of `_id` too, reads the whole collection on
        FerretDB (measured, 50,000 entries: 2.6 s a query against 2 ms a lookup)."""
        found = (self.entry(key, seq) for seq in range(first_seq, last_seq + 1))
        return [entry for entry in found if entry is not None]

    def entry(self, key: str, seq: int) -> Entry | None:
        return self._read_entries.find_one({"_id": slot_id(key, seq)})

    def first_seq_where(self, key: str, field: str, at_least: Any, last_seq: int) -> int | None:
        """The first entry of key's chain (up to `last_seq`) whose `field` is `at_least` or
        more, by bisection: about log2(last_seq) lookups by `_id`. Entries are appended in
        time order, but two processes' clocks may stamp neighbours a moment out of order; the
        bisection then settles on one of the places where the chain crosses `at_least`, always
        the same one for the same chain, so periods that meet there share it exactly."""
        if last_seq < 1 or (last := self.entry(key, last_seq)) is None or last[field] < at_least:
            return None
        low, high = 1, last_seq  # the answer lies in [low, high]
        while low < high:
            middle = (low + high) // 2
            entry = self.entry(key, middle)
            if entry is not None and entry[field] >= at_least:
                high = middle
            else:
                low = middle + 1
        return low

    def heal(self, key: str) -> Summary:
        """Rebuild key's summary from its whole chain and write it (reconciliation repairs)."""
        summary = self.empty(key)
        for entry in self.entries_of(key):
            summary = self.fold(summary, entry)
        self.summaries.replace_many({key: summary})
        self._unwritten.pop(key, None)
        self._remember(key, summary)
        return summary

    def _append_batch(self, items: Sequence[Append]) -> list[Result]:
        """Append a batch in rounds holding at most one item per key, so that no entry is
        built on another entry of the same batch whose insert might still fail."""
        results: list[Result] = [None] * len(items)
        rounds: list[list[int]] = []
        taken: dict[str, int] = {}
        for index, (key, _, _) in enumerate(items):
            position = taken.get(key, 0)
            taken[key] = position + 1
            if position == len(rounds):
                rounds.append([])
            rounds[position].append(index)
        for indexes in rounds:
            self._append_round(items, indexes, results)
        return results

    def _append_round(self, items: Sequence[Append], indexes: list[int], results: list[Result]) -> None:
        built = []
        for index in indexes:
            try:
                built.append((index, self._next_entry(self._cached(items[index][0]), *items[index])))
            except Exception as exc:
                results[index] = exc if isinstance(exc, self._answers) else self._refused(items[index], exc)
        if not built:
            return
        indexes = [index for index, _ in built]
        entries = [entry for _, entry in built]
        self._record_guards(entries)
        refused = insert_new(self.entries, entries)
        changed: dict[str, Summary] = {}
        for position, index in enumerate(indexes):
            key = items[index][0]
            if position in refused:
                try:
                    results[index] = self._append_one(*items[index])
                except Exception as exc:
                    results[index] = exc
            else:
                changed[key] = self.fold(self._cached(key), entries[position])
                results[index] = entries[position]
        self._keep_summaries(changed)

    def _refused(self, item: Append, exc: Exception) -> Result:
        """`entry_for` refused on this process's summary. Another process may have appended
        since (credited the balance a debit needs, restocked an item): then it is asked again
        on the true summary; a refusal stands only if made on that one."""
        key, guard, _ = item
        known = self._in_memory(key) or self.empty(key)
        try:
            if (self.refreshed(key) or self.empty(key))["seq"] == known["seq"]:
                return self._refusal(key, guard, exc)
            return self._append_one(*item)
        except Exception as failure:  # the database, not the entry: the caller gets that
            return failure

    def entry_by_guard(self, key: str, guard: str, walked: int = WALKED) -> Entry | None:
        """Key's entry of that guard."""
        return self._entry_of(key, guard, self._record_of(guard), walked)

    def _record_of(self, guard: str) -> dict[str, Any] | None:
        return self.guards.find_one({"_id": guard}) if self._refusable is not None else None

    def _entry_of(self, key: str, guard: str, record: dict[str, Any] | None, walked: int) -> Entry | None:
        """Key's entry of that guard, looked up by `_id`: among the chain's last `walked`
        entries and, for a recorded guard, the `walked` from its record's slot on (where the
        entry is unless another process took that slot first). Only a stretch neither
        covers is then queried by guard, which on FerretDB reads every entry of every chain
        (5,000 entries: 1.3 s)."""
        last = (self.summary(key) or self.empty(key))["seq"]
        where = range(last, (record["seq"] if record else 1) - 1, -1)  # if anywhere, newest first
        looked = [*where[:walked], *(where[walked:][-walked:] if record else [])]
        for seq in looked:
            entry = self.entry(key, seq)
            if entry is not None and entry.get("guard") == guard:
                return entry
        return None if len(looked) == len(where) else self.entries.find_one({"guard": guard})

    def _refusal(self, key: str, guard: str, exc: Exception) -> Result:
        """`entry_for` refused: right, unless this is a redelivery of an entry already made
        (the chain moved on since, so the refusal is about a state after it). An entry that
        could be refused had its guard recorded first, so without a record it never was."""
        record = self._record_of(guard)
        if record is None and self._every_guard_recorded:
            return exc
        return None if self._entry_of(key, guard, record, WALKED) is not None else exc

    def _append_one(self, key: str, guard: str, entry_for: Callable[[Summary], Entry]) -> Result:
        """The slow path, after a refused insert: walk the chain until the guard decides."""
        summary = known = self._cached(key)
        appended = None
        while True:
            try:
                entry = self._next_entry(summary, key, guard, entry_for)
            except Exception as exc:
                appended = exc if isinstance(exc, self._answers) else self._refusal(key, guard, exc)
                break
            try:
                self._record_guards([entry])
                self.entries.insert_one(entry)
            except DuplicateKeyError:
                taken = self.entries.find_one({"_id": entry["_id"]})
                if taken is None:
                    break  # the slot is free, so the guard refused: appended before
                summary = self.fold(summary, taken)  # the summary was behind; walk on
                continue
            summary = self.fold(summary, entry)
            appended = entry
            break
        if summary is not known:
            self._keep_summaries({key: summary})
        return appended

    def _record_guards(self, entries: Sequence[Entry]) -> None:
        """Record the guards of the refusable entries about to be inserted (an existing record,
        from an earlier attempt, stays)."""
        if self._refusable is not None:
            records = [{"_id": e["guard"], "seq": e["seq"]} for e in entries if self._refusable(e)]
            if records:
                insert_new(self.guards, records)

    @staticmethod
    def _next_entry(summary: Summary, key: str, guard: str, entry_for: Callable[[Summary], Entry]) -> Entry:
        seq = summary["seq"] + 1
        return {**entry_for(summary), "_id": slot_id(key, seq), "key": key, "seq": seq, "guard": guard}

    def _keep_summaries(self, changed: dict[str, Summary]) -> None:
        """Keep the new summaries; a writer stores them a moment later (see the module doc)."""
        for key, summary in changed.items():
            self._remember(key, summary)
        self._unwritten.update(changed)
        if self._writer is None or self._writer.dead:
            self._writer = eventlet.spawn(self._write_behind)

    def _write_behind(self) -> None:
        while self._unwritten:
            eventlet.sleep(self._summary_write_seconds)
            self.write_summaries()

    def write_summaries(self) -> None:
        """Store the summaries not stored yet (also called when the service stops). Best
        effort: one left behind is caught up by reads and appends."""
        due, self._unwritten = self._unwritten, {}
        try:
            self.summaries.replace_many(due)
        except Exception:
            log.warning("could not store %d journal summaries; they catch up later", len(due), exc_info=True)
            for key, summary in due.items():
                self._unwritten.setdefault(key, summary)

    def _cached(self, key: str) -> Summary:
        summary = self._in_memory(key)
        if summary is None:
            summary = self.summary(key) or self.empty(key)
            self._remember(key, summary)
        return summary

    def _in_memory(self, key: str) -> Summary | None:
        """This process's newest summary of key: not stored yet, or cached."""
        return self._unwritten.get(key) or self._cache.get(key)

    def _remember(self, key: str, summary: Summary) -> None:
        self._cache[key] = summary
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
