"""Benchmark of the volunteer-act flow through the gateway. Run with `make bench`.

It starts its own suite (fresh database, its own vhost, the gateway with the production
gunicorn settings) and prints, from one run:
- C: the ceiling, requests/s of gateway → one no-op RPC (GET /api/v1/ping);
- single-act throughput: acts/s from the first POST until both effects (points credited,
  dossier updated) are visible for every act, and its ratio to C; and what each request of C
  and each act cost in CPU, per process (this machine's limit);
- latency from POST to both effects visible at a steady 100 acts/s: p50, p95, p99, taken from
  the consumers' own `applied_at` stamps (same clock), so no polling skews them; and what an
  act cost in CPU at that rate, with how many cores were busy;
- batch intake: acts/s through POST /api/v1/volunteer-acts:batch, 500 acts per call, and
  what each process spent per act meanwhile (the consumers work at the same time);
- where an act's CPU goes: single acts with the two consumers paused (the request path
  alone: the most single acts could reach if their effects cost nothing), then the consumers
  working off the acts that piled up; what each costs, against what 60% of C allows; and
  batch intake with the consumers paused;
- the same latencies and CPU per act at a steady 25 and 50 acts/s: what an act costs when
  fewer share its trip.
Targets (issue 2): single ≥ 60% of C, p99 ≤ 100 ms at 100 acts/s, batch ≥ 2,000 acts/s.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stack import bench_stack, in_threads

CLIENT_THREADS = int(os.environ.get("BENCH_CLIENTS", "16"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
# Measured: 4 clients reach no more than 2 (consumers paused: 2,319 against 2,367 acts/s).
BATCH_CLIENTS = 2
COMMUNITY = "420391-001-001"
# Checking for effects costs the database work too; latency comes from the consumers' own
# `applied_at` stamps, so polling only bounds the end of a throughput phase (±0.25 s).
POLL_SECONDS = 0.25


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Client:
    """The load generator: one keep-alive connection per thread through http.client, which
    costs a fraction of the CPU `requests` does. It shares the machine's two cores with the
    suite it measures; the systems calling the gateway in production run on their own."""

    def __init__(self, base: str, key: str) -> None:
        parts = urlsplit(base)
        self.host, self.port, self.key, self.local = parts.hostname, parts.port, key, threading.local()

    def call(self, method: str, path: str, body: dict | None = None, **headers: str) -> tuple[int, dict]:
        if not hasattr(self.local, "connection"):
            self.local.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        connection = self.local.connection
        payload = None if body is None else json.dumps(body).encode()
        headers = {"X-API-Key": self.key, "Content-Type": "application/json"} | headers
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # gunicorn closes a keep-alive connection idle for 5 s: send once more on a new one
            # (acts carry their Idempotency-Key, so a request that did arrive counts once).
            connection.close()
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")

    def ping(self) -> None:
        assert self.call("GET", "/api/v1/ping")[0] == 200

    def act(self, person_id: str) -> str:
        body = {
            "person_id": person_id,
            "act_type": "patrol_duty",
            "hours": "1",
            "occurred_on": "2026-11-20",
            "community_id": COMMUNITY,
        }
        status, answer = self.call(
            "POST", "/api/v1/volunteer-acts", body, **{"Idempotency-Key": uuid.uuid4().hex}
        )
        assert status == 202, answer
        return answer["act_id"]

    def batch(self, person_ids: list[str]) -> int:
        items = [
            {
                "person_id": p,
                "act_type": "clean_up",
                "hours": "1",
                "occurred_on": "2026-11-20",
                "community_id": COMMUNITY,
                "idempotency_key": uuid.uuid4().hex,
            }
            for p in person_ids
        ]
        status, answer = self.call("POST", "/api/v1/volunteer-acts:batch", {"items": items})
        assert status == 202, answer
        return len(items)


def cpu_seconds(home: str) -> dict[str, float]:
    """CPU seconds used so far by each process of the stack (with its children: gunicorn's
    workers), by RabbitMQ and by this client."""
    tick = os.sysconf("SC_CLK_TCK")
    usage: dict[int, tuple[int, float]] = {}  # pid → (parent pid, CPU seconds)
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                names[int(entry.name)] = (entry / "comm").read_text().strip()
            except OSError:  # ended meanwhile
                continue
            usage[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)

    def with_children(pid: int) -> float:
        return usage.get(pid, (0, 0.0))[1] + sum(with_children(c) for c, (p, _) in usage.items() if p == pid)

    spent = {f.stem: with_children(int(f.read_text())) for f in (Path(home) / "run").glob("*.pid")}
    spent["rabbitmq"] = sum(cpu for pid, (_, cpu) in usage.items() if names.get(pid) == "beam.smp")
    spent["bench client"] = sum(os.times()[:2])
    return spent


def closed_loop(work, seconds: float, threads: int) -> tuple[int, float]:
    """Run `work` from `threads` threads for `seconds`; returns (calls, elapsed)."""
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def loop(i: int) -> None:
        while time.monotonic() < stop:
            work(i)
            counts[i] += 1

    seconds = in_threads(loop, threads)
    return sum(counts), seconds


@contextmanager
def paused(home: str, services: list[str]) -> Iterator[None]:
    """Stop the services' processes (SIGSTOP) for a while: their queues fill meanwhile."""
    pids = [int((Path(home) / "run" / f"{service}.pid").read_text()) for service in services]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def main() -> None:
    with bench_stack("bench") as (base, key, env, _):
        run(Client(base, key), env)


def run(client: Client, env: dict[str, str]) -> None:
    from shared.mongo import connect
    from shared.partitions import Partitioned

    points_db = connect("points_bank")
    cadre_db = connect("cadre_evaluation")
    intake_db = connect("issue_intake")
    from nameko.standalone.rpc import ClusterRpcProxy

    people = [f"bench-{i:03d}" for i in range(50)]
    with ClusterRpcProxy({"AMQP_URI": env["AMQP_URI"]}, timeout=30) as rpc:
        for person_id in people:
            rpc.registry.register_person(
                {
                    "person_id": person_id,
                    "name": "压测干部",
                    "community_id": COMMUNITY,
                    "is_party_member": True,
                    "is_cadre": True,
                    "employer": "压测单位",
                }
            )
    while intake_db.people.count_documents({"_id": {"$in": people}}) < len(
        people
    ) or cadre_db.people.count_documents({"_id": {"$in": people}}) < len(people):
        time.sleep(0.1)

    def credited() -> int:
        return sum(a["seq"] for a in Partitioned(points_db, "accounts").find_many(people))

    def in_dossiers() -> int:
        return sum(d["seq"] for d in Partitioned(cadre_db, "dossiers").find_many(people))

    from kombu import Connection

    def queued() -> int:
        """Events not yet taken by the two consumers, asked of the broker (costs the
        database nothing)."""
        with Connection(env["AMQP_URI"]) as connection:
            channel = connection.channel()
            return sum(
                channel.queue_declare(queue=q, passive=True).message_count
                for q in (
                    "evt-issue_intake-volunteer_act.recorded--points_bank.credit_volunteer_act",
                    "evt-issue_intake-volunteer_act.recorded--cadre_evaluation.add_act_to_dossier",
                )
            )

    def wait_effects(total: int, timeout: float = 1800) -> float:
        deadline = time.monotonic() + timeout
        while queued() > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        while credited() < total or in_dossiers() < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"effects incomplete: {credited()} credited, {in_dossiers()} in dossiers")
            time.sleep(POLL_SECONDS)
        return time.monotonic()

    print(
        f"GridLink bench — gateway {env['GATEWAY_WORKERS']} workers × {env['GATEWAY_THREADS']} threads, "
        f"{CLIENT_THREADS} client threads, {SECONDS:.0f}s per phase, {os.cpu_count()} cores\n"
    )

    def cpu_per_call(
        before: dict[str, float],
        calls: int,
        what: str,
        seconds: float | None = None,
        after: dict[str, float] | None = None,
    ) -> float:
        """Print the CPU each process spent per call from `before` to `after` (default: now), and
        return their sum (ms); with `seconds`, also how many of the machine's cores were busy on
        average over them."""
        after = after or cpu_seconds(env["STACK_HOME"])
        spent = {name: (after[name] - before.get(name, 0)) * 1000 / calls for name in after}
        busy = "" if seconds is None else f" ({sum(spent.values()) * calls / 1000 / seconds:.2f} cores busy)"
        print(
            f"   CPU per {what}, {sum(spent.values()):.1f} ms in all{busy}: "
            + ", ".join(
                f"{name} {ms:.1f}" for name, ms in sorted(spent.items(), key=lambda kv: -kv[1]) if ms >= 0.05
            )
        )
        return sum(spent.values())

    closed_loop(lambda i: client.ping(), 2, CLIENT_THREADS)  # warm up every proxy
    cpu_before = cpu_seconds(env["STACK_HOME"])
    calls, elapsed = closed_loop(lambda i: client.ping(), SECONDS, CLIENT_THREADS)
    ceiling = calls / elapsed
    print(f"C  gateway → no-op RPC:            {ceiling:8.0f} requests/s")
    request_cpu = cpu_per_call(cpu_before, calls, "request")

    cpu_before = cpu_seconds(env["STACK_HOME"])
    started = time.monotonic()
    acts, _ = closed_loop(lambda i: client.act(people[i % len(people)]), SECONDS, CLIENT_THREADS)
    done = wait_effects(acts)
    single = acts / (done - started)
    print(
        f"single acts until both effects:    {single:8.0f} acts/s  ({single / ceiling:.0%} of C; "
        f"{acts} acts, target ≥ 60%)"
    )
    cpu_per_call(cpu_before, acts, "act")

    def paced(rate: int, count: int) -> None:
        """Post `count` acts at a steady `rate`; print their latencies from POST to both effects,
        from the consumers' `applied_at` stamps, and what an act cost in CPU."""
        total_before = credited()
        posted_at: dict[str, float] = {}
        lock = threading.Lock()
        schedule_start = time.time() + 0.2

        def post(i: int) -> None:
            for n in range(i, count, CLIENT_THREADS):
                delay = schedule_start + n / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
                sent = time.time()
                act_id = client.act(people[n % len(people)])
                with lock:
                    posted_at[act_id] = sent

        cpu_before, started = cpu_seconds(env["STACK_HOME"]), time.monotonic()
        in_threads(post, CLIENT_THREADS)
        seconds = wait_effects(total_before + count) - started
        # Read now: finding the acts' entries below scans the ledger on FerretDB (a filter on
        # a field other than `_id`), which is the bench's work, not the acts'.
        cpu_after = cpu_seconds(env["STACK_HOME"])
        applied: dict[str, list[datetime]] = {}
        # The person's leg of each credit (the pool's leg of the same transfer names the act too).
        for entry in points_db.ledger_entries.find(
            {"act_id": {"$in": list(posted_at)}, "points": {"$gt": 0}}, {"act_id": 1, "applied_at": 1}
        ):
            applied.setdefault(entry["act_id"], []).append(entry["applied_at"])
        for act in cadre_db.dossier_acts.find(
            {"act_id": {"$in": list(posted_at)}}, {"act_id": 1, "applied_at": 1}
        ):
            applied.setdefault(act["act_id"], []).append(act["applied_at"])
        latencies = [
            (max(applied[a]).timestamp() - posted_at[a]) * 1000
            for a in posted_at
            if len(applied.get(a, [])) == 2
        ]
        assert len(latencies) == count, f"{count - len(latencies)} acts lack an effect"
        print(
            f"latency at {rate} acts/s, POST → both effects ({count} acts):  "
            f"p50 {percentile(latencies, 50):.0f} ms, p95 {percentile(latencies, 95):.0f} ms, "
            f"p99 {percentile(latencies, 99):.0f} ms, max {max(latencies):.0f} ms"
            + (" (target p99 ≤ 100 ms)" if rate == 100 else "")
        )
        cpu_per_call(cpu_before, count, "act", seconds, cpu_after)

    paced(100, int(100 * max(SECONDS, 20)))

    def batch_intake() -> tuple[int, float]:
        """Post 20 batches of 500 acts from BATCH_CLIENTS clients; returns (acts, seconds)."""
        per_client = 20 // BATCH_CLIENTS
        results = [0] * BATCH_CLIENTS

        def send_batches(i: int) -> None:
            for _ in range(per_client):
                results[i] += client.batch([people[k % len(people)] for k in range(500)])

        seconds = in_threads(send_batches, BATCH_CLIENTS)
        return sum(results), seconds

    total_before = credited()
    cpu_before, started = cpu_seconds(env["STACK_HOME"]), time.monotonic()
    sent, intake_elapsed = batch_intake()
    cpu_after = cpu_seconds(env["STACK_HOME"])
    effects_done = wait_effects(total_before + sent)
    print(
        f"batch intake (500 per call, {BATCH_CLIENTS} clients): {sent / intake_elapsed:8.0f} acts/s  "
        f"({sent} acts in {intake_elapsed:.1f}s; target ≥ 2,000); both effects for all after "
        f"{effects_done - started:.1f}s = {sent / (effects_done - started):.0f} acts/s end to end"
    )
    cpu_per_call(cpu_before, sent, "act while the batches came in", intake_elapsed, cpu_after)

    # Where an act's CPU goes: the request path with no consumer running (they are paused and
    # their queues fill), then the consumers alone on what piled up. The first is the most
    # single acts could reach if their effects cost nothing.
    cpu_before = cpu_seconds(env["STACK_HOME"])
    with paused(env["STACK_HOME"], ["points_bank", "cadre_evaluation"]):
        acts, elapsed = closed_loop(lambda i: client.act(people[i % len(people)]), SECONDS, CLIENT_THREADS)
        print(
            f"\nrequest path alone (consumers paused): {acts / elapsed:5.0f} acts/s  "
            f"({acts / elapsed / ceiling:.0%} of C; {acts} acts)"
        )
        request_path_cpu = cpu_per_call(cpu_before, acts, "act")
        time.sleep(1)  # the relay publishes the last acts
        total_before = credited()
        cpu_before, started = cpu_seconds(env["STACK_HOME"]), time.monotonic()
    done = wait_effects(total_before + acts)
    print(f"consumers alone, working off those {acts} acts: {acts / (done - started):5.0f} acts/s")
    consumers_cpu = cpu_per_call(cpu_before, acts, "act")
    print(
        f"an act: {request_path_cpu:.1f} ms on the request path + {consumers_cpu:.1f} ms in the consumers; "
        f"60% of C allows {request_cpu / 0.6:.1f} ms in all"
    )
    # The same for batches: what intake alone reaches, against the consumers taking their share.
    with paused(env["STACK_HOME"], ["points_bank", "cadre_evaluation"]):
        total_before = credited()
        cpu_before = cpu_seconds(env["STACK_HOME"])
        sent, intake_elapsed = batch_intake()
        print(f"batch intake with the consumers paused: {sent / intake_elapsed:5.0f} acts/s")
        cpu_per_call(cpu_before, sent, "act", intake_elapsed)
    wait_effects(total_before + sent)

    # Few acts in flight share little (group commits, batch messages): the fewer, the more CPU
    # an act costs, so a steady 100 acts/s keeps both cores busy and their queues set the tail.
    print("\nan act's CPU by rate, paced:")
    for rate in (25, 50):
        paced(rate, int(rate * SECONDS))

    print(
        f"\nexactness: {credited()} credits and {in_dossiers()} dossier entries for "
        f"{intake_db.volunteer_acts.estimated_document_count()} recorded acts"
    )


if __name__ == "__main__":
    main()
