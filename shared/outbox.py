"""Transactional outbox: events are stored with the change that causes them, then relayed.

A producer's store writes, for one change:
1. a pending record per event into its small `outbox` collection (what still has to be sent);
2. the aggregate document itself, with the same events embedded (the permanent record).

The pending record goes first: if the process dies between the two writes, the relay finds a
record whose event is not in any aggregate and drops it, so an unwritten change never emits an
event; the other order could lose an event. `outbox` stays small (published records are
deleted), which matters because FerretDB scans a collection for any filter but `_id`.

The relay publishes in batches on a channel with publisher confirms and `mandatory`, waits
(with a timeout) for the broker's acks, and only then deletes the records. It declares every
subscriber's queue before its first publish, so nothing is dropped for want of a queue.
Publishing twice is harmless: consumers apply each event id once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import eventlet
import eventlet.queue
from amqp import Message
from kombu import Connection, Exchange, Queue
from nameko.extensions import DependencyProvider
from pymongo import DeleteOne, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from shared.events import Envelope, exchange_name, routing_key, subscriptions_from
from shared.mongo import UPDATES_PER_COMMAND, connect
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

OUTBOX = "outbox"
DUPLICATE_KEY = 11000
ID_CHUNK = 200  # deletes per command: keeps each command, and so SQLite's lock, short
# A pending record older than this whose event is in no aggregate belongs to a change that was
# never written (the writer died or the write was refused); it is dropped, never published.
ORPHAN_GRACE = timedelta(seconds=60)
FORGET_EVERY = 0.2  # seconds between deletes of published records while events flow
# Records a sweep takes at once. The sweep is the recovery path and its statements are costly
# on FerretDB (each claimed record is rewritten with a read of the whole outbox, and records
# whose writer died are checked against their aggregate collection); measured, a sweep of 500
# under load ran past the socket timeout and so never finished. Small sweeps always finish.
SWEEP_BATCH = 50
EVENTS_KEPT = 20  # events an updated document keeps embedded (see update_with_events)


def pending_records(
    envelopes: Sequence[Envelope],
    *,
    aggregate_collection: str,
    aggregate_id: str,
    lease_seconds: float,
) -> list[dict[str, Any]]:
    """Outbox records for a change about to be written; leased to the writing process.

    The lease keeps the sweep away while the writer publishes the events itself right after
    its write; if the writer dies, the lease runs out and any relay takes over.
    """
    now = datetime.now(UTC)
    return [
        {
            "_id": envelope.id,
            "aggregate_collection": aggregate_collection,
            "aggregate_id": aggregate_id,
            "routing_key": routing_key(envelope),
            "envelope": envelope.model_dump(mode="json"),
            "created_at": now,
            "lease_until": now + timedelta(seconds=lease_seconds),
            "written": False,  # the relay learns it was when the writer hands the record over
        }
        for envelope in envelopes
    ]


def insert_with_events(
    db: Database, collection: str, changes: Sequence[tuple[dict[str, Any], Sequence[Envelope]]]
) -> tuple[list[dict[str, Any]], set[int]]:
    """Insert new aggregate documents, each with the events it causes, outbox-first.

    Returns the outbox records written (hand them to `OutboxRelay.publish_soon`) and the
    positions in `changes` of documents whose `_id` existed already (`_id` is the idempotency
    key; their records are withdrawn). Positions, not ids: two changes may share an id.
    """
    lease = get_settings().relay_lease_seconds
    records_at = [
        pending_records(
            envelopes, aggregate_collection=collection, aggregate_id=document["_id"], lease_seconds=lease
        )
        for document, envelopes in changes
    ]
    all_records = [r for records in records_at for r in records]
    if all_records:
        db[OUTBOX].insert_many(all_records, ordered=False)
    documents = [
        {**document, "events": [e.model_dump(mode="json") for e in envelopes]}
        for document, envelopes in changes
    ]
    existing: set[int] = set()
    try:
        db[collection].insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        for error in exc.details.get("writeErrors", []):
            if error.get("code") != DUPLICATE_KEY:
                _withdraw(db, all_records)
                raise
            existing.add(error["index"])
    except Exception:
        _withdraw(db, all_records)
        raise
    _withdraw(db, [r for index in existing for r in records_at[index]])
    return [r for index, records in enumerate(records_at) if index not in existing for r in records], existing


def update_with_events(
    db: Database,
    collection: str,
    current: dict[str, Any],
    change: dict[str, Any],
    envelopes: Sequence[Envelope],
) -> list[dict[str, Any]] | None:
    """Change a versioned document read as `current`, embedding the events; outbox-first as
    for inserts. `change` holds the new field values, `version` included.

    Returns the outbox records written, or None if the document changed since it was read
    (nothing is changed then). The document keeps its latest events only: the relay needs an
    event there just until it is sent.
    """
    records = pending_records(
        envelopes,
        aggregate_collection=collection,
        aggregate_id=current["_id"],
        lease_seconds=get_settings().relay_lease_seconds,
    )
    db[OUTBOX].insert_many(records, ordered=False)
    fresh = [e.model_dump(mode="json") for e in envelopes]
    earlier = current.get("events", [])
    kept = earlier[max(len(earlier) + len(fresh) - EVENTS_KEPT, 0) :]
    try:
        result = db[collection].update_one(
            # Records written before versions were kept have none; null matches a missing field.
            {"_id": current["_id"], "version": current.get("version")},
            {"$set": {**change, "events": kept + fresh}},
        )
    except Exception:
        _withdraw(db, records)
        raise
    if result.matched_count == 0:
        _withdraw(db, records)
        return None
    return records


def by_id(collection: Collection, ids: Sequence[str], change: dict[str, Any] | None = None) -> None:
    """Delete (or, given `change`, update) records by id: a statement per id, many per command.

    On FerretDB a statement by `_id` alone is an index lookup, while one `$in` statement reads
    and decodes the whole collection (see shared/mongo.py)."""
    per_command = ID_CHUNK if change is None else UPDATES_PER_COMMAND
    for start in range(0, len(ids), per_command):
        chunk = ids[start : start + per_command]
        if change is None:
            collection.bulk_write([DeleteOne({"_id": i}) for i in chunk], ordered=False)
        else:
            collection.bulk_write([UpdateOne({"_id": i}, change) for i in chunk], ordered=False)


def _withdraw(db: Database, records: Sequence[dict[str, Any]]) -> None:
    """Best effort: a record left behind is dropped by the sweep as an orphan."""
    if records:
        try:
            by_id(db[OUTBOX], [r["_id"] for r in records])
        except Exception:
            log.warning("could not withdraw %d outbox records; the sweep will drop them", len(records))


class PublishFailed(Exception):
    pass


class EventPublisher:
    """Publishes batches of events with publisher confirms, `mandatory` and a timeout."""

    def __init__(self, amqp_uri: str, source_service: str, timeout: float) -> None:
        self.amqp_uri = amqp_uri
        self.source_service = source_service
        self.timeout = timeout
        self.exchange = Exchange(exchange_name(source_service), type="topic", durable=True)
        self._connection: Connection | None = None
        self._channel: Any = None
        self._acked: set[int] = set()
        self._nacked: set[int] = set()
        self._returned: set[str] = set()
        self._next_tag = 1
        self._outstanding: dict[int, str] = {}
        # Events somebody subscribes to must reach a queue (`mandatory`); the others are
        # published for whoever binds later, and a broker return for them is no failure.
        self._subscribed = {s.routing_key for s in subscriptions_from(source_service)}

    def _open(self) -> None:
        connection = Connection(
            self.amqp_uri,
            connect_timeout=self.timeout,
            # Publisher connections carry no heartbeats: socket timeouts bound every read and
            # write, so a black-holed broker fails the publish instead of hanging it.
            transport_options={"read_timeout": self.timeout, "write_timeout": self.timeout},
        )
        connection.connect()
        channel = connection.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)
        self.exchange.declare(channel=channel)
        for subscription in subscriptions_from(self.source_service):
            Queue(
                subscription.queue,
                exchange=self.exchange,
                routing_key=subscription.routing_key,
                durable=True,
                auto_delete=False,
            ).declare(channel=channel)
        self._connection, self._channel = connection, channel
        self._acked.clear()
        self._nacked.clear()
        self._returned.clear()
        self._next_tag = 1

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # closing a broken connection may fail; it is gone either way
                log.debug("closing publisher connection failed", exc_info=True)
        self._connection = self._channel = None

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(self._acked, delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(self._nacked, delivery_tag, multiple)

    def _settle(self, into: set[int], delivery_tag: int, multiple: bool) -> None:
        if multiple:
            into.update(t for t in self._outstanding if t <= delivery_tag)
        else:
            into.add(delivery_tag)

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self._returned.add(message.properties.get("message_id", ""))

    def publish(self, records: Sequence[dict[str, Any]]) -> list[str]:
        """Publish records; return the ids the broker confirmed and routed to a queue."""
        if not records:
            return []
        try:
            if self._connection is None:
                self._open()
            return self._publish_confirmed(records)
        except (OSError, TimeoutError, PublishFailed) as exc:
            self.close()
            raise PublishFailed(str(exc) or exc.__class__.__name__) from exc
        except Exception as exc:  # amqp errors: connection or channel closed by the broker
            self.close()
            raise PublishFailed(f"{exc.__class__.__name__}: {exc}") from exc

    def _publish_confirmed(self, records: Sequence[dict[str, Any]]) -> list[str]:
        tags: dict[int, str] = {}
        self._outstanding = tags
        for record in records:
            tag = self._next_tag
            self._next_tag += 1
            tags[tag] = record["_id"]
            self._channel.basic_publish(
                Message(
                    body=_json_body(record["envelope"]),
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,
                    message_id=record["_id"],
                ),
                exchange=self.exchange.name,
                routing_key=record["routing_key"],
                mandatory=record["routing_key"] in self._subscribed,
            )
        deadline = time.monotonic() + self.timeout
        while not set(tags) <= self._acked | self._nacked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishFailed(f"no confirm within {self.timeout}s")
            self._connection.drain_events(timeout=remaining)
        confirmed = [
            event_id
            for tag, event_id in tags.items()
            if tag in self._acked and event_id not in self._returned
        ]
        self._acked.difference_update(tags)
        self._nacked.difference_update(tags)
        if self._returned:
            log.error("events unroutable (no queue bound): %s", sorted(self._returned))
            self._returned.clear()
        return confirmed


def _json_body(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()


class OutboxRelay(DependencyProvider):
    """Runs inside the producing service: publishes its own fresh events at once, and sweeps
    for records whose lease ran out (broker was down, a relay died) every few seconds."""

    def __init__(self, service: str) -> None:
        self.service = service

    def setup(self) -> None:
        self.settings: Settings = get_settings()
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        self.db = connect(self.service)
        self.outbox: Collection = self.db[OUTBOX]
        self.queue: eventlet.queue.LightQueue = eventlet.queue.LightQueue()
        self.publisher = EventPublisher(
            self.settings.amqp_uri, self.service, self.settings.publish_timeout_seconds
        )
        self.running = False
        self.published: set[str] = set()  # published, not yet deleted from the outbox

    def start(self) -> None:
        self.running = True
        self.container.spawn_managed_thread(self._run, identifier=f"{self.service}.outbox_relay")

    def stop(self) -> None:
        self.running = False
        self.publisher.close()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> OutboxRelay:
        return self

    def publish_soon(self, records: Iterable[dict[str, Any]]) -> None:
        """Hand freshly written records to the relay; the caller does not wait."""
        for record in records:
            self.queue.put(record)

    def _run(self) -> None:
        next_sweep = 0.0
        failures = 0
        while self.running:
            timeout = FORGET_EVERY if self.published else self.settings.relay_sweep_seconds
            batch = self._take_batch(timeout=timeout)
            try:
                if batch:
                    confirmed = set(self.publisher.publish(batch))
                    self.published.update(confirmed)
                    # Nacked or unroutable: back to the sweep, known to be written.
                    self._release([r for r in batch if r["_id"] not in confirmed])
                if len(self.published) >= self.settings.relay_batch_size or not batch:
                    self._forget_published()
                if time.monotonic() >= next_sweep:
                    self.sweep()
                    next_sweep = time.monotonic() + self.settings.relay_sweep_seconds
                failures = 0
            except PublishFailed as exc:
                failures += 1
                log.warning("outbox relay could not publish (%s); will retry", exc)
                self._release(batch)
                eventlet.sleep(min(10.0, 0.5 * 2**failures))
            except Exception:
                failures += 1
                log.exception("outbox relay failed; will retry")
                eventlet.sleep(min(10.0, 0.5 * 2**failures))

    def _take_batch(self, timeout: float) -> list[dict[str, Any]]:
        try:
            batch = [self.queue.get(timeout=timeout)]
        except eventlet.queue.Empty:
            return []
        while len(batch) < self.settings.relay_batch_size:
            try:
                batch.append(self.queue.get_nowait())
            except eventlet.queue.Empty:
                break
        return batch

    def _forget_published(self) -> None:
        """Delete published records, many per call: a delete per publish would cost the
        writers of this database a turn each time. Until deleted they are remembered here, so
        the sweep does not publish them again."""
        if not self.published:
            return
        ids = list(self.published)
        try:
            by_id(self.outbox, ids)
        except Exception:
            log.warning("could not delete %d published outbox records; will retry", len(ids))
            return
        self.published.difference_update(ids)

    def _release(self, records: Sequence[dict[str, Any]]) -> None:
        """Let the sweep retry records at once instead of after their lease. They came from
        their writer after its write succeeded, so the sweep need not check their aggregate."""
        if records:
            released = {"$set": {"lease_until": datetime.now(UTC), "written": True}}
            try:
                by_id(self.outbox, [r["_id"] for r in records], released)
            except Exception:
                log.warning("could not release outbox records; their lease will run out")

    def sweep(self) -> int:
        """Publish every record whose lease ran out. Returns how many were published."""
        now = datetime.now(UTC)
        due = [
            record
            for record in self.outbox.find({"lease_until": {"$lte": now}}).limit(SWEEP_BATCH)
            if record["_id"] not in self.published  # published, only awaiting deletion
        ]
        if not due:
            return 0
        # Claim them; if two relays claim the same record both publish it, which consumers
        # absorb (they apply each event id once).
        lease = {
            "$set": {
                "lease_until": now + timedelta(seconds=self.settings.relay_lease_seconds),
                "relay": self.instance,
            }
        }
        by_id(self.outbox, [r["_id"] for r in due], lease)
        publishable, orphans = self._split_orphans(due, now)
        if orphans:
            log.warning("dropping %d outbox records of changes never written", len(orphans))
            by_id(self.outbox, orphans)
        published = self.publisher.publish(publishable)
        self.published.update(published)
        self._forget_published()
        return len(published)

    def _split_orphans(
        self, records: list[dict[str, Any]], now: datetime
    ) -> tuple[list[dict[str, Any]], list[str]]:
        publishable, orphans = [], []
        for record in records:
            if record.get("written"):
                publishable.append(record)
                continue
            # Its writer died before handing it over: was the change itself written?
            aggregate = self.db[record["aggregate_collection"]].find_one(
                {"_id": record["aggregate_id"]}, {"events.id": 1}
            )
            written = aggregate is not None and any(
                event.get("id") == record["_id"] for event in aggregate.get("events", [])
            )
            if written:
                publishable.append(record)
            elif now - record["created_at"] > ORPHAN_GRACE:
                orphans.append(record["_id"])
        return publishable, orphans
