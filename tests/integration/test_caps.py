"""Daily and yearly caps on the real broker and database: what a cap holds is what was
credited, so it never cuts a later act short."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.points import domain
from tests.conftest import new_id
from tests.support import act_recorded_event, eventually, points_bank_store, publish_as_intake

pytestmark = pytest.mark.integration


def test_a_daily_cap_holds_only_what_the_yearly_cap_let_through(rpc):
    """Daily 25 and yearly 30, at 10 points an hour. The second act asks 20: the day grants
    20, the year only 10, so 10 is credited and the day holds 10, not 20. Once the first act
    is reversed (the year gives its 20 back), a third act that day earns what is left of the
    day, 15; a day holding 20 would have let through 5."""
    person, community = new_id("p"), new_id("c")
    rule = {"rule_id": new_id("rule"), "community_id": community, "valid_from": "2026-01-01"}
    rpc.points_bank.add_earning_rule({**rule, "points_per_hour": "10", "daily_cap": 25, "yearly_cap": 30})

    def act(day: date) -> str:
        event = act_recorded_event(
            person_id=person, community_id=community, hours=Decimal(2), occurred_on=day
        )
        publish_as_intake(event)
        return domain.act_transfer_id(event.id)

    first = act(date(2026, 11, 19))
    eventually(lambda: rpc.points_bank.get_account(person)["balance"] == 20)
    act(date(2026, 11, 20))
    eventually(lambda: rpc.points_bank.get_account(person)["balance"] == 30)
    day, year = f"cap:{person}:{rule['rule_id']}:2026-11-20", f"cap:{person}:{rule['rule_id']}:2026"
    held = points_bank_store().counters.summaries_of
    eventually(lambda: {k: s["balance"] for k, s in held([day, year]).items()} == {day: 10, year: 30})

    rpc.points_bank.reverse_transfer(first, {"actor": "staff-1", "reason": "录入错误"})
    eventually(lambda: held([year])[year]["balance"] == 10)
    act(date(2026, 11, 20))
    eventually(lambda: rpc.points_bank.get_account(person)["entries_total"] == 4)
    account = rpc.points_bank.get_account(person)
    assert account["balance"] == 25
    assert (account["entries"][0]["points"], account["entries"][0]["capped"]["cap"]) == (15, "daily 25")
