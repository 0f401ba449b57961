"""Concurrent calls sharing one RPC (gateway.rpc.Coalesced), with threads as gunicorn runs them."""

from __future__ import annotations

import threading

import pytest
from nameko.exceptions import serialize

from gateway.rpc import Coalesced, ServiceTimeout, ServiceUnavailable, _Call
from shared.errors import NotFound
from tests.support import eventually


class GatedPool:
    """Stands in for RpcPool: holds its first `held` RPCs until released; answers each call by
    its one argument (upper-cased, or NotFound for names starting with x), or fails them all."""

    def __init__(self, failure: BaseException | None = None, held: int = 1, timeout: float = 5) -> None:
        self.rpcs: list[tuple[str, list[list[str]]]] = []
        self.release = threading.Event()
        self.failure, self.held, self.timeout = failure, held, timeout

    def call(self, service: str, method: str, calls: list[list[str]]):
        assert (service, method) == ("issue_intake", "record_volunteer_acts_apart")
        self.rpcs.append((threading.current_thread().name, calls))
        if len(self.rpcs) <= self.held:
            assert self.release.wait(5)
        if self.failure:
            raise self.failure
        return [
            {"error": serialize(NotFound("person", name))}
            if name.startswith("x")
            else {"result": name.upper()}
            for [name] in calls
        ]


def call_together(pool: GatedPool, names: list[str], senders: int = 1) -> tuple[dict[str, object], Coalesced]:
    """The first `senders` names call at once, each its own RPC (held); the others call while
    those are out."""
    coalesced = Coalesced(pool, "issue_intake", "record_volunteer_acts_apart", senders=senders)
    answers: dict[str, object] = {}

    def call(name: str) -> None:
        try:
            answers[name] = coalesced(name)
        except Exception as exc:
            answers[name] = exc

    threads = [threading.Thread(target=call, args=(name,), name=f"thread-{name}") for name in names]
    for thread in threads[:senders]:
        thread.start()
    eventually(lambda: len(pool.rpcs) == senders, timeout=5, interval=0.01)
    for thread in threads[senders:]:
        thread.start()
    eventually(lambda: len(coalesced._waiting) == len(names) - senders, timeout=5, interval=0.01)
    pool.release.set()
    for thread in threads:
        thread.join(5)
    return answers, coalesced


def test_calls_made_while_one_rpc_is_out_share_the_next_and_each_gets_its_own_answer():
    pool = GatedPool()
    answers, coalesced = call_together(pool, ["a", "b", "x1", "c"])
    assert coalesced("after") == "AFTER"  # the next call, alone, goes at once
    assert answers["a"] == "A" and answers["b"] == "B" and answers["c"] == "C"
    assert isinstance(answers["x1"], NotFound) and answers["x1"].identifier == "x1"
    first, second, after = pool.rpcs
    assert first == ("thread-a", [["a"]])
    assert sorted(second[1]) == [["b"], ["c"], ["x1"]]
    assert second[0] != "thread-a"  # sent by one of the waiting threads, on its own proxy
    assert after[1] == [["after"]]


def test_with_two_senders_two_calls_go_at_once_and_only_later_ones_wait():
    pool = GatedPool(held=2)
    answers, _ = call_together(pool, ["a", "b", "c", "d"], senders=2)
    assert answers == {"a": "A", "b": "B", "c": "C", "d": "D"}
    assert sorted(calls for _, calls in pool.rpcs[:2]) == [[["a"]], [["b"]]]
    # c and d waited; each of the two senders, when done, passed its turn to one waiting call,
    # which took all that still waited: one RPC or two, each call in one.
    assert sorted(call for _, calls in pool.rpcs[2:] for call in calls) == [["c"], ["d"]]


def test_a_failed_rpc_fails_every_call_it_carried():
    pool = GatedPool(failure=ServiceTimeout("no answer"))
    answers, _ = call_together(pool, ["a", "b", "c"])
    assert all(isinstance(answer, ServiceTimeout) for answer in answers.values())
    assert sorted(len(calls) for _, calls in pool.rpcs) == [1, 2]


def test_an_answer_for_fewer_calls_than_were_sent_fails_them_all_and_none_waits_on():
    pool = GatedPool()
    answer_each = pool.call
    pool.call = lambda service, method, calls: answer_each(service, method, calls)[:-1]
    answers, coalesced = call_together(pool, ["a", "b", "c"])
    assert sorted(answers) == ["a", "b", "c"]  # every caller was answered
    assert isinstance(answers["a"], RuntimeError) and "answered 0 of 1" in str(answers["a"])
    assert isinstance(answers["b"], RuntimeError) and isinstance(answers["c"], RuntimeError)
    assert coalesced._out == 0 and coalesced._waiting == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the exits, meant
def test_an_rpc_ended_by_its_thread_exiting_still_answers_its_calls_and_hands_over():
    pool = GatedPool(failure=SystemExit())  # every RPC ends its sending thread
    answers, coalesced = call_together(pool, ["a", "b", "c"])
    # "a" and whichever of "b" and "c" sent the next RPC ended; the other was answered.
    [answer] = answers.values()
    assert isinstance(answer, ServiceUnavailable)
    pool.failure = None
    assert coalesced("after") == "AFTER"  # nothing is left holding the sender's turn


def test_a_call_waits_for_a_turn_no_longer_than_the_rpc_timeout():
    """Behind an RPC that takes the whole timeout, a waiting call would wait for it and then
    for its own: it gives up at the timeout instead, and is not sent later."""
    pool = GatedPool(timeout=0.2)
    coalesced = Coalesced(pool, "issue_intake", "record_volunteer_acts_apart", senders=1)
    first = threading.Thread(target=coalesced, args=("a",))
    first.start()
    eventually(lambda: len(pool.rpcs) == 1, timeout=5, interval=0.01)
    with pytest.raises(ServiceTimeout):
        coalesced("b")
    pool.release.set()
    first.join(5)
    assert [calls for _, calls in pool.rpcs] == [[["a"]]]
    assert coalesced._out == 0 and coalesced._waiting == []
    assert coalesced("after") == "AFTER"


def test_a_call_handed_the_turn_as_its_time_runs_out_passes_it_on():
    """The turn to send reaches a waiting call just as it gives up: it goes to the next call
    waiting, or, with none, is freed, so later calls never wait for a sender that left."""
    pool = GatedPool(held=0)
    coalesced = Coalesced(pool, "issue_intake", "record_volunteer_acts_apart", senders=1)
    late, next_in_line = _Call(["late"]), _Call(["next"])
    with coalesced._lock:
        coalesced._out = 1
        late.sends = True  # handed the turn by the sender that just finished
        late.woken.set()
        coalesced._waiting.append(next_in_line)
    assert coalesced._give_up(late) is True
    assert next_in_line.sends and next_in_line.woken.is_set() and coalesced._out == 1
    assert coalesced._give_up(next_in_line) is True  # it too gives up: the turn is free again
    assert coalesced._out == 0 and coalesced("after") == "AFTER"
