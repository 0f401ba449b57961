"""RPC from gunicorn threads to the services.

nameko's standalone proxy is single-threaded (one reply listener): sharing one between
threads hangs and corrupts AMQP frames. A proxy per request is no better: its reply queue
lingers for minutes. So each gunicorn thread keeps its own proxy for its whole life.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from nameko.exceptions import RpcTimeout, UnknownService

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
