"""A short memory for read-model lookups that found something.

Read models here (people, communities) are fed by registry events and only grow, so a found
record may be reused for a few seconds; a miss is never remembered, so someone registered a
moment ago is found as soon as their event is applied.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any


class RecentlyFound:
    def __init__(self, seconds: float = 10.0, size: int = 50_000) -> None:
        self.seconds = seconds
        self.size = size
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str, load: Callable[[], Any]) -> Any:
        def load_one(missing: list[str]) -> dict[str, Any]:
            value = load()
            return {} if value is None else {key: value}

        return self.get_many([key], load_one).get(key)

    def get_many(self, keys: Iterable[str], load: Callable[[list[str]], dict[str, Any]]) -> dict[str, Any]:
        """The values of those keys that have one, loading the ones not remembered at once."""
        now = time.monotonic()
        found, missing = {}, []
        for key in set(keys):
            hit = self._items.get(key)
            if hit is not None and hit[0] > now:
                found[key] = hit[1]
            else:
                missing.append(key)
        for key, value in load(missing).items() if missing else ():
            self.put(key, value)
            found[key] = value
        return found

    def forget(self, key: str) -> None:
        self._items.pop(key, None)

    def put(self, key: str, value: Any) -> None:
        self._items[key] = (time.monotonic() + self.seconds, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
