"""Event consumers: at-least-once delivery in, exactly-once effects out.

`@consumes(Contract)` turns a service method into a nameko SERVICE_POOL event handler that
- takes a message holding one CloudEvent, or a CloudEvents JSON batch (an array of them: the
  relay sends the events it publishes together as one message, see shared/outbox.py);
- hands the messages delivered together to one worker (`EventBatchHandler`), which applies
  all their events concurrently, so the stores' group commits write them together;
- validates each CloudEvent and its data; an invalid event is parked at once (no retry can fix
  it), so it never loops, and the rest of its batch is applied;
- retries a failing handler in place with exponential backoff; if the database, or the broker
  that confirms what the handler publishes (`OutboxRelay.publish_now`), is still down after
  the last attempt the message goes back to the queue (after the backoff, so this is no hot
  loop; events of it already applied are skipped on redelivery), and so does an event that
  needs another applied first (`NotYet`) until it is `consumer_wait_seconds` old; any other
  persistent failure parks the event so the others keep flowing. Each message is
  acknowledged, or requeued, on its own.
The handler itself must be idempotent by event id (the stores guard with unique keys).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import eventlet
from kombu.message import Message
from nameko.containers import WorkerContext
from nameko.events import SERVICE_POOL, EventHandler
from nameko.exceptions import ContainerBeingKilled
from pymongo.errors import ConnectionFailure, OperationFailure

from shared.events import ContractT, Envelope, InvalidEvent, parse_event
from shared.outbox import PublishFailed
from shared.settings import get_settings

log = logging.getLogger(__name__)

Handler = Callable[[Any, Envelope, Any], Any]


class NotYet(Exception):
    """The event needs another one applied first, which travels on another queue (a revocation
    that arrives before the credit it takes back): the event waits in its queue for it."""


def is_outage(exc: BaseException) -> bool:
    """The database or the broker is unreachable: the event itself is fine and waits."""
    return isinstance(exc, ConnectionFailure | PublishFailed) or (
        isinstance(exc, OperationFailure) and exc.code in (91, 189, 11600, 11602)
    )


def consumes(contract: type[ContractT]) -> Callable[[Handler], Callable[..., list[Exception | None]]]:
    def decorator(handler: Handler) -> Callable[..., list[Exception | None]]:
        def apply(self: Any, payload: Any) -> None:
            try:
                envelope, data = parse_event(payload, contract)
            except InvalidEvent as exc:
                log.error("parking invalid %s event: %s", contract.event_name, exc)
                self.store.park_event(payload, str(exc), handler.__name__)
                return
            settings = get_settings()
            for attempt in range(1, settings.consumer_attempts + 1):
                try:
                    handler(self, envelope, data)
                    return
                except Exception as exc:
                    if attempt < settings.consumer_attempts:
                        eventlet.sleep(settings.consumer_backoff_seconds * 2 ** (attempt - 1))
                        continue
                    if is_outage(exc):
                        log.warning(
                            "database or broker down; %s %s goes back to the queue",
                            contract.event_name,
                            envelope.id,
                        )
                        raise
                    if isinstance(exc, NotYet) and datetime.now(UTC) - envelope.time < timedelta(
                        seconds=settings.consumer_wait_seconds
                    ):
                        log.info("%s %s goes back to the queue: %s", contract.event_name, envelope.id, exc)
                        raise
                    log.exception(
                        "parking %s %s after %d attempts", contract.event_name, envelope.id, attempt
                    )
                    self.store.park_event(payload, f"{exc.__class__.__name__}: {exc}", handler.__name__)

        @functools.wraps(handler)
        def entrypoint(self: Any, *messages: Any) -> list[Exception | None]:
            """Apply the events of `messages`; return each message's failure (None: all its
            events applied or parked), so that only the failed ones go back to the queue."""
            events = [
                (number, item)
                for number, body in enumerate(messages)
                for item in (body if isinstance(body, list) else [body])
            ]
            if len(events) == 1:
                outcomes = [_outcome(apply, self, events[0][1])]
            else:
                pile = eventlet.GreenPile(len(events) or 1)
                for _, item in events:
                    pile.spawn(_outcome, apply, self, item)
                outcomes = list(pile)
            failures: list[Exception | None] = [None] * len(messages)
            for (number, _), outcome in zip(events, outcomes, strict=True):
                failures[number] = failures[number] or outcome
            return failures

        return EventBatchHandler.decorator(
            contract.source_service,
            contract.event_name,
            handler_type=SERVICE_POOL,
            reliable_delivery=True,
            requeue_on_error=True,
        )(entrypoint)

    return decorator


class EventBatchHandler(EventHandler):
    """nameko's event handler, except that the messages delivered together go to one worker.

    nameko starts a worker per message, and that start (worker context, dependency injection,
    its green threads) cost each consumer 0.6–0.8 ms per message, whatever the message held:
    more than applying its events. Messages queue up whenever the consumer is busy, so under
    load this turns many starts into one. The worker's method gets the messages' bodies as
    positional arguments and returns each one's failure (None for success); each message is
    then acknowledged or requeued on its own (acks on the shared channel cannot be grouped:
    `multiple` would also ack other queues' messages).
    """

    def setup(self) -> None:
        super().setup()
        self._delivered: list[tuple[Any, Message]] = []

    def handle_message(self, body: Any, message: Message) -> None:
        # nameko calls this in a green thread of its own per message, all of those read off the
        # socket together being started before any runs; the first one schedules the worker,
        # which therefore starts once the others have added their message too.
        self._delivered.append((body, message))
        if len(self._delivered) == 1:
            self.container.spawn_managed_thread(self._start_worker)

    def _start_worker(self) -> None:
        delivered, self._delivered = self._delivered, []
        messages = [message for _, message in delivered]
        try:
            self.container.spawn_worker(
                self,
                tuple(body for body, _ in delivered),
                {},
                context_data=self.unpack_message_headers(messages[0]),
                handle_result=partial(self.settle, messages),
            )
        except ContainerBeingKilled:
            for message in messages:
                self.queue_consumer.requeue_message(message)

    def settle(
        self,
        messages: Sequence[Message],
        worker_ctx: WorkerContext,
        result: list[Exception | None] | None = None,
        exc_info: Any = None,
    ) -> tuple[Any, Any]:
        failures = result if exc_info is None and result is not None else [exc_info] * len(messages)
        for message, failure in zip(messages, failures, strict=True):
            # As nameko's handler does: a failed message goes back only with requeue_on_error.
            if failure is not None and self.requeue_on_error:
                self.queue_consumer.requeue_message(message)
            else:
                self.queue_consumer.ack_message(message)
        return result, exc_info


def _outcome(apply: Callable[[Any, Any], None], self: Any, payload: Any) -> Exception | None:
    """Run `apply`, returning what it raised: one event's failure must not leave the others
    of its batch unfinished."""
    try:
        apply(self, payload)
    except Exception as exc:
        return exc
    return None
