"""The points bank under /api/v1/points: accounts, rules, approvals, awards, inspections,
reversals, the redemption catalogue and orders, statements, leaderboards and the monthly list.

Staff actions need a role on the API key (see gateway/keys.py) and act within the key's
scope: the community acted on must lie in the subtree of the key's organisation.
"""

from __future__ import annotations

from typing import Any

from flask import g, jsonify

from gateway import responses as r
from gateway.http import (
    FILE_TYPES,
    account_within_scope,
    choice_query,
    date_query,
    download,
    idempotency_key,
    identifier_query,
    integer_query,
    invalid,
    json_body,
    month_query,
    person_in_scope,
    person_within_scope,
    recipient_within_scope,
    require_role,
    signed,
    within_scope,
)
from gateway.openapi import Operation, Route, link
from gateway.rpc import RpcPool
from shared.events import POINTS_BANK, REGISTRY
from shared.schemas.points import (
    ApprovalDecision,
    EarningRule,
    Inspection,
    ManualAward,
    NewCatalogueItem,
    NewOrder,
    OrderOutcome,
    Restock,
    Reversal,
)

TAG = "Points bank"
KEYED = {"Idempotency-Key": "your unique key for this action; a retry with it changes nothing"}
STAFF = {403: "the API key lacks the role, or acts outside its scope"}
# What a key with a scope gets for anything outside it (see gateway.http.within_scope).
OUTSIDE_SCOPE = {404: "unknown, or outside the API key's scope"}
UNKNOWN_PERSON = {404: "unknown person, or outside the API key's scope"}


PERIOD_FROM = date_query("from", "first day, YYYY-MM-DD (China Standard Time)", required=True)
PERIOD_TO = date_query("to", "last day, YYYY-MM-DD", required=True)
OF_COMMUNITY = identifier_query("community_id", "the community", required=True)
ORDERS_OF_COMMUNITY = identifier_query("community_id", "orders of this community")
ORDERS_OF_PERSON = identifier_query("person_id", "orders of this person")
SCOPE = identifier_query("scope", "a grid, community or street code", required=True)
MONTH = month_query("month", "the month, YYYY-MM")
BOARD_LIMIT = integer_query("limit", "how many people", 1, 200, 20)
DISCLOSURE_FORMAT = choice_query("format", "json, or xlsx for Excel", ["json", "xlsx"], default="json")


def add_points_routes(route: Route, rpc: RpcPool) -> None:
    def call(method: str, *args: Any) -> Any:
        return rpc.call(POINTS_BANK, method, *args)

    def require(role: str, community_id: str) -> None:
        require_role(rpc, role, community_id)

    # --- accounts -------------------------------------------------------------------------------

    @route(
        Operation(
            "GET",
            "/api/v1/points/accounts/<person_id>",
            "A person's (or `team:<code>` volunteer team's) points balance and latest entries",
            r.Account,
            errors={404: "unknown person"},
            tag=TAG,
        )
    )
    def get_points_account(person_id: str) -> Any:
        if person_id.startswith("team:"):  # a volunteer team's account is `team:<code>`
            account_within_scope(rpc, person_id)
        else:
            person_within_scope(rpc, person_id)  # 404 for people the registry does not know too
        return jsonify(call("get_account", person_id))

    @route(
        Operation(
            "GET",
            "/api/v1/points/communities/<community_id>/accounts",
            "A community's pool (issued points count against it) and the points held by open orders",
            r.CommunityAccounts,
            errors=OUTSIDE_SCOPE,
            tag=TAG,
        )
    )
    def community_accounts(community_id: str) -> Any:
        return jsonify(call("community_accounts", within_scope(rpc, community_id, "community")))

    @route(
        Operation(
            "GET",
            "/api/v1/points/accounts/<account_id>/statement",
            "An account's statement for a period: opening and closing balance, every entry",
            r.Statement,
            query=[PERIOD_FROM, PERIOD_TO],
            errors=OUTSIDE_SCOPE,
            tag=TAG,
        )
    )
    def account_statement(account_id: str) -> Any:
        period_from, period_to = PERIOD_FROM.read(), PERIOD_TO.read()
        account_within_scope(rpc, account_id)
        return jsonify(call("statement", account_id, period_from, period_to))

    # --- earning ----------------------------------------------------------------------------------

    @route(
        Operation(
            "GET",
            "/api/v1/points/rules",
            "A community's earning rules",
            r.EarningRules,
            query=[OF_COMMUNITY],
            errors=OUTSIDE_SCOPE,
            tag=TAG,
        )
    )
    def list_earning_rules() -> Any:
        return jsonify(call("list_earning_rules", within_scope(rpc, OF_COMMUNITY.read(), "community")))

    @route(
        Operation(
            "POST",
            "/api/v1/points/rules",
            "Add an earning rule (rules are never changed: a new rule from a date replaces it)",
            r.EarningRuleView,
            status=201,
            request=EarningRule,
            errors={**STAFF, 409: "the rule id exists"},
            tag=TAG,
        )
    )
    def add_earning_rule() -> Any:
        rule = json_body(EarningRule)
        require("rules_admin", rule.community_id)
        return jsonify(call("add_earning_rule", rule.model_dump(mode="json"))), 201

    @route(
        Operation(
            "GET",
            "/api/v1/points/approvals",
            "Acts waiting for a community approver (above the rule's hours threshold)",
            r.PendingApprovals,
            query=[OF_COMMUNITY],
            errors=OUTSIDE_SCOPE,
            tag=TAG,
        )
    )
    def list_pending_approvals() -> Any:
        return jsonify(call("list_pending_approvals", within_scope(rpc, OF_COMMUNITY.read(), "community")))

    @route(
        Operation(
            "POST",
            "/api/v1/points/approvals/<act_id>:decide",
            "Approve (credit) or reject a waiting act; the first decision stands",
            r.ApprovalDecisionView,
            request=ApprovalDecision,
            errors={**STAFF, 404: "no act waits under this id", 409: "decided otherwise before"},
            tag=TAG,
        )
    )
    def decide_approval(act_id: str) -> Any:
        decision = json_body(ApprovalDecision)
        require("approver", call("community_of", "approval", act_id))
        return jsonify(call("decide_approval", act_id, signed(decision, "approver")))

    @route(
        Operation(
            "POST",
            "/api/v1/points/awards",
            "Award points by hand, with a reason",
            r.TransferView,
            status=201,
            request=ManualAward,
            headers=KEYED,
            errors={**STAFF, **UNKNOWN_PERSON},
            tag=TAG,
        )
    )
    def award_points() -> Any:
        key, award = idempotency_key(), json_body(ManualAward)
        require("awarder", award.community_id)
        recipient_within_scope(rpc, award.person_id)
        return jsonify(call("award_points", f"{g.client_id}:{key}", signed(award))), 201

    @route(
        Operation(
            "POST",
            "/api/v1/points/inspections",
            "Record a doorstep or household inspection (门前三包); a passed one earns points",
            r.TransferView,
            status=201,
            request=Inspection,
            headers=KEYED,
            errors={**STAFF, **UNKNOWN_PERSON},
            tag=TAG,
        )
    )
    def record_inspection() -> Any:
        key, inspection = idempotency_key(), json_body(Inspection)
        require("inspector", inspection.community_id)
        person_within_scope(rpc, inspection.person_id)
        return jsonify(call("record_inspection", f"{g.client_id}:{key}", signed(inspection))), 201

    @route(
        Operation(
            "POST",
            "/api/v1/points/transfers/<transfer_id>:reverse",
            "Reverse a transfer with a compensating one that points at it",
            r.TransferView,
            request=Reversal,
            errors={
                **STAFF,
                404: "unknown transfer",
                409: "not enough points left to take back; a reversal or an order's transfer (not reversed)",
            },
            tag=TAG,
        )
    )
    def reverse_transfer(transfer_id: str) -> Any:
        reversal = json_body(Reversal)
        require("approver", call("community_of", "transfer", transfer_id))
        return jsonify(call("reverse_transfer", transfer_id, signed(reversal)))

    # --- redemptions ----------------------------------------------------------------------------

    @route(
        Operation(
            "GET",
            "/api/v1/points/catalogue",
            "What a community's residents can buy with points, with stock",
            r.Catalogue,
            query=[OF_COMMUNITY],
            errors=OUTSIDE_SCOPE,
            tag=TAG,
        )
    )
    def list_catalogue() -> Any:
        return jsonify(call("list_catalogue", within_scope(rpc, OF_COMMUNITY.read(), "community")))

    @route(
        Operation(
            "POST",
            "/api/v1/points/catalogue",
            "Add a catalogue item (goods, a service, a property-fee offset)",
            r.CatalogueItem,
            status=201,
            request=NewCatalogueItem,
            errors={**STAFF, 409: "the item id exists"},
            links={"restock": link("POST", "/api/v1/points/catalogue/<item_id>:restock", item_id="item_id")},
            tag=TAG,
        )
    )
    def add_catalogue_item() -> Any:
        item = json_body(NewCatalogueItem)
        require("rules_admin", item.community_id)
        return jsonify(call("add_catalogue_item", item.model_dump(mode="json"))), 201

    @route(
        Operation(
            "POST",
            "/api/v1/points/catalogue/<item_id>:restock",
            "Add stock to an item",
            r.CatalogueItem,
            request=Restock,
            headers=KEYED,
            errors={**STAFF, 404: "unknown item"},
            tag=TAG,
        )
    )
    def restock_item(item_id: str) -> Any:
        key, restock = idempotency_key(), json_body(Restock)
        require("redemption_clerk", call("community_of", "item", item_id))
        return jsonify(call("restock_item", item_id, f"{g.client_id}:{key}", signed(restock)))

    @route(
        Operation(
            "POST",
            "/api/v1/points/orders",
            "Order an item: stock, the person's quota and points are reserved, or nothing is",
            r.Order,
            status=201,
            request=NewOrder,
            headers=KEYED,
            errors={
                **STAFF,
                404: "unknown item; unknown person, or outside the API key's scope",
                409: "out of stock, limit reached or not enough points",
            },
            links={
                "fulfil": link("POST", "/api/v1/points/orders/<order_id>:fulfil", order_id="order_id"),
                "cancel": link("POST", "/api/v1/points/orders/<order_id>:cancel", order_id="order_id"),
            },
            tag=TAG,
        )
    )
    def place_order() -> Any:
        key, order = idempotency_key(), json_body(NewOrder)
        require("redemption_clerk", call("community_of", "item", order.item_id))
        person_within_scope(rpc, order.person_id)
        return jsonify(call("place_order", g.client_id, key, order.model_dump(mode="json"))), 201

    @route(
        Operation(
            "GET",
            "/api/v1/points/orders",
            "Orders of a community or a person",
            r.Orders,
            query=[ORDERS_OF_COMMUNITY, ORDERS_OF_PERSON],
            errors=OUTSIDE_SCOPE,
            tag=TAG,
        )
    )
    def list_orders() -> Any:
        community, person = ORDERS_OF_COMMUNITY.read(), ORDERS_OF_PERSON.read()
        if person:
            person_in_scope(rpc, person)
        if community or not person:  # a scoped key asking for no one sees its scope's orders
            community = within_scope(rpc, community, "community")
        return jsonify(call("list_orders", community, person))

    def settle(order_id: str, how: str) -> Any:
        outcome = json_body(OrderOutcome)
        require("redemption_clerk", call("community_of", "order", order_id))
        return jsonify(call(how, order_id, signed(outcome)))

    @route(
        Operation(
            "POST",
            "/api/v1/points/orders/<order_id>:fulfil",
            "Hand over a reserved order: its points go to the community",
            r.Order,
            request=OrderOutcome,
            errors={**STAFF, 404: "unknown order", 409: "cancelled before"},
            tag=TAG,
        )
    )
    def fulfil_order(order_id: str) -> Any:
        return settle(order_id, "fulfil_order")

    @route(
        Operation(
            "POST",
            "/api/v1/points/orders/<order_id>:cancel",
            "Cancel a reserved order: points, stock and quota come back",
            r.Order,
            request=OrderOutcome,
            errors={**STAFF, 404: "unknown order", 409: "fulfilled before"},
            tag=TAG,
        )
    )
    def cancel_order(order_id: str) -> Any:
        return settle(order_id, "cancel_order")

    # --- publishing -------------------------------------------------------------------------------

    @route(
        Operation(
            "GET",
            "/api/v1/points/leaderboards",
            "Who earned most in a month, within a grid, a community or a street",
            r.Leaderboard,
            query=[SCOPE, MONTH, BOARD_LIMIT],
            errors={
                404: "unknown scope",
                422: "invalid parameter, or a scope that is no grid, community or street",
            },
            tag=TAG,
        )
    )
    def leaderboard() -> Any:
        scope, month, limit = within_scope(rpc, SCOPE.read()), MONTH.read(), BOARD_LIMIT.read()
        organisation = rpc.call(REGISTRY, "get_organisation", scope)
        kind = organisation["classification"]
        # The board reads the pools of the scope's communities.
        if kind == "grid_party_branch":
            return jsonify(call("leaderboard", "grid", [scope], [organisation["parent_id"]], month, limit))
        if kind == "community_party_committee":
            return jsonify(call("leaderboard", "community", [scope], [scope], month, limit))
        if kind != "street_working_committee":
            raise invalid("scope", "a grid, community or street")
        page = rpc.call(REGISTRY, "list_organisations", scope, "community_party_committee")
        communities = [c["id"] for c in page["items"]]
        return jsonify(call("leaderboard", "street", communities, communities, month, limit))

    @route(
        Operation(
            "GET",
            "/api/v1/points/disclosures/<community_id>",
            "The monthly public list of volunteer service (志愿服务情况按月公示); format=xlsx for Excel",
            r.Disclosure,
            query=[MONTH, DISCLOSURE_FORMAT],
            files=[FILE_TYPES["xlsx"]],
            errors=OUTSIDE_SCOPE,
            tag=TAG,
        )
    )
    def monthly_disclosure(community_id: str) -> Any:
        month = MONTH.read()
        within_scope(rpc, community_id, "community")
        if DISCLOSURE_FORMAT.read() == "xlsx":
            return download(call("monthly_disclosure_xlsx", community_id, month), "xlsx")
        return jsonify(call("monthly_disclosure", community_id, month))
