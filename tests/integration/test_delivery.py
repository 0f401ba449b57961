"""Delivery guarantees of the volunteer-act flow, on the real broker and database.

Each test breaks something real (the broker, the link to it, a consumer process, the
database, the message itself) and checks that every act is applied exactly once when it heals.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlparse

import eventlet
import pytest
from amqp import Message
from kombu import Connection

from services.intake import domain
from services.intake.store import IntakeStore
from services.points.domain import act_transfer_id
from shared.events import CADRE_EVALUATION, POINTS_BANK, Envelope, VolunteerActRevoked, new_event
from shared.outbox import EventPublisher, PublishFailed, publishable, records_with_ids
from shared.parked import queue_of
from shared.partitions import Partitioned
from shared.schemas import VolunteerActInput
from tests.conftest import COMMUNITY, TEST_ENV, TEST_VHOST, new_id
from tests.support import FaultyLink, act_recorded_event, eventually, publish_as_intake

pytestmark = pytest.mark.integration


def account(databases, person_id):
    return Partitioned(databases["points_bank"], "accounts").find_one(person_id) or {"balance": 0, "seq": 0}


def dossier_acts(databases, person_id) -> int:
    return databases["cadre_evaluation"].dossier_acts.count_documents({"key": person_id})


def dossier_points(databases, person_id) -> tuple[int, int]:
    """(credits, points) the dossier learnt of from the points bank's `points.transferred`."""
    moves = list(databases["cadre_evaluation"].points_entries.find({"key": person_id}))
    return len(moves), sum(move["points"] for move in moves)


def applied_exactly(databases, person_id: str, acts: int, balance: int, timeout: float = 15) -> None:
    """Wait until the person's account and dossier hold `acts` acts and `balance` points, and
    the dossier has heard of each credit, then check that no straggling copy adds to them."""
    eventually(
        lambda: (
            account(databases, person_id)["balance"] == balance
            and dossier_acts(databases, person_id) == acts
            and dossier_points(databases, person_id) == (acts, balance)
        ),
        timeout=timeout,
    )
    time.sleep(1.0)  # let any redelivered or republished copy land before counting
    assert account(databases, person_id)["balance"] == balance
    assert databases["points_bank"].ledger_entries.count_documents({"key": person_id}) == acts
    assert dossier_acts(databases, person_id) == acts
    assert dossier_points(databases, person_id) == (acts, balance)


def an_act(person_id: str, hours: str = "1") -> dict:
    return {
        "person_id": person_id,
        "act_type": "patrol_duty",
        "hours": hours,
        "occurred_on": "2026-11-20",
        "community_id": COMMUNITY,
    }


def recorded_event(person_id: str, hours: str = "1"):
    return act_recorded_event(person_id=person_id, hours=Decimal(hours), community_id=COMMUNITY)


def test_the_same_event_delivered_many_times_credits_once(cadre, databases):
    event = recorded_event(cadre, hours="2")
    [record] = publishable([event], event.subject)
    publisher = EventPublisher(TEST_ENV["AMQP_URI"], "issue_intake", timeout=5)
    try:
        assert publisher.publish([record] * 8) == [event.id] * 8
        assert publisher.publish([record] * 4) == [event.id] * 4
    finally:
        publisher.close()
    applied_exactly(databases, cadre, acts=1, balance=20)


def books_of(databases, person_id: str) -> dict:
    """Everything the person's events made, in the points bank and the dossier."""
    return {
        "account": account(databases, person_id),
        "ledger": sorted(e["_id"] for e in databases["points_bank"].ledger_entries.find({"key": person_id})),
        "dossier": sorted(
            e["_id"] for e in databases["cadre_evaluation"].dossier_acts.find({"key": person_id})
        ),
        "points_moves": dossier_points(databases, person_id),
    }


def test_replaying_a_window_of_events_changes_nothing(cadre, databases):
    """An operator replays a window of issue intake's events (acts and a revocation) after
    they were all applied: the points bank finds each credit and reversal made, and publishes
    its `points.transferred` again, which the dossier finds made too. Nothing moves."""
    acts = [recorded_event(cadre, hours=hours) for hours in ("1", "2", "3")]
    revoked = revoked_event(acts[1])
    publish_as_intake(*acts)
    applied_exactly(databases, cadre, acts=3, balance=60)
    publish_as_intake(revoked)
    eventually(
        lambda: account(databases, cadre)["balance"] == 40 and dossier_points(databases, cadre) == (4, 40)
    )
    before = books_of(databases, cadre)

    publish_as_intake(*acts, revoked, *acts, revoked)  # the window, twice over
    # An act sent after it, on the same queues: once it is in, so is the window's every copy.
    marker = recorded_event(cadre, hours="1")
    publish_as_intake(marker)
    eventually(
        lambda: account(databases, cadre)["balance"] == 50 and dossier_points(databases, cadre) == (5, 50)
    )
    time.sleep(1.0)  # the points events the copies published again, a hop behind
    after = books_of(databases, cadre)
    marked = {
        e["_id"] for e in databases["points_bank"].ledger_entries.find({"act_id": marker.data["act_id"]})
    }
    assert sorted(set(after["ledger"]) - marked) == before["ledger"]
    assert len(before["ledger"]) == 4 and len(before["dossier"]) == 4  # three acts and a revocation
    assert len(after["dossier"]) == 5 and after["points_moves"] == (5, 50)


def queued(queues: list[str]) -> list[int]:
    """Messages in each queue, ready or delivered and not yet acknowledged."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", TEST_VHOST, "name", "messages"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    counts = dict(line.split("\t") for line in listed if "\t" in line)
    return [int(counts.get(queue, -1)) for queue in queues]


def test_copies_of_an_event_spread_over_two_instances_of_each_consumer_apply_once(cadre, databases, stack):
    """Scaled out: two processes of the points bank and two of cadre evaluation share each
    queue, and copies of one event sent at once from two publishers reach both: applied once."""
    queues = [queue_of(POINTS_BANK, "credit_volunteer_act"), queue_of(CADRE_EVALUATION, "add_act_to_dossier")]
    for service in (POINTS_BANK, CADRE_EVALUATION):
        stack.start_service(service, name=f"{service}-2")
    try:
        with Connection(TEST_ENV["AMQP_URI"]) as connection:
            channel = connection.channel()

            def consumers() -> list[int]:
                return [channel.queue_declare(queue, passive=True).consumer_count for queue in queues]

            eventually(lambda: consumers() == [2, 2], timeout=30)
        event = recorded_event(cadre, hours="2")
        [record] = publishable([event], event.subject)

        confirmed: list[str] = []

        def send_copies(_: int) -> None:
            publisher = EventPublisher(TEST_ENV["AMQP_URI"], "issue_intake", timeout=5)
            try:
                for _ in range(10):  # each copy its own message, so that both instances get some
                    confirmed.extend(publisher.publish([record]))
            finally:
                publisher.close()

        senders = [threading.Thread(target=send_copies, args=(n,)) for n in range(2)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(30)
        assert confirmed == [event.id] * 20
        eventually(lambda: queued(queues) == [0, 0], timeout=30)  # every copy taken and acknowledged
        applied_exactly(databases, cadre, acts=1, balance=20)
    finally:
        for service in (POINTS_BANK, CADRE_EVALUATION):
            stack.stop_process(f"{service}-2")


def test_an_event_whose_handling_keeps_failing_is_parked_after_its_attempts(cadre, databases):
    """A well-formed event that fails each time it is handled (here: a damaged read model, a
    person the dossier service holds without `is_cadre`) is tried a few times in place, then
    parked with its reason, not requeued for ever; the events after it keep flowing."""
    damaged = new_id("damaged")
    databases["cadre_evaluation"].people.insert_one({"_id": damaged, "version": 1, "name": "读模型损坏"})
    stuck = recorded_event(damaged)
    publish_as_intake(stuck)
    parked = eventually(
        lambda: databases["cadre_evaluation"].parked_events.find_one({"payload.id": stuck.id})
    )
    assert parked["handler"] == "add_act_to_dossier" and parked["reason"].startswith("KeyError")
    flowing = recorded_event(cadre, hours="2")
    publish_as_intake(flowing)
    eventually(lambda: dossier_acts(databases, cadre) == 1 and account(databases, cadre)["balance"] == 20)
    assert dossier_acts(databases, damaged) == 0
    assert databases["cadre_evaluation"].parked_events.count_documents({"payload.id": stuck.id}) == 1


def test_a_malformed_event_is_parked_and_the_rest_keep_flowing(cadre, databases):
    poison = {
        "id": new_id("poison"),
        "specversion": "1.0",
        "type": "cn.gridlink.volunteer_act.recorded.v1",
        "data": {"person_id": cadre, "hours": "a lot"},
    }
    with Connection(TEST_ENV["AMQP_URI"]) as connection:
        channel = connection.channel()
        channel.basic_publish(
            Message(json.dumps(poison), content_type="application/json"),
            exchange="issue_intake.events",
            routing_key="volunteer_act.recorded",
        )
    event = recorded_event(cadre, hours="3")
    publisher = EventPublisher(TEST_ENV["AMQP_URI"], "issue_intake", timeout=5)
    try:
        publisher.publish(publishable([event], event.subject))
    finally:
        publisher.close()
    eventually(lambda: account(databases, cadre)["balance"] == 30)
    parked = eventually(lambda: databases["points_bank"].parked_events.find_one({"payload.id": poison["id"]}))
    assert parked["handler"] == "credit_volunteer_act"
    assert "hours" in parked["reason"]
    assert eventually(
        lambda: databases["cadre_evaluation"].parked_events.find_one({"payload.id": poison["id"]})
    )


def test_a_batch_message_applies_its_valid_events_and_parks_the_invalid_one(cadre, databases):
    good = [recorded_event(cadre, hours="1"), recorded_event(cadre, hours="2")]
    poison = {"id": new_id("poison"), "specversion": "1.0", "type": "cn.gridlink.volunteer_act.recorded.v1"}
    [first, second] = publishable(good, cadre)
    batch = [first, {**first, "id": poison["id"], "envelope": poison}, second]
    publisher = EventPublisher(TEST_ENV["AMQP_URI"], "issue_intake", timeout=5)
    try:
        assert publisher.publish(batch) == [first["id"], poison["id"], second["id"]]
    finally:
        publisher.close()
    eventually(lambda: account(databases, cadre)["balance"] == 30 and dossier_acts(databases, cadre) == 2)
    parked = eventually(lambda: databases["points_bank"].parked_events.find_one({"payload.id": poison["id"]}))
    assert parked["handler"] == "credit_volunteer_act"
    assert databases["points_bank"].ledger_entries.count_documents({"key": cadre}) == 2


def test_the_same_act_from_two_callers_in_one_write_is_handed_to_the_relay_once(cadre, databases):
    """A client's retry that lands in the same group commit as its first try: one act, one
    event to publish (handed over twice, it would count twice towards its outbox record)."""
    store = IntakeStore(databases["issue_intake"])
    act = VolunteerActInput.model_validate(an_act(cadre))
    act_id = domain.act_id_for("retry-test", new_id("k"))
    other_id = domain.act_id_for("retry-test", new_id("k"))

    def insert(act_ids):
        changes = [
            domain.new_act(i, act, client_id="retry-test", recorded_at=datetime.now(UTC)) for i in act_ids
        ]
        return store.insert_acts(changes)

    # Spawned together, both callers hand their acts over before the flusher runs: one write.
    first, retry = eventlet.spawn(insert, [act_id, other_id]), eventlet.spawn(insert, [act_id])
    (first_events, first_existing), (retry_events, retry_existing) = first.wait(), retry.wait()
    assert (first_existing, retry_existing) == (set(), {0})
    assert sorted(e["aggregate_id"] for e in first_events) == sorted([act_id, other_id])
    assert retry_events == []
    assert {e["record_events"] for e in first_events} == {2}
    # This store has no relay. Its record also names the retry's event, which is in no act: the
    # running intake's sweep would keep the record for the orphan grace (a minute) before
    # dropping that event, while later tests expect an empty outbox.
    databases["issue_intake"].outbox.delete_many(records_with_ids({e["outbox_id"] for e in first_events}))


def revoked_event(recorded: Envelope) -> Envelope:
    act = recorded.data
    revoked = VolunteerActRevoked(
        act_id=act["act_id"],
        person_id=act["person_id"],
        community_id=act["community_id"],
        recorded_event_id=recorded.id,
        reason="重复登记",
        revoked_by="tests",
    )
    return new_event(revoked, subject=act["act_id"])


def test_a_revocation_that_arrives_before_its_credit_waits_for_it_and_the_end_is_net_zero(
    cadre, databases, rpc
):
    """In the ledger and in the cadre's dossier, each waiting for the act on its own queue."""
    recorded = recorded_event(cadre, hours="2")
    revoked = revoked_event(recorded)
    publish_as_intake(revoked)
    time.sleep(2)  # the consumer's retries in place (3 attempts, 0.05 s apart) ran out many times
    assert databases["points_bank"].parked_events.find_one({"payload.id": revoked.id}) is None
    assert account(databases, cadre)["balance"] == 0

    publish_as_intake(recorded)
    eventually(lambda: databases["points_bank"].ledger_entries.count_documents({"key": cadre}) == 2)
    ledger = databases["points_bank"].ledger_entries
    legs = {leg["kind"]: leg["points"] for leg in ledger.find({"key": cadre})}
    assert legs == {"volunteer_act": 20, "reversal": -20}
    assert account(databases, cadre)["balance"] == 0
    assert databases["points_bank"].parked_events.find_one({"payload.id": revoked.id}) is None
    act_id = recorded.data["act_id"]

    def dossier_revoked() -> dict | None:
        dossier = rpc.cadre_evaluation.get_dossier(cadre)
        [act] = [a for a in dossier["volunteer_acts"] if a["act_id"] == act_id] or [None]
        return dossier if act and act["revoked"] else None

    dossier = eventually(dossier_revoked)
    assert (dossier["acts_total"], dossier["hours_total"]) == (0, "0")
    assert databases["cadre_evaluation"].parked_events.find_one({"payload.id": revoked.id}) is None


def test_a_revocation_whose_credit_never_comes_is_parked_once_it_has_waited_long_enough(cadre, databases):
    revoked = revoked_event(recorded_event(cadre))
    late = revoked.model_copy(update={"time": datetime.now(UTC) - timedelta(hours=2)})
    publish_as_intake(late)
    parked = eventually(lambda: databases["points_bank"].parked_events.find_one({"payload.id": late.id}))
    assert parked["handler"] == "reverse_volunteer_act"
    assert "not there yet" in parked["reason"]


def test_acts_recorded_while_the_broker_is_down_are_credited_once_it_is_back(cadre, databases, api, settings):
    store = IntakeStore(databases["issue_intake"])
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True)
    try:
        # The gateway cannot reach any service now: a quick 503, never a hung request.
        started = time.monotonic()
        response = api.record_act(an_act(cadre))
        assert response.status_code == 503
        assert time.monotonic() - started < settings.rpc_timeout_seconds + 2

        # Acts stored by issue intake whose events could not be published (the broker went
        # away between the write and the publish): written with their outbox records only.
        changes = [
            domain.new_act(
                domain.act_id_for("outage-test", new_id("k")),
                VolunteerActInput.model_validate(an_act(cadre, hours="1.5")),
                client_id="outage-test",
                recorded_at=datetime.now(UTC),
            )
            for _ in range(20)
        ]
        records, existing = store.insert_acts(changes)
        assert len(records) == 20 and not existing
    finally:
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True)

    eventually(lambda: account(databases, cadre)["seq"] == 20, timeout=60)
    eventually(lambda: dossier_acts(databases, cadre) == 20, timeout=30)
    eventually(lambda: databases["issue_intake"].outbox.count_documents({}) == 0, timeout=30)
    assert account(databases, cadre)["balance"] == 20 * 15
    # Gateway and services reconnected by themselves.
    assert eventually(lambda: api.record_act(an_act(cadre)).status_code == 202, timeout=30)


def test_events_wait_for_an_absent_consumer(cadre, databases, api, stack):
    stack.stop_process("points_bank")
    try:
        for _ in range(10):
            assert api.record_act(an_act(cadre, hours="2")).status_code == 202
        eventually(lambda: dossier_acts(databases, cadre) == 10)
        assert account(databases, cadre)["balance"] == 0
    finally:
        stack.start_service("points_bank")
        stack.wait_until_healthy(["points_bank"])
    eventually(lambda: account(databases, cadre)["balance"] == 200)
    assert databases["points_bank"].ledger_entries.count_documents({"key": cadre}) == 10


def test_a_stuck_service_gives_504_within_the_timeout(api, stack, settings):
    process = stack.processes["cadre_evaluation"]
    process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = api.get("/api/v1/cadres/p-zg-001/dossier")
        elapsed = time.monotonic() - started
    finally:
        process.send_signal(signal.SIGCONT)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "service_timeout"
    assert elapsed < settings.rpc_timeout_seconds + 2
    assert eventually(lambda: api.get("/api/v1/cadres/p-zg-001/dossier").status_code == 200, timeout=30)


def test_database_down_gives_503_and_emits_nothing(cadre, databases, api, stack):
    key = new_id("idem")
    stack.stop_process("ferretdb")
    try:
        response = api.record_act(an_act(cadre), key=key)
    finally:
        stack.start_database()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    eventually(lambda: api.get("/api/v1/volunteer-act-types").status_code == 200, timeout=30)
    assert databases["issue_intake"].outbox.count_documents({}) == 0
    assert databases["issue_intake"].volunteer_acts.count_documents({"person_id": cadre}) == 0
    # The client retries with the same key once the database is back: recorded once.
    assert eventually(lambda: api.record_act(an_act(cadre), key=key).status_code == 202, timeout=30)
    eventually(lambda: account(databases, cadre)["balance"] == 10)


def test_an_event_published_while_the_consumers_database_is_down_is_applied_once_it_is_back(
    cadre, databases, stack
):
    event = recorded_event(cadre, hours="4")
    publisher = EventPublisher(TEST_ENV["AMQP_URI"], "issue_intake", timeout=5)
    stack.stop_process("ferretdb")
    try:
        publisher.publish(publishable([event], event.subject))
        time.sleep(3)  # consumers fail, back off and requeue meanwhile
    finally:
        publisher.close()
        stack.start_database()
    eventually(lambda: account(databases, cadre)["balance"] == 40, timeout=60)
    eventually(lambda: dossier_acts(databases, cadre) == 1, timeout=30)
    assert databases["points_bank"].parked_events.count_documents({"payload.id": event.id}) == 0


def test_a_credit_whose_event_the_broker_refuses_is_told_to_the_dossier_once_it_accepts(cadre, databases):
    """The points bank publishes a credit's `points.transferred` before it acknowledges the
    act: while the broker refuses that event (nacks it: the dossier's queue is full), the act
    stays unacknowledged and comes back, neither lost nor parked, and the credit is not made
    twice; once the broker takes the event the dossier hears of the credit exactly once."""
    full = ["rabbitmqctl", "-q", "-p", TEST_VHOST]
    refuse = '{"max-length": 0, "overflow": "reject-publish"}'
    dossier_queue = "evt-points_bank-points.transferred--cadre_evaluation.note_points"
    subprocess.run(
        [*full, "set_policy", "--apply-to", "queues", "refuse", f"^{dossier_queue}$", refuse], check=True
    )
    event = recorded_event(cadre, hours="2")
    try:
        publisher = EventPublisher(TEST_ENV["AMQP_URI"], "issue_intake", timeout=5)
        try:
            assert publisher.publish(publishable([event], event.subject)) == [event.id]
        finally:
            publisher.close()
        eventually(lambda: account(databases, cadre)["balance"] == 20)
        time.sleep(2.0)  # the act is retried and requeued meanwhile
        assert dossier_points(databases, cadre) == (0, 0)
        assert databases["points_bank"].parked_events.count_documents({"payload.id": event.id}) == 0
    finally:
        subprocess.run([*full, "clear_policy", "refuse"], check=True)
    applied_exactly(databases, cadre, acts=1, balance=20, timeout=30)
    assert databases["points_bank"].parked_events.count_documents({"payload.id": event.id}) == 0


CONSUMERS = ("points_bank", "cadre_evaluation")


def queued_event_ids(queue: str) -> list[str]:
    """The ids of the events waiting in a queue, read without taking them (closing the
    channel with them unacknowledged puts them back)."""
    ids = []
    with Connection(TEST_ENV["AMQP_URI"]) as connection:
        channel = connection.channel()
        while (message := channel.basic_get(queue, no_ack=False)) is not None:
            body = json.loads(message.body)  # one CloudEvent, or a batch of them
            ids += [event["id"] for event in (body if isinstance(body, list) else [body])]
    return ids


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_consumers_killed_or_stopped_mid_stream_apply_every_act_once(cadre, databases, api, stack, how):
    """Both consumers go down while a stream of acts is being applied: killed outright (some
    events written but not acknowledged, some received but not written), or stopped, when they
    finish what they hold and exit cleanly. Started again, each act counts exactly once."""
    acts = 1000
    for batch in range(2):
        items = [{**an_act(cadre), "idempotency_key": new_id(f"stream-{batch}")} for _ in range(acts // 2)]
        assert api.post("/api/v1/volunteer-acts:batch", json={"items": items}).status_code == 202
    eventually(lambda: account(databases, cadre)["seq"] >= 20, timeout=30, interval=0.01)
    processes = {name: stack.processes[name] for name in CONSUMERS}
    assert account(databases, cadre)["seq"] < acts  # they go down mid-stream
    for name in CONSUMERS:
        stack.stop_process(name, how)
    if how == signal.SIGTERM:  # a clean exit, having finished and acknowledged what it held
        assert {name: p.returncode for name, p in processes.items()} == dict.fromkeys(CONSUMERS, 0)
        credited = {e["transfer_id"] for e in databases["points_bank"].ledger_entries.find({"key": cadre})}
        waiting = queued_event_ids(queue_of(POINTS_BANK, "credit_volunteer_act"))
        # Each act is either credited or still queued, never both (applied, unacknowledged).
        waiting_credits = {act_transfer_id(event_id) for event_id in waiting}
        assert not waiting_credits & credited and len(credited) + len(waiting_credits) == acts
    for name in CONSUMERS:
        stack.start_service(name)
    stack.wait_until_healthy(list(CONSUMERS))

    applied_exactly(databases, cadre, acts=acts, balance=acts * 10, timeout=90)


@pytest.mark.parametrize("fault", ["lose_replies", "black_hole"], ids=["confirm-lost", "black-holed"])
def test_a_publish_left_unconfirmed_fails_in_time_and_its_republish_applies_once(cadre, databases, fault):
    """The link to the broker loses the confirm of a publish that went through, or swallows
    everything without an error. Either way the publish fails within its timeout (it never
    hangs), so the relay keeps the event pending and publishes it again once the link is back:
    the event counts once."""
    first, event = recorded_event(cadre, hours="1"), recorded_event(cadre, hours="3")
    broker = urlparse(TEST_ENV["AMQP_URI"])
    link = FaultyLink((broker.hostname, broker.port or 5672))
    through_link = broker._replace(netloc=f"{broker.username}:{broker.password}@127.0.0.1:{link.port}")
    timeout = 2.0
    publisher = EventPublisher(through_link.geturl(), "issue_intake", timeout=timeout)
    try:
        assert publisher.publish(publishable([first], first.subject)) == [first.id]
        getattr(link, fault)()
        started = time.monotonic()
        with pytest.raises(PublishFailed):
            publisher.publish(publishable([event], event.subject))
        assert time.monotonic() - started < timeout + 1
        if fault == "lose_replies":  # the broker routed it: it is applied already
            eventually(lambda: account(databases, cadre)["seq"] == 2)
        else:
            time.sleep(1.0)
            assert account(databases, cadre)["seq"] == 1
        link.heal()
        assert publisher.publish(publishable([event], event.subject)) == [event.id]
    finally:
        publisher.close()
        link.close()
    applied_exactly(databases, cadre, acts=2, balance=40)
