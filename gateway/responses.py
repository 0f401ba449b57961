"""Shapes of the gateway's answers, for the OpenAPI document and for contract tests."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class FieldError(BaseModel):
    field: str
    message: str
    line: int | None = Field(None, description="ledger imports: the file line of the bad row")


class ErrorBody(BaseModel):
    code: str
    message: str
    fields: list[FieldError] = []


class ErrorResponse(BaseModel):
    error: ErrorBody
    request_id: str


REPLAYED = "true: this key recorded the same act before, and nothing new was recorded"


class VolunteerActAccepted(BaseModel):
    act_id: str
    status: Literal["accepted"]
    replayed: bool = Field(description=REPLAYED)


class BatchItemOutcome(BaseModel):
    act_id: str = Field(description="the act recorded under the item's key (a conflict: the earlier act)")
    status: Literal["accepted", "conflict"] = Field(
        description="conflict: the item's idempotency_key was used before for a different act, "
        "so the item was not recorded (the other items were)"
    )
    replayed: bool = Field(description=REPLAYED)


class VolunteerActBatchAccepted(BaseModel):
    items: list[BatchItemOutcome] = Field(description="one per item of the request, in its order")


class ActRevocationRecord(BaseModel):
    reason: str
    by: str | None = Field(description="who revoked the act (the API key's client or the staff member)")


class VolunteerAct(BaseModel):
    revoked: ActRevocationRecord | None = Field(description="set once the act is revoked")
    act_id: str
    person_id: str
    act_type: str
    hours: str
    occurred_on: str
    community_id: str
    recorded_at: str
    event_ids: list[str]


class ActType(BaseModel):
    code: str
    name_zh: str
    name_en: str
    source: str


class ActTypes(BaseModel):
    items: list[ActType]


class LedgerEntry(BaseModel):
    seq: int
    kind: str
    transfer_id: str
    counterparty: str = Field(description="the other account of the transfer")
    event_id: str | None = None
    act_id: str | None = None
    act_type: str | None = None
    hours: str | None = None
    points: int = Field(description="signed: credits positive, debits negative")
    balance_after: int
    reason: str | None = None
    reverses: str | None = Field(None, description="the transfer this entry compensates")
    capped: dict[str, Any] | None = Field(None, description="what a cap held back: requested, granted, cap")
    applied_at: str


class Account(BaseModel):
    person_id: str
    balance: int
    entries_total: int
    entries: list[LedgerEntry]


class DossierActRevocation(BaseModel):
    reason: str


class DossierAct(BaseModel):
    seq: int
    act_id: str
    act_type: str
    hours: str
    occurred_on: str
    community_id: str
    applied_at: str
    revoked: DossierActRevocation | None = Field(description="set once the act is revoked: it counts no more")


class DossierDualReport(BaseModel):
    community_id: str
    reported_on: str
    posts: list[str]


class Dossier(BaseModel):
    person_id: str
    name: str
    employer: str | None
    dual_report: DossierDualReport | None = Field(description="双报到, once the cadre has reported")
    points: dict[str, int] = Field(
        description="points earned, spent and the balance, from the points bank's events: every "
        "move in and out of the account, reversals and cancelled orders included"
    )
    acts_total: int
    hours_total: str
    volunteer_acts: list[DossierAct]


# --- organisation registry ------------------------------------------------------------------


class Organisation(BaseModel):
    id: str
    code: str
    name: str
    classification: str
    parent_id: str | None
    founded_on: str | None
    closed_on: str | None
    compound_id: str | None = None
    party_status: str | None = None
    party_branch_id: str | None = None
    serves_compounds: list[str] = []


class OrganisationDetail(Organisation):
    path: list[str]
    children: list[str]


class Organisations(BaseModel):
    items: list[Organisation]
    total: int
    offset: int


class Place(BaseModel):
    id: str
    code: str
    name: str
    kind: str
    parent_id: str | None
    community_id: str | None
    grid_id: str | None


class Places(BaseModel):
    items: list[Place]
    total: int
    offset: int


class Membership(BaseModel):
    id: str
    person_id: str
    role: str
    organisation_id: str | None
    place_id: str | None
    on_behalf_of: str | None
    start_on: str
    end_on: str | None


class Memberships(BaseModel):
    items: list[Membership]
    total: int
    offset: int


class Person(BaseModel):
    id: str
    name: str
    community_id: str
    household_id: str | None = None
    grid_id: str | None = Field(None, description="the grid (网格) of their household; none without one")
    is_party_member: bool
    party_organisation_id: str | None = None
    is_cadre: bool
    employer: str | None
    employer_unit_id: str | None = None
    is_volunteer: bool = False
    is_party_member_household: bool = False
    is_in_service: bool = False
    phone: str | None = Field(None, description="masked, e.g. 138****5678")
    id_number: str | None = Field(None, description="masked, e.g. 4203**********123X")


class PersonDetail(Person):
    memberships: list[Membership]


class PeoplePage(BaseModel):
    items: list[Person]
    total: int
    offset: int


class CrossAppointment(BaseModel):
    person_id: str
    party_posts: list[Membership]
    committee_posts: list[Membership]
    one_shoulder: bool = Field(description="一肩挑: secretary of the one and chair of the other")


class CrossAppointments(BaseModel):
    items: list[CrossAppointment]
    total: int
    one_shoulder: int


class ClaimedPost(BaseModel):
    post: str
    claimed_on: str


class DualReport(BaseModel):
    id: str
    person_id: str | None
    unit_id: str | None
    community_id: str
    reported_on: str
    commitment: str
    posts: list[ClaimedPost]


class ReportingMember(BaseModel):
    person_id: str
    name: str
    reported_on: str | None


class ReportingUnit(BaseModel):
    unit_id: str
    name: str
    reported_on: str | None


class DualReportStatus(BaseModel):
    community_id: str
    members: list[ReportingMember]
    units: list[ReportingUnit]
    reported: int
    not_reported: int


class HomeownersCommittees(BaseModel):
    count: int
    members: int
    party_members: int
    party_member_percent: str | None


class PropertyFigures(BaseModel):
    count: int
    with_party_member_staff: int
    without_party_member_staff: int
    party_branches: int
    by_party_status: dict[str, int]
    party_member_staff: int
    party_members_in_compound_branches: int
    part_time_committee_members: int


class Statistics(BaseModel):
    organisation_id: str
    on: str
    organisations: dict[str, int]
    homeowners_committees: HomeownersCommittees
    compound_party_branches: int
    functional_party_branches: int
    building_party_groups: int
    cross_appointed: int
    one_shoulder: int
    property_companies: PropertyFigures
    dual_reports: int


class StaffMember(BaseModel):
    id: str
    name: str


class PropertyCompany(BaseModel):
    id: str
    name: str
    party_status: str
    party_branch_id: str | None
    red_property: bool
    serves_compounds: list[str]
    staff: int
    party_member_staff: int
    party_members: list[StaffMember] = Field(description="the party members on the staff")
    party_members_in_compound_branches: int


class PropertyLedger(BaseModel):
    items: list[PropertyCompany]
    total: int
    offset: int


class ImportJob(BaseModel):
    id: str
    kind: str
    status: str = Field(description="running, done or failed")
    total: int
    processed: int = Field(description="rows written or found already there")
    unchanged: int = Field(description="rows that were there already with the same details")
    message: str | None = None


# --- points bank ----------------------------------------------------------------------------


class CommunityAccounts(BaseModel):
    community_id: str
    pool: int = Field(description="negative: the points the community has issued and not had back")
    held: int = Field(description="points reserved by open redemption orders")


class Statement(BaseModel):
    account_id: str
    opening_balance: int
    closing_balance: int
    credited: int
    debited: int
    entries: list[dict[str, Any]]


class EarningRuleView(BaseModel):
    rule_id: str
    community_id: str
    act_type: str | None
    points_per_hour: str | None
    fixed_points: int | None
    daily_cap: int | None
    yearly_cap: int | None
    valid_from: str
    valid_to: str | None
    approval_above_hours: str | None


class EarningRules(BaseModel):
    items: list[EarningRuleView]
    total: int


class PendingApproval(BaseModel):
    act_id: str
    person_id: str
    act_type: str
    hours: str
    occurred_on: str
    community_id: str
    rule: str


class PendingApprovals(BaseModel):
    items: list[PendingApproval]
    total: int


class ApprovalDecisionView(BaseModel):
    act_id: str
    approved: bool
    approver: str | None
    reason: str | None
    decided_at: str


class TransferView(BaseModel):
    transfer_id: str
    kind: str
    from_account: str
    to_account: str
    points: int
    community_id: str
    reason: str | None
    actor: str | None
    reverses: str | None
    replayed: bool = Field(description="true when this key moved the points before")


class CatalogueItem(BaseModel):
    item_id: str
    community_id: str
    name: str
    kind: str
    price: int
    per_person_limit: int | None
    available_from: str
    available_to: str | None
    stock: int


class Catalogue(BaseModel):
    items: list[CatalogueItem]
    total: int


class OrderOutcomeView(BaseModel):
    status: str
    actor: str | None
    reason: str | None


class Order(BaseModel):
    order_id: str
    person_id: str
    item_id: str
    item_name: str
    community_id: str
    quantity: int
    points: int
    status: str = Field(description="reserved, fulfilled or cancelled")
    outcome: OrderOutcomeView | None
    replayed: bool | None = None


class Orders(BaseModel):
    items: list[Order]
    total: int


class Leaderboard(BaseModel):
    """People ranked by the points credited to them in the month (volunteer acts, awards,
    passed inspections) from the scope's communities, less the earnings taken back in it: for a
    community or street, whoever served there, residents or members reporting there from
    elsewhere (双报到); for a grid, its residents. People the registry has not told of are left
    out."""

    month: str
    items: list[dict[str, Any]]


class Disclosure(BaseModel):
    """志愿服务情况按月公示: the community's volunteer acts credited in the month, less those taken
    back in it, per person with the name masked. An act taken back after its month shows in
    the month it is taken back, as a negative correction: a posted month never changes."""

    community_id: str
    month: str
    items: list[dict[str, Any]]


class Pong(BaseModel):
    service: str
    answer: str


class StaffAccount(BaseModel):
    username: str
    name: str
    roles: list[str]
    scope: str | None
    disabled: bool
    must_change_password: bool = Field(description="the password is an administrator's, for the next sign-in")
    created_at: str
    password_changed_at: str


class StaffAccountPage(BaseModel):
    items: list[StaffAccount]
