"""Benchmark of the organisation registry's ledgers and reads. Run with `make bench`.

Prints: a 5,000-row people import (rows/s from POST until every row is written, and how long
checking alone takes when one row is bad and nothing is written); a 2,000-organisation tree
import; then, on that tree, statistics of the street, a subtree listing, a person lookup by
phone (p50 / p95 of repeated calls); the first people listings after a registry restart, many
at once; and an Excel export of the people ledger.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stack import bench_stack, in_threads  # a script: its folder is not a package

STREET = "420399-001"
PEOPLE_ROWS = 5_000
COMMUNITIES, GRIDS, BUILDINGS = 10, 10, 19  # 1 + 10 + 100 + 1,900 = 2,011 organisations
COLD_READERS = 16


def csv_of(header: list[str], rows: list[list[str]]) -> bytes:
    lines = [",".join(header), *(",".join(row) for row in rows)]
    return ("\n".join(lines) + "\n").encode()


def organisation_rows() -> list[list[str]]:
    rows = [[STREET, "压测街道大工委", "street_working_committee", ""]]
    for c in range(1, COMMUNITIES + 1):
        community = f"{STREET}-{c:03d}"
        rows.append([community, f"压测社区{c}", "community_party_committee", STREET])
        for g in range(1, GRIDS + 1):
            grid = f"{community}-{g:02d}"
            rows.append([grid, f"压测网格{c}-{g}", "grid_party_branch", community])
            rows += [
                [f"{grid}-B{b:02d}", f"{b}号楼党小组", "building_party_group", grid]
                for b in range(1, BUILDINGS + 1)
            ]
    return rows


def people_rows(bad_line: int | None = None) -> list[list[str]]:
    rows = []
    for i in range(PEOPLE_ROWS):
        community = f"{STREET}-{i % COMMUNITIES + 1:03d}"
        phone = f"139{i:08d}"
        rows.append([f"bench-p{i:05d}", f"居民{i}", community, "是" if i % 3 == 0 else "否", phone])
    if bad_line is not None:
        rows[bad_line - 2][2] = "nowhere"  # line 1 is the header
    return rows


def timed(call: Callable[[], object], times: int) -> tuple[float, float]:
    took = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took), sorted(took)[int(0.95 * (len(took) - 1))]


def peak_memory_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


def cold_start(stack: Any, get: Callable[..., Any]) -> None:
    """Restart the registry, then send it COLD_READERS people listings at once, as a portal
    full of staff does after a deploy: how long they wait, and what it costs in memory."""
    stack.stop_process("registry")
    stack.start_service("registry")
    stack.wait_until_healthy(["registry"])
    took: list[float] = []

    def first_read(n: int) -> None:
        started = time.perf_counter()
        get("/api/v1/people", community_id=f"{STREET}-{n % COMMUNITIES + 1:03d}")
        took.append((time.perf_counter() - started) * 1000)

    in_threads(first_read, COLD_READERS)
    took.sort()
    pid = int((stack.home / "run" / "registry.pid").read_text())
    print(
        f"\nafter a registry restart, {COLD_READERS} people listings at once (ms): "
        f"first {took[0]:.0f}, median {statistics.median(took):.0f}, last {took[-1]:.0f}; "
        f"registry peak memory {peak_memory_mb(pid):.0f} MB"
    )


def main() -> None:
    import requests

    with bench_stack("bench-registry", GRIDLINK_RPC_TIMEOUT="120") as (base, key, _, stack):
        http = requests.Session()
        http.headers["X-API-Key"] = key

        def import_ledger(kind: str, body: bytes) -> tuple[float, dict]:
            started = time.perf_counter()
            answer = http.post(
                f"{base}/api/v1/registry/imports/{kind}",
                data=body,
                headers={"Content-Type": "text/csv"},
                timeout=300,
            )
            if answer.status_code != 202:
                return time.perf_counter() - started, answer.json()
            job = answer.json()
            while job["status"] == "running":
                time.sleep(0.2)
                job = http.get(f"{base}/api/v1/registry/imports/{job['id']}", timeout=30).json()
            assert job["status"] == "done" and job["processed"] == job["total"], job
            return time.perf_counter() - started, job

        tree = csv_of(["code", "name", "classification", "parent_id"], organisation_rows())
        took, job = import_ledger("organisations", tree)
        print(
            f"GridLink registry bench\n\norganisations import: {job['total']} rows in {took:.1f}s = "
            f"{job['total'] / took:.0f} rows/s"
        )

        header = ["person_id", "name", "community_id", "is_party_member", "phone"]
        took, refused = import_ledger("people", csv_of(header, people_rows(bad_line=4_000)))
        lines = [f["line"] for f in refused["error"]["fields"]]
        print(
            f"people import, one bad row of {PEOPLE_ROWS}: refused in {took:.1f}s naming line(s) {lines}, "
            "nothing written"
        )
        took, job = import_ledger("people", csv_of(header, people_rows()))
        print(
            f"people import: {job['total']} rows in {took:.1f}s = {job['total'] / took:.0f} rows/s "
            "(numbers encrypted and indexed)"
        )

        # Reads are measured once the 5,000 registrations have reached the other services, so
        # that their event handling is not in the figures.
        from shared.mongo import connect

        started = time.perf_counter()
        for service in ("issue_intake", "cadre_evaluation"):
            while connect(service).people.estimated_document_count() < PEOPLE_ROWS:
                time.sleep(0.5)
        print(
            "people events applied by issue intake and cadre evaluation after "
            f"{time.perf_counter() - started:.1f}s"
        )

        def get(path: str, **params: str) -> requests.Response:
            answer = http.get(f"{base}{path}", params=params, timeout=60)
            assert answer.status_code == 200, answer.text
            return answer

        print("\nreads on that registry (ms):             p50      p95")
        reads = {
            "statistics of the street": lambda: get(f"/api/v1/organisations/{STREET}/statistics"),
            "subtree listing (a community)": lambda: get("/api/v1/organisations", within=f"{STREET}-001"),
            "people of a community, page of 50": lambda: get("/api/v1/people", community_id=f"{STREET}-001"),
            "person by phone": lambda: http.post(
                f"{base}/api/v1/people:search", json={"phone": "13900004321"}, timeout=30
            ).raise_for_status(),
        }
        for name, call in reads.items():
            p50, p95 = timed(call, 20)
            print(f"  {name:36s} {p50:8.0f} {p95:8.0f}")
        cold_start(stack, get)

        from openpyxl import load_workbook

        started = time.perf_counter()
        exported = get("/api/v1/registry/exports/people", format="xlsx", within=STREET).content
        took = time.perf_counter() - started
        rows = sum(1 for _ in load_workbook(io.BytesIO(exported), read_only=True).active.iter_rows()) - 1
        print(f"\npeople ledger export (xlsx): {rows} rows in {took:.1f}s")


if __name__ == "__main__":
    main()
