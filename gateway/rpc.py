"""RPC from gunicorn threads to the services.

nameko's standalone proxy is single-threaded (one reply listener): sharing one between
threads hangs and corrupts AMQP frames. A proxy per request is no better: its reply queue
lingers for minutes. So each gunicorn thread keeps its own proxy for its whole life.

Calls made at the same moment by many threads can share one RPC (`Coalesced`): an RPC costs
the gateway, the broker and the service about 2 ms of CPU however little it carries.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from nameko.exceptions import RpcTimeout, UnknownService, deserialize

from shared.rpc import standalone_proxy

log = logging.getLogger(__name__)


class ServiceUnavailable(Exception):
    """The broker or the service cannot be reached (→ 503)."""


class ServiceTimeout(Exception):
    """The service did not answer within the RPC timeout (→ 504)."""


class RpcPool:
    def __init__(self, amqp_uri: str, timeout: float) -> None:
        self.amqp_uri = amqp_uri
        self.timeout = timeout
        self._local = threading.local()

    def _proxy(self) -> Any:
        proxy = getattr(self._local, "proxy", None)
        if proxy is None:
            runner = standalone_proxy(self.amqp_uri, self.timeout)
            proxy = runner.start()
            self._local.runner, self._local.proxy = runner, proxy
        return proxy

    def _discard(self) -> None:
        runner = getattr(self._local, "runner", None)
        self._local.runner = self._local.proxy = None
        if runner is not None:
            try:
                runner.stop()
            except Exception:
                log.debug("stopping a broken RPC proxy failed", exc_info=True)

    def call(self, service: str, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            proxy = self._proxy()
            return getattr(getattr(proxy, service), method)(*args, **kwargs)
        except RpcTimeout as exc:
            # A late reply would confuse this proxy's next call: start afresh.
            self._discard()
            raise ServiceTimeout(f"{service} did not answer within {self.timeout}s") from exc
        except UnknownService as exc:
            raise ServiceUnavailable(f"{service} is not running") from exc
        except (OSError, ConnectionError) as exc:
            self._discard()
            raise ServiceUnavailable(f"message broker unreachable: {exc}") from exc
        except Exception as exc:
            if _is_amqp_failure(exc):
                self._discard()
                raise ServiceUnavailable(f"message broker failure: {exc}") from exc
            raise


def _is_amqp_failure(exc: Exception) -> bool:
    module = type(exc).__module__
    return module.startswith(("amqp", "kombu"))


class Coalesced:
    """One service method called from many threads, sent as its many-at-once form: up to
    `senders` RPCs are out at a time, and calls that arrive while all are out go together in
    the next. A call that finds a sender free goes at once, so under light load nothing waits
    for another call's RPC; under load, batches grow by themselves.

    The many-at-once method takes a list of argument lists and answers, per call, `{"result":
    ...}` or `{"error": ...}` (a serialised exception), so each caller gets its own answer or
    error, as if it had called alone. Each RPC goes out on the sending thread's own proxy.
    """

    def __init__(self, pool: RpcPool, service: str, method: str, senders: int = 2) -> None:
        self.pool, self.service, self.method, self.senders = pool, service, method, senders
        self._lock = threading.Lock()
        self._waiting: list[_Call] = []
        self._out = 0  # RPCs out, each with its sending thread

    def __call__(self, *args: Any) -> Any:
        call = _Call(list(args))
        with self._lock:
            call.sends = self._out < self.senders
            if call.sends:
                self._out += 1
            else:
                self._waiting.append(call)
        if not call.sends:
            # Bounded like an RPC: behind slow RPCs a call would wait for theirs, then for its own.
            if not call.woken.wait(self.pool.timeout) and self._give_up(call):
                raise ServiceTimeout(f"{self.service} did not answer within {self.pool.timeout}s")
            if not call.sends:  # answered
                return call.answer()
        with self._lock:
            batch, self._waiting = [call, *self._waiting], []
        # Whatever ends this RPC, even an exit of this thread, the calls in it are answered
        # and its turn passes on: otherwise they, or later calls, would wait for ever.
        outcomes: list[Any] = [ServiceUnavailable("the call was interrupted")] * len(batch)
        try:
            answers = self.pool.call(self.service, self.method, [c.args for c in batch])
            if len(answers) != len(batch):
                what = f"{self.service}.{self.method}"
                raise RuntimeError(f"{what} answered {len(answers)} of {len(batch)} calls")
            outcomes = answers
        except Exception as exc:  # the RPC itself failed: every call in it gets the error
            outcomes = [exc] * len(batch)
        finally:
            with self._lock:
                self._pass_turn()  # to a call that arrived meanwhile: it sends the next batch
            for waiting, outcome in zip(batch, outcomes, strict=True):
                waiting.outcome = outcome
                waiting.woken.set()
        return call.answer()

    def _give_up(self, call: _Call) -> bool:
        """Whether a call that waited its time gives up (→ 504). One answered meanwhile does
        not. One handed the turn meanwhile passes it on, as its RPC would have, and gives up.
        One taken into an RPC out gives up too, and may still be carried out (like any call
        that times out)."""
        with self._lock:
            if call.woken.is_set() and not call.sends:
                return False  # answered
            if call in self._waiting:
                self._waiting.remove(call)
            elif call.sends:
                self._pass_turn()
            return True

    def _pass_turn(self) -> None:
        """The sender's turn goes to the first call waiting, if any (under the lock)."""
        if self._waiting:
            successor = self._waiting.pop(0)
            successor.sends = True
            successor.woken.set()
        else:
            self._out -= 1


class _Call:
    def __init__(self, args: list[Any]) -> None:
        self.args = args
        self.woken = threading.Event()
        self.sends = False
        self.outcome: dict[str, Any] | Exception | None = None

    def answer(self) -> Any:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        assert self.outcome is not None
        if "error" in self.outcome:
            raise deserialize(self.outcome["error"])
        return self.outcome["result"]
