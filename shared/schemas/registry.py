"""What callers send to the organisation registry (组织): the gateway validates and documents
requests with these models, the registry validates them again.

The vocabulary follows Popolo / the W3C Organization Ontology (an organisation has one
classification and a parent; a membership has a role, start and end dates and may be held on
behalf of another organisation), extended with the governance terms of the seed articles.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CODE_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z_-]{1,39}$"
Code = Field(pattern=CODE_PATTERN, description="stable code: letters, digits, '-' and '_'")
# Street codes: six-digit administrative division code of the district + street number.
STREET_CODE_PATTERN = r"^[0-9]{6}-[0-9]{3}$"
# Community, grid and building group codes extend their parent's code by one segment
# (district+street+community+grid, e.g. 420391-001-001-01).
SEGMENT_PATTERN = r"^[0-9A-Za-z]{1,8}$"


class Classification(StrEnum):
    STREET = "street_working_committee"  # 街道“大工委”
    COMMUNITY = "community_party_committee"  # 社区“大党委”
    GRID = "grid_party_branch"  # 网格党支部
    BUILDING = "building_party_group"  # 楼栋党小组
    COMPOUND_BRANCH = "compound_party_branch"  # 小区（邻里）党支部
    FUNCTIONAL_BRANCH = "functional_party_branch"  # 功能型党支部
    PROPERTY_BRANCH = "property_party_branch"  # 物业企业党支部（单独建或联合建）
    RESIDENTS_COMMITTEE = "residents_committee"  # 居委会
    HOMEOWNERS_COMMITTEE = "homeowners_committee"  # 业委会
    PROPERTY_COMPANY = "property_company"  # 物业服务企业
    CO_BUILDING_UNIT = "co_building_unit"  # 共建单位（双报到单位）


class PartyStatus(StrEnum):
    """How a property company is organised into the party (“两建一派”)."""

    OWN_BRANCH = "own_branch"  # 单独建
    JOINT_BRANCH = "joint_branch"  # 联合建
    INSTRUCTOR = "instructor_dispatched"  # 选派党建指导员
    NONE = "none"


class PlaceKind(StrEnum):
    COMPOUND = "compound"  # 小区
    BUILDING = "building"  # 楼栋
    UNIT = "unit"  # 单元
    HOUSEHOLD = "household"  # 户


class Role(StrEnum):
    SECRETARY = "secretary"  # 书记
    DEPUTY_SECRETARY = "deputy_secretary"  # 副书记
    COMMITTEE_MEMBER = "committee_member"  # 委员
    PART_TIME_COMMITTEE_MEMBER = "part_time_committee_member"  # 兼职委员
    GROUP_LEADER = "group_leader"  # 党小组长
    MEMBER = "member"  # 成员
    CHAIR = "chair"  # 主任
    DEPUTY_CHAIR = "deputy_chair"  # 副主任
    GRID_HEAD = "grid_head"  # 网格长
    GRID_WORKER = "grid_worker"  # 网格员
    BUILDING_HEAD = "building_head"  # 楼栋长
    UNIT_HEAD = "unit_head"  # 单元长
    PARTY_INSTRUCTOR = "party_instructor"  # 党建指导员
    BUILDING_LIAISON = "building_liaison"  # 楼栋联络员
    PUBLIC_SUPERVISOR = "public_supervisor"  # 群众监督员
    MANAGER = "manager"  # 管理人员


class ServicePost(StrEnum):
    """Service posts an in-service member or unit can claim when reporting (双报到认岗)."""

    ENVIRONMENT = "environment"  # 环境卫生
    PATROL = "patrol"  # 治安巡逻
    POLICY_PUBLICITY = "policy_publicity"  # 政策宣传
    CIVILITY = "civility"  # 文明劝导
    CARE = "care"  # 关爱帮扶
    MEDIATION = "mediation"  # 矛盾调解
    EPIDEMIC = "epidemic"  # 疫情防控


MOST_COMPOUNDS = 200  # compounds one property company serves


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NewOrganisation(Input):
    code: str = Field(pattern=CODE_PATTERN, description="stable code, e.g. 420391-001-001-01 for a grid")
    name: str = Field(min_length=1, max_length=100)
    classification: Classification
    parent_id: str | None = Field(None, description="code of the parent organisation")
    founded_on: date | None = None
    compound_id: str | None = Field(None, description="the compound (place) a 小区党支部 or 业委会 serves")
    party_status: PartyStatus | None = Field(None, description="property companies: 两建一派 status")
    party_branch_id: str | None = Field(None, description="property companies: their own or joint branch")
    serves_compounds: list[Annotated[str, Field(pattern=CODE_PATTERN)]] = Field(
        default_factory=list,
        max_length=MOST_COMPOUNDS,
        description="property companies: compounds (each counts once)",
    )

    @field_validator("serves_compounds")
    @classmethod
    def each_compound_once(cls, compounds: list[str]) -> list[str]:
        return list(dict.fromkeys(compounds))  # as a dual report's posts: a repeat is a slip

    @model_validator(mode="after")
    def company_fields_only_on_companies(self) -> NewOrganisation:
        if self.classification != Classification.PROPERTY_COMPANY:
            for name in ("party_status", "party_branch_id"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only a property company has one")
            if self.serves_compounds:
                raise ValueError("serves_compounds: only a property company serves compounds")
        return self


class OrganisationMove(Input):
    parent_id: str = Field(pattern=CODE_PATTERN, description="code of the new parent")


class OrganisationClosure(Input):
    closed_on: date


class NewPlace(Input):
    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=100)
    kind: PlaceKind
    parent_id: str | None = Field(None, description="compound → building → unit → household")
    community_id: str | None = Field(None, description="compounds: their community")
    grid_id: str | None = Field(None, description="the grid; required for a building")


PHONE_PATTERN = r"^(\+?86)?1[3-9][0-9]{9}$"
ID_NUMBER_PATTERN = r"^[1-9][0-9]{16}[0-9Xx]$"


class PersonDetails(Input):
    """What may change about a person; every field optional so one model serves updates."""

    name: str | None = Field(None, min_length=1, max_length=50)
    community_id: str | None = Field(None, description="the community where the person lives")
    household_id: str | None = Field(None, description="the household (place) they live in")
    is_party_member: bool | None = None
    party_organisation_id: str | None = Field(None, description="the party organisation they belong to")
    is_cadre: bool | None = Field(
        None, description="an in-service party member whose promotion may be assessed"
    )
    employer: str | None = Field(None, max_length=100, description="employer unit of an in-service member")
    employer_unit_id: str | None = Field(None, description="the employer as a registered organisation")
    is_volunteer: bool | None = None
    is_party_member_household: bool | None = Field(None, description="党员中心户")
    phone: str | None = Field(None, pattern=PHONE_PATTERN, description="stored encrypted, never shown")
    id_number: str | None = Field(
        None, pattern=ID_NUMBER_PATTERN, description="stored encrypted, never shown"
    )


class NewPerson(PersonDetails):
    person_id: str | None = Field(None, pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=50)
    community_id: str = Field(min_length=1, max_length=40)


class PersonSearch(Input):
    """Find people by a number they gave; sent in a body so numbers stay out of URLs and logs."""

    phone: str | None = Field(None, pattern=PHONE_PATTERN)
    id_number: str | None = Field(None, pattern=ID_NUMBER_PATTERN)

    @model_validator(mode="after")
    def one_number(self) -> PersonSearch:
        if (self.phone is None) == (self.id_number is None):
            raise ValueError("give exactly one of phone or id_number")
        return self


class NewMembership(Input):
    person_id: str = Field(pattern=CODE_PATTERN)
    role: Role
    organisation_id: str | None = Field(None, description="the organisation; or give place_id")
    place_id: str | None = Field(None, description="building or unit, for building and unit heads")
    start_on: date
    end_on: date | None = None
    on_behalf_of: str | None = Field(None, description="organisation the person represents here")

    @model_validator(mode="after")
    def one_target_and_ordered_dates(self) -> NewMembership:
        if (self.organisation_id is None) == (self.place_id is None):
            raise ValueError("organisation_id: give exactly one of organisation_id or place_id")
        if self.end_on is not None and self.end_on < self.start_on:
            raise ValueError("end_on: before start_on")
        return self


class MembershipEnd(Input):
    end_on: date


class NewDualReport(Input):
    """双报到: an in-service member (person_id) or a unit (unit_id) reports to a community."""

    person_id: str | None = Field(None, pattern=CODE_PATTERN)
    unit_id: str | None = Field(None, pattern=CODE_PATTERN)
    community_id: str = Field(pattern=CODE_PATTERN)
    reported_on: date
    commitment: str = Field(min_length=1, max_length=500, description="the signed service commitment")
    posts: list[ServicePost] = Field(
        default_factory=list,
        max_length=len(ServicePost),
        description="service posts claimed (each counts once)",
    )

    @model_validator(mode="after")
    def one_reporter(self) -> NewDualReport:
        if (self.person_id is None) == (self.unit_id is None):
            raise ValueError("person_id: give exactly one of person_id or unit_id")
        return self


class PostClaim(Input):
    post: ServicePost
    claimed_on: date
