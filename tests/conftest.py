"""Test set-up shared by every tier.

Tests never touch the development data: they use their own RabbitMQ virtual host, their own
database names and their own gateway port, and the relay and consumers run with short
timings so that recovery paths (lease expiry, retries) show within a test.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# GRIDLINK_TEST_INSTANCE lets two test sessions run side by side (own vhost, data, database).
INSTANCE = os.environ.get("GRIDLINK_TEST_INSTANCE", "")
TEST_VHOST = f"gridlink-test{INSTANCE}"
# The tests run their own FerretDB, so fault tests can stop and restart it.
TEST_ENV = {
    "MONGO_URL": f"mongodb://127.0.0.1:{_free_port()}/",
    "GRIDLINK_ENV": "test",
    "GRIDLINK_DB_PREFIX": "gltest",
    "AMQP_URI": f"pyamqp://guest:guest@127.0.0.1:5672/{TEST_VHOST}",
    "GRIDLINK_RPC_TIMEOUT": "3",
    "GRIDLINK_PUBLISH_TIMEOUT": "2",
    "GRIDLINK_RELAY_SWEEP_SECONDS": "0.5",
    "GRIDLINK_RELAY_LEASE_SECONDS": "3",
    "GRIDLINK_CONSUMER_ATTEMPTS": "3",
    "GRIDLINK_CONSUMER_BACKOFF": "0.05",
    "GRIDLINK_RECOVERY_SECONDS": "1",
    "GRIDLINK_RECOVERY_GRACE_SECONDS": "2",
    "GRIDLINK_MONGO_TIMEOUT_MS": "1500",
    "GATEWAY_WORKERS": "1",
    "GATEWAY_THREADS": "4",
    "GATEWAY_ACCESS_LOG": "-",  # in .data/test/logs/gateway.log, to diagnose a failure
    # Sign-ins from 127.0.0.1, all the tests' together (the limit itself: test_staff_accounts.py).
    "GRIDLINK_LOGIN_ATTEMPTS_PER_MINUTE": "60",
    "GRIDLINK_KEY_CACHE_SECONDS": "1",  # a revoked key's refusal, seen over HTTP (test_audit.py)
    # The gateway's and the command-line tools' audit records, in the tests' own data folder.
    "GRIDLINK_AUDIT_DIR": str(Path(__file__).resolve().parents[1] / ".data" / f"test{INSTANCE}" / "audit"),
}
os.environ.update(TEST_ENV)

from shared.settings import get_settings  # noqa: E402  (after the environment is set)

get_settings.cache_clear()

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # Stopped by SIGTERM, the session still tears its fixtures down, so the suite it started
    # stops; killed outright, it left a FerretDB, four services and a gateway running.
    from deploy.local.stack import interrupt_on_sigterm

    interrupt_on_sigterm()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Fuzzing changes the demo data other tests read, so it goes last."""
    items.sort(key=lambda item: item.get_closest_marker("fuzz") is not None)


@pytest.fixture(scope="session")
def settings():
    return get_settings()


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def unique() -> Iterator[str]:
    yield uuid.uuid4().hex[:10]


class Api:
    """The gateway as a client system sees it."""

    def __init__(self, base_url: str, key: str) -> None:
        import requests

        self.base_url = base_url
        self.key = key
        self.http = requests.Session()
        self.http.headers["X-API-Key"] = key

    def get(self, path: str, **kwargs):
        return self._send("GET", path, timeout=15, **kwargs)

    def post(self, path: str, **kwargs):
        return self._send("POST", path, timeout=30, **kwargs)

    def _send(self, method: str, path: str, **kwargs):
        """Send once more if the connection was closed under the request: gunicorn closes a
        keep-alive connection idle for 5 s, and a request sent on it at that moment is reset
        before the gateway reads it (as any HTTP client must expect)."""
        import requests

        try:
            return self.http.request(method, f"{self.base_url}{path}", **kwargs)
        except requests.ConnectionError as exc:
            if "Connection aborted" not in str(exc):  # urllib3's word for a closed connection
                raise
            return self.http.request(method, f"{self.base_url}{path}", **kwargs)

    def record_act(self, act: dict, key: str | None = None):
        return self.post(
            "/api/v1/volunteer-acts", json=act, headers={"Idempotency-Key": key or new_id("idem")}
        )


SERVICE_DATABASES = ("registry", "issue_intake", "points_bank", "cadre_evaluation", "gateway")


@pytest.fixture(scope="session")
def infrastructure(settings):
    """The real broker (a fresh test vhost) and the tests' own FerretDB, started on first use."""
    from deploy.local.stack import Stack, ensure_vhost, free_port

    home = ROOT / ".data" / f"test{INSTANCE}"
    shutil.rmtree(home, ignore_errors=True)
    running = Stack(home=home, env=dict(TEST_ENV), gateway_port=free_port())
    try:
        running.start_infrastructure()
        ensure_vhost(TEST_VHOST, fresh=True)
        yield running
    finally:
        running.stop_all()


@pytest.fixture(scope="session")
def stack(infrastructure):
    """The whole suite running as separate processes on the real broker and database."""
    from deploy.local.demo_data import load_demo_data
    from gateway.keys import ROLES, api_keys

    infrastructure.start_all()
    load_demo_data()
    # No request limit: the tests' own pace is not what they test (test_rate_limits.py is).
    infrastructure.api_key = api_keys().create("tests", roles=list(ROLES), rate=0)
    infrastructure.base_url = f"http://127.0.0.1:{infrastructure.gateway_port}"
    return infrastructure


@pytest.fixture(scope="session")
def api(stack) -> Api:
    return Api(stack.base_url, stack.api_key)


@pytest.fixture
def scratch(settings, infrastructure):
    """A database of its own for one test, dropped afterwards."""
    from pymongo import MongoClient

    client = MongoClient(settings.mongo_url, tz_aware=True, socketTimeoutMS=15_000)
    name = f"gltest_db_{uuid.uuid4().hex[:8]}"
    yield client[name]
    client.drop_database(name)
    client.close()


@pytest.fixture(scope="session")
def databases(settings, stack):
    """Each service's own database, for asserting on what was (or was not) stored."""
    from pymongo import MongoClient

    client = MongoClient(settings.mongo_url, tz_aware=True)
    yield {service: client[settings.database_name(service)] for service in SERVICE_DATABASES}
    client.close()


@pytest.fixture(scope="session")
def rpc(stack):
    from nameko.standalone.rpc import ClusterRpcProxy

    with ClusterRpcProxy({"AMQP_URI": TEST_ENV["AMQP_URI"]}, timeout=10) as proxy:
        yield proxy


COMMUNITY = "420391-001-001"  # 中观社区 in the demo data


def registered(rpc, databases, person: dict) -> str:
    """Register a person and wait until the services that keep read models know them."""
    person_id = rpc.registry.register_person(person)["id"]
    from tests.support import eventually

    eventually(lambda: databases["issue_intake"].people.find_one({"_id": person_id}))
    eventually(lambda: databases["cadre_evaluation"].people.find_one({"_id": person_id}))
    return person_id


@pytest.fixture
def cadre(rpc, databases) -> str:
    """A fresh cadre: an in-service party member."""
    return registered(
        rpc,
        databases,
        {
            "person_id": new_id("cadre"),
            "name": "测试干部",
            "community_id": COMMUNITY,
            "is_party_member": True,
            "is_cadre": True,
            "employer": "十堰经开区测试局",
        },
    )


@pytest.fixture
def resident(rpc, databases) -> str:
    return registered(
        rpc, databases, {"person_id": new_id("res"), "name": "测试居民", "community_id": COMMUNITY}
    )
