"""Planning a ledger import: every row is checked against the registry and the rows above it
before anything is written, so a file with one bad row writes nothing.

The plan is idempotent: a row already in the registry with the same details counts as
unchanged, so an import that was interrupted can simply be sent again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from services.registry.domain import people, posts, tree
from shared.errors import Conflict, InvalidInput
from shared.events import Envelope
from shared.pii import PiiVault

Document = dict[str, Any]
MASKED_NUMBER_FIELDS = ("phone", "id_number")


@dataclass
class ImportPlan:
    kind: str
    changes: list[tuple[Document, list[Envelope]]] = field(default_factory=list)
    unchanged: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def already_there(
        self, line: int, earlier: Document, new: BaseModel, exclude: set[str] = frozenset()
    ) -> None:
        """A row for a record the registry has: unchanged if the details agree, else refused."""
        if _same(earlier, new, exclude):
            self.unchanged += 1
        else:
            self.refuse(
                line, Conflict("already_registered", f"{earlier['_id']} is registered with other details")
            )

    def refuse(self, line: int, exc: InvalidInput | Conflict) -> None:
        if isinstance(exc, InvalidInput):
            self.errors += [{"line": line, **error} for error in exc.errors]
        else:
            self.errors.append({"line": line, "field": exc.field or "row", "message": exc.message})


def without_masked_numbers(rows: list[tuple[int, Document]]) -> list[tuple[int, Document]]:
    """An exported ledger shows numbers masked (138****5678); importing it back keeps the
    numbers the registry has instead of refusing the masked ones."""
    return [
        (line, {k: v for k, v in row.items() if not (k in MASKED_NUMBER_FIELDS and "*" in str(v))})
        for line, row in rows
    ]


def plan_import(
    kind: str,
    rows: list[tuple[int, BaseModel]],
    *,
    nodes: Mapping[str, Document],
    places: Mapping[str, Document],
    known_people: Mapping[str, Document],
    tenures: list[Document],
    vault: PiiVault,
) -> ImportPlan:
    plan = ImportPlan(kind)
    planner = {
        "organisations": _organisations,
        "places": _places,
        "people": _people,
        "memberships": _memberships,
    }[kind]
    planner(plan, rows, dict(nodes), dict(places), dict(known_people), tenures, vault)
    return plan


def _same(earlier: Document, new: BaseModel, exclude: set[str] = frozenset()) -> bool:
    given = new.model_dump(mode="json", exclude_unset=True, exclude=set(exclude))
    return all(earlier.get(name) == value for name, value in given.items())


def _organisations(plan: ImportPlan, rows, nodes, places, known_people, tenures, vault) -> None:
    for line, new in rows:
        if new.code in nodes:
            plan.already_there(line, nodes[new.code], new)
            continue
        try:
            tree.check_new_organisation(new, nodes, places)
        except InvalidInput as exc:
            plan.refuse(line, exc)
            continue
        document, events = tree.new_organisation(new)
        nodes[new.code] = document  # rows below may hang under it
        plan.changes.append((document, events))


def _places(plan: ImportPlan, rows, nodes, places, known_people, tenures, vault) -> None:
    for line, new in rows:
        if new.code in places:
            plan.already_there(line, places[new.code], new)
            continue
        try:
            document = tree.new_place(new, nodes, places)
        except InvalidInput as exc:
            plan.refuse(line, exc)
            continue
        places[new.code] = document
        plan.changes.append((document, []))


def _people(plan: ImportPlan, rows, nodes, places, known_people, tenures, vault) -> None:
    id_numbers = {p["id_number"]["index"]: p["_id"] for p in known_people.values() if p.get("id_number")}
    for line, new in rows:
        earlier = known_people.get(new.person_id) if new.person_id else None
        if earlier is not None:
            plan.already_there(line, earlier, new, {"person_id", *MASKED_NUMBER_FIELDS})
            continue
        try:
            people.check_person(new.model_dump(), nodes, places)
        except InvalidInput as exc:
            plan.refuse(line, exc)
            continue
        document, events = people.new_person(new, vault, nodes, places)
        index = document.get("id_number", {}).get("index") if document.get("id_number") else None
        if index is not None and index in id_numbers:
            plan.refuse(line, InvalidInput.single("id_number", f"also the ID number of {id_numbers[index]}"))
            continue
        if index is not None:
            id_numbers[index] = document["_id"]
        known_people[document["_id"]] = document
        plan.changes.append((document, events))


def _memberships(plan: ImportPlan, rows, nodes, places, known_people, tenures, vault) -> None:
    chains: dict[str, list[Document]] = {}
    for tenure in tenures:
        chains.setdefault(tenure["chain"], []).append(tenure)
    for line, new in rows:
        chain = chains.setdefault(posts.chain_key(new), [])
        target = {"organisation_id": new.organisation_id, "place_id": new.place_id}
        if any(
            t["person_id"] == new.person_id
            and t["start_on"] == new.start_on.isoformat()
            and t.get("role") == new.role
            for t in chain
        ) and all(t.get(k) == v for t in chain for k, v in target.items() if t["person_id"] == new.person_id):
            plan.unchanged += 1
            continue
        try:
            posts.check_membership(new, known_people.get(new.person_id), nodes, places)
            tenure, events = posts.next_tenure(new, chain)
        except (InvalidInput, Conflict) as exc:
            plan.refuse(line, exc)
            continue
        chain.append(tenure)
        plan.changes.append((tenure, events))


def ledger_rows(
    kind: str,
    *,
    nodes: Mapping[str, Document],
    places: Mapping[str, Document],
    known_people: Mapping[str, Document],
    tenures: list[Document],
    within: bool,
) -> list[Document]:
    """A ledger's rows for export, by field name; `nodes` is the (sub)tree exported."""
    codes = set(nodes)
    chosen_places = tree.places_within(places.values(), codes) if within else list(places.values())
    if kind == "organisations":
        return [tree.organisation_view(node) for node in tree.in_order(nodes)]
    if kind == "places":
        return [tree.place_view(place) for place in sorted(chosen_places, key=lambda p: p["_id"])]
    if kind == "people":
        chosen = [p for p in known_people.values() if not within or p["community_id"] in codes]
        return [
            {"person_id": p["_id"], **people.person_view(p)} for p in sorted(chosen, key=lambda p: p["_id"])
        ]
    place_codes = {p["_id"] for p in chosen_places}
    held = [
        t
        for t in posts.all_effective(tenures)
        if t.get("organisation_id") in codes or t.get("place_id") in place_codes
    ]
    return [posts.membership_view(t) for t in sorted(held, key=lambda t: (t["chain"], t["seq"]))]
