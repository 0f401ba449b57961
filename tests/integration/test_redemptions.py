"""Redemptions on the real broker and database: nothing oversold, nothing overspent, however
many orders arrive at once; cancellations and fulfilments balance out."""

from __future__ import annotations

import threading

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.points import redemptions
from services.points.domain import Refused
from shared.errors import Conflict
from shared.schemas.points import NewOrder
from tests.conftest import COMMUNITY, TEST_ENV, new_id
from tests.support import eventually, points_bank_store

pytestmark = pytest.mark.integration

CLIENT = "client-test"


def add_item(rpc, price: int, stock: int, limit: int | None = None) -> str:
    item_id = new_id("item")
    rpc.points_bank.add_catalogue_item(
        {
            "item_id": item_id,
            "community_id": COMMUNITY,
            "name": "洗衣液",
            "kind": "goods",
            "price": price,
            "per_person_limit": limit,
            "available_from": "2026-01-01",
        }
    )
    rpc.points_bank.restock_item(item_id, new_id("delivery"), {"quantity": stock, "actor": "staff-1"})
    return item_id


def fund(rpc, person_id: str, points: int) -> None:
    award = {
        "person_id": person_id,
        "community_id": COMMUNITY,
        "points": points,
        "reason": "测试发放",
        "actor": "s",
    }
    rpc.points_bank.award_points(new_id("award"), award)


def balance(rpc, person_id: str) -> int:
    return rpc.points_bank.get_account(person_id)["balance"]


def stock(rpc, item_id: str) -> int:
    [listed] = [i for i in rpc.points_bank.list_catalogue(COMMUNITY)["items"] if i["item_id"] == item_id]
    return listed["stock"]


def order(rpc, person_id: str, item_id: str, quantity: int = 1, key: str | None = None) -> dict:
    return rpc.points_bank.place_order(
        CLIENT,
        key or new_id("order"),
        {"person_id": person_id, "item_id": item_id, "quantity": quantity},
    )


def test_many_orders_at_once_never_oversell_or_overspend(rpc, databases, stack):
    item = add_item(rpc, price=30, stock=10)
    buyers = [new_id("buyer") for _ in range(24)]
    for buyer in buyers:
        fund(rpc, buyer, 50)  # enough for one unit, not for two
    outcomes: list[str] = []

    def buy(chosen: list[str]) -> None:
        with ClusterRpcProxy({"AMQP_URI": TEST_ENV["AMQP_URI"]}, timeout=30) as own:
            for buyer in chosen:
                try:
                    order(own, buyer, item)
                    outcomes.append("reserved")
                except Conflict as exc:
                    outcomes.append(exc.code)

    threads = [threading.Thread(target=buy, args=(buyers[n::6],)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["out_of_stock"] * 14 + ["reserved"] * 10
    assert stock(rpc, item) == 0
    stock_chain = list(databases["points_bank"].counter_entries.find({"key": f"stock:{item}"}))
    assert min(e["balance_after"] for e in stock_chain) == 0  # never below zero on the way
    assert sorted(balance(rpc, b) for b in buyers) == [20] * 10 + [50] * 14


def test_a_person_cannot_buy_beyond_the_limit_or_their_points(rpc, stack):
    item = add_item(rpc, price=10, stock=100, limit=2)
    buyer = new_id("buyer")
    fund(rpc, buyer, 25)
    order(rpc, buyer, item, quantity=2)
    with pytest.raises(Conflict) as caught:
        order(rpc, buyer, item)
    assert caught.value.code == "limit_reached"
    other = add_item(rpc, price=10, stock=100)
    with pytest.raises(Conflict) as caught:
        order(rpc, buyer, other)  # 5 points left, 10 needed
    assert caught.value.code == "insufficient_points"
    assert balance(rpc, buyer) == 5
    assert stock(rpc, other) == 100  # the refused order gave its unit back


def test_cancel_gives_back_and_fulfil_pays_the_community(rpc, databases, stack):
    item = add_item(rpc, price=40, stock=5)
    buyer = new_id("buyer")
    fund(rpc, buyer, 100)
    kept = order(rpc, buyer, item)
    dropped = order(rpc, buyer, item, key="cancel-me-" + buyer)
    assert order(rpc, buyer, item, key="cancel-me-" + buyer)["replayed"] is True
    assert balance(rpc, buyer) == 20
    cancelled = rpc.points_bank.cancel_order(dropped["order_id"], {"actor": "staff-1", "reason": "缺货改期"})
    assert cancelled["status"] == "cancelled"
    assert balance(rpc, buyer) == 60
    fulfilled = rpc.points_bank.fulfil_order(kept["order_id"], {"actor": "staff-1"})
    assert fulfilled["status"] == "fulfilled"
    with pytest.raises(Conflict):
        rpc.points_bank.cancel_order(kept["order_id"], {"actor": "staff-2"})
    entries = databases["points_bank"].ledger_entries
    refund = entries.find_one({"transfer_id": f"cancel:{dropped['order_id']}", "key": buyer})
    assert refund["points"] == 40 and refund["reverses"] == f"order:{dropped['order_id']}"
    [listed] = [i for i in rpc.points_bank.list_catalogue(COMMUNITY)["items"] if i["item_id"] == item]
    assert listed["stock"] == 4
    person = list(entries.find({"key": buyer}))
    assert sum(e["points"] for e in person) == 60
    transfers = {e["transfer_id"] for e in person} | {f"fulfil:{kept['order_id']}"}
    legs = list(entries.find({"transfer_id": {"$in": sorted(transfers)}}))
    assert len(legs) == 2 * len(transfers) and sum(e["points"] for e in legs) == 0  # double entry


class DeadCall:
    """A `place_order` whose process died midway, and what it left (see each step). The mark
    goes last in the tests, so the recovery check starts on what the test set up."""

    def __init__(self, buyer: str, item_id: str, key: str) -> None:
        """It recorded the order its key stands for."""
        self.store = points_bank_store()
        self.order_id = redemptions.order_id(CLIENT, key)
        wanted = NewOrder(person_id=buyer, item_id=item_id)
        self.order = self.store.intend(
            redemptions.new_order(self.order_id, self.store.item(item_id), wanted, CLIENT)
        )

    def reserved(self) -> None:
        """It took the stock, the quota and the points."""
        for key, take, _ in redemptions.counter_steps(self.order):
            self.store.count(key, f"order:{self.order_id}", take)
        self.store.execute(redemptions.reservation(self.order))

    def refused(self, code: str, settled: bool = False) -> None:
        """It was refused, and recorded the refusal as the order's fate (`settled`: and as its
        outcome, as a call that finished its refusal does)."""
        fate = self.store.settle_fate(redemptions.refused_fate(self.order, Refused(code, "refused before")))
        if settled:
            self.store.settle(redemptions.refused_outcome(fate))

    def marked(self, databases) -> None:
        """Its mark, which the recovery check finishes once it is a grace period old."""
        mark = self.store.under_way("order", self.order_id, order=self.order)
        marks = databases["points_bank"].calls_under_way
        eventually(lambda: marks.find_one({"_id": mark}) is None, timeout=30)


def test_an_order_whose_call_died_after_reserving_is_placed_once_and_can_be_cancelled(rpc, databases):
    item, buyer, key = add_item(rpc, price=30, stock=5), new_id("buyer"), new_id("order")
    fund(rpc, buyer, 100)
    dead = DeadCall(buyer, item, key)
    dead.reserved()
    assert (balance(rpc, buyer), stock(rpc, item)) == (70, 4)
    assert rpc.points_bank.list_orders(person_id=buyer)["total"] == 0  # reserved, but no order
    dead.marked(databases)
    [placed] = rpc.points_bank.list_orders(person_id=buyer)["items"]
    assert (placed["order_id"], placed["status"], placed["points"]) == (dead.order_id, "reserved", 30)
    assert (balance(rpc, buyer), stock(rpc, item)) == (70, 4)  # reserved once
    assert order(rpc, buyer, item, key=key)["replayed"] is True  # the buyer's retry finds it
    rpc.points_bank.cancel_order(dead.order_id, {"actor": "staff-1", "reason": "中断后取消"})
    assert (balance(rpc, buyer), stock(rpc, item)) == (100, 5)


def test_an_order_whose_call_died_before_reserving_is_refused_if_it_cannot_be_paid_now(rpc, databases):
    item, buyer, key = add_item(rpc, price=30, stock=5), new_id("buyer"), new_id("order")
    fund(rpc, buyer, 10)
    DeadCall(buyer, item, key).marked(databases)
    assert rpc.points_bank.list_orders(person_id=buyer)["total"] == 0
    with pytest.raises(Conflict) as caught:
        order(rpc, buyer, item, key=key)  # the key stays refused
    assert caught.value.code == "insufficient_points"
    assert (balance(rpc, buyer), stock(rpc, item)) == (10, 5)  # what it took is given back


def test_an_order_refused_by_one_run_is_not_placed_by_another_that_could_pay(rpc, databases):
    """A run refused for want of stock meets another (a retry, the recovery check) that finds
    the item restocked meanwhile: the first fate stands, and the second gives back all it took."""
    item, buyer, key = add_item(rpc, price=30, stock=1), new_id("buyer"), new_id("order")
    fund(rpc, buyer, 100)
    first = new_id("buyer")
    fund(rpc, first, 30)
    order(rpc, first, item)  # the last one
    dead = DeadCall(buyer, item, key)
    dead.refused("out_of_stock")
    rpc.points_bank.restock_item(item, new_id("delivery"), {"quantity": 5, "actor": "staff-1"})
    dead.marked(databases)
    assert rpc.points_bank.list_orders(person_id=buyer)["total"] == 0
    assert (balance(rpc, buyer), stock(rpc, item)) == (100, 5)
    with pytest.raises(Conflict) as caught:
        order(rpc, buyer, item, key=key)
    assert caught.value.code == "out_of_stock"
    assert order(rpc, buyer, item)["replayed"] is False  # a new key orders anew


def test_a_run_that_reserved_after_its_order_was_refused_and_died_gives_everything_back(rpc, databases):
    """One run was refused and finished its refusal; another, slower, had taken the stock,
    the quota and the points before it died. Nothing of it stays taken."""
    item, buyer, key = add_item(rpc, price=30, stock=5, limit=1), new_id("buyer"), new_id("order")
    fund(rpc, buyer, 100)
    dead = DeadCall(buyer, item, key)
    dead.refused("out_of_stock", settled=True)
    dead.reserved()
    assert (balance(rpc, buyer), stock(rpc, item)) == (70, 4)
    dead.marked(databases)
    assert (balance(rpc, buyer), stock(rpc, item)) == (100, 5)
    assert rpc.points_bank.list_orders(person_id=buyer)["total"] == 0
    assert order(rpc, buyer, item)["replayed"] is False  # the quota is back: one may be bought


def test_an_idempotency_key_used_for_another_order_is_refused(rpc):
    item, other, buyer, key = add_item(rpc, 10, 5), add_item(rpc, 10, 5), new_id("buyer"), new_id("order")
    fund(rpc, buyer, 100)
    order(rpc, buyer, item, key=key)
    DeadCall(buyer, item, unfinished := new_id("order"))  # a call of this key died before its takes
    for used, reused in ((key, {"item_id": other}), (key, {"quantity": 2}), (unfinished, {"item_id": other})):
        with pytest.raises(Conflict) as caught:
            rpc.points_bank.place_order(CLIENT, used, {"person_id": buyer, "item_id": item, **reused})
        assert caught.value.code == "idempotency_key_reused"
    assert balance(rpc, buyer) == 90
