"""The suite as benchmarks run it: its own database, vhost and data folder, the gateway with
the production gunicorn settings, the demo data loaded, and an API key."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


@contextmanager
def bench_stack(name: str, **settings: str) -> Iterator[tuple[str, str, dict[str, str], Any]]:
    """Yields (gateway base URL, API key, environment, the `Stack`); stops everything afterwards."""
    vhost = f"gridlink-{name}"
    env = {
        "GRIDLINK_ENV": "test",
        "GRIDLINK_DB_PREFIX": "glbench",
        "AMQP_URI": f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}",
        "GATEWAY_WORKERS": os.environ.get("GATEWAY_WORKERS", "2"),
        "GATEWAY_THREADS": os.environ.get("GATEWAY_THREADS", "8"),
        "GRIDLINK_LOG_LEVEL": "WARNING",
        **settings,
    }
    os.environ.update(env)
    from deploy.local.demo_data import load_demo_data
    from deploy.local.stack import Stack, ensure_rabbitmq, ensure_vhost, free_port, interrupt_on_sigterm
    from gateway.keys import ROLES, api_keys
    from shared.settings import get_settings

    interrupt_on_sigterm()  # a bench stopped by SIGTERM stops its suite too
    ensure_rabbitmq()
    ensure_vhost(vhost, fresh=True)
    home = ROOT / ".data" / name
    env["STACK_HOME"] = str(home)
    shutil.rmtree(home, ignore_errors=True)
    env["MONGO_URL"] = f"mongodb://127.0.0.1:{free_port()}/"
    os.environ["MONGO_URL"] = env["MONGO_URL"]
    get_settings.cache_clear()
    stack = Stack(home=home, env=env, gateway_port=free_port())
    try:
        stack.start_all()
        load_demo_data()
        key = api_keys().create(name, roles=list(ROLES), rate=0)
        yield f"http://127.0.0.1:{stack.gateway_port}", key, env, stack
    finally:
        stack.stop_all()


def in_threads(work: Callable[[int], None], count: int) -> float:
    """Run work(0), ..., work(count - 1) each in a thread of its own; the seconds until all end."""
    threads = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started
