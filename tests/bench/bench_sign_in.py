"""Benchmark of staff sign-in (gateway/staff.py). Run with `make bench`.

An argon2id check takes 64 MiB for its duration, so a burst of sign-ins is a burst of memory:
the gateway lets GRIDLINK_PASSWORD_HASHES_AT_ONCE of them run at once in each worker process.
For that cap at its default 1, at 2 and at 16 (as many as the gateway has threads: no cap),
it starts its own suite (the gateway with the production gunicorn settings, the per-address
sign-in limit lifted), signs 16 members in 10 times each from 16 client threads, and prints:
sign-ins per second, p50 / p99 latency, and the gateway's memory: its worker processes' peak
resident size summed (VmHWM), before and after the burst. No figure is asserted.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stack import bench_stack, in_threads  # a script: its folder is not a package

MEMBERS = 16
SIGN_INS_EACH = 10
PASSWORD = "网格员-bench-2026-patrol"


def worker_peak_kib(stack) -> int:
    """The summed peak resident size of the gateway's worker processes (gunicorn's children)."""
    master = stack.processes["gateway"].pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    total = 0
    for pid in children:
        status = Path(f"/proc/{pid}/status").read_text()
        total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    return total


def sign_in_burst(base_url: str) -> tuple[float, list[float], int]:
    """(seconds, latencies, refused): every member signs in SIGN_INS_EACH times, one thread each."""
    latencies: list[float] = []
    refused = 0
    lock = threading.Lock()

    def member(n: int) -> None:
        nonlocal refused
        body = {"username": f"bench-{n:02d}", "password": PASSWORD}
        with requests.Session() as http:
            for _ in range(SIGN_INS_EACH):
                started = time.perf_counter()
                answer = http.post(f"{base_url}/auth/sign-in", json=body, timeout=60)
                with lock:
                    latencies.append(time.perf_counter() - started)
                    refused += answer.status_code != 200

    return in_threads(member, MEMBERS), latencies, refused


def measure(cap: int) -> str:
    settings = {"GRIDLINK_LOGIN_ATTEMPTS_PER_MINUTE": "1000000", "GRIDLINK_PASSWORD_HASHES_AT_ONCE": str(cap)}
    with bench_stack("bench-sign-in", **settings) as (base_url, _key, _env, stack):
        from gateway.staff import staff_accounts

        accounts = staff_accounts()
        for n in range(MEMBERS):
            accounts.create(f"bench-{n:02d}", "压测员", PASSWORD)
        before = worker_peak_kib(stack)
        seconds, latencies, refused = sign_in_burst(base_url)
        after = worker_peak_kib(stack)
    cuts = statistics.quantiles(latencies, n=100)
    return (
        f"{cap:>2} at once per worker: {len(latencies) / seconds:5.1f} sign-ins/s, "
        f"p50 {cuts[49] * 1000:5.0f} ms, p99 {cuts[98] * 1000:5.0f} ms, refused {refused}; "
        f"workers' peak memory {before / 1024:4.0f} MiB before, {after / 1024:4.0f} MiB after"
    )


def main() -> None:
    print(f"staff sign-in: {MEMBERS} members × {SIGN_INS_EACH} sign-ins from {MEMBERS} threads")
    for cap in (1, 2, 16):
        print("  " + measure(cap), flush=True)


if __name__ == "__main__":
    main()
