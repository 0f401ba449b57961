"""Redemptions (积分兑换): a community's catalogue of goods and services bought with points.
Plain functions, no I/O.

An order reserves stock, the buyer's quota and the points, in that order, each an append to
a chain that refuses a bound broken (stock below zero, quota above the limit, a balance below
zero), so none of them can be oversold however many orders arrive at once. A later step that
is refused releases the earlier ones. An order's fate, placed or refused, is recorded once
(the first stands), so runs of one order that meet (a retry, the points bank's recovery check)
agree on it. A reserved order is then fulfilled (the points go to
the community's pool) or cancelled (points, stock and quota come back, each entry pointing
at the reservation it compensates).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date
from typing import Any

from services.points.domain import Refused, Summary, Transfer, held_account, pool_account
from shared.errors import Conflict, InvalidInput
from shared.schemas.points import NewCatalogueItem, NewOrder

Entry = dict[str, Any]


def order_id(client_id: str, idempotency_key: str) -> str:
    return "ord-" + hashlib.sha256(f"{client_id}\n{idempotency_key}".encode()).hexdigest()[:24]


def stock_key(item_id: str) -> str:
    return f"stock:{item_id}"


def quota_key(item_id: str, person_id: str) -> str:
    return f"bought:{item_id}:{person_id}"


def check_orderable(item: dict[str, Any] | None, order: NewOrder, today: date) -> None:
    if item is None:
        raise InvalidInput.single("item_id", f"unknown catalogue item {order.item_id!r}")
    day = today.isoformat()
    if day < item["available_from"] or (item.get("available_to") and day > item["available_to"]):
        window = f"{item['available_from']} to {item.get('available_to') or 'open end'}"
        raise InvalidInput.single("item_id", f"not available today; available {window}")


def counter_change(
    delta: int, *, ceiling: int | None, refusal: tuple[str, str]
) -> Callable[[Summary], Entry]:
    """A counter entry moving by `delta`, refused below zero or above `ceiling`."""

    def entry_for(summary: Summary) -> Entry:
        after = summary["balance"] + delta
        if after < 0 or (ceiling is not None and after > ceiling):
            raise Refused(*refusal)
        return {"kind": "counter", "points": delta, "balance_after": after}

    return entry_for


def take_stock(quantity: int, item_id: str) -> Callable[[Summary], Entry]:
    return counter_change(-quantity, ceiling=None, refusal=("out_of_stock", f"{item_id} has too few left"))


def take_quota(quantity: int, limit: int | None) -> Callable[[Summary], Entry]:
    refusal = ("limit_reached", f"at most {limit} per person")
    return counter_change(quantity, ceiling=limit, refusal=refusal)


def is_counter_change(entry: Entry) -> bool:
    """An entry `counter_change` built: one that may have been refused. The counters
    journal records their guards before appending them (shared/journal.py); a cap's entries
    are never refused."""
    return entry.get("kind") == "counter"


def give_back(quantity: int) -> Callable[[Summary], Entry]:
    """Stock added, or stock and quota returned: never refused."""
    return counter_change(quantity, ceiling=None, refusal=("", ""))


NOT_PLACED = "订单未成立，积分退回"  # why a refused order's reserved points went back


def counter_steps(
    order: dict[str, Any], item: dict[str, Any] | None = None
) -> list[tuple[str, Callable[[Summary], Entry], Callable[[Summary], Entry]]]:
    """(counter, take, give back) for what an order holds: its stock, then the buyer's quota
    (`item`: for the item's limit per person)."""
    quantity, item_id = order["quantity"], order["item_id"]
    limit = item.get("per_person_limit") if item else None
    return [
        (stock_key(item_id), take_stock(quantity, item_id), give_back(quantity)),
        (quota_key(item_id, order["person_id"]), take_quota(quantity, limit), give_back(-quantity)),
    ]


def check_same_order(order: dict[str, Any], wanted: NewOrder) -> None:
    """An idempotency key names one order: reused for another, it is refused."""
    if (order["person_id"], order["item_id"], order["quantity"]) != (
        wanted.person_id,
        wanted.item_id,
        wanted.quantity,
    ):
        raise Conflict("idempotency_key_reused", "this Idempotency-Key was used for another order")


def refused_fate(order: dict[str, Any], refusal: Refused) -> dict[str, Any]:
    return {"_id": order["_id"], "fate": "refused", "code": refusal.code, "reason": refusal.message}


def refused_outcome(fate: dict[str, Any]) -> dict[str, Any]:
    """How a refused order ended, which its key answers from then on."""
    reason = {"code": fate["code"], "reason": fate["reason"]}
    return {"_id": fate["_id"], "status": "refused", "actor": "system", **reason}


def new_item(item: NewCatalogueItem) -> dict[str, Any]:
    return {"_id": item.item_id, **item.model_dump(mode="json")}


def new_order(identifier: str, item: dict[str, Any], order: NewOrder, client_id: str) -> dict[str, Any]:
    return {
        "_id": identifier,
        "person_id": order.person_id,
        "item_id": item["_id"],
        "item_name": item["name"],
        "community_id": item["community_id"],
        "quantity": order.quantity,
        "points": item["price"] * order.quantity,
        "client_id": client_id,
    }


def reservation(order: dict[str, Any]) -> Transfer:
    return Transfer(
        id=f"order:{order['_id']}",
        kind="redemption",
        from_account=order["person_id"],
        to_account=held_account(order["community_id"], order["person_id"]),
        points=order["points"],
        community_id=order["community_id"],
        reason=f"兑换 {order['item_name']} × {order['quantity']}",
        facts={"order_id": order["_id"], "item_id": order["item_id"]},
    )


def fulfilment(order: dict[str, Any], actor: str) -> Transfer:
    return Transfer(
        id=f"fulfil:{order['_id']}",
        kind="redemption_fulfilled",
        from_account=held_account(order["community_id"], order["person_id"]),
        to_account=pool_account(order["community_id"], order["person_id"]),
        points=order["points"],
        community_id=order["community_id"],
        actor=actor,
        facts={"order_id": order["_id"]},
    )


def cancellation(order: dict[str, Any], actor: str, reason: str | None) -> Transfer:
    return Transfer(
        id=f"cancel:{order['_id']}",
        kind="redemption_cancelled",
        from_account=held_account(order["community_id"], order["person_id"]),
        to_account=order["person_id"],
        points=order["points"],
        community_id=order["community_id"],
        actor=actor,
        reason=reason or "订单取消",
        reverses=f"order:{order['_id']}",
        facts={"order_id": order["_id"]},
    )


def order_view(order: dict[str, Any], outcome: dict[str, Any] | None) -> dict[str, Any]:
    view = {k: order[k] for k in ("person_id", "item_id", "item_name", "community_id", "quantity", "points")}
    status = outcome["status"] if outcome else "reserved"
    return {"order_id": order["_id"], **view, "status": status, "outcome": outcome and _outcome_view(outcome)}


def _outcome_view(outcome: dict[str, Any]) -> dict[str, Any]:
    return {"status": outcome["status"], "actor": outcome["actor"], "reason": outcome.get("reason")}


def item_view(item: dict[str, Any], stock: int) -> dict[str, Any]:
    return {**{k: v for k, v in item.items() if k != "_id"}, "stock": stock}
