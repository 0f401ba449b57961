"""Points bank service (积分银行): nameko entrypoints, kept thin."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nameko.rpc import rpc

from services.points import domain
from services.points.store import PointsStore
from shared.consumer import consumes
from shared.errors import DOMAIN_ERRORS
from shared.events import POINTS_BANK, Envelope, VolunteerActRecorded
from shared.health import HealthEntrypoints
from shared.mongo import StoreProvider
from shared.settings import get_settings


class PointsBank(HealthEntrypoints):
    name = POINTS_BANK

    store: PointsStore = StoreProvider(POINTS_BANK, PointsStore)

    @consumes(VolunteerActRecorded)
    def credit_volunteer_act(self, envelope: Envelope, act: VolunteerActRecorded) -> None:
        entry = domain.volunteer_act_credit(
            envelope, act, get_settings().points_per_hour, applied_at=datetime.now(UTC)
        )
        self.store.post(act.person_id, envelope.id, entry)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_account(self, person_id: str) -> dict[str, Any]:
        """An account nobody has credited yet answers with balance 0 and no entries."""
        summary = self.store.account(person_id) or domain.empty_account(person_id)
        return {
            "person_id": person_id,
            "balance": summary["balance"],
            "entries_total": summary["seq"],
            "entries": [domain.entry_view(e) for e in summary["recent"]],
        }
