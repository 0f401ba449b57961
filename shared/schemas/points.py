"""What callers send to the points bank (积分银行); the gateway validates and documents them."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

Code = Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z_.:-]{0,63}$")


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ManualAward(Input):
    """Points a staff member awards by hand; the reason is kept with the entry."""

    person_id: str = Code
    community_id: str = Code
    points: int = Field(gt=0, le=10_000)
    reason: str = Field(min_length=2, max_length=200)
    actor: str = Field(min_length=1, max_length=64, description="the staff member awarding")


class Inspection(Input):
    """A doorstep or household check (门前三包): a passed one earns the household's person points."""

    person_id: str = Code
    community_id: str = Code
    household_id: str | None = Field(None, max_length=64)
    inspected_on: date
    passed: bool
    points: int = Field(ge=0, le=1_000, description="points for a passed check")
    inspector: str = Field(min_length=1, max_length=64)
    notes: str | None = Field(None, max_length=200)


class ApprovalDecision(Input):
    approve: bool
    approver: str = Field(min_length=1, max_length=64)
    reason: str | None = Field(None, max_length=200)


class Reversal(Input):
    actor: str = Field(min_length=1, max_length=64)
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
    actor: str = Field(min_length=1, max_length=64)


class NewOrder(Input):
    person_id: str = Code
    item_id: str = Code
    quantity: int = Field(1, gt=0, le=100)


class OrderOutcome(Input):
    actor: str = Field(min_length=1, max_length=64)
    reason: str | None = Field(None, max_length=200)
