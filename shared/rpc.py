"""RPC over RabbitMQ, both ends, with transient messages.

A request and its reply matter only while the caller waits for them (the gateway's RPC
timeout); after a broker restart nobody waits any more. So neither is written to disk, as
nameko would by default, and replies go without publisher confirms: a lost reply is a timeout
(504) either way, and the caller retries with its idempotency key. Requests keep confirms:
with `mandatory` they are how a call to a service that is not running fails at once (503).
A request expires when its caller stops waiting: one left in the queue of a stopped or swamped
service is dropped, not carried out minutes after its caller was told 504. (One a service has
taken already, among the few each process takes ahead, still runs.)
Events are another matter: the outbox relay publishes them persistent and confirmed.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, ClassVar

import amqp
import amqp.exceptions
import kombu
import kombu.serialization
import nameko.rpc
from nameko.amqp.publish import Publisher, UndeliverableMessage
from nameko.constants import NON_PERSISTENT
from nameko.standalone.rpc import ClusterProxy, ClusterRpcProxy

log = logging.getLogger(__name__)
NO_ROUTE = 312  # the broker's return of a `mandatory` message no queue takes
CONNECTION_LOST = (ConnectionError, amqp.exceptions.RecoverableConnectionError)


class TransientReplies(Publisher):
    """Sends a service's RPC replies: transient, unconfirmed, and on one connection per process
    kept open. nameko's own publisher builds a kombu connection and producer for every reply:
    measured under load, a fifth of issue intake's busy time went to sending replies, and half
    that with this one."""

    _channels: ClassVar[dict[str, Any]] = {}
    _turn = threading.Lock()  # green threads take turns: a message is several frames

    def publish(self, payload: Any, **options: Any) -> None:
        message = _message(payload, options["serializer"], correlation_id=options.get("correlation_id"))
        with self._turn:
            for attempt in (1, 2):  # a connection closed while idle is opened again, once
                channel = self._channels.get(self.amqp_uri) or _open_channel(self.amqp_uri, self.ssl)
                self._channels[self.amqp_uri] = channel
                try:
                    channel.basic_publish(
                        message, exchange=options["exchange"].name, routing_key=options["routing_key"]
                    )
                    return
                except (OSError, amqp.exceptions.AMQPError):
                    _close(self._channels.pop(self.amqp_uri))
                    if attempt == 2:
                        raise


class ConfirmedRequests(Publisher):
    """Sends the gateway's RPC requests: transient, `mandatory` and confirmed, on a channel of
    the calling thread kept open, instead of on a kombu producer built per call (a third of the
    gateway's busy time, measured)."""

    _local = threading.local()

    def publish(self, payload: Any, **options: Any) -> None:
        timeout = self.publish_kwargs["confirm_timeout"]  # the RPC timeout
        message = _message(
            payload,
            self.serializer,
            correlation_id=options["correlation_id"],
            reply_to=options["reply_to"],
            application_headers=options.get("extra_headers") or None,
            expiration=str(max(1, round(timeout * 1000))),
        )
        channels = self._local.__dict__.setdefault("channels", {})
        for attempt in (1, 2):
            kept = self.amqp_uri in channels
            channel = channels.get(self.amqp_uri) or _open_channel(self.amqp_uri, self.ssl)
            channels[self.amqp_uri] = channel
            try:
                channel.basic_publish_confirm(
                    message,
                    exchange=options["exchange"].name,
                    routing_key=options["routing_key"],
                    mandatory=True,
                    confirm_timeout=timeout,
                )
                return
            except Exception as exc:
                # The channel may still owe an ack for this message: start afresh next time.
                _close(channels.pop(self.amqp_uri))
                if isinstance(exc, amqp.exceptions.ChannelError) and exc.reply_code == NO_ROUTE:
                    raise UndeliverableMessage() from exc  # no such service: nameko's UnknownService
                # A connection kept from before a broker restart fails at once: once more on a
                # new one. (Not after a timeout: the broker may have the request.)
                if attempt == 2 or not kept or not isinstance(exc, CONNECTION_LOST):
                    raise


def _message(payload: Any, serializer: str, **properties: Any) -> amqp.Message:
    content_type, encoding, body = kombu.serialization.dumps(payload, serializer)
    return amqp.Message(
        body, content_type=content_type, content_encoding=encoding, delivery_mode=NON_PERSISTENT, **properties
    )


def _open_channel(amqp_uri: str, ssl: Any) -> Any:
    return kombu.Connection(amqp_uri, ssl=ssl, heartbeat=0).channel()


def _close(channel: Any) -> None:
    try:
        channel.connection.close()
    except Exception:  # closing a broken connection may fail; it is gone either way
        log.debug("closing an RPC connection failed", exc_info=True)


# nameko builds the publisher of every reply from this class attribute.
nameko.rpc.Responder.publisher_cls = TransientReplies
rpc = nameko.rpc.rpc


class _Method(nameko.rpc.MethodProxy):
    publisher_cls = ConfirmedRequests


class _Service(nameko.rpc.ServiceProxy):
    def __getattr__(self, name: str) -> _Method:
        return _Method(self.worker_ctx, self.service_name, name, self.reply_listener, **self.options)


class _Cluster(ClusterProxy):
    def __init__(self, worker_ctx: Any, reply_listener: Any, timeout: float) -> None:
        super().__init__(worker_ctx, reply_listener)
        self._timeout = timeout

    def __getattr__(self, service: str) -> _Service:
        if service not in self._proxies:
            self._proxies[service] = _Service(
                self._worker_ctx, service, self._reply_listener, confirm_timeout=self._timeout
            )
        return self._proxies[service]


def standalone_proxy(amqp_uri: str, timeout: float) -> ClusterRpcProxy:
    """nameko's standalone cluster proxy (not started yet), sending its requests with
    `ConfirmedRequests`."""
    runner = ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=timeout)
    runner._proxy = _Cluster(runner._worker_ctx, runner._reply_listener, timeout)
    return runner


__all__ = ["rpc", "standalone_proxy"]
