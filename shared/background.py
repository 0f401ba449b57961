"""Work that outlives the RPC call that started it (a long import), run by the container.

The container kills these threads when the service stops; a job must therefore be safe to
start again (the registry's imports are: rows already written count as unchanged).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nameko.extensions import DependencyProvider


class BackgroundJobs(DependencyProvider):
    def get_dependency(self, worker_ctx: Any) -> BackgroundJobs:
        return self

    def spawn(self, job: Callable[[], None]) -> None:
        self.container.spawn_managed_thread(job, identifier="background-job")
