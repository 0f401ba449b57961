"""RPC over RabbitMQ, both ends, with transient messages.

A request and its reply matter only while the caller waits for them (the gateway's RPC
timeout); after a broker restart nobody waits any more. So neither is written to disk, as
nameko would by default, and replies go without publisher confirms: a lost reply is a timeout
(504) either way, and the caller retries with its idempotency key. Requests keep confirms:
with `mandatory` they are how a call to a service that is not running fails at once (503).
Events are another matter: the outbox relay publishes them persistent and confirmed.
"""

from __future__ import annotations

import nameko.rpc
from nameko.amqp.publish import Publisher
from nameko.constants import NON_PERSISTENT
from nameko.standalone.rpc import ClusterProxy, ClusterRpcProxy


class TransientReplies(Publisher):
    use_confirms = False
    delivery_mode = NON_PERSISTENT


# nameko builds the publisher of every reply from this class attribute.
nameko.rpc.Responder.publisher_cls = TransientReplies
rpc = nameko.rpc.rpc


class _TransientRequests(ClusterProxy):
    def __getattr__(self, service: str) -> nameko.rpc.ServiceProxy:
        if service not in self._proxies:
            self._proxies[service] = nameko.rpc.ServiceProxy(
                self._worker_ctx, service, self._reply_listener, delivery_mode=NON_PERSISTENT
            )
        return self._proxies[service]


def standalone_proxy(amqp_uri: str, timeout: float) -> ClusterRpcProxy:
    """nameko's standalone cluster proxy (not started yet), sending transient requests."""
    runner = ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=timeout)
    runner._proxy = _TransientRequests(runner._worker_ctx, runner._reply_listener)
    return runner


__all__ = ["rpc", "standalone_proxy"]
