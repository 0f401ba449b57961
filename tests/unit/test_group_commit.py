"""Group commit: writes that arrive together share one flush, and two flushers sharing one
database connection take turns."""

from __future__ import annotations

import eventlet
from eventlet.green import threading

from shared.group_commit import GroupCommit


def test_items_that_arrive_together_share_a_flush():
    flushes: list[list[int]] = []

    def flush(items):
        flushes.append(list(items))
        eventlet.sleep(0.01)
        return [item * 2 for item in items]

    commit = GroupCommit(flush)
    pool = eventlet.GreenPool()
    results = list(pool.imap(commit, range(20)))
    assert results == [item * 2 for item in range(20)]
    assert len(flushes) < 20 and sorted(i for f in flushes for i in f) == list(range(20))


class OneConnection:
    """Checks a connection out and in the way pymongo's pool does: a waiter is notified on
    check-in, but whoever asks first after that gets the connection."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.in_use = False

    def __enter__(self) -> None:
        with self.changed:
            while self.in_use:
                self.changed.wait()
            self.in_use = True

    def __exit__(self, *exc: object) -> None:
        with self.changed:
            self.in_use = False
            self.changed.notify()


def test_a_flusher_kept_busy_does_not_starve_another_on_the_same_connection():
    connection = OneConnection()
    flushed: list[str] = []

    def flush_as(name):
        def flush(items):
            for _ in range(3):  # a flush of several commands
                with connection:
                    eventlet.sleep(0.001)  # the database at work
            flushed.append(name)
            return list(items)

        return flush

    # More waiting than one flush takes: the busy flusher always has a next batch ready.
    busy, other = GroupCommit(flush_as("busy"), max_batch=5), GroupCommit(flush_as("other"))
    flooding = True

    def flood():
        while flooding:
            busy.together(list(range(5)))

    flooders = [eventlet.spawn(flood) for _ in range(3)]
    eventlet.sleep(0.01)
    try:
        with eventlet.Timeout(5):  # starved, it would wait as long as the flood lasts
            assert other(1) == 1
    finally:
        flooding = False
    for flooder in flooders:
        flooder.wait()
    # Its flush waited for the busy one's current flush at most, not for the flood to end.
    assert flushed.index("other") < 10
