"""The audit trail: one record for every write and every refused access at the gateway.

A record says who (the API key's name and client id, its scope), did what (the operation, and
its target: the path parameters, the ids and codes its body names, the id of what it created,
the Idempotency-Key), with which outcome (HTTP status and error code), when,
and the request id that ties it to the logs. Reads that succeed are not recorded. Changes made
from the command line are recorded too (`shared.audit.record_command`).

Records are JSON lines in a file per day (shared/audit.py), which `python -m gateway.audit`
reads:

    python -m gateway.audit [--day YYYY-MM-DD] [--actor NAME] [--outcome STATUS] [--action TEXT]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from datetime import date
from typing import Any

from shared.audit import records
from shared.schemas.registry import ID_NUMBER_PATTERN, PHONE_PATTERN
from shared.settings import get_settings, local_today

# Values shaped like a phone or ID number (shared/schemas/registry.py): kept out of the trail.
PERSONAL_NUMBERS = (re.compile(PHONE_PATTERN), re.compile(ID_NUMBER_PATTERN))
# Refused accesses: no key or a wrong one, a role or subtree the key lacks, over its rate.
REFUSALS = {401, 403, 429}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def is_audited(method: str, status: int) -> bool:
    return method in WRITES or status in REFUSALS


def identifiers(fields: Iterable[tuple[str, Any]]) -> dict[str, str]:
    """The fields that name what a request is about: ids, codes and usernames, never a value
    that could be personal (a name; a phone or ID number, which some communities use as a
    person's code) or secret."""
    return {
        name: value
        for name, value in fields
        if isinstance(value, str)
        and (name == "id" or name.endswith("_id") or name in ("code", "username"))
        and not any(number.match(value) for number in PERSONAL_NUMBERS)
    }


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
