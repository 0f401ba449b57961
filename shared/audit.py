"""The audit trail's files: one JSON line per record, appended to a file per day.

Records are JSON lines appended to a file per day (`audit-YYYY-MM-DD.jsonl`, the day in
GRIDLINK_TIMEZONE) under GRIDLINK_AUDIT_DIR, as Kubernetes' API server keeps its audit log: one
`write` of an O_APPEND file per record, so processes never interleave their lines, a record
survives the process that wrote it, and it costs about 25 µs and no database trip. The gateway
records its requests (gateway/audit.py); operators' commands record themselves
(`record_command`): API keys, staff accounts, ledger repairs, replays of parked events.
Operators ship the files to their log store and choose the retention.
"""

from __future__ import annotations

import getpass
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from shared.settings import get_settings, local_today


class AuditTrail:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._day: date | None = None
        self._fd = -1
        self._opened_by: int | None = None

    def record(self, entry: dict[str, Any]) -> None:
        line = json.dumps({"time": datetime.now(UTC).isoformat(), **entry}, ensure_ascii=False) + "\n"
        with self._lock:
            os.write(self._file_of(local_today()), line.encode())

    def _file_of(self, day: date) -> int:
        # Opened in the process that writes (gunicorn forks its workers after importing the app).
        if day != self._day or self._opened_by != os.getpid():
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"audit-{day.isoformat()}.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            if self._fd >= 0:
                os.close(self._fd)
            self._fd, self._day, self._opened_by = fd, day, os.getpid()
        return self._fd


def record_command(
    program: str, command: str, target: dict[str, Any], exit_code: int, error: str | None = None
) -> None:
    """A change made from the command line (API keys, staff accounts): the actor is the
    operating-system user who ran it, and the outcome its exit code (0 done, 1 not found,
    2 refused), as a request's is its HTTP status."""
    AuditTrail(get_settings().audit_dir).record(
        {
            "request_id": None,
            "actor": f"{getpass.getuser()} (command line)",
            "client_id": None,
            "key_hint": None,
            "scope": None,
            "action": f"{program} {command}",
            "target": target,
            "status": exit_code,
            "error": error,
            "remote_addr": None,
        }
    )


@contextmanager
def failure_recorded(program: str, command: str, target: dict[str, Any]) -> Iterator[None]:
    """Around a command's changes: if they fail partway, the trail says they were tried (its
    outcome 2) before the error goes on."""
    try:
        yield
    except Exception as exc:
        record_command(program, command, {**target, "failed": repr(exc)[:300]}, 2)
        raise


def records(folder: Path, day: date) -> Iterator[dict[str, Any]]:
    path = folder / f"audit-{day.isoformat()}.jsonl"
    if path.exists():
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                yield json.loads(line)
