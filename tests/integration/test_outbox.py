"""The outbox on the real database and broker: one record per write, and the sweep that
publishes what a dead writer left behind (and only what it really wrote)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import eventlet
import eventlet.event
import pytest
from kombu import Connection, Exchange, Queue

from shared.outbox import (
    ORPHAN_GRACE,
    OUTBOX,
    EventPublisher,
    OutboxRelay,
    PublishFailed,
    insert_with_events,
    record_events_of_done,
)
from tests.support import FaultyLink, act_recorded_event, eventually

pytestmark = pytest.mark.integration
SERVICE = "outbox_test"  # its own database and exchange: no service of the stack interferes


@pytest.fixture
def relay(settings, infrastructure):
    relay = OutboxRelay(SERVICE)
    relay.setup()
    relay.db.client.drop_database(relay.db.name)
    yield relay
    relay.stop()
    relay.db.client.drop_database(relay.db.name)


@pytest.fixture
def published(settings, infrastructure):
    """The ids of events published on the test exchange, read from a queue bound to it."""
    with Connection(settings.amqp_uri) as connection:
        channel = connection.channel()
        exchange = Exchange(f"{SERVICE}.events", type="topic", durable=True)
        queue = Queue(exclusive=True, exchange=exchange, routing_key="#", channel=channel)
        queue.declare()

        def ids() -> list[str]:
            found = []
            while (message := queue.get(no_ack=True)) is not None:
                body = message.payload  # one CloudEvent, or a batch of them
                found.extend(envelope["id"] for envelope in (body if isinstance(body, list) else [body]))
            return found

        yield ids


def test_one_outbox_record_per_write_and_none_for_a_replayed_one(relay):
    events = [act_recorded_event() for _ in range(3)]
    changes = [({"_id": f"a{n}"}, [event]) for n, event in enumerate(events)]
    handed, existing = insert_with_events(relay.db, "things", changes)
    [record] = relay.db[OUTBOX].find({})
    assert [e["id"] for e in record["events"]] == [e.id for e in events]
    assert [(e["id"], e["outbox_id"], e["record_events"]) for e in handed] == [
        (e.id, record["_id"], 3) for e in events
    ]
    assert existing == set()

    replay = [({"_id": "a0"}, [act_recorded_event()]), ({"_id": "a9"}, [act_recorded_event()])]
    handed, existing = insert_with_events(relay.db, "things", replay)
    assert existing == {0}
    assert [(e["id"], e["record_events"]) for e in handed] == [(replay[1][1][0].id, 1)]
    assert relay.db.things.find_one({"_id": "a0"})["events"][0]["id"] == events[0].id  # unchanged

    assert insert_with_events(relay.db, "things", replay) == ([], {0, 1})
    assert relay.db[OUTBOX].count_documents({}) == 2  # the replay of nothing new left no record


def test_the_sweep_publishes_what_a_dead_writer_wrote_and_drops_what_it_never_wrote(relay, published):
    written, unwritten, recent = act_recorded_event(), act_recorded_event(), act_recorded_event()
    # The writer died after its write, before handing the events to its relay; `b`'s write
    # never happened (here: undone), and `c`'s may still be under way (a young record).
    insert_with_events(relay.db, "things", [({"_id": "a"}, [written]), ({"_id": "b"}, [unwritten])])
    insert_with_events(relay.db, "things", [({"_id": "c"}, [recent])])
    relay.db.things.delete_many({"_id": {"$in": ["b", "c"]}})
    now = datetime.now(UTC)
    old = now - ORPHAN_GRACE - timedelta(seconds=1)
    outbox = relay.db[OUTBOX]
    outbox.update_many({}, {"$set": {"lease_until": now}})
    [first] = [r for r in outbox.find({}) if r["events"][0]["id"] == written.id]
    outbox.update_one({"_id": first["_id"]}, {"$set": {"created_at": old}})

    assert relay.sweep() == 1
    assert published() == [written.id]
    [left] = outbox.find({})
    assert [e["id"] for e in left["events"]] == [recent.id]  # kept: its write may yet land

    outbox.update_one({"_id": left["_id"]}, {"$set": {"created_at": old, "lease_until": now}})
    assert relay.sweep() == 0
    assert published() == [] and outbox.count_documents({}) == 0


def test_events_of_a_change_made_already_are_kept_in_their_record_and_swept_from_it(relay, published):
    """A consumer's change (a transfer's legs) is its own record: its events are written after
    it, in the outbox record alone, and a dead writer's are published from there."""
    first, second = act_recorded_event(), act_recorded_event()
    handed = record_events_of_done(relay.db, [("t1", [first, second])])
    [record] = relay.db[OUTBOX].find({})
    assert record["aggregate_collection"] is None
    assert [e["envelope"]["id"] for e in record["events"]] == [first.id, second.id]
    assert [(e["id"], e["aggregate_id"], e["record_events"]) for e in handed] == [
        (first.id, "t1", 2),
        (second.id, "t1", 2),
    ]
    assert relay.db.list_collection_names() == [OUTBOX]  # no aggregate written

    # The writer died before handing them over: once the lease is out the sweep publishes
    # both, with no aggregate to find and however old the record is.
    old = datetime.now(UTC) - ORPHAN_GRACE - timedelta(seconds=1)
    relay.db[OUTBOX].update_one({}, {"$set": {"lease_until": datetime.now(UTC), "created_at": old}})
    assert relay.sweep() == 2
    assert sorted(published()) == sorted([first.id, second.id])
    assert relay.db[OUTBOX].count_documents({}) == 0


def test_the_sweep_publishes_a_record_left_from_before_one_record_per_write(relay, published):
    """An outbox written by the previous version held one record per event; an upgrade with
    such records pending publishes them and moves on."""
    event = act_recorded_event()
    relay.db.things.insert_one({"_id": "old", "events": [event.model_dump(mode="json")]})
    now = datetime.now(UTC)
    relay.db[OUTBOX].insert_one(
        {
            "_id": event.id,
            "aggregate_collection": "things",
            "aggregate_id": "old",
            "routing_key": "volunteer_act.recorded",
            "envelope": event.model_dump(mode="json"),
            "created_at": now,
            "lease_until": now,
            "written": True,
        }
    )
    assert relay.sweep() == 1
    assert published() == [event.id]
    assert relay.db[OUTBOX].count_documents({}) == 0


@pytest.fixture
def running(relay):
    """The relay's publishing loops, as the service runs them, without sweeps."""
    # Loops waiting for events stay in line for as long as the test runs.
    relay.settings = relay.settings.model_copy(update={"relay_sweep_seconds": 30.0})
    relay.running = True
    loops = [eventlet.spawn(relay._run, publisher, sweeps=False) for publisher in relay.publishers]
    yield relay
    relay.running = False
    for loop in loops:
        loop.kill()


def test_while_one_publisher_waits_for_its_confirms_the_other_sends_what_arrives(running, published):
    release, held = eventlet.event.Event(), []
    first, publish_confirmed = running.publishers[0], running.publishers[0].publish

    def slow_confirms(events):  # as when the broker's disk is slow to confirm
        held.extend(e["id"] for e in events)
        release.wait()
        return publish_confirmed(events)

    first.publish = slow_confirms
    early, late = act_recorded_event(), act_recorded_event()
    running.publish_soon(record_events_of_done(running.db, [("a1", [early])]))
    eventlet.sleep(0.05)
    running.publish_soon(record_events_of_done(running.db, [("a2", [late])]))
    eventlet.sleep(0.2)
    # Whichever loop took which: the slow one holds its event, the other sent the other.
    [waiting] = held
    assert published() == [({early.id, late.id} - {waiting}).pop()]
    release.send()
    eventlet.sleep(0.2)
    assert published() == [waiting]
    assert running.db[OUTBOX].count_documents({}) == 0  # both confirmed, so both records deleted


def test_a_consumers_events_are_published_before_it_returns_with_no_outbox_record(running, published):
    first, second = act_recorded_event(), act_recorded_event()
    running.publish_now("t1", [first, second])
    # Confirmed once it returns: they are on the exchange, and nothing was written.
    assert sorted(published()) == sorted([first.id, second.id])
    assert running.db.list_collection_names() == []


def test_a_consumers_publish_that_is_not_confirmed_raises_at_once(running, published):
    def broker_away(events):
        raise PublishFailed("connection refused")

    for publisher in running.publishers:
        publisher.publish = broker_away
    started = time.monotonic()
    with pytest.raises(PublishFailed, match="not confirmed"):
        running.publish_now("t1", [act_recorded_event()])
    assert time.monotonic() - started < 1  # told by the failed publish, not by the timeout
    assert published() == [] and running.db.list_collection_names() == []


@pytest.mark.parametrize("fault", ["lose_replies", "black_hole"])
def test_a_publish_left_unconfirmed_keeps_its_record_until_a_publish_is_confirmed(relay, published, fault):
    """The relay as it runs, through a link that loses the broker's confirms or swallows
    everything: the publish fails within its timeout, the record stays, its lease given up so
    that the sweep retries at once; once the link heals the sweep publishes it and the record
    goes. (A lost confirm may leave two copies; consumers apply an event id once.)"""
    broker = urlparse(relay.settings.amqp_uri)
    link = FaultyLink((broker.hostname, broker.port or 5672))
    through = broker._replace(netloc=f"{broker.username}:{broker.password}@127.0.0.1:{link.port}").geturl()
    timeout = 1.0
    relay.publishers = [EventPublisher(through, SERVICE, timeout) for _ in relay.publishers]
    for publisher in relay.publishers:  # connected, as a running relay's are when the fault comes
        warm_up = act_recorded_event()
        assert publisher.publish(record_events_of_done(relay.db, [(warm_up.id, [warm_up])])) == [warm_up.id]
    relay.db[OUTBOX].delete_many({})
    published()
    relay.settings = relay.settings.model_copy(update={"relay_sweep_seconds": 0.5})
    relay.running = True
    loops = [
        eventlet.spawn(relay._run, publisher, sweeps=n == 0) for n, publisher in enumerate(relay.publishers)
    ]
    try:
        getattr(link, fault)()
        event = act_recorded_event()
        [handed] = record_events_of_done(relay.db, [("a1", [event])])
        leased = relay.db[OUTBOX].find_one({"_id": handed["outbox_id"]})["lease_until"]
        relay.publish_soon([handed])
        released = eventually(
            lambda: (
                (r := relay.db[OUTBOX].find_one({"_id": handed["outbox_id"]})) and r["lease_until"] < leased
            ),
            timeout=timeout + 2,
            sleep=eventlet.sleep,
        )
        assert released
        copies = published()
        assert copies == ([event.id] if fault == "lose_replies" else [])  # routed, or never arrived
        link.heal()
        eventually(lambda: relay.db[OUTBOX].count_documents({}) == 0, timeout=15, sleep=eventlet.sleep)
        copies += published()
        assert set(copies) == {event.id} and 1 <= len(copies) <= 2
    finally:
        relay.running = False
        for loop in loops:
            loop.kill()
        link.close()


def test_a_record_claimed_by_a_relay_that_died_is_published_by_another_once_the_lease_is_out(
    relay, published
):
    """Two relays of one service: one claims a record in its sweep and dies before publishing.
    The other leaves the record alone while the lease holds, then publishes it."""
    event = act_recorded_event()
    [handed] = record_events_of_done(relay.db, [("a1", [event])])
    now = datetime.now(UTC)
    relay.db[OUTBOX].update_one({"_id": handed["outbox_id"]}, {"$set": {"lease_until": now}})
    dying = OutboxRelay(SERVICE)
    dying.setup()
    dying.settings = dying.settings.model_copy(update={"relay_lease_seconds": 2.0})

    def die(events):
        raise SystemExit("the process died here")

    dying.publishers[0].publish = die
    with pytest.raises(SystemExit):
        dying.sweep()
    claimed = relay.db[OUTBOX].find_one({"_id": handed["outbox_id"]})
    assert claimed["relay"] == dying.instance and claimed["lease_until"] > datetime.now(UTC)

    assert relay.sweep() == 0 and published() == []  # the lease holds
    time.sleep(max(0.0, (claimed["lease_until"] - datetime.now(UTC)).total_seconds()) + 0.1)
    assert relay.sweep() == 1
    assert published() == [event.id]
    assert relay.db[OUTBOX].count_documents({}) == 0
