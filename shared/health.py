"""What every service shares: health entrypoints and a settled heap."""

from __future__ import annotations

from typing import Any

from shared.heap import SettledHeap
from shared.rpc import rpc


class HealthEntrypoints:
    """Mixed into each service class. `ping` is a no-op (the gateway's RPC ceiling is measured
    with it); `health` also asks the service's database."""

    name: str
    store: Any
    heap = SettledHeap()

    @rpc
    def ping(self) -> str:
        return "pong"

    @rpc
    def health(self) -> dict[str, str]:
        self.store.db.command("ping")
        return {"service": self.name, "status": "ok"}
