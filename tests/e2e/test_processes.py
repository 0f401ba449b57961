"""How the suite's processes run, seen from the operating system."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if parent == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no tmpfs at /dev/shm here")
def test_gateway_workers_keep_their_heartbeat_file_in_memory(stack):
    workers = children_of(stack.processes["gateway"].pid)
    assert workers, "gunicorn runs no workers"
    for worker in workers:
        fds = Path(f"/proc/{worker}/fd")
        open_files = [os.readlink(fds / fd) for fd in os.listdir(fds)]
        assert any(f.startswith("/dev/shm/") for f in open_files), open_files


def test_the_gateways_access_log_tells_how_long_each_answer_took_and_its_request_id(stack):
    import re

    import requests

    from tests.support import eventually

    request_id = f"trace-{os.getpid()}-{os.urandom(4).hex()}"
    answer = requests.get(f"{stack.base_url}/healthz", headers={"X-Request-Id": request_id}, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["X-Request-Id"] == request_id
    log = stack.home / "logs" / "gateway.log"
    line = eventually(lambda: next((x for x in log.read_text().splitlines() if request_id in x), None))
    assert re.search(rf'"GET /healthz HTTP/1\.1" 200 \d+ \d+ms {request_id} ', line), line
