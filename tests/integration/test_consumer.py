"""`@consumes` on the real broker: the messages delivered together go to one worker, and each
message is settled on its own (a failed one goes back to the queue, the others are acked)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_waiting_messages_share_workers_and_a_failed_one_alone_is_redelivered(infrastructure):
    # The probe service runs in a process of its own (see batch_probe.py).
    run = subprocess.run(
        [sys.executable, "-m", "tests.integration.batch_probe", "30", "7"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    # Every event applied once, the one that met the outage included (after its redelivery) ...
    assert sorted(seen["applied"]) == sorted(seen["events"]) and seen["parked"] == 0
    # ... its message alone came back: every message reached a worker once, that one twice ...
    assert sum(seen["workers"]) == seen["messages"] + 1
    # ... and the 28 messages that waited reached the service together: fewer workers than messages.
    assert len(seen["workers"]) < seen["messages"] and max(seen["workers"]) > 1
