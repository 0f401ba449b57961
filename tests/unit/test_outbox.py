"""How the relay packs events into AMQP messages."""

from __future__ import annotations

from shared.outbox import EVENTS_PER_MESSAGE, _messages


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
