"""A throwaway service for test_consumer.py, run in a process of its own: nameko's consumer
needs eventlet's monkey patching, which the test process does not have.

    python -m tests.integration.batch_probe EVENTS FAILING_EVENT_INDEX

It declares its queue, publishes EVENTS events straight to it while nothing consumes (single
messages, the last three as one relay batch), then consumes them with `@consumes`; the event at
FAILING_EVENT_INDEX meets a database outage on every attempt of its first delivery. It prints,
as JSON, the events published, the messages each worker got and the events applied.
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from kombu import Connection  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from pymongo.errors import AutoReconnect  # noqa: E402

from shared.consumer import consumes  # noqa: E402
from shared.events import Envelope, VolunteerActRecorded  # noqa: E402
from shared.settings import get_settings  # noqa: E402
from tests.support import act_recorded_event  # noqa: E402

QUEUE = "evt-issue_intake-volunteer_act.recorded--batch_probe.note_act"


class Probe:
    """What the service saw: the messages of each worker, and the events it applied."""

    def __init__(self) -> None:
        self.workers: list[int] = []
        self.applied: list[str] = []
        self.failures_left: dict[str, int] = {}
        self.parked: list[Any] = []

    def park_event(self, payload: Any, reason: str, handler: str) -> None:
        self.parked.append(payload)


probe = Probe()


class BatchProbe:
    name = "batch_probe"
    store = probe

    @consumes(VolunteerActRecorded)
    def note_act(self, envelope: Envelope, data: VolunteerActRecorded) -> None:
        if probe.failures_left.get(envelope.id):
            probe.failures_left[envelope.id] -= 1
            raise AutoReconnect("the database went away")  # an outage: the message waits
        probe.applied.append(envelope.id)


def container(amqp_uri: str) -> ServiceContainer:
    service = ServiceContainer(BatchProbe, config={"AMQP_URI": amqp_uri, "max_workers": 8})
    spawn_worker = service.spawn_worker

    def counting_spawn_worker(entrypoint: Any, args: tuple, kwargs: dict, **options: Any) -> Any:
        probe.workers.append(len(args))
        return spawn_worker(entrypoint, args, kwargs, **options)

    service.spawn_worker = counting_spawn_worker  # type: ignore[method-assign]
    return service


def queued(connection: Connection) -> int:
    return connection.channel().queue_declare(queue=QUEUE, passive=True).message_count


def main(count: int, failing: int) -> dict[str, Any]:
    amqp_uri = get_settings().amqp_uri
    first = container(amqp_uri)
    first.start()  # declares the queue
    first.stop()
    events = [act_recorded_event() for _ in range(count)]
    probe.failures_left = {events[failing].id: get_settings().consumer_attempts}
    bodies: list[Any] = [event.model_dump(mode="json") for event in events[:-3]]
    bodies.append([event.model_dump(mode="json") for event in events[-3:]])
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        for body in bodies:  # to the queue alone: no service of the stack sees these events
            producer.publish(body, routing_key=QUEUE, delivery_mode=2, serializer="json")
        service = container(amqp_uri)
        service.start()
        deadline = time.monotonic() + 30
        while (len(probe.applied) < count or queued(connection)) and time.monotonic() < deadline:
            eventlet.sleep(0.05)
        service.stop()
        connection.channel().queue_delete(QUEUE)
    return {
        "events": [event.id for event in events],
        "messages": len(bodies),
        "workers": probe.workers,
        "applied": probe.applied,
        "parked": len(probe.parked),
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
