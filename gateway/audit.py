"""The audit trail: one record for every write and every refused access at the gateway.

A record says who (the API key's name and client id, its scope), did what (the operation, and
its target: the path parameters, the ids and codes its body names, the id of what it created,
the Idempotency-Key), with which outcome (HTTP status and error code), when,
and the request id that ties it to the logs. Reads that succeed are not recorded. Changes made
from the command line (`gateway.keys`, `gateway.staff`) are recorded too (record_command).

Records are JSON lines appended to a file per day (`audit-YYYY-MM-DD.jsonl`, the day in
GRIDLINK_TIMEZONE) under GRIDLINK_AUDIT_DIR, as Kubernetes' API server keeps its audit log: one
`write` of an O_APPEND file per record, so the gateway's worker processes never interleave
their lines, a record survives the process that wrote it, and it costs the request about
25 µs and no database trip. Operators ship the files to their log store and choose the
retention; `python -m gateway.audit` reads them:

    python -m gateway.audit [--day YYYY-MM-DD] [--actor NAME] [--outcome STATUS] [--action TEXT]
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from shared.settings import get_settings, local_today

# Refused accesses: no key or a wrong one, a role or subtree the key lacks, over its rate.
REFUSALS = {401, 403, 429}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def is_audited(method: str, status: int) -> bool:
    return method in WRITES or status in REFUSALS


def identifiers(fields: Iterable[tuple[str, Any]]) -> dict[str, str]:
    """The fields that name what a request is about: ids, codes and usernames, never a value
    that could be personal (a name, a phone or ID number) or secret."""
    return {
        name: value
        for name, value in fields
        if isinstance(value, str) and (name == "id" or name.endswith("_id") or name in ("code", "username"))
    }


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


def records(folder: Path, day: date) -> Iterator[dict[str, Any]]:
    path = folder / f"audit-{day.isoformat()}.jsonl"
    if path.exists():
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                yield json.loads(line)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.audit", description="print audit records")
    parser.add_argument("--day", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: today)")
    parser.add_argument("--actor", help="the API key's name")
    parser.add_argument("--outcome", type=int, help="an HTTP status, e.g. 403")
    parser.add_argument("--action", help="text the operation contains, e.g. volunteer-acts")
    options = parser.parse_args(argv)
    found = 0
    for entry in records(get_settings().audit_dir, options.day or local_today()):
        if (
            (options.actor is None or entry.get("actor") == options.actor)
            and (options.outcome is None or entry.get("status") == options.outcome)
            and (options.action is None or options.action in entry.get("action", ""))
        ):
            print(json.dumps(entry, ensure_ascii=False))
            found += 1
    print(f"{found} records", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
