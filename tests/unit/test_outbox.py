"""How the relay packs events into AMQP messages, and when it counts a record as published."""

from __future__ import annotations

from shared.outbox import EVENTS_PER_MESSAGE, OutboxRelay, _messages


def event(event_id: str, routing_key: str = "volunteer_act.recorded") -> dict:
    return {"id": event_id, "routing_key": routing_key, "envelope": {"id": event_id}}


def shapes(events: list[dict]) -> list[tuple[str, list[str]]]:
    return [(key, [e["id"] for e in together]) for key, together in _messages(events)]


def test_events_of_one_routing_key_share_a_message_in_their_order():
    events = [event("a"), event("x", "points.transferred"), event("b"), event("c")]
    assert shapes(events) == [
        ("volunteer_act.recorded", ["a", "b", "c"]),
        ("points.transferred", ["x"]),
    ]


def test_a_message_holds_at_most_its_share_of_events():
    events = [event(str(n)) for n in range(2 * EVENTS_PER_MESSAGE + 1)]
    assert [len(ids) for _, ids in shapes(events)] == [EVENTS_PER_MESSAGE, EVENTS_PER_MESSAGE, 1]
    assert [i for _, ids in shapes(events) for i in ids] == [e["id"] for e in events]


def test_a_repeated_event_goes_in_a_message_of_its_own_so_it_is_delivered_again():
    assert shapes([event("a"), event("b"), event("a")]) == [
        ("volunteer_act.recorded", ["a", "b"]),
        ("volunteer_act.recorded", ["a"]),
    ]


def test_a_record_is_done_only_once_each_of_its_events_is_confirmed_however_often_one_is():
    relay = OutboxRelay("issue_intake")
    relay.confirmed, relay.done = {}, set()
    x, y = ({"id": i, "outbox_id": "r1", "record_events": 2} for i in ("x", "y"))
    relay._count_confirmed([x])
    relay._count_confirmed([x])  # the same event confirmed again: y is still unconfirmed
    assert relay.done == set()
    relay._count_confirmed([y])
    assert relay.done == {"r1"} and relay.confirmed == {}
