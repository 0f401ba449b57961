"""Per-key mutual exclusion inside one process.

FerretDB can lose one of two concurrent updates of the same document, so a service updates a
given account (or dossier) from one green thread at a time. Striped locks keep memory fixed.
Across processes exactness still holds: it rests on unique keys, not on these locks.
"""

from __future__ import annotations

import zlib

from eventlet.semaphore import Semaphore


class KeyedLocks:
    def __init__(self, stripes: int = 256) -> None:
        self._locks = [Semaphore(1) for _ in range(stripes)]

    def __call__(self, key: str) -> Semaphore:
        return self._locks[zlib.crc32(key.encode()) % len(self._locks)]
