"""A short memory for read-model lookups that found something.

Read models here (people, communities) are fed by registry events and only grow, so a found
record may be reused for a few seconds; a miss is never remembered, so someone registered a
moment ago is found as soon as their event is applied.

A key is loaded by one caller at a time: callers that want it meanwhile wait for that load
instead of sending the same query. A consumer applies the hundred events of a batch message
at once, and each of them used to miss together, when the cache was cold or an entry had
just expired (measured while a backlog drained: a third of the points bank's CPU went to the
same community's earning rules, loaded again by every event of a batch).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any


class RecentlyFound:
    def __init__(self, seconds: float = 10.0, size: int = 50_000) -> None:
        self.seconds = seconds
        self.size = size
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        # Keys being loaded, each with the event its loader sets when done. threading's Event
        # is eventlet's in a service (nameko patches threading), a real one elsewhere.
        self._loading: dict[str, threading.Event] = {}

    def get(self, key: str, load: Callable[[], Any]) -> Any:
        def load_one(missing: list[str]) -> dict[str, Any]:
            value = load()
            return {} if value is None else {key: value}

        return self.get_many([key], load_one).get(key)

    def get_many(self, keys: Iterable[str], load: Callable[[list[str]], dict[str, Any]]) -> dict[str, Any]:
        """The values of those keys that have one, loading the ones not remembered at once."""
        found, missing, awaited = {}, [], []
        for key in set(keys):
            if (value := self._remembered(key)) is not None:
                found[key] = value
            elif key in self._loading:
                awaited.append((key, self._loading[key]))
            else:
                missing.append(key)
        if missing:
            found |= self._load(missing, load)
        # What another caller's load did not find (a miss, or its query failed) is loaded again
        # here: a miss is never taken on trust, and an error reaches this caller too.
        again = []
        for key, loaded in awaited:
            loaded.wait()
            value = self._remembered(key)
            if value is None:
                again.append(key)
            else:
                found[key] = value
        if again:
            found |= self._load(again, load)
        return found

    def _remembered(self, key: str) -> Any:
        hit = self._items.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def _load(self, keys: list[str], load: Callable[[list[str]], dict[str, Any]]) -> dict[str, Any]:
        loaded = threading.Event()
        mine = {key: loaded for key in keys if key not in self._loading}
        self._loading.update(mine)
        try:
            values = load(keys)
            for key, value in values.items():
                self.put(key, value)
            return values
        finally:
            for key in mine:
                del self._loading[key]
            loaded.set()

    def forget(self, key: str) -> None:
        self._items.pop(key, None)

    def put(self, key: str, value: Any) -> None:
        self._items[key] = (time.monotonic() + self.seconds, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
