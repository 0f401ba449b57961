"""Request limits per API key (gateway/ratelimit.py), on a real table file."""

from __future__ import annotations

import multiprocessing

import pytest

from gateway.keys import rate_limit
from gateway.ratelimit import SLOTS, RateLimiter, retry_after_seconds, table_path


@pytest.fixture
def limiter(tmp_path) -> RateLimiter:
    return RateLimiter(tmp_path / "rates")


def test_a_burst_goes_through_then_the_rate_holds(limiter):
    # 2 requests/s in bursts of 3: three at once, then one every half second.
    assert [limiter.admit("k", 2, 3, now=10.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.admit("k", 2, 3, now=10.0) == pytest.approx(0.5)
    assert limiter.admit("k", 2, 3, now=10.3) == pytest.approx(0.2)  # a refusal does not count
    assert limiter.admit("k", 2, 3, now=10.5) == 0
    assert limiter.admit("k", 2, 3, now=10.5) == pytest.approx(0.5)
    # Idle long enough, the whole burst is back, and no more.
    assert [limiter.admit("k", 2, 3, now=20.0) for _ in range(4)][3] == pytest.approx(0.5)


def test_keys_are_counted_apart_and_a_rate_of_zero_is_no_limit(limiter):
    assert limiter.admit("a", 1, 1, now=0.0) == 0
    assert limiter.admit("a", 1, 1, now=0.0) == pytest.approx(1.0)
    assert limiter.admit("b", 1, 1, now=0.0) == 0
    assert all(limiter.admit("free", 0, 1, now=0.0) == 0 for _ in range(1000))


def test_gateways_sharing_the_table_share_the_count(tmp_path):
    first, second = RateLimiter(tmp_path / "rates"), RateLimiter(tmp_path / "rates")
    assert first.admit("k", 1, 2, now=5.0) == 0
    assert second.admit("k", 1, 2, now=5.0) == 0
    assert first.admit("k", 1, 2, now=5.0) == pytest.approx(1.0)


def test_a_worker_process_forked_from_the_gateway_counts_in_the_same_table(limiter):
    # gunicorn forks its workers: an object the parent already used must not share its lock.
    assert limiter.admit("k", 1, 2, now=7.0) == 0
    context = multiprocessing.get_context("fork")
    waits = context.Queue()
    child = context.Process(target=lambda: waits.put([limiter.admit("k", 1, 2, now=7.0) for _ in range(2)]))
    child.start()
    child.join(10)
    assert waits.get(timeout=5) == [0, pytest.approx(1.0)]
    assert limiter.admit("k", 1, 2, now=7.0) == pytest.approx(1.0)  # the child's request counted


def test_more_keys_than_slots_over_time_reuse_the_slots_of_idle_ones(limiter):
    # Each key is idle again a second later: its slot is free for another.
    for n in range(SLOTS * 2):
        assert limiter.admit(f"key-{n}", 1, 1, now=float(n)) == 0
    assert limiter.admit(f"key-{SLOTS * 2 - 1}", 1, 1, now=float(SLOTS * 2 - 1)) == pytest.approx(1.0)


def test_retry_after_is_whole_seconds_and_never_zero():
    assert [retry_after_seconds(w) for w in (0.001, 1.0, 1.2)] == [1, 1, 2]


def test_a_key_has_the_gateways_limit_unless_it_sets_its_own(settings):
    assert rate_limit({}) == (settings.rate_limit_per_second, settings.rate_limit_burst)
    assert rate_limit({"rate_limit": {"per_second": 0}}) == (0, settings.rate_limit_burst)
    assert rate_limit({"rate_limit": {"per_second": 5, "burst": 9}}) == (5, 9)


def test_gateways_of_different_key_databases_keep_different_tables():
    assert table_path("mongodb://a/gridlink_gateway") != table_path("mongodb://b/gridlink_gateway")
