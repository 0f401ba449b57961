"""Group commit: concurrent green threads share one database round trip.

On FerretDB/SQLite a write costs about a millisecond however small it is, while one
`insert_many` of 500 documents costs about 25: so writes that arrive together are made
together. A caller hands its item over and waits; one flusher takes everything that arrived
while the previous flush ran. Alone, a caller is a batch of one and waits no longer than it
would have; under load, batches grow by themselves. Nothing waits on a timer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import eventlet
import eventlet.event
import eventlet.queue

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    def __init__(self, flush: Callable[[Sequence[Item]], Sequence[Result | Exception]], max_batch: int = 500):
        """`flush` gets a batch and returns one result (or exception) per item, in order."""
        self.flush = flush
        self.max_batch = max_batch
        self._queue: eventlet.queue.LightQueue = eventlet.queue.LightQueue()
        self._flusher = None

    def __call__(self, item: Item) -> Result:
        [result] = self.together([item])
        if isinstance(result, Exception):
            raise result
        return result

    def together(self, items: Sequence[Item]) -> list[Result | Exception]:
        """Submit several items at once and wait for all their results. They share a flush
        unless more than `max_batch` items are waiting: then they may span two."""
        if self._flusher is None or self._flusher.dead:
            self._flusher = eventlet.spawn(self._run)
        waiting = []
        for item in items:
            done = eventlet.event.Event()
            self._queue.put((item, done))
            waiting.append(done)
        return [done.wait() for done in waiting]

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except eventlet.queue.Empty:
                    break
            try:
                results = list(self.flush([item for item, _ in batch]))
            except Exception as exc:  # the whole batch failed: each caller gets the error
                results = [exc] * len(batch)
            for (_, done), result in zip(batch, results, strict=True):
                done.send(result)
            # Let others run before the next batch: pymongo hands a connection back to whoever
            # asks first, so two flushers sharing one would otherwise see one of them keep it
            # for as long as its queue stays full (measured: record writes held up 5 s).
            eventlet.sleep(0)
