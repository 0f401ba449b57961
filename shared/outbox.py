"""Transactional outbox: events are stored with the change that causes them, then relayed.

A producer's store writes, for one write of one or many aggregates (a group commit):
1. one pending record into its small `outbox` collection, listing the events still to send;
2. the aggregate documents themselves, with their events embedded (the permanent record).

The pending record goes first: if the process dies between the two writes, the relay finds
events that are in no aggregate and drops them, so an unwritten change never emits an event;
the other order could lose one. One record per write, not per event: on FerretDB each insert
and delete statement costs about a millisecond, so a write of 50 acts costs two statements
instead of a hundred.

A change made idempotently and retried until its events are recorded (one a caller repeats
until it is answered) needs no aggregate: its events are written after it, in the record
itself (`record_events_of_done`), one statement instead of two.

A change caused by a consumed message needs no record at all (`OutboxRelay.publish_now`): the
consumer publishes its events, waits for the broker's confirms, and only then acknowledges
the message. A crash or a failed publish before that brings the message back; the redelivery
finds the change made and publishes the same events again (their ids follow from the change).
That saves an insert and a delete per write on FerretDB (measured: 0.4 to 0.9 ms of its CPU
per volunteer act that the points bank credits).

`outbox` stays small (published records are deleted), which matters because FerretDB scans a
collection for any filter but `_id`.

The writer hands the events it wrote to the relay of its process, which publishes them in
batches on a channel with publisher confirms and `mandatory`, events of one routing key that
go out together sharing a message (a CloudEvents JSON batch), waits (with a timeout) for the
broker's acks, and deletes a record once all its events are confirmed. Records left behind (the
broker was down, a process died) are swept when their lease runs out. The relay declares every
subscriber's queue before its first publish, so nothing is dropped for want of a queue.
Publishing twice is harmless: consumers apply each event id once.

The relay keeps two publishers, each on its own channel, taking turns from one queue: while
one waits for the broker's confirms (which follow its disk writes: p50 6.5, p99 30 ms
measured at 100 acts/s), the other sends what arrived meanwhile instead of holding it back.
Two channels may deliver in either order; consumers accept any order (a redelivery reorders
too), e.g. a revocation ahead of its credit waits in its queue until the credit is there.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import eventlet
import eventlet.event
import eventlet.queue
from amqp import Message
from kombu import Connection, Exchange, Queue
from nameko.extensions import DependencyProvider
from pymongo.collection import Collection
from pymongo.database import Database

from shared.events import Envelope, exchange_name, routing_key, subscriptions_from
from shared.mongo import connect, insert_new
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

OUTBOX = "outbox"
# A pending record older than this whose event is in no aggregate belongs to a change that was
# never written (the writer died or the write was refused); it is dropped, never published.
ORPHAN_GRACE = timedelta(seconds=60)
FORGET_EVERY = 0.2  # seconds between deletes of published records while events flow: one small
# delete five times a second, never a pile of them that would hold up the relay and the writers
# Records a sweep takes at once. The sweep is the recovery path and its statements are costly
# on FerretDB (each claimed record is rewritten with a read of the whole outbox, and records
# whose writer died are checked against their aggregate collection); measured, a sweep of 500
# under load ran past the socket timeout and so never finished. Small sweeps always finish.
SWEEP_BATCH = 50
EVENTS_KEPT = 20  # events an updated document keeps embedded (see update_with_events)
# Publishers per relay (see the module's docstring). Measured in back-to-back runs at 100
# acts/s: POST → both effects p99 135 ms on average with two, 161 with one; closed-loop
# throughput no lower.
RELAY_PUBLISHERS = 2


# Events per outbox record: a big import (thousands of rows) gets several small records, each
# cheap for FerretDB to decode when it is swept or deleted.
EVENTS_PER_RECORD = 500
# Events per AMQP message (see `_messages`): enough that per-message costs vanish, few enough
# that a redelivered message repeats little.
EVENTS_PER_MESSAGE = 100
Publishable = dict[str, Any]  # an event as the relay publishes it (see `publishable`)


def publishable(envelopes: Sequence[Envelope], aggregate_id: str) -> list[Publishable]:
    return [
        {
            "id": envelope.id,
            "aggregate_id": aggregate_id,
            "routing_key": routing_key(envelope),
            "envelope": envelope.model_dump(mode="json"),
        }
        for envelope in envelopes
    ]


def _pending(
    db: Database, collection: str | None, changes: Sequence[tuple[str, Sequence[Envelope]]]
) -> list[list[Publishable]]:
    """Write the outbox records for a write about to happen (in `collection`), or made already
    (None: the records hold the events themselves); per change, its events, each tagged with
    its record. The records are leased to the writing process: the sweep keeps away while the
    writer hands the events to its relay right after the write."""
    events = [publishable(envelopes, aggregate_id) for aggregate_id, envelopes in changes]
    flat = [event for change in events for event in change]
    now = datetime.now(UTC)
    lease = now + timedelta(seconds=get_settings().relay_lease_seconds)
    records = []
    for start in range(0, len(flat), EVENTS_PER_RECORD):
        record_id = uuid4().hex
        some = flat[start : start + EVENTS_PER_RECORD]
        for event in some:
            event["outbox_id"] = record_id
        records.append(
            {
                "_id": record_id,
                "aggregate_collection": collection,
                # Ids only when the events are embedded in their aggregates: FerretDB decodes a
                # whole record to delete it, so records stay small.
                "events": [
                    {"id": e["id"], "aggregate_id": e["aggregate_id"]}
                    | ({} if collection else {"envelope": e["envelope"]})
                    for e in some
                ],
                "created_at": now,
                "lease_until": lease,
            }
        )
    if records:
        db[OUTBOX].insert_many(records, ordered=False)
    return events


def _handed_over(events: list[Publishable]) -> list[Publishable]:
    """The events the relay publishes now; each says how many its record expects, so the
    relay deletes the record when that many are confirmed."""
    expected: dict[str, int] = {}
    for event in events:
        expected[event["outbox_id"]] = expected.get(event["outbox_id"], 0) + 1
    return [{**event, "record_events": expected[event["outbox_id"]]} for event in events]


def insert_with_events(
    db: Database, collection: str, changes: Sequence[tuple[dict[str, Any], Sequence[Envelope]]]
) -> tuple[list[Publishable], set[int]]:
    """Insert new aggregate documents, each with the events it causes, outbox-first.

    Returns the events to hand to `OutboxRelay.publish_soon` and the positions in `changes`
    of documents whose `_id` existed already (`_id` is the idempotency key: their events are
    not published, and the sweep drops them as in no aggregate). Positions, not ids: two
    changes may share an id.
    """
    events = _pending(db, collection, [(document["_id"], envelopes) for document, envelopes in changes])
    documents = [
        {**document, "events": [event["envelope"] for event in change]}
        for (document, _), change in zip(changes, events, strict=True)
    ]
    try:
        existing = insert_new(db[collection], documents)
    except Exception:
        _withdraw(db, events)
        raise
    fresh = [event for index, change in enumerate(events) if index not in existing for event in change]
    if len(fresh) < sum(len(change) for change in events):
        _withdraw(db, [change for index, change in enumerate(events) if index in existing], keep=fresh)
    return _handed_over(fresh), existing


def record_events_of_done(
    db: Database, changes: Sequence[tuple[str, Sequence[Envelope]]]
) -> list[Publishable]:
    """Record the events of changes made already, per (aggregate id, its events); returns
    them for `OutboxRelay.publish_soon`.

    For changes that are idempotent and retried until this returns (a consumer acknowledges
    its message only then): a crash before it makes the retry, which finds the change done
    and records the events again. Give such events ids derived from the change, so a repeat
    is one event to its consumers."""
    return _handed_over([event for change in _pending(db, None, changes) for event in change])


def update_with_events(
    db: Database,
    collection: str,
    current: dict[str, Any],
    change: dict[str, Any],
    envelopes: Sequence[Envelope],
) -> list[Publishable] | None:
    """Change a versioned document read as `current`, embedding the events; outbox-first as
    for inserts. `change` holds the new field values, `version` included.

    Returns the events to relay, or None if the document changed since it was read (nothing
    is changed then). The document keeps its latest events only: the relay needs an event
    there just until it is sent.
    """
    [events] = _pending(db, collection, [(current["_id"], envelopes)])
    fresh = [event["envelope"] for event in events]
    earlier = current.get("events", [])
    kept = earlier[max(len(earlier) + len(fresh) - EVENTS_KEPT, 0) :]
    try:
        result = db[collection].update_one(
            # Records written before versions were kept have none; null matches a missing field.
            {"_id": current["_id"], "version": current.get("version")},
            {"$set": {**change, "events": kept + fresh}},
        )
    except Exception:
        _withdraw(db, [events])
        raise
    if result.matched_count == 0:
        _withdraw(db, [events])
        return None
    return _handed_over(events)


def records_with_ids(ids: Iterable[str]) -> dict[str, Any]:
    """The filter for outbox records by id. One `$in` statement: FerretDB answers it by
    reading the whole collection, which is cheap for the small outbox, while a statement per
    id costs about a millisecond each (measured: deleting 500 of 600 records took 43 ms with
    `$in`, 660 ms one by one)."""
    return {"_id": {"$in": sorted(ids)}}


def _withdraw(
    db: Database, unwritten: Sequence[Sequence[Publishable]], keep: Sequence[Publishable] = ()
) -> None:
    """Delete the outbox records of events whose change was not written, unless they also hold
    events to keep (the sweep drops the others from those). Best effort: a record left behind
    is dropped by the sweep."""
    unpublishable = {event["outbox_id"] for change in unwritten for event in change}
    unpublishable -= {event["outbox_id"] for event in keep}
    if unpublishable:
        try:
            db[OUTBOX].delete_many(records_with_ids(unpublishable))
        except Exception:
            log.warning("could not withdraw %d outbox records; the sweep will drop them", len(unpublishable))


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
        self._outstanding: dict[int, tuple[str, list[str]]] = {}
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

    def close(self, failed: bool = False) -> None:
        """Close the connection. One that `failed` is dropped without a word to the broker:
        closing it politely waits for the broker's answer, which on a link that lost its
        replies is another timeout (measured: a black-holed publish failed after twice its
        timeout)."""
        if self._connection is not None:
            try:
                if failed:
                    self._connection.collect()
                else:
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

    def publish(self, events: Sequence[Publishable]) -> list[str]:
        """Publish events; return the ids of those the broker confirmed and routed to a queue."""
        if not events:
            return []
        try:
            if self._connection is None:
                self._open()
            return self._publish_confirmed(events)
        except (OSError, TimeoutError, PublishFailed) as exc:
            self.close(failed=True)
            raise PublishFailed(str(exc) or exc.__class__.__name__) from exc
        except Exception as exc:  # amqp errors: connection or channel closed by the broker
            self.close(failed=True)
            raise PublishFailed(f"{exc.__class__.__name__}: {exc}") from exc

    def _publish_confirmed(self, events: Sequence[Publishable]) -> list[str]:
        tags: dict[int, tuple[str, list[str]]] = {}  # delivery tag → (message id, its event ids)
        self._outstanding = tags
        for routing, together in _messages(events):
            tag = self._next_tag
            self._next_tag += 1
            if len(together) == 1:
                message_id, body = together[0]["id"], together[0]["envelope"]
            else:
                message_id, body = uuid4().hex, [event["envelope"] for event in together]
            tags[tag] = (message_id, [event["id"] for event in together])
            self._channel.basic_publish(
                Message(
                    body=_json_body(body),
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,
                    message_id=message_id,
                ),
                exchange=self.exchange.name,
                routing_key=routing,
                mandatory=routing in self._subscribed,
            )
        deadline = time.monotonic() + self.timeout
        while not set(tags) <= self._acked | self._nacked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishFailed(f"no confirm within {self.timeout}s")
            self._connection.drain_events(timeout=remaining)
        confirmed = [
            event_id
            for tag, (message_id, event_ids) in tags.items()
            if tag in self._acked and message_id not in self._returned
            for event_id in event_ids
        ]
        self._acked.difference_update(tags)
        self._nacked.difference_update(tags)
        if self._returned:
            log.error("messages unroutable (no queue bound): %s", sorted(self._returned))
            self._returned.clear()
        return confirmed


def _messages(events: Sequence[Publishable]) -> list[tuple[str, list[Publishable]]]:
    """The AMQP messages that carry `events`: one per routing key, each up to
    EVENTS_PER_MESSAGE events, in their order. A message of several events is a CloudEvents
    JSON batch (an array of envelopes); nameko's per-message work then happens once for all of
    them, and consumers write them together. A message never holds one event twice: a repeat
    starts a new message, so it is delivered as a repeat."""
    messages: list[tuple[str, list[Publishable]]] = []
    filling: dict[str, tuple[list[Publishable], set[str]]] = {}
    for event in events:
        key = event["routing_key"]
        together, ids = filling.get(key, ([], set()))
        if len(together) >= EVENTS_PER_MESSAGE or event["id"] in ids:
            together, ids = [], set()
        if not together:
            messages.append((key, together))
            filling[key] = (together, ids)
        together.append(event)
        ids.add(event["id"])
    return messages


def _json_body(envelope: dict[str, Any] | list[dict[str, Any]]) -> bytes:
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
        self.publishers = [
            EventPublisher(self.settings.amqp_uri, self.service, self.settings.publish_timeout_seconds)
            for _ in range(RELAY_PUBLISHERS)
        ]
        self.running = False
        self.confirmed: dict[str, set[str]] = {}  # outbox record → its events confirmed so far
        self.done: set[str] = set()  # records whose events are all confirmed, not yet deleted

    def start(self) -> None:
        self.running = True
        for index, publisher in enumerate(self.publishers):
            self.container.spawn_managed_thread(
                functools.partial(self._run, publisher, sweeps=index == 0),
                identifier=f"{self.service}.outbox_relay.{index}",
            )

    def stop(self) -> None:
        self.running = False
        for publisher in self.publishers:
            publisher.close()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> OutboxRelay:
        return self

    def publish_soon(self, events: Iterable[Publishable]) -> None:
        """Hand freshly written events to the relay; the caller does not wait."""
        for event in events:
            self.queue.put(event)

    def publish_now(self, aggregate_id: str, envelopes: Sequence[Envelope]) -> None:
        """Publish the events of a change a consumer has made, and wait until the broker has
        confirmed them all; raises `PublishFailed` if it does not. No outbox record is written:
        the consumer acknowledges its message only after this returns, so its redelivery
        publishes them again (see the module's docstring). The events go out in the relay's
        batches, with those of other workers."""
        events = publishable(envelopes, aggregate_id)
        for event in events:
            event["confirmed"] = eventlet.event.Event()
            self.queue.put(event)
        # An event may wait for a publisher busy with the batch before it.
        timeout = 2 * self.settings.publish_timeout_seconds
        for event in events:
            if event["confirmed"].wait(timeout=timeout) is not True:
                raise PublishFailed(f"event {event['id']} not confirmed within {timeout}s")

    def _run(self, publisher: EventPublisher, sweeps: bool) -> None:
        """One publisher's loop; the first one also sweeps."""
        next_sweep = next_forget = 0.0
        failures = 0
        while self.running:
            timeout = FORGET_EVERY if self.done else self.settings.relay_sweep_seconds
            batch = self._take_batch(timeout=timeout)
            recorded = [e for e in batch if "outbox_id" in e]
            try:
                if batch:
                    confirmed = self._publish(publisher, batch)
                    self._count_confirmed([e for e in recorded if e["id"] in confirmed])
                    # Nacked or unroutable: the sweep publishes their records again, now.
                    self._release({e["outbox_id"] for e in recorded if e["id"] not in confirmed})
                if not batch or time.monotonic() >= next_forget:
                    self._forget_published()
                    next_forget = time.monotonic() + FORGET_EVERY
                if sweeps and time.monotonic() >= next_sweep:
                    self.sweep()
                    next_sweep = time.monotonic() + self.settings.relay_sweep_seconds
                failures = 0
            except PublishFailed as exc:
                failures += 1
                log.warning("outbox relay could not publish (%s); will retry", exc)
                self._release({e["outbox_id"] for e in recorded})
                eventlet.sleep(min(10.0, 0.5 * 2**failures))
            except Exception:
                if not self.running:  # stopping: the database client may be closed already
                    return
                failures += 1
                log.exception("outbox relay failed; will retry")
                eventlet.sleep(min(10.0, 0.5 * 2**failures))

    @staticmethod
    def _publish(publisher: EventPublisher, batch: list[Publishable]) -> set[str]:
        """Publish a batch; the ids confirmed. Whoever waits for an event of it
        (`publish_now`) learns at once whether it was confirmed, whatever happened."""
        confirmed: set[str] = set()
        try:
            confirmed = set(publisher.publish(batch))
        finally:
            for event in batch:
                if "confirmed" in event:
                    event["confirmed"].send(event["id"] in confirmed)
        return confirmed

    def _take_batch(self, timeout: float) -> list[Publishable]:
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

    def _count_confirmed(self, events: Iterable[Publishable]) -> None:
        """A record is done once each of its events is confirmed: by id, so that an event
        confirmed twice (handed over again, republished) cannot stand in for another."""
        for event in events:
            record = event["outbox_id"]
            if record in self.done:
                continue
            confirmed = self.confirmed.setdefault(record, set())
            confirmed.add(event["id"])
            if len(confirmed) >= event["record_events"]:
                self.confirmed.pop(record)
                self.done.add(record)

    def _forget_published(self) -> None:
        """Delete records whose events are all published, many per call: a delete per publish
        would cost the writers of this database a turn each time. Until deleted they are
        remembered here, so the sweep does not publish them again."""
        if not self.done:
            return
        ids = list(self.done)
        try:
            self.outbox.delete_many(records_with_ids(ids))
        except Exception:
            log.warning("could not delete %d published outbox records; will retry", len(ids))
            return
        self.done.difference_update(ids)

    def _release(self, ids: set[str]) -> None:
        """Let the sweep retry records at once instead of after their lease."""
        if ids:
            try:
                self.outbox.update_many(records_with_ids(ids), {"$set": {"lease_until": datetime.now(UTC)}})
            except Exception:
                log.warning("could not release outbox records; their lease will run out")

    def sweep(self) -> int:
        """Publish the events of every record whose lease ran out. Returns how many."""
        now = datetime.now(UTC)
        due = [
            record
            for record in self.outbox.find({"lease_until": {"$lte": now}}).limit(SWEEP_BATCH)
            if record["_id"] not in self.done  # published, only awaiting deletion
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
        self.outbox.update_many(records_with_ids(r["_id"] for r in due), lease)
        sorted_out = [(record, *self._written_or_not(record, now)) for record in due]
        confirmed = set(self.publishers[0].publish([e for _, written, _ in sorted_out for e in written]))
        for record, written, undecided in sorted_out:
            self.confirmed.pop(record["_id"], None)
            if not {e["id"] for e in written} <= confirmed:
                continue  # its lease runs out again and the next sweep retries
            if undecided:  # events whose change may still be being written: kept for later
                self.outbox.update_one({"_id": record["_id"]}, {"$set": {"events": undecided}})
            else:
                self.done.add(record["_id"])
        self._forget_published()
        return len(confirmed)

    def _written_or_not(
        self, record: dict[str, Any], now: datetime
    ) -> tuple[list[Publishable], list[Publishable]]:
        """A record's events whose change was written (in their aggregate: to publish), and
        those not known yet (their writer may still write it). Events of changes never written
        (the writer died or the write was refused: in no aggregate after a grace) are dropped."""
        written, undecided, dropped = [], [], 0
        aggregates: dict[str, dict[str, dict[str, Any]]] = {}
        collection = record["aggregate_collection"]
        # A record from before one-record-per-write is one event, keyed by the event's id.
        events = record.get("events") or [{"id": record["_id"], "aggregate_id": record["aggregate_id"]}]
        for event in events:
            aggregate_id = event["aggregate_id"]
            if collection is None:  # the events of a change made already, in the record
                envelope = event["envelope"]
            else:
                if aggregate_id not in aggregates:
                    found = self.db[collection].find_one({"_id": aggregate_id}, {"events": 1}) or {}
                    aggregates[aggregate_id] = {e.get("id"): e for e in found.get("events", [])}
                envelope = aggregates[aggregate_id].get(event["id"])
            if envelope is not None:
                routing = routing_key(Envelope.model_validate(envelope))
                written.append(
                    {**event, "routing_key": routing, "envelope": envelope, "outbox_id": record["_id"]}
                )
            elif now - record["created_at"] > ORPHAN_GRACE:
                dropped += 1
            else:
                undecided.append(event)
        if dropped:
            log.warning("dropping %d outbox events of changes never written", dropped)
        return written, undecided
