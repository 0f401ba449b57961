"""Per-key request rates, counted together by all of a gateway's worker processes.

The rule is GCRA (the generic cell rate algorithm, a token bucket kept as one number): a key
allowed `per_second` requests with bursts of `burst` has a *theoretical arrival time* (TAT)
that each admitted request pushes on by 1/per_second; a request is refused while the TAT is
more than (burst - 1)/per_second ahead of now, and told how long until it no longer is.

gunicorn's workers are processes, and a client's keep-alive connection stays with one of them,
so a count per process would give each client a fraction of its limit, or several times it.
The TATs are therefore kept in a small table in a memory-backed file (/dev/shm), locked
around each update: about 11 µs per request here, against about 2 ms of gateway CPU.
Gateways on other hosts (compose replicas) keep their own tables, so a key's limit applies
per gateway host.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import tempfile
import threading
import time
from pathlib import Path

SLOT = struct.Struct("<Qd")  # key fingerprint (0: empty), TAT in CLOCK_MONOTONIC seconds
SLOTS = 4096
# A key is looked for, or placed, this many slots from its home slot (linear probing).
MAX_PROBES = 64


def table_path(name: str) -> Path:
    """Where the gateways that share one key database keep their table on this host."""
    folder = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    return folder / f"gridlink-rates-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


class RateLimiter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # flock does not exclude threads sharing one file
        self._opened_by: int | None = None

    def admit(self, client_id: str, per_second: float, burst: int, now: float | None = None) -> float:
        """0 if the request may go ahead (and counts), else the seconds until it may."""
        if per_second <= 0:
            return 0.0
        interval = 1.0 / per_second
        tolerance = interval * (max(burst, 1) - 1)
        fingerprint = _fingerprint(client_id)
        with self._lock:
            table, fd = self._table()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                now = time.monotonic() if now is None else now
                offset = _slot_of(table, fingerprint, now)
                _, tat = SLOT.unpack_from(table, offset)
                tat = max(tat, now)
                if tat - now > tolerance:
                    return tat - now - tolerance
                SLOT.pack_into(table, offset, fingerprint, tat + interval)
                return 0.0
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _table(self) -> tuple[mmap.mmap, int]:
        # Opened in the process that uses it: a descriptor inherited over fork would share its
        # lock with the parent's, and exclude nothing.
        if self._opened_by != os.getpid():
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(fd).st_size < SLOTS * SLOT.size:
                os.ftruncate(fd, SLOTS * SLOT.size)  # zeros: every slot empty
            self._fd, self._map = fd, mmap.mmap(fd, SLOTS * SLOT.size)
            self._opened_by = os.getpid()
        return self._map, self._fd


def _fingerprint(client_id: str) -> int:
    digest = hashlib.blake2b(client_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1  # 0 marks an empty slot


def _slot_of(table: mmap.mmap, fingerprint: int, now: float) -> int:
    """The offset of the key's slot: its own, else the first free one near its home. A slot
    whose TAT has passed is free: forgetting a TAT in the past changes nothing (max(TAT, now))."""
    home = fingerprint % SLOTS
    free = None
    for probe in range(MAX_PROBES):
        offset = (home + probe) % SLOTS * SLOT.size
        owner, tat = SLOT.unpack_from(table, offset)
        if owner == fingerprint:
            return offset
        if free is None and (owner == 0 or tat <= now):
            free = offset
        if owner == 0:
            break
    # With MAX_PROBES keys all busy near this one's home, it shares its home slot's count.
    return home * SLOT.size if free is None else free


def retry_after_seconds(wait: float) -> int:
    """The Retry-After header's whole seconds: never 0, which would invite an instant retry."""
    return max(1, math.ceil(wait))
