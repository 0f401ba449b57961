"""Helpers for tests: waiting on asynchronous effects, and events to feed consumers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from pymongo import MongoClient

from services.points.store import PointsStore
from shared.audit import records
from shared.events import Envelope, VolunteerActRecorded, new_event
from shared.outbox import EventPublisher, publishable
from shared.settings import get_settings, local_today

T = TypeVar("T")


def eventually(
    probe: Callable[[], T],
    timeout: float = 15.0,
    interval: float = 0.05,
    sleep: Callable[[float], Any] = time.sleep,
) -> T:
    """Call `probe` until it returns a truthy value or raises no AssertionError. `sleep`:
    `eventlet.sleep` while green threads of the test's own must run (the tests are not
    monkey-patched, so a plain sleep stops them)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = probe()
            if result:
                return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout}s: {probe}")
        sleep(interval)


def act_recorded(**overrides: Any) -> VolunteerActRecorded:
    """A recorded volunteer act (a fresh act id each time); override what the test is about."""
    fields: dict[str, Any] = {
        "act_id": f"va_{uuid.uuid4().hex[:12]}",
        "person_id": "p-1",
        "act_type": "clean_up",
        "hours": Decimal(1),
        "occurred_on": date(2026, 11, 20),
        "community_id": "420391-001-001",
        "recorded_at": datetime.now(UTC),
    }
    return VolunteerActRecorded(**{**fields, **overrides})


def act_recorded_event(**overrides: Any) -> Envelope:
    act = act_recorded(**overrides)
    return new_event(act, subject=act.act_id)


def publish_as_intake(*events: Envelope) -> list[str]:
    """Publish events on the broker as issue intake's relay does; their ids, as confirmed."""
    publisher = EventPublisher(get_settings().amqp_uri, "issue_intake", timeout=5)
    records = [record for event in events for record in publishable([event], event.subject)]
    try:
        return publisher.publish(records)
    finally:
        publisher.close()


def points_bank_store() -> PointsStore:
    """A store of the test suite's points bank database, as another process of it would have."""
    settings = get_settings()
    return PointsStore(MongoClient(settings.mongo_url, tz_aware=True)[settings.database_name("points_bank")])


def outbox_events(db) -> list[dict]:
    """Every event still waiting in a service's outbox, as {id, aggregate_id} (a record lists
    the events of one write; the events themselves are in their aggregates)."""
    return [event for record in db.outbox.find({}) for event in record["events"]]


class FaultyLink:
    """A TCP relay between a client and a server (the broker) whose two directions can fail
    as networks do: `lose_replies` drops what the server sends (a publish goes through, its
    confirm never comes back), `black_hole` drops both ways with the sockets left open (no
    error, no reply: only a timeout notices), `heal` cuts every connection and forwards again
    (the client reconnects through it)."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up, self.down = True, True  # forwarding client→server, server→client
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def lose_replies(self) -> None:
        self.down = False

    def black_hole(self) -> None:
        self.up = self.down = False

    def heal(self) -> None:
        self.up = self.down = True
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.sockets.clear()

    def close(self) -> None:
        self.heal()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(self.server)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "down"), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if getattr(self, direction):
                    sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def audit_records_since(moment: datetime) -> list[dict[str, Any]]:
    """The audit trail's records written since `moment` (yesterday's file too: a test may
    straddle midnight)."""
    today, since = local_today(), moment.astimezone(UTC).isoformat()
    days = (today - timedelta(days=1), today)
    return [r for day in days for r in records(get_settings().audit_dir, day) if r["time"] >= since]
