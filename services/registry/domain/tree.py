"""The governance tree and the places it covers. Plain functions, no I/O.

Organisations: street 大工委 → community 大党委 → grid party branch → building party group
(seed 004), with the compound and functional branches, committees, property companies and
co-building units that hang off them (seed 000). Each node keeps only its parent's code, so a
move is one document write and the subtree follows; subtrees are computed from the whole tree,
which for a district is a few thousand nodes.

Places: compound (小区) → building (楼栋) → unit (单元) → household (户); every place carries
the community and grid it belongs to, copied down from its parent.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from datetime import date
from typing import Any

from shared.errors import Conflict, InvalidInput
from shared.events import (
    Envelope,
    OrganisationClosed,
    OrganisationCreated,
    OrganisationMoved,
    new_event,
)
from shared.schemas.registry import (
    SEGMENT_PATTERN,
    STREET_CODE_PATTERN,
    Classification,
    NewOrganisation,
    NewPlace,
    PlaceKind,
)

C = Classification
Document = dict[str, Any]

# Which classifications each classification may hang under.
ALLOWED_PARENTS: dict[Classification, frozenset[Classification]] = {
    C.STREET: frozenset(),
    C.COMMUNITY: frozenset({C.STREET}),
    C.GRID: frozenset({C.COMMUNITY}),
    C.BUILDING: frozenset({C.GRID}),
    C.COMPOUND_BRANCH: frozenset({C.COMMUNITY, C.GRID}),
    C.FUNCTIONAL_BRANCH: frozenset({C.COMMUNITY, C.COMPOUND_BRANCH}),
    C.PROPERTY_BRANCH: frozenset({C.STREET, C.COMMUNITY, C.PROPERTY_COMPANY}),
    C.RESIDENTS_COMMITTEE: frozenset({C.COMMUNITY}),
    C.HOMEOWNERS_COMMITTEE: frozenset({C.COMMUNITY, C.GRID}),
    C.PROPERTY_COMPANY: frozenset({C.STREET, C.COMMUNITY}),
    C.CO_BUILDING_UNIT: frozenset({C.STREET, C.COMMUNITY}),
}
# The spine of the tree, whose codes extend their parent's code by one segment.
SPINE = (C.COMMUNITY, C.GRID, C.BUILDING)
PARTY_ORGANISATIONS = frozenset(
    {C.STREET, C.COMMUNITY, C.GRID, C.BUILDING, C.COMPOUND_BRANCH, C.FUNCTIONAL_BRANCH, C.PROPERTY_BRANCH}
)
PLACE_PARENT: dict[PlaceKind, PlaceKind | None] = {
    PlaceKind.COMPOUND: None,
    PlaceKind.BUILDING: PlaceKind.COMPOUND,
    PlaceKind.UNIT: PlaceKind.BUILDING,
    PlaceKind.HOUSEHOLD: PlaceKind.UNIT,
}


def is_open(organisation: Document, on: date | None = None) -> bool:
    """Open now, or (given `on`) founded by then and not yet closed."""
    closed_on, founded_on = organisation.get("closed_on"), organisation.get("founded_on")
    if on is None:
        return closed_on is None
    day = on.isoformat()
    return (founded_on is None or founded_on <= day) and (closed_on is None or day < closed_on)


# --- organisations ------------------------------------------------------------------------


def check_new_organisation(
    new: NewOrganisation, tree: Mapping[str, Document], places: Mapping[str, Document]
) -> None:
    """Every rule a new organisation must meet, against the current tree and places."""
    errors: list[dict[str, str]] = []
    parent = tree.get(new.parent_id) if new.parent_id else None
    errors += _parent_errors(new.classification, new.parent_id, parent)
    errors += _code_errors(new, parent)
    if new.compound_id is not None and places.get(new.compound_id, {}).get("kind") != PlaceKind.COMPOUND:
        errors.append({"field": "compound_id", "message": f"unknown compound {new.compound_id!r}"})
    for index, compound in enumerate(new.serves_compounds):
        if places.get(compound, {}).get("kind") != PlaceKind.COMPOUND:
            errors.append(
                {"field": f"serves_compounds[{index}]", "message": f"unknown compound {compound!r}"}
            )
    if new.party_branch_id is not None:
        branch = tree.get(new.party_branch_id)
        if branch is None or branch["classification"] != C.PROPERTY_BRANCH:
            errors.append({"field": "party_branch_id", "message": "must be a property party branch"})
    if errors:
        raise InvalidInput(errors)


def _parent_errors(
    classification: Classification, parent_id: str | None, parent: Document | None
) -> list[dict[str, str]]:
    allowed = ALLOWED_PARENTS[classification]
    if not allowed:
        return [] if parent_id is None else [{"field": "parent_id", "message": "a street has no parent"}]
    names = ", ".join(sorted(allowed))
    if parent_id is None:
        return [{"field": "parent_id", "message": f"required: one of {names}"}]
    if parent is None:
        return [{"field": "parent_id", "message": f"unknown organisation {parent_id!r}"}]
    if not is_open(parent):
        return [{"field": "parent_id", "message": f"{parent_id!r} was closed on {parent['closed_on']}"}]
    if parent["classification"] not in allowed:
        return [{"field": "parent_id", "message": f"must be one of {names}, not {parent['classification']}"}]
    return []


def _code_errors(new: NewOrganisation, parent: Document | None) -> list[dict[str, str]]:
    if new.classification == C.STREET and not re.match(STREET_CODE_PATTERN, new.code):
        return [
            {
                "field": "code",
                "message": "a street code is the district code and street number, e.g. 420391-001",
            }
        ]
    if new.classification in SPINE and parent is not None:
        prefix = parent["code"] + "-"
        segment = new.code[len(prefix) :]
        if not new.code.startswith(prefix) or not re.match(SEGMENT_PATTERN, segment):
            return [
                {"field": "code", "message": f"must be the parent's code plus one segment, e.g. {prefix}01"}
            ]
    return []


def new_organisation(new: NewOrganisation) -> tuple[Document, list[Envelope]]:
    fields = new.model_dump(mode="json")
    document = {"_id": new.code, **fields, "closed_on": None, "version": 1}
    event = new_event(
        OrganisationCreated(
            organisation_id=new.code,
            code=new.code,
            name=new.name,
            classification=new.classification,
            parent_id=new.parent_id,
        ),
        subject=new.code,
    )
    return document, [event]


def move(
    organisation: Document, new_parent_id: str, tree: Mapping[str, Document]
) -> tuple[Document, list[Envelope]]:
    """The change that moves `organisation` (and so its subtree) under a new parent."""
    if not is_open(organisation):
        raise Conflict("closed", f"{organisation['_id']!r} is closed")
    if new_parent_id == organisation["_id"] or new_parent_id in subtree(tree, organisation["_id"]):
        raise InvalidInput.single("parent_id", "would make a cycle: the new parent is inside the subtree")
    errors = _parent_errors(C(organisation["classification"]), new_parent_id, tree.get(new_parent_id))
    if errors:
        raise InvalidInput(errors)
    event = new_event(
        OrganisationMoved(
            organisation_id=organisation["_id"],
            from_parent_id=organisation["parent_id"],
            to_parent_id=new_parent_id,
        ),
        subject=organisation["_id"],
    )
    return {"parent_id": new_parent_id, "version": organisation.get("version", 1) + 1}, [event]


def close(
    organisation: Document, closed_on: date, tree: Mapping[str, Document]
) -> tuple[Document, list[Envelope]]:
    if not is_open(organisation):
        raise Conflict("closed", f"{organisation['_id']!r} was closed on {organisation['closed_on']}")
    open_children = sorted(c["_id"] for c in children(tree, organisation["_id"]) if is_open(c))
    if open_children:
        raise Conflict(
            "has_open_children",
            f"close or move its open children first: {', '.join(open_children[:10])}",
        )
    if organisation.get("founded_on") and closed_on.isoformat() < organisation["founded_on"]:
        raise InvalidInput.single("closed_on", "before the organisation was founded")
    event = new_event(
        OrganisationClosed(
            organisation_id=organisation["_id"],
            classification=organisation["classification"],
            closed_on=closed_on,
        ),
        subject=organisation["_id"],
    )
    return {"closed_on": closed_on.isoformat(), "version": organisation.get("version", 1) + 1}, [event]


def children(tree: Mapping[str, Document], parent_id: str) -> list[Document]:
    return [node for node in tree.values() if node.get("parent_id") == parent_id]


def subtree(tree: Mapping[str, Document], root_id: str) -> set[str]:
    """Codes of `root_id` and everything below it."""
    below: dict[str, list[str]] = {}
    for node in tree.values():
        below.setdefault(node.get("parent_id"), []).append(node["_id"])
    found, stack = set(), [root_id]
    while stack:
        code = stack.pop()
        if code in found:  # defensive: a cycle written by hand into the database
            continue
        found.add(code)
        stack.extend(below.get(code, []))
    return found


def ancestors(tree: Mapping[str, Document], code: str) -> list[Document]:
    """From the node's parent up to the root."""
    chain, seen = [], {code}
    parent_id = tree[code].get("parent_id") if code in tree else None
    while parent_id and parent_id in tree and parent_id not in seen:
        seen.add(parent_id)
        chain.append(tree[parent_id])
        parent_id = tree[parent_id].get("parent_id")
    return chain


def community_of(tree: Mapping[str, Document], code: str) -> str | None:
    """The community an organisation lies in (itself if it is one)."""
    return nearest(tree, code, (C.COMMUNITY,))


def nearest(tree: Mapping[str, Document], code: str, classifications: Collection[str]) -> str | None:
    """The organisation itself if it is of one of those classifications, else its nearest
    ancestor that is."""
    if tree.get(code, {}).get("classification") in classifications:
        return code
    return next((a["_id"] for a in ancestors(tree, code) if a["classification"] in classifications), None)


def in_order(tree: Mapping[str, Document]) -> list[Document]:
    """Parents before children, siblings by code: a flat listing that reads as the tree."""
    ordered: list[Document] = []
    below: dict[str | None, list[Document]] = {}
    for node in tree.values():
        parent = node.get("parent_id") if node.get("parent_id") in tree else None
        below.setdefault(parent, []).append(node)
    stack = sorted(below.get(None, []), key=lambda n: n["_id"], reverse=True)
    while stack:
        node = stack.pop()
        ordered.append(node)
        stack.extend(sorted(below.get(node["_id"], []), key=lambda n: n["_id"], reverse=True))
    return ordered


def organisation_view(document: Document, tree: Mapping[str, Document] | None = None) -> Document:
    view = {
        "id": document["_id"],
        "code": document["code"],
        "name": document["name"],
        "classification": document["classification"],
        "parent_id": document.get("parent_id"),
        "founded_on": document.get("founded_on"),
        "closed_on": document.get("closed_on"),
    }
    for name in ("compound_id", "party_status", "party_branch_id"):
        if document.get(name) is not None:
            view[name] = document[name]
    if document.get("serves_compounds"):
        view["serves_compounds"] = document["serves_compounds"]
    if tree is not None:
        view["path"] = [a["_id"] for a in reversed(ancestors(tree, document["_id"]))]
    return view


# --- places ---------------------------------------------------------------------------------


def new_place(new: NewPlace, tree: Mapping[str, Document], places: Mapping[str, Document]) -> Document:
    """The place document, community and grid filled in from its parent."""
    expected = PLACE_PARENT[new.kind]
    errors: list[dict[str, str]] = []
    parent = places.get(new.parent_id) if new.parent_id else None
    community_id, grid_id = new.community_id, new.grid_id
    if expected is None:
        if new.parent_id is not None:
            errors.append({"field": "parent_id", "message": "a compound has no parent place"})
        if community_id is None or tree.get(community_id, {}).get("classification") != C.COMMUNITY:
            errors.append({"field": "community_id", "message": f"unknown community {community_id!r}"})
    elif parent is None or parent["kind"] != expected:
        errors.append({"field": "parent_id", "message": f"must be a {expected.value} place"})
    else:
        community_id = parent["community_id"]
        grid_id = grid_id or parent.get("grid_id")
        if new.community_id not in (None, community_id):
            errors.append({"field": "community_id", "message": f"the parent place is in {community_id}"})
    if grid_id is not None:
        grid = tree.get(grid_id)
        if grid is None or grid["classification"] != C.GRID:
            errors.append({"field": "grid_id", "message": f"unknown grid {grid_id!r}"})
        elif community_id and grid.get("parent_id") != community_id:
            errors.append({"field": "grid_id", "message": f"{grid_id} is not a grid of {community_id}"})
    elif new.kind != PlaceKind.COMPOUND and not errors:
        errors.append({"field": "grid_id", "message": "required: the grid this place belongs to"})
    if errors:
        raise InvalidInput(errors)
    return {
        "_id": new.code,
        "code": new.code,
        "name": new.name,
        "kind": new.kind.value,
        "parent_id": new.parent_id,
        "community_id": community_id,
        "grid_id": grid_id,
    }


def place_view(document: Document) -> Document:
    return {
        key: document.get(key) for key in ("code", "name", "kind", "parent_id", "community_id", "grid_id")
    } | {"id": document["_id"]}


def places_within(places: Iterable[Document], organisations: set[str]) -> list[Document]:
    return [p for p in places if p.get("community_id") in organisations or p.get("grid_id") in organisations]
