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
