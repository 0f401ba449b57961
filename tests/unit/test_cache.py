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
