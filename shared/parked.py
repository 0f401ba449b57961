"""Parked events: those a consumer could not apply (invalid, or still failing after its
retries), kept in the consuming service's `parked_events` for an operator.

    python -m shared.parked             list them, per service
    python -m shared.parked --replay    send each back to the handler that parked it

A replayed event goes to the queue of that handler alone (through the default exchange),
persistent and confirmed by the broker; its record is taken out as it goes (and put back if
the broker refuses it). One that fails again is parked again; one applied meanwhile is skipped
by the handler's guard. So replay after fixing what made them fail: a bug, a missing read
model, or, during an upgrade, a consumer older than its producer.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kombu import Connection, Producer
from pymongo.database import Database

from shared.audit import failure_recorded, record_command
from shared.events import CADRE_EVALUATION, ISSUE_INTAKE, POINTS_BANK, REGISTRY, SUBSCRIPTIONS
from shared.mongo import PARKED_EVENTS, connect
from shared.settings import get_settings

SERVICES = (REGISTRY, ISSUE_INTAKE, POINTS_BANK, CADRE_EVALUATION)


def queue_of(service: str, handler: str) -> str | None:
    """The queue a service's handler consumes, or None if it consumes none (any more)."""
    return next((s.queue for s in SUBSCRIPTIONS if (s.service, s.handler) == (service, handler)), None)


def parked_in(db: Database) -> list[dict[str, Any]]:
    return list(db[PARKED_EVENTS].find({}).sort("parked_at", 1))


def describe(record: dict[str, Any]) -> str:
    payload = record.get("payload")
    event = payload if isinstance(payload, dict) else {}
    return (
        f"{record.get('parked_at')} {record['handler']} {event.get('type', '?')} {event.get('id', '?')} "
        f"({record.get('deliveries', 1)} deliveries): {record.get('reason', '')[:200]}"
    )


def replay(db: Database, service: str, amqp_uri: str) -> tuple[int, list[str]]:
    """Send the service's parked events back to their handlers' queues. Returns how many went
    and the handlers whose events stayed parked because they consume no queue now."""
    sent, unknown = 0, []
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        producer = Producer(channel)  # the default exchange: to a queue by its name
        for record in parked_in(db):
            queue = queue_of(service, record["handler"])
            if queue is None:
                unknown.append(record["handler"])
                continue
            channel.queue_declare(queue=queue, passive=True)  # raises if nobody declared it
            # Out first, so that the handler finds no record to update if it parks it again.
            db[PARKED_EVENTS].delete_one({"_id": record["_id"]})
            try:
                producer.publish(record["payload"], routing_key=queue, delivery_mode=2, serializer="json")
            except Exception:
                db[PARKED_EVENTS].insert_one(record)
                raise
            sent += 1
    return sent, sorted(set(unknown))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replay", action="store_true", help="send the parked events back to their handlers")
    args = parser.parse_args(argv)
    left = 0
    for service in SERVICES:
        db = connect(service)
        if args.replay:
            with failure_recorded("shared.parked", "replay", {"service": service}):  # some may have gone
                sent, unknown = replay(db, service, get_settings().amqp_uri)
            print(
                f"{service}: {sent} replayed"
                + (f"; kept, no queue for {', '.join(unknown)}" if unknown else "")
            )
            target = {"service": service, "replayed": sent, "kept_for": unknown}
            record_command("shared.parked", "replay", target, 0)
        records = parked_in(db)
        left += len(records)
        print(f"{service}: {len(records)} parked")
        for record in records:
            print(f"  {describe(record)}")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
