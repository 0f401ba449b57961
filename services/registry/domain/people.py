"""People in the registry: residents, party members, in-service members, cadres, volunteers.

Phone and ID numbers arrive in clear, are sealed by the vault before anything is stored, and
only their masked form is ever shown; events carry neither.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from services.registry.domain.tree import PARTY_ORGANISATIONS, is_open
from shared.errors import InvalidInput
from shared.events import Envelope, PersonRegistered, PersonUpdated, new_event
from shared.pii import NumberKind, PiiVault
from shared.schemas.registry import Classification, NewPerson, PersonDetails, PlaceKind

Document = dict[str, Any]
NUMBERS: tuple[NumberKind, ...] = ("phone", "id_number")
FLAGS = ("is_party_member", "is_cadre", "is_volunteer", "is_party_member_household")
PLAIN_FIELDS = (
    "name",
    "community_id",
    "household_id",
    "party_organisation_id",
    "employer",
    "employer_unit_id",
    *FLAGS,
)


def check_person(
    person: Mapping[str, Any], tree: Mapping[str, Document], places: Mapping[str, Document]
) -> None:
    """The rules a person's whole record must meet (on registration and after every update)."""
    errors: list[dict[str, str]] = []

    def refuse(field: str, message: str) -> None:
        errors.append({"field": field, "message": message})

    community = tree.get(person["community_id"])
    if community is None or community["classification"] != Classification.COMMUNITY or not is_open(community):
        refuse("community_id", f"unknown community {person['community_id']!r}")
    household_id = person.get("household_id")
    if household_id is not None:
        household = places.get(household_id)
        if household is None or household["kind"] != PlaceKind.HOUSEHOLD:
            refuse("household_id", f"unknown household {household_id!r}")
        elif household["community_id"] != person["community_id"]:
            refuse(
                "household_id", f"the household is in {household['community_id']}, not the person's community"
            )
    party_organisation_id = person.get("party_organisation_id")
    if party_organisation_id is not None:
        organisation = tree.get(party_organisation_id)
        if organisation is None or organisation["classification"] not in PARTY_ORGANISATIONS:
            refuse("party_organisation_id", f"unknown party organisation {party_organisation_id!r}")
        if not person.get("is_party_member"):
            refuse("party_organisation_id", "only a party member belongs to a party organisation")
    employer_unit_id = person.get("employer_unit_id")
    if employer_unit_id is not None and employer_unit_id not in tree:
        refuse("employer_unit_id", f"unknown organisation {employer_unit_id!r}")
    if person.get("is_cadre"):
        if not person.get("is_party_member"):
            refuse("is_cadre", "a cadre must be a party member")
        if not (person.get("employer") or employer_unit_id):
            refuse("employer", "a cadre is an in-service member and needs an employer unit")
    if person.get("is_party_member_household") and not person.get("is_party_member"):
        refuse("is_party_member_household", "a 党员中心户 is a party member's household")
    if errors:
        raise InvalidInput(errors)


def new_person(
    new: NewPerson, vault: PiiVault, tree: Mapping[str, Document], places: Mapping[str, Document]
) -> tuple[Document, list[Envelope]]:
    person_id = new.person_id or f"p-{uuid.uuid4().hex[:20]}"
    fields = {name: getattr(new, name) for name in PLAIN_FIELDS}
    fields = {**fields, **{flag: bool(fields[flag]) for flag in FLAGS}}
    if fields["employer"] is None and fields["employer_unit_id"]:
        fields["employer"] = tree[fields["employer_unit_id"]]["name"]
    fields["grid_id"] = grid_of(fields, places)
    document = {"_id": person_id, **fields, **_sealed(new, vault), "version": 1}
    event = new_event(PersonRegistered(person_id=person_id, **_public(document)), subject=person_id)
    return document, [event]


def updated(
    person: Document, details: PersonDetails, vault: PiiVault, places: Mapping[str, Document]
) -> tuple[Document, Document, list[Envelope]]:
    """(the whole record after the change, the fields that change, the events)."""
    given = details.model_dump(exclude_unset=True)
    for name in ("name", "community_id", *FLAGS):
        if name in given and given[name] is None:
            raise InvalidInput.single(name, "cannot be cleared")
    change = {name: value for name, value in given.items() if name in PLAIN_FIELDS}
    change |= _sealed(details, vault)
    change["version"] = person.get("version", 1) + 1
    # Set on every update: the household may have changed, and older records lack it.
    change["grid_id"] = grid_of({**person, **change}, places)
    after = {**person, **change}
    event = new_event(
        PersonUpdated(person_id=person["_id"], revision=after["version"], **_public(after)),
        subject=person["_id"],
    )
    return after, change, [event]


def grid_of(person: Mapping[str, Any], places: Mapping[str, Document]) -> str | None:
    """A person's grid is their household's (places carry it); none without a household."""
    household = places.get(person.get("household_id") or "")
    return household.get("grid_id") if household else None


def _sealed(details: PersonDetails, vault: PiiVault) -> Document:
    """Numbers given, sealed; a number given as null is removed."""
    given = details.model_dump(include=set(NUMBERS), exclude_unset=True)
    return {kind: vault.seal(kind, value) if value else None for kind, value in given.items()}


def _public(person: Mapping[str, Any]) -> Document:
    """What events say about a person: never a number, sealed or not."""
    return {
        "name": person["name"],
        "community_id": person["community_id"],
        "is_party_member": person["is_party_member"],
        "is_cadre": person["is_cadre"],
        "employer": person.get("employer"),
        "grid_id": person.get("grid_id"),
    }


def is_in_service(person: Mapping[str, Any]) -> bool:
    """An in-service party member (在职党员): works for a unit, a member of the party."""
    return bool(person.get("is_party_member") and (person.get("employer") or person.get("employer_unit_id")))


def lives_in(person: Mapping[str, Any], organisations: Collection[str]) -> bool:
    """Whether the person's community, or their grid (网格, from their household), is one of
    those organisations."""
    return person.get("community_id") in organisations or person.get("grid_id") in organisations


def listing(
    everyone: Iterable[Document],
    areas: Iterable[Collection[str]] = (),
    *,
    party_members_only: bool = False,
    in_service_only: bool = False,
) -> list[Document]:
    """The people a listing shows, ordered by id: those who live in each of the `areas` (sets
    of organisations, see `lives_in`), party members only, or in-service party members only."""
    areas = list(areas)
    shown = (
        p
        for p in everyone
        if all(lives_in(p, area) for area in areas)
        and (not party_members_only or p.get("is_party_member"))
        and (not in_service_only or is_in_service(p))
    )
    return sorted(shown, key=lambda p: p["_id"])


def with_number(everyone: Iterable[Document], kind: NumberKind, index: str) -> list[Document]:
    """The people whose phone or ID number has this search index, ordered by id."""
    return sorted((p for p in everyone if (p.get(kind) or {}).get("index") == index), key=lambda p: p["_id"])


def person_view(document: Mapping[str, Any]) -> Document:
    view = {"id": document["_id"], **{name: document.get(name) for name in PLAIN_FIELDS}}
    for kind in NUMBERS:
        view[kind] = document[kind]["masked"] if document.get(kind) else None
    view["is_in_service"] = is_in_service(document)
    view["grid_id"] = document.get("grid_id")
    return view
