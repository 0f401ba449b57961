"""Issue intake service (诉求受理): nameko entrypoints, kept thin."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nameko.exceptions import serialize

from services.intake import domain
from services.intake.store import IntakeStore
from shared.consumer import consumes
from shared.errors import DOMAIN_ERRORS, Conflict, InvalidInput, NotFound
from shared.events import (
    ISSUE_INTAKE,
    Envelope,
    OrganisationClosed,
    OrganisationCreated,
    OrganisationMoved,
    PersonRegistered,
    PersonUpdated,
)
from shared.health import HealthEntrypoints
from shared.mongo import StoreProvider
from shared.outbox import OutboxRelay
from shared.rpc import rpc
from shared.schemas import ActRevocation, VolunteerActBatch, VolunteerActInput, validated
from shared.settings import local_today


class IssueIntake(HealthEntrypoints):
    name = ISSUE_INTAKE

    store: IntakeStore = StoreProvider(ISSUE_INTAKE, IntakeStore)
    relay: OutboxRelay = OutboxRelay(ISSUE_INTAKE)

    @rpc
    def list_volunteer_act_types(self) -> list[dict[str, str]]:
        return [
            {"code": t.code, "name_zh": t.name_zh, "name_en": t.name_en, "source": t.source}
            for t in domain.ACT_TYPES.values()
        ]

    @rpc
    def record_volunteer_acts_apart(
        self, requests: list[tuple[str, str, dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Single-act requests, each (client, idempotency key, act): the gateway coalesces
        concurrent POSTs into one call, and a lone POST is a call of one. Each is checked and
        answered on its own (`{"result": ...}` or `{"error": ...}`, a serialised domain error);
        they only share the write."""
        return [
            {"error": serialize(outcome)} if isinstance(outcome, Exception) else {"result": outcome}
            for outcome in self._record_each(requests)
        ]

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def record_volunteer_acts(self, client_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = validated(VolunteerActBatch, {"items": items})
        first_use: dict[str, int] = {}
        repeats = []
        for index, item in enumerate(batch.items):
            if item.idempotency_key in first_use:
                repeats.append(
                    {
                        "field": f"items[{index}].idempotency_key",
                        "message": f"repeats items[{first_use[item.idempotency_key]}]",
                    }
                )
            first_use.setdefault(item.idempotency_key, index)
        if repeats:
            raise InvalidInput(repeats)
        acts = [VolunteerActInput(**item.model_dump(exclude={"idempotency_key"})) for item in batch.items]
        problems = self._check(acts, field_prefixes=[f"items[{index}]." for index in range(len(acts))])
        errors = [error for problem in problems if problem for error in problem.errors]
        if errors:
            raise InvalidInput(errors)
        keyed = [(client_id, item.idempotency_key, act) for item, act in zip(batch.items, acts, strict=True)]
        return {"items": self._insert(keyed)}

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def get_volunteer_act(self, act_id: str) -> dict[str, Any]:
        document = self.store.act(act_id)
        if document is None:
            raise NotFound("volunteer act", act_id)
        return domain.act_view(document)

    @rpc(expected_exceptions=DOMAIN_ERRORS)
    def revoke_volunteer_act(self, act_id: str, revocation: dict[str, Any]) -> dict[str, Any]:
        """Revoke a recorded act (its points are taken back); revoking it again changes nothing."""
        wanted = validated(ActRevocation, revocation)
        document = self.store.act(act_id)
        if document is None:
            raise NotFound("volunteer act", act_id)
        if document.get("revoked"):
            return domain.act_view(document)
        change, events = domain.revocation(document, wanted.reason, wanted.actor)
        records = self.store.update_act(document, change, events)
        if records is None:
            now = self.store.act(act_id)
            if now is not None and now.get("revoked"):  # revoked meanwhile by another call
                return domain.act_view(now)
            raise Conflict("changed_meanwhile", f"{act_id} changed meanwhile; try again")
        self.relay.publish_soon(records)
        return domain.act_view({**document, **change})

    @consumes(PersonRegistered)
    def remember_person(self, envelope: Envelope, data: PersonRegistered) -> None:
        self.store.remember_person(data.read_model())

    @consumes(PersonUpdated)
    def update_person(self, envelope: Envelope, data: PersonUpdated) -> None:
        self.store.remember_person(data.read_model())

    @consumes(OrganisationCreated)
    def remember_organisation(self, envelope: Envelope, data: OrganisationCreated) -> None:
        self.store.remember_organisation(data)

    @consumes(OrganisationMoved)
    def move_organisation(self, envelope: Envelope, data: OrganisationMoved) -> None:
        self.store.move_organisation(data.organisation_id, data.to_parent_id)

    @consumes(OrganisationClosed)
    def close_organisation(self, envelope: Envelope, data: OrganisationClosed) -> None:
        self.store.close_organisation(data.organisation_id, data.closed_on.isoformat())

    def _record_each(
        self, requests: list[tuple[str, str, dict[str, Any]]]
    ) -> list[dict[str, Any] | Exception]:
        """Record single-act requests, each (client, idempotency key, act) on its own: per
        request its result or the domain error that refuses it."""
        outcomes: list[dict[str, Any] | Exception | None] = [None] * len(requests)
        valid = []
        for index, (client_id, idempotency_key, act) in enumerate(requests):
            try:
                if not idempotency_key or len(idempotency_key) > 200:
                    raise InvalidInput.single("Idempotency-Key", "required, 1 to 200 characters")
                valid.append((index, client_id, idempotency_key, validated(VolunteerActInput, act)))
            except InvalidInput as exc:
                outcomes[index] = exc
        checked = []
        problems = self._check([act for *_, act in valid], field_prefixes=[""] * len(valid))
        for request, problem in zip(valid, problems, strict=True):
            if problem is None:
                checked.append(request)
            else:
                outcomes[request[0]] = problem
        results = self._insert([(client_id, key, act) for _, client_id, key, act in checked])
        for (index, *_), result in zip(checked, results, strict=True):
            outcomes[index] = (
                Conflict(
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used for a different volunteer act",
                )
                if result["status"] == "conflict"
                else result
            )
        return outcomes

    def _check(
        self, acts: list[VolunteerActInput], field_prefixes: list[str]
    ) -> list[InvalidInput | NotFound | None]:
        """Per act, the rule it breaks, or None; errors name fields after their prefix."""
        today = local_today()
        people = self.store.people_by_id(act.person_id for act in acts)
        communities = self.store.organisations_by_id(act.community_id for act in acts)
        problems: list[InvalidInput | NotFound | None] = []
        for act, prefix in zip(acts, field_prefixes, strict=True):
            try:
                domain.check_volunteer_act(
                    act,
                    person=people.get(act.person_id),
                    community=communities.get(act.community_id),
                    today=today,
                    field_prefix=prefix,
                )
                problems.append(None)
            except (InvalidInput, NotFound) as exc:
                problems.append(exc)
        return problems

    def _insert(self, keyed: list[tuple[str, str, VolunteerActInput]]) -> list[dict[str, Any]]:
        """Record checked acts, each (client, idempotency key, act), in one write; per act its
        result, status "conflict" if its key was used before for a different act."""
        if not keyed:
            return []
        recorded_at = datetime.now(UTC)
        changes = [
            domain.new_act(
                domain.act_id_for(client_id, key), act, client_id=client_id, recorded_at=recorded_at
            )
            for client_id, key, act in keyed
        ]
        records, existing = self.store.insert_acts(changes)
        self.relay.publish_soon(records)
        results = []
        for index, ((document, _), (_, _, act)) in enumerate(zip(changes, keyed, strict=True)):
            act_id = document["_id"]
            if index not in existing:
                results.append({"act_id": act_id, "status": "accepted", "replayed": False})
                continue
            earlier = self.store.act(act_id)
            same = earlier is not None and earlier["fingerprint"] == domain.fingerprint(act)
            results.append({"act_id": act_id, "status": "accepted" if same else "conflict", "replayed": same})
        return results
