"""The short memory of read-model lookups."""

from __future__ import annotations

from shared.cache import RecentlyFound


def test_many_keys_load_only_what_is_not_remembered_at_once_and_misses_are_not_kept():
    cache = RecentlyFound()
    cache.put("a", {"_id": "a"})
    loads: list[list[str]] = []

    def load(missing: list[str]) -> dict:
        loads.append(sorted(missing))
        return {key: {"_id": key} for key in missing if key != "nobody"}

    assert cache.get_many(["a", "b", "nobody", "b"], load) == {"a": {"_id": "a"}, "b": {"_id": "b"}}
    assert loads == [["b", "nobody"]]
    assert cache.get_many(["a", "b"], load) == {"a": {"_id": "a"}, "b": {"_id": "b"}}
    assert cache.get_many(["nobody"], load) == {}
    assert loads == [["b", "nobody"], ["nobody"]]


def test_remembered_values_expire():
    cache = RecentlyFound(seconds=0)
    cache.put("a", {"_id": "a", "old": True})
    assert cache.get_many(["a"], lambda missing: {"a": {"_id": "a"}}) == {"a": {"_id": "a"}}


def _while_loading(cache: RecentlyFound, key: str, first_load, then) -> list:
    """Start a get of `key` whose load is `first_load` (it runs until released), run `then`
    (another caller) meanwhile, and return what both got."""
    import threading

    started, release, results = threading.Event(), threading.Event(), {}

    def slow(missing: list[str]) -> dict:
        started.set()
        release.wait(5)
        return first_load(missing)

    def first() -> None:
        try:
            results["first"] = cache.get_many([key], slow)
        except Exception as exc:
            results["first"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    assert started.wait(5)
    second = threading.Thread(target=lambda: results.setdefault("second", then()))
    second.start()
    second.join(0.2)
    assert second.is_alive(), "the second caller should wait for the first one's load"
    release.set()
    thread.join(5)
    second.join(5)
    return [results["first"], results["second"]]


def test_callers_wanting_a_key_that_is_being_loaded_wait_for_that_load_instead_of_querying():
    cache = RecentlyFound()
    queries: list[list[str]] = []

    def query(missing: list[str]) -> dict:
        queries.append(sorted(missing))
        return {key: {"_id": key} for key in missing}

    first, second = _while_loading(cache, "a", query, lambda: cache.get_many(["a", "b"], query))
    assert first == {"a": {"_id": "a"}}
    assert second == {"a": {"_id": "a"}, "b": {"_id": "b"}}
    assert queries == [["b"], ["a"]]  # "b" went at once; "a" was queried once, by the first


def test_a_waiting_caller_queries_itself_when_the_load_it_waited_for_found_nothing_or_failed():
    cache = RecentlyFound()

    def fails(missing: list[str]) -> dict:
        raise ConnectionError("database down")

    def found_now() -> dict | None:  # e.g. the person's registration arrived meanwhile
        return cache.get("a", lambda: {"_id": "a"})

    first, second = _while_loading(cache, "a", lambda missing: {}, found_now)
    assert (first, second) == ({}, {"_id": "a"})

    cache.forget("a")
    first, second = _while_loading(cache, "a", fails, found_now)
    assert isinstance(first, ConnectionError)
    assert second == {"_id": "a"}
