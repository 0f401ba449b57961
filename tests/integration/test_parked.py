"""Parked events on the real broker and database: listed for an operator, and replayed to
the handler that parked them once what made them fail is fixed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.events import POINTS_BANK
from shared.mongo import PARKED_EVENTS
from shared.parked import SERVICES, main, parked_in, queue_of, replay
from shared.partitions import Partitioned
from tests.conftest import COMMUNITY, TEST_ENV
from tests.support import act_recorded_event, audit_records_since, eventually

pytestmark = pytest.mark.integration


def test_a_parked_event_is_replayed_to_its_handler_and_an_invalid_one_comes_back(cadre, databases, capsys):
    points = databases[POINTS_BANK]
    good = act_recorded_event(person_id=cadre, community_id=COMMUNITY)
    bad = {"id": f"bad-{good.id}", "specversion": "1.0", "type": "cn.gridlink.volunteer_act.recorded.v1"}
    # As a consumer leaves them: the good one failed for a reason since fixed.
    points[PARKED_EVENTS].insert_many(
        [
            {
                "_id": f"credit_volunteer_act:{good.id}",
                "handler": "credit_volunteer_act",
                "payload": good.model_dump(mode="json"),
                "reason": "RuntimeError: a bug",
                "deliveries": 5,
            },
            {
                "_id": f"credit_volunteer_act:{bad['id']}",
                "handler": "credit_volunteer_act",
                "payload": bad,
                "reason": "not a GridLink CloudEvent",
                "deliveries": 1,
            },
        ]
    )
    assert main([]) == 1  # listing: something is parked
    listed = capsys.readouterr().out
    assert good.id in listed and bad["id"] in listed and "RuntimeError: a bug" in listed

    sent, unknown = replay(points, POINTS_BANK, TEST_ENV["AMQP_URI"])
    assert sent >= 2 and unknown == []  # other tests park poison events here too
    account = Partitioned(points, "accounts")
    eventually(lambda: (account.find_one(cadre) or {}).get("balance") == 10)

    def parked_ids() -> set[str]:
        return {r["payload"].get("id") for r in parked_in(points) if isinstance(r["payload"], dict)}

    eventually(lambda: bad["id"] in parked_ids() and good.id not in parked_ids())  # parked again
    assert points.ledger_entries.count_documents({"key": cadre}) == 1


def test_a_replay_leaves_an_audit_record_per_service():
    """Replaying changes what the services apply: an operator's command, recorded as one."""
    started = datetime.now(UTC)
    main(["--replay"])
    replays = [r for r in audit_records_since(started) if r["action"] == "shared.parked replay"]
    assert sorted(r["target"]["service"] for r in replays) == sorted(SERVICES)
    assert all(r["actor"].endswith("(command line)") and r["status"] == 0 for r in replays)


def test_only_handlers_that_consume_a_queue_have_one():
    assert queue_of(POINTS_BANK, "credit_volunteer_act") == (
        "evt-issue_intake-volunteer_act.recorded--points_bank.credit_volunteer_act"
    )
    assert queue_of(POINTS_BANK, "a_handler_long_gone") is None
