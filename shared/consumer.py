"""Event consumers: at-least-once delivery in, exactly-once effects out.

`@consumes(Contract)` turns a service method into a nameko SERVICE_POOL event handler that
- takes a message holding one CloudEvent, or a CloudEvents JSON batch (an array of them: the
  relay sends the events it publishes together as one message, see shared/outbox.py); the
  events of a batch are applied concurrently, so the stores' group commits write them together;
- validates each CloudEvent and its data; an invalid event is parked at once (no retry can fix
  it), so it never loops, and the rest of its batch is applied;
- retries a failing handler in place with exponential backoff; if the database, or the broker
  that confirms what the handler publishes (`OutboxRelay.publish_now`), is still down after
  the last attempt the message goes back to the queue (after the backoff, so this is no hot
  loop; events of it already applied are skipped on redelivery), any other persistent failure
  parks the event so the others keep flowing.
The handler itself must be idempotent by event id (the stores guard with unique keys).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import eventlet
from nameko.events import SERVICE_POOL, event_handler
from pymongo.errors import ConnectionFailure, OperationFailure

from shared.events import ContractT, Envelope, InvalidEvent, parse_event
from shared.outbox import PublishFailed
from shared.settings import get_settings

log = logging.getLogger(__name__)

Handler = Callable[[Any, Envelope, Any], Any]


def is_outage(exc: BaseException) -> bool:
    """The database or the broker is unreachable: the event itself is fine and waits."""
    return isinstance(exc, ConnectionFailure | PublishFailed) or (
        isinstance(exc, OperationFailure) and exc.code in (91, 189, 11600, 11602)
    )


def consumes(contract: type[ContractT]) -> Callable[[Handler], Callable[[Any, Any], None]]:
    def decorator(handler: Handler) -> Callable[[Any, Any], None]:
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
                    log.exception(
                        "parking %s %s after %d attempts", contract.event_name, envelope.id, attempt
                    )
                    self.store.park_event(payload, f"{exc.__class__.__name__}: {exc}", handler.__name__)

        @functools.wraps(handler)
        def entrypoint(self: Any, payload: Any) -> None:
            if not isinstance(payload, list):
                apply(self, payload)
                return
            pile = eventlet.GreenPile(len(payload) or 1)
            for item in payload:
                pile.spawn(_outcome, apply, self, item)
            failures = [outcome for outcome in pile if outcome is not None]
            if failures:
                raise failures[0]

        return event_handler(
            contract.source_service,
            contract.event_name,
            handler_type=SERVICE_POOL,
            reliable_delivery=True,
            requeue_on_error=True,
        )(entrypoint)

    return decorator


def _outcome(apply: Callable[[Any, Any], None], self: Any, payload: Any) -> Exception | None:
    """Run `apply`, returning what it raised: one event's failure must not leave the others
    of its batch unfinished."""
    try:
        apply(self, payload)
    except Exception as exc:
        return exc
    return None
