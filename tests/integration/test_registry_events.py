"""Registry changes reach the services that keep read models of them, in any delivery order,
and phone and ID numbers reach neither events, nor other services, nor any log."""

from __future__ import annotations

import uuid

import pytest
from pymongo import MongoClient

from shared.events import PersonRegistered, PersonUpdated, new_event
from shared.outbox import EventPublisher, publishable
from shared.read_models import remember_newer
from tests.conftest import COMMUNITY, TEST_ENV, new_id
from tests.support import eventually

pytestmark = pytest.mark.integration


def publish(*envelopes) -> None:
    publisher = EventPublisher(TEST_ENV["AMQP_URI"], "registry", timeout=5)
    try:
        events = publishable(envelopes, "x")
        assert publisher.publish(events) == [e.id for e in envelopes]
    finally:
        publisher.close()


def person_facts(person_id: str, **overrides) -> dict:
    return {
        "person_id": person_id,
        "name": "测试",
        "community_id": COMMUNITY,
        "is_party_member": True,
        "is_cadre": False,
        "employer": "十堰经开区测试局",
        **overrides,
    }


def test_an_update_delivered_before_the_registration_is_not_undone(databases, stack):
    person_id = new_id("late")
    update = new_event(PersonUpdated(revision=2, **person_facts(person_id, is_cadre=True)), subject=person_id)
    registration = new_event(PersonRegistered(**person_facts(person_id)), subject=person_id)
    publish(update)
    for service in ("issue_intake", "cadre_evaluation"):
        eventually(lambda s=service: databases[s].people.find_one({"_id": person_id}))
    publish(registration)
    # The registration is older: both read models keep the update (a cadre, version 2).
    probe = new_id("probe")
    publish(new_event(PersonRegistered(**person_facts(probe)), subject=probe))
    for service in ("issue_intake", "cadre_evaluation"):
        eventually(lambda s=service: databases[s].people.find_one({"_id": probe}))
        kept = databases[service].people.find_one({"_id": person_id})
        assert (kept["version"], kept["is_cadre"]) == (2, True)


def test_remember_newer_keeps_the_highest_version(settings, infrastructure):
    client = MongoClient(settings.mongo_url)
    collection = client[f"gltest_readmodel_{uuid.uuid4().hex[:6]}"]["people"]
    try:
        assert remember_newer(collection, {"_id": "p", "version": 3, "name": "三"})
        assert not remember_newer(collection, {"_id": "p", "version": 2, "name": "二"})
        assert remember_newer(collection, {"_id": "p", "version": 4, "name": "四"})
        assert collection.find_one({"_id": "p"})["name"] == "四"
    finally:
        client.drop_database(collection.database.name)
        client.close()


def test_numbers_stay_in_the_registry_sealed(api, databases, stack):
    phone, id_number = "13912345678", "420303199001011234"
    person_id = new_id("pii")
    response = api.post(
        "/api/v1/people",
        json={
            "person_id": person_id,
            "name": "隐私测试",
            "community_id": COMMUNITY,
            "phone": phone,
            "id_number": id_number,
            "is_party_member": True,
            "employer": "十堰经开区测试局",
        },
    )
    assert response.status_code == 201, response.text
    assert (response.json()["phone"], response.json()["id_number"]) == ("139****5678", "4203**********1234")
    # A bad number is refused without echoing it.
    refused = api.post(
        "/api/v1/people", json={"name": "x", "community_id": COMMUNITY, "phone": "1391234567x"}
    )
    assert refused.status_code == 422 and "1391234567x" not in refused.text
    for service in ("issue_intake", "cadre_evaluation"):
        copy = eventually(lambda s=service: databases[s].people.find_one({"_id": person_id}))
        assert phone not in str(copy) and "5678" not in str(copy)
    stored = databases["registry"].people.find_one({"_id": person_id})
    assert phone not in str(stored) and id_number not in str(stored)
    found = api.post("/api/v1/people:search", json={"phone": phone}).json()["items"]
    assert [p["id"] for p in found] == [person_id]
    for log in (stack.home / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        assert phone not in text and id_number not in text, log.name
