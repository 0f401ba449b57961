"""The registry store serves the tree, places and people from memory, and never serves them
stale: its own writes go into its cache, another process's writes make it read again."""

from __future__ import annotations

import pytest

from services.registry.store import PEOPLE, RegistryStore

pytestmark = pytest.mark.integration


class CountingStore(RegistryStore):
    """Counts whole-collection reads, the cost the cache exists to avoid."""

    def __init__(self, db) -> None:
        super().__init__(db)
        self.full_reads = 0

    def all(self, collection, query=None):
        self.full_reads += 1
        return super().all(collection, query)


def person(person_id: str, **fields) -> dict:
    return {"_id": person_id, "name": "测试", "community_id": "c1", "version": 1, **fields}


def test_own_writes_keep_the_cache_and_appear_in_it(scratch):
    store = CountingStore(scratch)
    store.insert(PEOPLE, person("p1"), [])
    assert set(store.people()) == {"p1"}
    assert store.full_reads == 1

    store.insert(PEOPLE, person("p2"), [])
    store.insert_many(PEOPLE, [(person("p3"), []), (person("p4"), [])])
    current = scratch[PEOPLE].find_one({"_id": "p1"})
    store.update(PEOPLE, current, {"name": "改名", "version": 2}, [])

    people = store.people()
    assert set(people) == {"p1", "p2", "p3", "p4"}
    assert (people["p1"]["name"], people["p1"]["version"]) == ("改名", 2)
    assert "events" not in people["p1"]
    assert store.full_reads == 1  # all from its own writes
    assert people == {p["_id"]: p for p in scratch[PEOPLE].find({}, {"events": 0})}


def test_a_write_by_another_process_makes_the_cache_read_again(scratch):
    here, elsewhere = CountingStore(scratch), RegistryStore(scratch)
    here.insert(PEOPLE, person("p1"), [])
    assert set(here.people()) == {"p1"}

    elsewhere.insert(PEOPLE, person("p2"), [])
    assert set(here.people()) == {"p1", "p2"}
    assert here.full_reads == 2

    current = scratch[PEOPLE].find_one({"_id": "p2"})
    elsewhere.update(PEOPLE, current, {"community_id": "c2", "version": 2}, [])
    assert here.people()["p2"]["community_id"] == "c2"

    # Its own write after that one's keeps the cache: it was current.
    here.insert(PEOPLE, person("p3"), [])
    assert set(here.people()) == {"p1", "p2", "p3"}
    assert here.full_reads == 3


def test_a_write_racing_another_process_drops_the_cache(scratch):
    """The other process renewed the token after this cache was read: a write here cannot
    tell what the cache misses, so it drops it instead of taking its own write in."""
    here, elsewhere = CountingStore(scratch), RegistryStore(scratch)
    assert here.people() == {}
    elsewhere.insert(PEOPLE, person("p1"), [])  # not seen here yet
    here.insert(PEOPLE, person("p2"), [])
    assert set(here.people()) == {"p1", "p2"}
    assert here.full_reads == 2


def test_a_write_that_changes_nothing_keeps_every_cache(scratch):
    here, elsewhere = CountingStore(scratch), RegistryStore(scratch)
    here.insert(PEOPLE, person("p1"), [])
    here.people()
    assert elsewhere.insert(PEOPLE, person("p1"), []) is None  # taken
    stale = {**scratch[PEOPLE].find_one({"_id": "p1"}), "version": 0}
    assert elsewhere.update(PEOPLE, stale, {"name": "x", "version": 1}, []) is None  # changed meanwhile
    assert set(here.people()) == {"p1"}
    assert here.full_reads == 1


def test_callers_holding_the_people_see_no_change_under_them(scratch):
    store = RegistryStore(scratch)
    store.insert(PEOPLE, person("p1"), [])
    held = store.people()
    store.insert(PEOPLE, person("p2"), [])
    assert set(held) == {"p1"}
    assert set(store.people()) == {"p1", "p2"}


def test_callers_that_find_the_cache_cold_share_one_read(scratch):
    """Right after a start, a portal's worth of calls at once: one reads the people, the
    others wait for its result instead of each reading (and holding) them all."""
    from concurrent.futures import ThreadPoolExecutor

    RegistryStore(scratch).insert_many(PEOPLE, [(person(f"p{i}"), []) for i in range(200)])
    cold = CountingStore(scratch)
    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(lambda _: cold.people(), range(8)))
    assert cold.full_reads == 1
    assert all(people is seen[0] for people in seen) and len(seen[0]) == 200


def test_warming_up_reads_what_the_first_calls_need(scratch):
    RegistryStore(scratch).insert(PEOPLE, person("p1"), [])
    store = CountingStore(scratch)
    store.warm_up()
    reads_to_warm_up = store.full_reads
    assert set(store.people()) == {"p1"} and store.tree() == {} and store.places() == {}
    assert store.full_reads == reads_to_warm_up == 3  # organisations, places, people
