"""What callers send to the points bank (积分银行); the gateway validates and documents them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.schemas import IDENTIFIER
from shared.schemas.registry import CODE_PATTERN as PERSON_ID_PATTERN

Code = Field(pattern=f"^{IDENTIFIER.pattern}$")
# A person's id as the registry gives them: never an internal account's (`pool:…`, `held:…`).
Person = Field(pattern=PERSON_ID_PATTERN, description="a person's id in the registry")
Recipient = Field(
    pattern=f"^(team:)?{PERSON_ID_PATTERN.removeprefix('^')}",
    description="a person's id, or `team:<code>` for a volunteer team",
)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EarningRule(Input):
    """How a community turns an act type into points, from a date; a change is a new rule."""

    rule_id: str = Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z_-]{1,39}$")
    community_id: str = Field(min_length=1, max_length=64)
    act_type: str | None = Field(None, description="an act type code; none: every act type")
    points_per_hour: Decimal | None = Field(None, gt=0, le=1000, decimal_places=2)
    fixed_points: int | None = Field(None, gt=0, le=10_000, description="points per act, whatever its hours")
    daily_cap: int | None = Field(None, gt=0, description="most points a person earns by this rule a day")
    yearly_cap: int | None = Field(None, gt=0, description="most points a person earns by this rule a year")
    valid_from: date
    valid_to: date | None = None
    approval_above_hours: Decimal | None = Field(
        None, gt=0, le=24, description="acts longer than this wait for a community approver"
    )

    @model_validator(mode="after")
    def one_measure(self) -> EarningRule:
        if (self.points_per_hour is None) == (self.fixed_points is None):
            raise ValueError("points_per_hour: give exactly one of points_per_hour or fixed_points")
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError("valid_to: before valid_from")
        return self


class ManualAward(Input):
    """Points a staff member awards by hand; the reason is kept with the entry."""

    person_id: str = Recipient
    community_id: str = Code
    points: int = Field(gt=0, le=10_000)
    reason: str = Field(min_length=2, max_length=200)
    actor: str | None = Field(
        None, max_length=64, description="who awards; the gateway sets the API key's name"
    )


class Inspection(Input):
    """A doorstep or household check (门前三包): a passed one earns the household's person points."""

    person_id: str = Person
    community_id: str = Code
    household_id: str | None = Field(None, max_length=64)
    inspected_on: date
    passed: bool
    points: int = Field(ge=0, le=1_000, description="points for a passed check")
    inspector: str = Field(min_length=1, max_length=64, description="who did the check; kept with the entry")
    notes: str | None = Field(None, max_length=200)
    actor: str | None = Field(
        None, max_length=64, description="who records the check; the gateway sets the API key's name"
    )


class ApprovalDecision(Input):
    approve: bool
    approver: str | None = Field(None, max_length=64, description="the gateway sets the API key's name")
    reason: str | None = Field(None, max_length=200)


class Reversal(Input):
    actor: str | None = Field(None, max_length=64, description="the gateway sets the API key's name")
    reason: str = Field(min_length=2, max_length=200)


class ItemKind(StrEnum):
    GOODS = "goods"  # 日用品
    SERVICE = "service"  # 家政等服务
    FEE_OFFSET = "fee_offset"  # 抵扣物业费


class NewCatalogueItem(Input):
    """Something a community's residents can buy with points (积分兑换)."""

    item_id: str = Code
    community_id: str = Code
    name: str = Field(min_length=1, max_length=100)
    kind: ItemKind
    price: int = Field(gt=0, le=100_000, description="points per unit")
    per_person_limit: int | None = Field(None, gt=0, le=1_000, description="most units one person may hold")
    available_from: date
    available_to: date | None = None

    @model_validator(mode="after")
    def ordered_window(self) -> NewCatalogueItem:
        if self.available_to is not None and self.available_to < self.available_from:
            raise ValueError("available_to: before available_from")
        return self


class Restock(Input):
    quantity: int = Field(gt=0, le=100_000)
    actor: str | None = Field(None, max_length=64, description="the gateway sets the API key's name")


class NewOrder(Input):
    person_id: str = Person
    item_id: str = Code
    quantity: int = Field(1, gt=0, le=100)


class OrderOutcome(Input):
    actor: str | None = Field(None, max_length=64, description="the gateway sets the API key's name")
    reason: str | None = Field(None, max_length=200)
