"""Organisation registry domain (组织): the governance tree and its people. No I/O here.

The tree (seed 004): street 大工委 → community 大党委 → grid party branch → building party group.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.errors import InvalidInput
from shared.events import Envelope, OrganisationCreated, PersonRegistered, new_event

CODE_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z_-]{1,39}$"


class Classification(StrEnum):
    STREET = "street_working_committee"  # 街道“大工委”
    COMMUNITY = "community_party_committee"  # 社区“大党委”
    GRID = "grid_party_branch"  # 网格党支部
    BUILDING = "building_party_group"  # 楼栋党小组


PARENT_CLASSIFICATION: dict[Classification, Classification | None] = {
    Classification.STREET: None,
    Classification.COMMUNITY: Classification.STREET,
    Classification.GRID: Classification.COMMUNITY,
    Classification.BUILDING: Classification.GRID,
}


class NewOrganisation(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    code: str = Field(pattern=CODE_PATTERN, description="stable code, e.g. district+street+community+grid")
    name: str = Field(min_length=1, max_length=100)
    classification: Classification
    parent_id: str | None = None


class NewPerson(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    person_id: str | None = Field(None, pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=50)
    community_id: str = Field(min_length=1, max_length=40)
    is_party_member: bool = False
    is_cadre: bool = Field(False, description="in-service party member whose promotion may be assessed")
    employer: str | None = Field(None, max_length=100, description="employer unit of an in-service member")

    @model_validator(mode="after")
    def cadre_is_in_service_party_member(self) -> NewPerson:
        if self.is_cadre and not self.is_party_member:
            raise ValueError("is_cadre: a cadre must be a party member")
        if self.is_cadre and not self.employer:
            raise ValueError("employer: a cadre is an in-service member and needs an employer unit")
        return self


def check_parent(organisation: NewOrganisation, parent: dict[str, Any] | None) -> None:
    expected = PARENT_CLASSIFICATION[organisation.classification]
    if expected is None:
        if organisation.parent_id is not None:
            raise InvalidInput.single("parent_id", "a street working committee has no parent")
        return
    if organisation.parent_id is None:
        raise InvalidInput.single("parent_id", f"required: a {expected.value}")
    if parent is None:
        raise InvalidInput.single("parent_id", f"unknown organisation {organisation.parent_id!r}")
    if parent["classification"] != expected.value:
        raise InvalidInput.single(
            "parent_id", f"must be a {expected.value}, not a {parent['classification']}"
        )


def new_organisation(organisation: NewOrganisation) -> tuple[dict[str, Any], list[Envelope]]:
    document = {"_id": organisation.code, **organisation.model_dump(mode="json")}
    event = new_event(
        OrganisationCreated(organisation_id=organisation.code, **organisation.model_dump(mode="json")),
        subject=organisation.code,
    )
    return document, [event]


def check_community(community: dict[str, Any] | None, community_id: str) -> None:
    if community is None or community["classification"] != Classification.COMMUNITY:
        raise InvalidInput.single("community_id", f"unknown community {community_id!r}")


def new_person(person: NewPerson) -> tuple[dict[str, Any], list[Envelope]]:
    person_id = person.person_id or f"p-{uuid.uuid4().hex[:20]}"
    fields = person.model_dump(mode="json", exclude={"person_id"})
    event = new_event(PersonRegistered(person_id=person_id, **fields), subject=person_id)
    return {"_id": person_id, **fields}, [event]


def organisation_view(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": document["_id"],
        "code": document["code"],
        "name": document["name"],
        "classification": document["classification"],
        "parent_id": document["parent_id"],
    }


def person_view(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": document["_id"],
        "name": document["name"],
        "community_id": document["community_id"],
        "is_party_member": document["is_party_member"],
        "is_cadre": document["is_cadre"],
        "employer": document.get("employer"),
    }
