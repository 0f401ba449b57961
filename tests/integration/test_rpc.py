"""RPC messages on the real broker: requests and replies are transient (never written to
disk), since nobody waits for them after a broker restart."""

from __future__ import annotations

import time

import pytest
from kombu import Connection, Exchange, Queue
from nameko.exceptions import UnknownService

from shared.rpc import standalone_proxy
from tests.conftest import TEST_ENV

pytestmark = pytest.mark.integration


def test_a_call_and_its_reply_travel_as_transient_messages(stack):
    runner = standalone_proxy(TEST_ENV["AMQP_URI"], timeout=10)
    proxy = runner.start()
    try:
        with Connection(TEST_ENV["AMQP_URI"]) as connection:
            channel = connection.channel()
            exchange = Exchange("nameko-rpc", type="topic", durable=True)
            # A copy of the request and of its reply, by binding to their routing keys.
            copies = Queue(
                exclusive=True, exchange=exchange, routing_key="issue_intake.ping", channel=channel
            )
            copies.declare()
            copies.bind_to(exchange, routing_key=runner._reply_listener.routing_key)

            assert proxy.issue_intake.ping() == "pong"

            request, reply = copies.get(no_ack=True), copies.get(no_ack=True)
            assert request.payload == {"args": [], "kwargs": {}}
            assert reply.payload == {"result": "pong", "error": None}
            assert [m.properties["delivery_mode"] for m in (request, reply)] == [1, 1]
    finally:
        runner.stop()


def test_a_call_to_a_service_that_is_not_running_fails_at_once_and_the_next_call_works(stack):
    runner = standalone_proxy(TEST_ENV["AMQP_URI"], timeout=10)
    proxy = runner.start()
    try:
        started = time.monotonic()
        with pytest.raises(UnknownService):
            proxy.no_such_service.ping()
        assert time.monotonic() - started < 2  # the broker's return, not the RPC timeout
        assert proxy.issue_intake.ping() == "pong"
    finally:
        runner.stop()
