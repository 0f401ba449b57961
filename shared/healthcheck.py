"""`python -m shared.healthcheck <service>`: exit 0 if the service answers its health RPC.

Used by compose healthchecks and by the local stack runner to wait for services.
"""

from __future__ import annotations

import sys

from shared.rpc import standalone_proxy
from shared.settings import get_settings


def service_is_healthy(service: str, timeout: float = 5.0) -> bool:
    try:
        with standalone_proxy(get_settings().amqp_uri, timeout) as rpc:
            return getattr(rpc, service).health()["status"] == "ok"
    except Exception:
        return False


if __name__ == "__main__":
    sys.exit(0 if service_is_healthy(sys.argv[1]) else 1)
