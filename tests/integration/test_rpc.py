"""RPC messages on the real broker: requests and replies are transient (never written to
disk), since nobody waits for them after a broker restart."""

from __future__ import annotations

import time

import pytest
from kombu import Connection, Exchange, Queue
from nameko.exceptions import RpcTimeout, UnknownService

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
            assert request.properties["expiration"] == "10000"  # the caller's timeout, in ms
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


def test_a_request_nobody_waits_for_any_more_is_never_carried_out(stack):
    """A service that is stopped keeps its queue: a call to it times out (504), and its request
    expires there instead of being carried out when the service is back."""
    with Connection(TEST_ENV["AMQP_URI"]) as connection:
        channel = connection.channel()
        exchange = Exchange("nameko-rpc", type="topic", durable=True)
        stopped = Queue(
            "rpc-stopped_service", exchange=exchange, routing_key="stopped_service.*", channel=channel
        )
        stopped.declare()  # as the service declared it before it stopped
        runner = standalone_proxy(TEST_ENV["AMQP_URI"], timeout=0.5)
        proxy = runner.start()
        try:
            with pytest.raises(RpcTimeout):
                proxy.stopped_service.record_volunteer_act()
            time.sleep(0.2)
            assert stopped.get(no_ack=True) is None  # expired: the service will never see it
        finally:
            runner.stop()
            stopped.delete()
