"""How `make run` tells the broker it started from one started since (deploy/local/stack.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local.stack import running_broker

pytestmark = pytest.mark.integration


def test_the_running_broker_is_named_by_this_boot_and_its_process(infrastructure):
    """The suite's broker: this boot's id, and the pid the broker itself reports."""
    boot, pid = running_broker().split()
    assert boot == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert b"beam" in Path(f"/proc/{pid}/cmdline").read_bytes()
