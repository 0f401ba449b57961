"""Benchmark of the points bank (积分银行). Run with `make bench`.

It starts its own suite (fresh database, its own vhost, the gateway with the production
gunicorn settings) and prints, from one run:
1. a burst of 20,000 `volunteer_act.recorded` events (1 hour each, 2,000 people, one community)
   published straight to the broker, 500 per publish: the publish rate, then credits applied
   per second from the first publish until the points bank has applied the last one (taken from
   the ledger's own `applied_at` stamps), and whether the books are exact: every person holds
   10 points per act and the people's balances plus the community's pool shards sum to zero;
2. the burst's month in reports, through the gateway: the first read of the community's
   monthly disclosure (2,000 people, 20,000 acts), then p50 / p95 / p99 of it and of the
   community's leaderboard (the burst's people are put in the points bank's read model of the
   registry's people before the burst);
3. a sold-out rush: RUSH_ORDERS orders of one item with RUSH_STOCK in stock, one each from the
   burst's people (who hold the points), sent through the points bank's RPC from
   READ_THREADS threads: p50 / p95 / p99 of the orders placed and of those refused for want of
   stock, and whether exactly the stock was sold. Each refusal must tell whether its take was
   made before, on a stock chain far longer than the last entries it looks at by `_id`
   (one points bank process: the refusals of takes that lost their slot to another process
   are covered by tests/integration/test_ledger.py);
4. balance reads of accounts with 100 entries each: first with 400 such accounts loaded (40,000
   entries, written straight into the points bank's database), then with 1,000,000 loaded
   (10,000 accounts): how long loading took, and p50 / p95 / p99 of
   GET /api/v1/points/accounts/<person> through the gateway for 200 of the first accounts whose
   people are registered (the gateway asks the registry first), and of the points bank's
   `get_account` RPC for any loaded account; and of this month's statement
   (GET /api/v1/points/accounts/<id>/statement, all 100 entries) of any loaded account.
If loading 1,000,000 entries is projected (after the first 50,000) to take more than 15
minutes, it loads the most that fits in about 10 and says so in the figure's label.
No figure is asserted: this prints what it measured.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stack import bench_stack, in_threads  # a script: its folder is not a package

COMMUNITY = "420391-001-001"
POOLS = [f"pool:{COMMUNITY}:{n}" for n in range(8)]  # domain.POOL_SHARDS
POINTS_PER_ACT = 10  # 1 hour at the default 10 points per hour

BURST_EVENTS = int(os.environ.get("BENCH_BURST_EVENTS", "20000"))  # smaller for a quick try
BURST_PEOPLE = 2_000
PUBLISH_BATCH = 500
POLL_SECONDS = 0.5
STALL_SECONDS = 120  # no progress this long: stop waiting and say what is missing

LOAD_ACCOUNTS = 10_000
ENTRIES_PER_ACCOUNT = 100
INSERT_BATCH = 2_000
PROJECT_AFTER = 50_000
MAX_PROJECTED_SECONDS = 15 * 60
FALLBACK_SECONDS = 10 * 60
FIRST_ACCOUNTS = 400  # loaded, and read, before the rest
REGISTERED_SAMPLE = 200
READS = 500
READ_THREADS = 8


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency_line(label: str, took_ms: list[float]) -> str:
    return (
        f"  {label:58s} p50 {percentile(took_ms, 50):6.1f}  p95 {percentile(took_ms, 95):6.1f}  "
        f"p99 {percentile(took_ms, 99):6.1f}  (ms, {len(took_ms)} calls)"
    )


# --- figure 1: a burst of events ------------------------------------------------------------


def burst_records(people: list[str]) -> list[dict[str, Any]]:
    """Events, as issue intake's relay would publish them, of BURST_EVENTS one-hour acts."""
    from shared.events import new_event
    from shared.outbox import publishable
    from tests.support import act_recorded

    envelopes = []
    for n in range(BURST_EVENTS):
        act = act_recorded(person_id=people[n % len(people)], act_id=f"va_burst{n:06d}")
        envelopes.append(new_event(act, subject=act.act_id))
    return publishable(envelopes, "bench-burst")


def publish_all(amqp_uri: str, records: list[dict[str, Any]]) -> int:
    """Publish in batches, each confirmed by the broker; returns how many publishes were
    retried. The broker is shared and some integration tests stop it for a moment: a batch
    that failed is published again, which consumers absorb (each event id applies once)."""
    from shared.events import ISSUE_INTAKE
    from shared.outbox import EventPublisher, PublishFailed

    publisher = EventPublisher(amqp_uri, ISSUE_INTAKE, timeout=60)
    retries = 0
    try:
        for start in range(0, len(records), PUBLISH_BATCH):
            batch = records[start : start + PUBLISH_BATCH]
            while True:
                try:
                    confirmed = publisher.publish(batch)
                except PublishFailed:
                    retries += 1
                    time.sleep(1)
                    continue
                if len(confirmed) == len(batch):
                    break
                retries += 1
    finally:
        publisher.close()
    return retries


def stalled(progress: Callable[[], int], done: Callable[[int], bool]) -> int:
    """Poll `progress` every POLL_SECONDS until `done` says so or it has not changed for
    STALL_SECONDS; returns its last value."""
    last, changed_at = None, time.monotonic()
    while True:
        now = progress()
        if done(now):
            return now
        if now != last:
            last, changed_at = now, time.monotonic()
        elif time.monotonic() - changed_at > STALL_SECONDS:
            return now
        time.sleep(POLL_SECONDS)


def wait_until_credited(amqp_uri: str, points_db: Any, people: list[str], total: int) -> int:
    """Wait until the points bank's queue is drained (asked of the broker, which costs the
    database nothing: polling 2,000 summaries would take a share of the database from the
    consumers), then until `total` credits show in the people's account summaries. Returns
    the credits that show (fewer than `total` if nothing moved for STALL_SECONDS)."""
    from kombu import Connection

    from shared.events import SUBSCRIPTIONS
    from shared.partitions import Partitioned

    [queue] = [s.queue for s in SUBSCRIPTIONS if s.handler == "credit_volunteer_act"]

    def ready() -> int:
        try:
            with Connection(amqp_uri) as connection:
                return connection.channel().queue_declare(queue=queue, passive=True).message_count
        except Exception:  # the shared broker restarting (see publish_all): ask again
            return -1

    stalled(ready, lambda count: count == 0)
    accounts = Partitioned(points_db, "accounts")
    return stalled(lambda: sum(a["seq"] for a in accounts.find_many(people)), lambda n: n >= total)


def wait_until_quiet(amqp_uri: str) -> None:
    """Until every subscriber's queue is empty (the burst's points.transferred events, the
    registrations), so that reads are measured on a database nobody else is writing to."""
    from amqp.exceptions import NotFound
    from kombu import Connection

    from shared.events import SUBSCRIPTIONS

    def waiting() -> int:
        total = 0
        try:
            with Connection(amqp_uri) as connection:
                for subscription in SUBSCRIPTIONS:
                    with suppress(NotFound):  # not declared yet: nobody published to it
                        declared = connection.channel().queue_declare(queue=subscription.queue, passive=True)
                        total += declared.message_count
        except Exception:  # the shared broker restarting (see publish_all): ask again
            return -1
        return total

    stalled(waiting, lambda count: count == 0)
    time.sleep(2 * POLL_SECONDS)  # the messages last taken are being handled


def books(points_db: Any, people: list[str], acts_of: dict[str, int]) -> str:
    """'exact', or what is off: a person's balance against 10 per act, the sum with the pools."""
    from shared.partitions import Partitioned

    accounts = Partitioned(points_db, "accounts")
    balances = {a["_id"]: a["balance"] for a in accounts.find_many(people)}
    pools = sum(a["balance"] for a in accounts.find_many(POOLS))
    wrong = {p: balances.get(p, 0) for p in people if balances.get(p, 0) != POINTS_PER_ACT * acts_of[p]}
    people_total = sum(balances.values())
    problems = []
    if wrong:
        sample = dict(list(wrong.items())[:5])
        problems.append(f"{len(wrong)} people off their {POINTS_PER_ACT} per act (e.g. {sample})")
    if people_total + pools != 0:
        problems.append(f"people hold {people_total}, the pools {pools}: sum {people_total + pools}, not 0")
    if not problems:
        return f"exact (people hold {people_total}, the pools {pools}, sum 0)"
    return "NOT exact: " + "; ".join(problems)


def last_applied(points_db: Any, people: list[str]) -> float:
    """When the last credit leg of the burst was written, by the consumer's clock."""
    from shared.journal import slot_id
    from shared.partitions import Partitioned

    accounts = Partitioned(points_db, "accounts").find_many(people)
    last = [points_db.ledger_entries.find_one({"_id": slot_id(a["_id"], a["seq"])}) for a in accounts]
    return max(entry["applied_at"] for entry in last if entry).timestamp()


def figure_burst(env: dict[str, str]) -> None:
    from shared.mongo import connect

    points_db = connect("points_bank")
    people = [f"burst-{i:04d}" for i in range(BURST_PEOPLE)]
    records = burst_records(people)
    acts_of = {p: 0 for p in people}
    for record in records:
        acts_of[record["envelope"]["data"]["person_id"]] += 1

    # Known to the points bank as the registry's events would tell it, for the reports' names.
    known = {"version": 1, "community_id": COMMUNITY}
    points_db.people.insert_many([{"_id": p, "name": f"压测{i:04d}", **known} for i, p in enumerate(people)])

    started = time.time()
    retried = publish_all(env["AMQP_URI"], records)
    published = time.time() - started
    print(
        f"1. burst of {BURST_EVENTS:,} volunteer_act.recorded events ({BURST_PEOPLE:,} people, "
        f"{PUBLISH_BATCH} per publish)\n"
        f"  published in {published:.1f}s = {BURST_EVENTS / published:,.0f} events/s (broker confirms"
        + (f"; {retried} batches published again after the broker failed)" if retried else ")")
    )
    credited = wait_until_credited(env["AMQP_URI"], points_db, people, BURST_EVENTS)
    seen = time.time() - started
    if credited < BURST_EVENTS:
        parked = points_db.parked_events.count_documents({})
        print(
            f"  STOPPED: only {credited:,} of {BURST_EVENTS:,} credits after {seen:.0f}s, nothing moved "
            f"for {STALL_SECONDS}s; {parked} events parked"
        )
    else:
        took = last_applied(points_db, people) - started
        print(
            f"  all {BURST_EVENTS:,} credits applied {took:.1f}s after the first publish = "
            f"{BURST_EVENTS / took:,.0f} credits/s (seen by polling after {seen:.1f}s)"
        )
    legs = points_db.ledger_entries.count_documents({"kind": "volunteer_act"})
    print(f"  books: {books(points_db, people, acts_of)}; {legs:,} ledger legs (2 per credit)")


# --- figure 2: the burst's month in reports --------------------------------------------------

REPORT_READS = 20


def figure_reports(base: str, key: str) -> None:
    import requests

    from shared.settings import local_today

    month = local_today().strftime("%Y-%m")
    session = requests.Session()
    session.headers["X-API-Key"] = key
    reads = {
        "disclosure": (f"/api/v1/points/disclosures/{COMMUNITY}", {"month": month}),
        "leaderboard": ("/api/v1/points/leaderboards", {"scope": COMMUNITY, "month": month}),
    }

    def read(name: str) -> tuple[float, dict[str, Any]]:
        path, params = reads[name]
        started = time.perf_counter()
        answer = session.get(f"{base}{path}", params=params, timeout=120)
        took = (time.perf_counter() - started) * 1000
        if answer.status_code != 200:
            raise RuntimeError(f"{name}: {answer.status_code} {answer.text[:300]}")
        return took, answer.json()

    print(f"\n2. reports of the burst's month ({month}) through the gateway, {REPORT_READS} reads a line")
    took, disclosed = read("disclosure")
    totals = disclosed["totals"]
    print(f"  first disclosure read: {took:,.0f} ms ({totals['people']:,} people, {totals['acts']:,} acts)")
    for name in reads:
        print(latency_line(f"gateway GET {name}", [read(name)[0] for _ in range(REPORT_READS)]))


# --- figure 3: a sold-out rush -------------------------------------------------------------

RUSH_STOCK = 1_000
RUSH_ORDERS = 1_200
RUSH_ITEM = "bench-rush-tea"


def figure_rush(env: dict[str, str]) -> None:
    from nameko.exceptions import RemoteError
    from nameko.standalone.rpc import ClusterRpcProxy

    from shared.errors import Conflict
    from shared.settings import local_today

    if BURST_EVENTS < RUSH_ORDERS:  # some buyers would hold no points
        print(f"\n3. sold-out rush: skipped, it needs a burst of at least {RUSH_ORDERS:,} events")
        return
    config = {"AMQP_URI": env["AMQP_URI"]}
    item = {"item_id": RUSH_ITEM, "community_id": COMMUNITY, "name": "茶叶礼盒", "kind": "goods", "price": 10,
            "available_from": local_today().isoformat()}  # fmt: skip
    with ClusterRpcProxy(config, timeout=600) as cluster:
        cluster.points_bank.add_catalogue_item(item)
        cluster.points_bank.restock_item(RUSH_ITEM, "bench-rush", {"quantity": RUSH_STOCK})
    buyers = [f"burst-{i:04d}" for i in range(RUSH_ORDERS)]
    took: dict[str, list[float]] = {"placed": [], "out_of_stock": [], "failed": []}
    lock = threading.Lock()

    def buy(thread: int) -> None:
        with ClusterRpcProxy(config, timeout=600) as cluster:
            for buyer in buyers[thread::READ_THREADS]:
                started = time.perf_counter()
                try:
                    cluster.points_bank.place_order(
                        "bench", f"rush-{buyer}", {"person_id": buyer, "item_id": RUSH_ITEM}
                    )
                    outcome = "placed"
                except Conflict as exc:  # nameko raises the service's own error again here
                    outcome = "out_of_stock" if exc.code == "out_of_stock" else "failed"
                except RemoteError:
                    outcome = "failed"
                with lock:
                    took[outcome].append((time.perf_counter() - started) * 1000)

    seconds = in_threads(buy, READ_THREADS)
    print(
        f"\n3. sold-out rush: {RUSH_ORDERS:,} orders of one item with {RUSH_STOCK:,} in stock, "
        f"{READ_THREADS} threads over RPC: {seconds:.1f}s = {RUSH_ORDERS / seconds:,.0f} orders/s"
    )
    for outcome in ("placed", "out_of_stock"):
        if took[outcome]:
            print(latency_line(f"{outcome} ({len(took[outcome]):,})", took[outcome]))
    exact = len(took["placed"]) == RUSH_STOCK and len(took["out_of_stock"]) == RUSH_ORDERS - RUSH_STOCK
    print(f"  {'exact' if exact else 'NOT EXACT'}: {len(took['placed']):,} placed for {RUSH_STOCK:,} in stock"
          + (f"; {len(took['failed'])} orders FAILED otherwise" if took["failed"] else ""))  # fmt: skip


# --- figure 4: balance reads on a large ledger ----------------------------------------------


def register_people(amqp_uri: str, person_ids: list[str]) -> None:
    """Register them through the registry's RPC; a registration that failed (the shared broker
    restarting) is made again, which the registry treats as a no-op if it had landed."""
    from nameko.standalone.rpc import ClusterRpcProxy

    waiting = list(person_ids)
    for _ in range(5):
        try:
            with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=60) as rpc:
                while waiting:
                    person = {"person_id": waiting[0], "name": "压测居民", "community_id": COMMUNITY}
                    rpc.registry.register_person({**person, "is_party_member": False})
                    waiting.pop(0)
            return
        except Exception as exc:
            print(f"  registration failed ({exc.__class__.__name__}); trying again", flush=True)
            time.sleep(2)
    raise RuntimeError(f"{len(waiting)} people could not be registered")


def account_entries(key: str, applied_at: datetime) -> list[dict[str, Any]]:
    """A credited account's chain as the points bank writes it: volunteer-act credit legs."""
    from services.points.domain import pool_account
    from shared.journal import slot_id

    entries = []
    for seq in range(1, ENTRIES_PER_ACCOUNT + 1):
        transfer_id = f"load-{key}-{seq}"
        entries.append(
            {
                "_id": slot_id(key, seq),
                "key": key,
                "seq": seq,
                "guard": f"{transfer_id}@{key}",
                "kind": "volunteer_act",
                "transfer_id": transfer_id,
                "counterparty": pool_account(COMMUNITY, key),
                "community_id": COMMUNITY,
                "points": POINTS_PER_ACT,
                "balance_after": POINTS_PER_ACT * seq,
                "reason": "default: 10 points per hour",
                "act_id": f"va_{transfer_id}",
                "act_type": "clean_up",
                "hours": "1",
                "occurred_on": "2026-11-20",
                "rule": "default: 10 points per hour",
                "applied_at": applied_at,
            }
        )
    return entries


def summary_of(key: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The account summary the journal would hold after `entries`."""
    from services.points import domain

    return domain.with_entry(domain.empty_account(key), entries[-1])


def insert_summaries(points_db: Any, summaries: list[dict[str, Any]]) -> None:
    """New summaries, into the partitions the journal reads them from (inserts: cheaper than
    Partitioned.replace_many's upserts)."""
    from shared.partitions import Partitioned

    accounts = Partitioned(points_db, "accounts")
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for summary in summaries:
        by_partition.setdefault(accounts.of(summary["_id"]).name, []).append(summary)
    for name, documents in by_partition.items():
        points_db[name].insert_many(documents, ordered=False)


def batches_of_entries(keys: list[str]) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """(entries, summaries of the accounts they complete), INSERT_BATCH entries at a time."""
    applied_at = datetime.now(UTC)
    entries: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    for key in keys:
        chain = account_entries(key, applied_at)
        entries += chain
        summaries.append(summary_of(key, chain))
        if len(entries) >= INSERT_BATCH:
            yield entries, summaries
            entries, summaries = [], []
    if entries:
        yield entries, summaries


def load_ledger(points_db: Any, keys: list[str]) -> tuple[int, float, str]:
    """Load the accounts' chains; returns (entries loaded, seconds, a note if fewer than all)."""
    wanted = len(keys) * ENTRIES_PER_ACCOUNT
    loaded, limit, note = 0, wanted, ""
    started = time.monotonic()
    for entries, summaries in batches_of_entries(keys):
        points_db.ledger_entries.insert_many(entries, ordered=False)
        insert_summaries(points_db, summaries)
        loaded += len(entries)
        if loaded >= PROJECT_AFTER and not note:
            per_entry = (time.monotonic() - started) / loaded
            projected = per_entry * wanted
            if projected > MAX_PROJECTED_SECONDS:
                fits = int(FALLBACK_SECONDS / per_entry) // ENTRIES_PER_ACCOUNT * ENTRIES_PER_ACCOUNT
                limit = max(fits, PROJECT_AFTER)
                note = (
                    f"REDUCED: {wanted:,} entries were projected at {projected / 60:.0f} min after "
                    f"the first {loaded:,}; loading {limit:,} instead"
                )
                print(f"  {note}", flush=True)
        if loaded >= limit:
            break
        if loaded % 100_000 < INSERT_BATCH:
            print(f"  ... {loaded:,} entries after {time.monotonic() - started:.0f}s", flush=True)
    return loaded, time.monotonic() - started, note


def timed_reads(
    read: Callable[[Any, str], None], keys: list[str], make_client: Callable[[], Any]
) -> tuple[list[float], list[str]]:
    """READS reads of random keys from READ_THREADS threads, a client each: (ms per read that
    succeeded, why the others failed). A failed read gets its thread a fresh client: the
    broker is shared, and some integration tests stop it for a moment."""
    took: list[float] = []
    failed: list[str] = []
    lock = threading.Lock()
    picks = [random.choice(keys) for _ in range(READS)]

    def worker(i: int) -> None:
        client = make_client()
        for key in picks[i::READ_THREADS]:
            started = time.perf_counter()
            try:
                read(client, key)
            except Exception as exc:
                with lock:
                    failed.append(f"{exc.__class__.__name__}: {exc}"[:200])
                getattr(client, "close", lambda: None)()
                time.sleep(1)
                client = make_client()
                continue
            with lock:
                took.append((time.perf_counter() - started) * 1000)
        getattr(client, "close", lambda: None)()

    in_threads(worker, READ_THREADS)
    return took, failed


class Readers:
    """Balance reads through the gateway and through the points bank's RPC."""

    def __init__(self, base: str, key: str, amqp_uri: str, expect_entries: int) -> None:
        self.base, self.key, self.amqp_uri, self.expect_entries = base, key, amqp_uri, expect_entries

    def http(self) -> Any:
        import requests

        session = requests.Session()
        session.headers["X-API-Key"] = self.key
        return session

    def rpc(self) -> Any:
        from nameko.standalone.rpc import ClusterRpcProxy

        class Proxy:
            def __init__(self, uri: str) -> None:
                self.cluster = ClusterRpcProxy({"AMQP_URI": uri}, timeout=60)
                self.points = self.cluster.start().points_bank

            def close(self) -> None:
                self.cluster.stop()

        return Proxy(self.amqp_uri)

    def check(self, account: dict[str, Any], person_id: str) -> None:
        wanted = (self.expect_entries, POINTS_PER_ACT * self.expect_entries)
        found = (account["entries_total"], account["balance"])
        if found != wanted:
            raise RuntimeError(f"{person_id}: {found} entries and balance, expected {wanted}")

    def via_gateway(self, session: Any, person_id: str) -> None:
        answer = session.get(f"{self.base}/api/v1/points/accounts/{person_id}", timeout=60)
        if answer.status_code != 200:
            raise RuntimeError(f"{person_id}: {answer.status_code} {answer.text[:200]}")
        self.check(answer.json(), person_id)

    def via_rpc(self, proxy: Any, person_id: str) -> None:
        self.check(proxy.points.get_account(person_id), person_id)

    def statement(self, session: Any, person_id: str) -> None:
        """This month's statement: the loaded entries were all applied today."""
        from shared.settings import local_today

        today = local_today()
        period = {"from": today.replace(day=1).isoformat(), "to": today.isoformat()}
        answer = session.get(
            f"{self.base}/api/v1/points/accounts/{person_id}/statement", params=period, timeout=60
        )
        if answer.status_code != 200:
            raise RuntimeError(f"{person_id}: {answer.status_code} {answer.text[:200]}")
        found = (len(answer.json()["entries"]), answer.json()["closing_balance"])
        if found != (self.expect_entries, POINTS_PER_ACT * self.expect_entries):
            raise RuntimeError(f"{person_id}: statement of {found} entries and balance")


def measure_reads(readers: Readers, registered: list[str], loaded: list[str], label: str) -> None:
    timed_reads(readers.via_gateway, registered, readers.http)  # warm up: not counted
    by_gateway = timed_reads(readers.via_gateway, registered, readers.http)
    by_rpc = timed_reads(readers.via_rpc, loaded, readers.rpc)
    statements = timed_reads(readers.statement, loaded, readers.http)
    lines = {
        f"gateway GET /points/accounts/<id>, {label}": by_gateway,
        f"points_bank.get_account RPC, {label}": by_rpc,
        f"gateway GET .../<id>/statement (this month: {ENTRIES_PER_ACCOUNT} entries), {label}": statements,
    }
    for line, (took, failed) in lines.items():
        print(latency_line(line, took) if took else f"  {line}: no read succeeded")
        if failed:
            print(f"    {len(failed)} reads FAILED, first: {failed[0]}")


def figure_reads(base: str, key: str, env: dict[str, str]) -> None:
    from shared.mongo import connect

    points_db = connect("points_bank")
    keys = [f"load-{i:05d}" for i in range(LOAD_ACCOUNTS)]
    # Reads compare like with like: the same accounts (100 entries each) before and after the
    # rest of the ledger is loaded around them.
    first, rest = keys[:FIRST_ACCOUNTS], keys[FIRST_ACCOUNTS:]
    registered = first[:REGISTERED_SAMPLE]
    wanted = LOAD_ACCOUNTS * ENTRIES_PER_ACCOUNT
    print(
        f"\n4. balance reads, {READS} per line from {READ_THREADS} client threads, of accounts with "
        f"{ENTRIES_PER_ACCOUNT} entries; gateway reads ask the registry first, so they read "
        f"{REGISTERED_SAMPLE} registered people's accounts"
    )
    started = time.monotonic()
    register_people(env["AMQP_URI"], registered)
    print(f"  registered {REGISTERED_SAMPLE} people in {time.monotonic() - started:.1f}s")

    before = points_db.ledger_entries.estimated_document_count()
    loaded, _, _ = load_ledger(points_db, first)
    wait_until_quiet(env["AMQP_URI"])
    readers = Readers(base, key, env["AMQP_URI"], ENTRIES_PER_ACCOUNT)
    measure_reads(readers, registered, first, f"{before + loaded:,} entries")

    print(f"  loading the rest of {wanted:,} ledger entries ({LOAD_ACCOUNTS:,} accounts) ...", flush=True)
    more, took, note = load_ledger(points_db, rest)
    print(f"  loaded {more:,} entries in {took:.0f}s = {more / took:,.0f} entries/s")
    total = before + loaded + more  # counting 1,000,000 documents on FerretDB takes too long
    wait_until_quiet(env["AMQP_URI"])
    label = f"{total:,} entries" + (" (REDUCED, see above)" if note else "")
    measure_reads(readers, registered, first + rest[: more // ENTRIES_PER_ACCOUNT], label)


def main() -> None:
    with bench_stack("bench-points", GRIDLINK_RPC_TIMEOUT="60") as (base, key, env, _):
        print(
            f"GridLink points bank bench — gateway {env['GATEWAY_WORKERS']} workers × "
            f"{env['GATEWAY_THREADS']} threads, {os.cpu_count()} cores\n"
        )
        figure_burst(env)
        figure_reports(base, key)
        figure_rush(env)
        figure_reads(base, key, env)


if __name__ == "__main__":
    main()
