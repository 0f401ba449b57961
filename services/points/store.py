"""Points bank persistence: every account and every counter is a journal chain (see
shared/journal.py), so balances and stock are exact without transactions, bounds hold under
concurrent use, and each cause moves points once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime, tzinfo
from typing import Any

import eventlet
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.points import domain, redemptions, reports
from shared.cache import RecentlyFound
from shared.group_commit import GroupCommit
from shared.journal import Journal
from shared.mongo import BaseStore, insert_new
from shared.outbox import record_events_of_done
from shared.read_models import remember_newer
from shared.settings import local_zone

Entry = dict[str, Any]
log = logging.getLogger(__name__)
# The people reports name are kept this long (see `PointsStore.people_by_id`).
PEOPLE_SECONDS = 600.0
PEOPLE_KEPT = 200_000


class PointsStore(BaseStore):
    def __init__(self, db: Database, reads: Database | None = None) -> None:
        super().__init__(db, reads)
        # Counters (stock, purchases, caps) are chains like accounts, with the same summaries.
        empty, fold = domain.empty_account, domain.with_entry
        self.ledger = Journal(
            db, "ledger_entries", "accounts", empty=empty, fold=fold, reads=self.reads,
            refusable=domain.may_be_refused,
        )  # fmt: skip
        self._known_people = RecentlyFound(seconds=PEOPLE_SECONDS, size=PEOPLE_KEPT)
        self.ledger_files = LedgerFiles(db, self.ledger, filed_earners=self.people_by_id)
        self.counters = Journal(
            db, "counter_entries", "counters", partitions=2, empty=empty, fold=fold, reads=self.reads,
            refusable=redemptions.is_counter_change,
        )  # fmt: skip
        # The events of applied transfers are recorded in batches: one outbox insert for all
        # the transfers that finish together.
        self._record = GroupCommit(self._record_batch)
        self.rules = db["earning_rules"]
        self.approvals = db["approvals"]
        self.decisions = db["approval_decisions"]
        self.calls_under_way = db["calls_under_way"]
        self.items = db["catalogue_items"]
        self.orders = db["orders"]
        self.outcomes = db["order_outcomes"]
        self.fates = db["order_fates"]
        self.intents = db["order_intents"]

    def ensure_indexes(self) -> None:
        self.ledger.ensure_indexes()
        self.counters.ensure_indexes()
        self.ledger_files.ensure_indexes()

    def write_behind(self) -> None:
        self.ledger_files.file_appended()
        self.ledger.write_summaries()
        self.counters.write_summaries()
        self.ledger_files.months.write_summaries()

    # --- accounts ---------------------------------------------------------------------------

    def account(self, account_id: str) -> dict[str, Any] | None:
        return self.ledger.summary(account_id)

    def recent_entries(self, account: dict[str, Any], count: int) -> list[Entry]:
        return self.ledger.recent_entries(account, count)

    def accounts(self, account_ids: Sequence[str]) -> list[dict[str, Any]]:
        return list(self.ledger.summaries_of(account_ids).values())

    def leg(self, transfer_id: str, account_id: str) -> Entry | None:
        return next((leg for leg in self.legs_of(transfer_id) if leg["key"] == account_id), None)

    def legs_of(self, transfer_id: str) -> list[Entry]:
        return self.ledger_files.legs_of(transfer_id)

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
        self.ledger_files.appended([result for result in results if result is not None])
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
        return self._standing(self.outcomes, outcome)

    def intended_order(self, order_id: str) -> dict[str, Any] | None:
        return self.intents.find_one({"_id": order_id})

    def intend(self, order: dict[str, Any]) -> dict[str, Any]:
        """Record the order an idempotency key stands for, once: the first stands; returns it."""
        return self._standing(self.intents, order)

    def fate(self, order_id: str) -> dict[str, Any] | None:
        return self.fates.find_one({"_id": order_id})

    def settle_fate(self, fate: dict[str, Any]) -> dict[str, Any]:
        """Record whether an order was placed or refused, once: the first fate stands; returns it."""
        return self._standing(self.fates, fate)

    @classmethod
    def _standing(cls, collection: Any, document: dict[str, Any]) -> dict[str, Any]:
        """Insert the document unless one of its `_id` is there; the one that stands."""
        if cls._insert_once(collection, document):
            return document
        return collection.find_one({"_id": document["_id"]})

    @staticmethod
    def _insert_once(collection: Any, document: dict[str, Any]) -> bool:
        try:
            collection.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    # --- earning rules and approvals -----------------------------------------------------

    def add_rule(self, rule: dict[str, Any]) -> bool:
        return self._insert_once(self.rules, {"_id": rule["rule_id"], **rule})

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

    # --- calls under way ---

    def under_way(self, kind: str, identifier: str, **details: Any) -> str:
        """Mark a call that changes several documents (an approval, an order) as under way,
        with what it needs to be finished, until it is `done`: a call that dies midway leaves
        its mark (see `PointsBank.finish_interrupted_calls`). Each call has its own mark (two
        calls of one order may run at once, and one ending must not unmark the other); its id."""
        mark = {"_id": f"{kind}:{identifier}:{uuid.uuid4().hex}", "kind": kind, "identifier": identifier}
        self.calls_under_way.insert_one({**mark, **details, "since": datetime.now(UTC)})
        return mark["_id"]

    def done(self, mark_id: str) -> None:
        self.calls_under_way.delete_one({"_id": mark_id})

    def left_under_way(self, before: datetime) -> list[dict[str, Any]]:
        """The marks made before then and not done. A query of the whole collection, which
        holds only the calls under way and those that died."""
        return list(self.calls_under_way.find({"since": {"$lt": before}}))

    def decision(self, act_id: str) -> dict[str, Any] | None:
        return self.decisions.find_one({"_id": act_id})

    def decide(self, decision: dict[str, Any]) -> dict[str, Any]:
        """Record a decision once: the first one stands; returns the one that stands."""
        return self._standing(self.decisions, decision)

    # --- reports ---

    @property
    def people(self) -> Any:
        """The registry's people as reports need them, fed by its events."""
        return self.db["people"]

    def remember_person(self, person: dict[str, Any]) -> None:
        remember_newer(self.people, person)
        self._known_people.forget(person["_id"])

    def people_by_id(self, person_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The people known of those ids. Reports name everyone who earned in a month (2,000
        people: 1.8 s of lookups on FerretDB), so people found are kept `PEOPLE_SECONDS`, and
        `LedgerFiles` looks up the earners it files before a report asks for them. A person
        updated by another process's event (or while a lookup of them was under way) may show
        as before for that long."""
        wanted = [person_id for person_id in person_ids if reports.is_person_account(person_id)]
        return self._known_people.get_many(wanted, self._look_up_people)

    def _look_up_people(self, person_ids: list[str]) -> dict[str, dict[str, Any]]:
        """A lookup by `_id` each (see `Journal.stretch`)."""
        found = (self.people.find_one({"_id": person_id}) for person_id in person_ids)
        return {person["_id"]: person for person in found if person is not None}

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

    def pool_month_tallies(self, community_ids: Iterable[str], month: str) -> reports.MonthTallies:
        """What people earned from the communities' pools in a local month (YYYY-MM). Whatever
        people earn comes from their community's pool and a reversal gives it back there, so
        a month of the pools holds a month of earnings."""
        pools = [pool for community in community_ids for pool in domain.community_accounts(community)[0]]
        return self.ledger_files.tallies(pools, month)


class LedgerFiles:
    """What the ledger files for reads that would otherwise query it (on FerretDB any query but
    a lookup by `_id` reads the whole ledger; 5,000 entries: 1.3 s):
    - by pool and local month, what the pool's entries earned people: a month file
      `<pool>@<YYYY-MM>`, itself a journal (shared/journal.py) of filings, whose summary holds
      the month's tallies (`reports.MonthTallies`) and the last seq of the pool's chain they
      count. A filing is built on the file's true last one and inserted into the next slot,
      so every entry counts once, whoever files and however often (FerretDB can lose one of two
      concurrent updates of a document: filings are never updates). `pool_filed` tells how
      far each pool's chain has been filed, where the next filing starts reading. Read entry by
      entry, a busy community's month cost a lookup per act (2,600 acts: 3 s); filed, it is a
      summary per pool;
    - by transfer, the `_id`s of its legs (`transfer_legs`), for reversals.

    The entries this process appends are filed from memory every `FILE_SECONDS`, and by any
    report that reads their pool.
    A pool's entries appended elsewhere (another process, or before a crash) are read back by
    `_id` when the pool is filed; a transfer not indexed is found by a query."""

    # Reports file what is pending before they read, so this only bounds the memory held and
    # what a crash leaves to read back; rarer filings cost the credits less (each files more).
    FILE_SECONDS = 10.0
    MONTH_SUMMARY_WRITE_SECONDS = 10.0  # a stored month summary only shortens the fold of a read
    MAX_PENDING = 20_000  # per pool, and transfers; past it, entries are read back instead

    def __init__(
        self, db: Database, ledger: Journal, filed_earners: Callable[[set[str]], Any] = lambda ids: None
    ) -> None:
        """`filed_earners` is told who earned by the entries each filing counts."""
        self._filed_earners = filed_earners
        self.ledger = ledger
        self.months = Journal(
            db,
            "pool_month_filings",
            "pool_months",
            empty=reports.empty_month_file,
            fold=reports.with_filing,
            summary_write_seconds=self.MONTH_SUMMARY_WRITE_SECONDS,
            nothing_to_append=(reports.NothingToFile,),
        )
        self.filed = db["pool_filed"]
        self.transfers = db["transfer_legs"]
        self._pools: dict[str, dict[int, Entry]] = {}  # appended here, not filed yet
        self._transfers: dict[str, list[str]] = {}  # transfer → its legs' `_id`s, not filed yet
        self._filer: Any = None

    def ensure_indexes(self) -> None:
        self.months.ensure_indexes()

    def appended(self, legs: Sequence[Entry]) -> None:
        """Both legs of a transfer were appended now (a leg appended before is not among them)."""
        for leg in legs:
            if domain.may_go_negative(leg["key"]):  # a pool's
                pending = self._pools.setdefault(leg["key"], {})
                if len(pending) < self.MAX_PENDING:
                    pending[leg["seq"]] = leg
        if len(legs) == 2 and len(self._transfers) < self.MAX_PENDING:
            self._transfers[legs[0]["transfer_id"]] = [leg["_id"] for leg in legs]
        if (self._pools or self._transfers) and (self._filer is None or self._filer.dead):
            self._filer = eventlet.spawn(self._file_behind)

    def _file_behind(self) -> None:
        while self._pools or self._transfers:
            eventlet.sleep(self.FILE_SECONDS)
            self.file_appended()

    def file_appended(self) -> None:
        """File what this process appended (also called when the service stops). Best
        effort: a pool left unfiled is filed by the next report that reads it, a transfer not
        indexed is found by a query."""
        transfers, self._transfers = self._transfers, {}
        try:
            if transfers:
                insert_new(self.transfers, [{"_id": t, "legs": legs} for t, legs in transfers.items()])
            for pool in list(self._pools):
                self.file(pool)
        except PyMongoError:
            log.warning("could not file what the ledger appended; reads catch up", exc_info=True)

    def legs_of(self, transfer_id: str) -> list[Entry]:
        """A transfer's legs, debit first: by the index, or, for a transfer it does not hold
        (applied by another process and not filed yet), by a query of the whole ledger."""
        slots = self._transfers.get(transfer_id)
        if slots is None:
            slots = (self.transfers.find_one({"_id": transfer_id}) or {}).get("legs")
        if not slots:
            return list(self.ledger.entries.find({"transfer_id": transfer_id}))
        return [leg for slot in slots if (leg := self.ledger.entries.find_one({"_id": slot})) is not None]

    def file(self, pool: str) -> None:
        """File the pool's entries up to the end of its chain."""
        known = self._pools.pop(pool, {})
        filed = self._filed_through(pool)
        summary = self.ledger.summary(pool)
        last = summary["seq"] if summary else 0
        if last <= filed:
            return
        months: dict[str, list[Entry]] = {}
        zone = local_zone()
        for seq in range(filed + 1, last + 1):
            entry = self.with_act_hours(known.get(seq) or self.ledger.entry(pool, seq))
            months.setdefault(reports.local_month(entry, zone), []).append(entry)
        for month, entries in months.items():
            with suppress(reports.NothingToFile):  # another filer counted them first
                self.months.append(f"{pool}@{month}", f"{pool}@{month}:{last}", reports.filing(entries, last))
        self._mark_filed(pool, last)
        self._filed_earners({entry["counterparty"] for entries in months.values() for entry in entries})

    def with_act_hours(self, entry: Entry, known: Mapping[str, str] | None = None) -> Entry:
        """A reversal of an act made before reversals carried the act's hours gets them from
        the act's credit (`known`: hours by transfer, if the caller has them), so that the act
        stops counting."""
        reverses = entry.get("reverses") or ""
        if entry["kind"] != "reversal" or entry.get("hours") or not reverses.startswith(reports.ACT_TRANSFER):
            return entry
        hours = (known or {}).get(reverses)
        return {**entry, "hours": hours or next((leg.get("hours") for leg in self.legs_of(reverses)), None)}

    def _filed_through(self, pool: str) -> int:
        return (self.filed.find_one({"_id": pool}) or {}).get("through", 0)

    def _mark_filed(self, pool: str, through: int) -> None:
        # Only ever raised: if two filers' updates race and the lower one lands, the next
        # filing reads a few entries again, which their month files count once anyway.
        try:
            self.filed.update_one({"_id": pool}, {"$max": {"through": through}}, upsert=True)
        except DuplicateKeyError:  # two first filings of the pool at once
            self.filed.update_one({"_id": pool}, {"$max": {"through": through}})

    def tallies(self, pools: Sequence[str], month: str) -> reports.MonthTallies:
        """The pools' tallies of a month, filed first up to now: exact as of the call."""
        total = reports.MonthTallies()
        for pool in pools:
            self.file(pool)
            month_file = self.months.summary(f"{pool}@{month}")
            if month_file is not None:
                total.add(reports.MonthTallies.from_text(month_file["tallies"]))
        return total

    # --- reconciliation ---

    def read_pools(self) -> dict[str, PoolChain]:
        """Every pool's chain (reconciliation: one query of the whole ledger)."""
        chains: dict[str, list[Entry]] = {}
        for entry in self.ledger.entries.find({"key": {"$regex": "^pool:"}}):
            chains.setdefault(entry["key"], []).append(entry)
        zone = local_zone()
        return {pool: PoolChain(self, pool, entries, zone) for pool, entries in chains.items()}

    def audit(self, pools: dict[str, PoolChain]) -> dict[str, reports.MonthTallies]:
        """The month files that do not count what their pool's entries earned, each with what
        it should count beyond what it does. `pools`: `read_pools` a moment ago (entries
        appended since are read by `_id` as far as a file has counted)."""
        files: dict[str, set[str]] = {}
        for key in self.months.summaries.stored_keys():
            pool, month = key.rsplit("@", 1)
            files.setdefault(pool, set()).add(month)
        # The cursors before the files: see `reports.month_file_error`.
        cursors = {pool: self._filed_through(pool) for pool in pools.keys() | files.keys()}
        off = {}
        for pool, cursor in sorted(cursors.items()):
            chain = pools.get(pool) or PoolChain(self, pool, [], local_zone())
            for month in sorted(chain.months() | files.get(pool, set())):
                key = f"{pool}@{month}"
                month_file = self.months.summary(key) or reports.empty_month_file(key)
                _, error = reports.month_file_error(month_file, cursor, chain.month(month))
                if error:
                    off[key] = error
        return off

    def correct(self, month_file: str, pools: dict[str, PoolChain]) -> bool:
        """Make a month file count what its pool's entries earned, by a correcting filing;
        False if it was exact by then. Safe while the points bank runs (but not from inside
        it: the filing reads entries while its journal's writer waits). A filing by another
        process at the same moment may make it miss a file, never correct one wrongly: a
        correction built on a file another filing moved past is built again on that one."""
        pool, month = month_file.rsplit("@", 1)
        cursor = self._filed_through(pool)
        chain = pools.get(pool) or PoolChain(self, pool, [], local_zone())
        guard = f"{month_file}:correction:{uuid.uuid4().hex}"
        self.months.refreshed(month_file)  # "exact" is only decided on the file's true state
        with suppress(reports.NothingToFile):
            self.months.append(month_file, guard, reports.correction(cursor, chain.month(month)))
            return True
        return False


class PoolChain:
    """A pool's chain as reconciliation read it, by local month, read on by `_id` as far as
    it is asked for. Reversals get their act's hours as filing gives them, from the act's own
    pool leg in the same chain (a reversal gives the points back to the pool that paid them),
    so an old reversal costs no query of the ledger."""

    def __init__(self, files: LedgerFiles, pool: str, entries: Sequence[Entry], zone: tzinfo) -> None:
        self._files, self._pool, self._zone = files, pool, zone
        self._hours = {e["transfer_id"]: e["hours"] for e in entries if e.get("hours")}
        self._by_month: dict[str, dict[int, Entry]] = {}
        self._seqs: set[int] = set()
        self._read_through = 0  # every seq up to this one read, or found missing
        for entry in entries:
            self._add(entry)

    def months(self) -> set[str]:
        return set(self._by_month)

    def month(self, month: str) -> Callable[[int], list[Entry]]:
        """The month's entries up to a seq."""

        def up_to(through: int) -> list[Entry]:
            self._read_up_to(through)
            return [entry for seq, entry in self._by_month.get(month, {}).items() if seq <= through]

        return up_to

    def _read_up_to(self, through: int) -> None:
        for seq in range(self._read_through + 1, through + 1):
            if seq not in self._seqs and (entry := self._files.ledger.entry(self._pool, seq)) is not None:
                self._add(entry)
        self._read_through = max(self._read_through, through)

    def _add(self, entry: Entry) -> None:
        entry = self._files.with_act_hours(entry, self._hours)
        self._seqs.add(entry["seq"])
        self._by_month.setdefault(reports.local_month(entry, self._zone), {})[entry["seq"]] = entry
