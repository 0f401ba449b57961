"""A small demo dataset, loaded through the registry like any other data (so its events flow).

One street (白浪街道, after seed 000), two communities, two grids each, two buildings per grid,
residents, and in-service party members who are cadres (双报到, seed 001). Loading twice
changes nothing: the registry treats a repeated registration as a no-op.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from shared.errors import Conflict
from shared.rpc import standalone_proxy
from shared.settings import get_settings

STREET = "420391-001"
COMMUNITIES = {
    f"{STREET}-001": "中观社区大党委",
    f"{STREET}-002": "光明社区大党委",
}
COMPOUNDS = {f"{STREET}-001": "五鼎小区", f"{STREET}-002": "启明小区"}

# (person id, name, community suffix, party member, cadre, employer)
PEOPLE: list[tuple[str, str, str, bool, bool, str | None]] = [
    ("p-zg-001", "王建国", "001", True, True, "十堰经开区住建局"),
    ("p-zg-002", "李秀英", "001", True, True, "十堰经开区财政局"),
    ("p-zg-003", "张伟", "001", True, False, None),
    ("p-zg-004", "刘洋", "001", False, False, None),
    ("p-zg-005", "陈静", "001", False, False, None),
    ("p-zg-006", "杨帆", "001", True, False, None),
    ("p-gm-001", "赵志强", "002", True, True, "十堰经开区城管局"),
    ("p-gm-002", "黄丽", "002", True, True, "白浪街道办事处"),
    ("p-gm-003", "周敏", "002", True, False, None),
    ("p-gm-004", "吴磊", "002", False, False, None),
    ("p-gm-005", "徐娜", "002", False, False, None),
    ("p-gm-006", "孙浩", "002", True, False, None),
]


def organisations() -> list[dict[str, Any]]:
    tree = [
        {
            "code": STREET,
            "name": "白浪街道大工委",
            "classification": "street_working_committee",
            "parent_id": None,
        }
    ]
    for community, name in COMMUNITIES.items():
        tree.append(
            {
                "code": community,
                "name": name,
                "classification": "community_party_committee",
                "parent_id": STREET,
            }
        )
        for grid in ("01", "02"):
            grid_code = f"{community}-{grid}"
            tree.append(
                {
                    "code": grid_code,
                    "name": f"{COMPOUNDS[community]}第{int(grid)}网格党支部",
                    "classification": "grid_party_branch",
                    "parent_id": community,
                }
            )
            for building in (1, 2):
                number = (int(grid) - 1) * 2 + building
                tree.append(
                    {
                        "code": f"{grid_code}-B{number}",
                        "name": f"{COMPOUNDS[community]}{number}号楼党小组",
                        "classification": "building_party_group",
                        "parent_id": grid_code,
                    }
                )
    return tree


def people() -> list[dict[str, Any]]:
    return [
        {
            "person_id": person_id,
            "name": name,
            "community_id": f"{STREET}-{community}",
            "is_party_member": member,
            "is_cadre": cadre,
            "employer": employer,
        }
        for person_id, name, community, member, cadre, employer in PEOPLE
    ]


# 中观社区 in more detail (seed 000): its 五鼎小区 with a compound branch, a 业委会, a red
# property company, cross-appointed members and 双报到.
ZG = f"{STREET}-001"
COMPOUND = f"{ZG}-P01"


def governance() -> list[dict[str, Any]]:
    return [
        {
            "code": f"{ZG}-JWH",
            "name": "中观社区居委会",
            "classification": "residents_committee",
            "parent_id": ZG,
        },
        {
            "code": f"{ZG}-XQ01",
            "name": "五鼎小区党支部",
            "classification": "compound_party_branch",
            "parent_id": ZG,
            "compound_id": COMPOUND,
        },
        {
            "code": f"{ZG}-YWH01",
            "name": "五鼎小区业主委员会",
            "classification": "homeowners_committee",
            "parent_id": ZG,
            "compound_id": COMPOUND,
        },
        {
            "code": f"{STREET}-WYDZB01",
            "name": "红枫物业党支部",
            "classification": "property_party_branch",
            "parent_id": STREET,
        },
        {
            "code": f"{STREET}-WY01",
            "name": "十堰红枫物业服务有限公司",
            "classification": "property_company",
            "parent_id": STREET,
            "party_status": "own_branch",
            "party_branch_id": f"{STREET}-WYDZB01",
            "serves_compounds": [COMPOUND],
        },
        {
            "code": f"{ZG}-GJ01",
            "name": "十堰经开区住建局",
            "classification": "co_building_unit",
            "parent_id": ZG,
        },
    ]


def places() -> list[dict[str, Any]]:
    found = [{"code": COMPOUND, "name": "五鼎小区", "kind": "compound", "community_id": ZG}]
    for number, grid in ((1, "01"), (2, "02")):
        building = f"{COMPOUND}-{number}"
        found.append(
            {
                "code": building,
                "name": f"{number}栋",
                "kind": "building",
                "parent_id": COMPOUND,
                "grid_id": f"{ZG}-{grid}",
            }
        )
        found.append({"code": f"{building}-1", "name": "1单元", "kind": "unit", "parent_id": building})
        found.append(
            {"code": f"{building}-1-101", "name": "101室", "kind": "household", "parent_id": f"{building}-1"}
        )
    return found


def extra_people() -> list[dict[str, Any]]:
    return [
        {
            "person_id": "p-zg-007",
            "name": "马强",
            "community_id": ZG,
            "is_party_member": True,
            "party_organisation_id": f"{ZG}-XQ01",
            "employer_unit_id": f"{STREET}-WY01",
            "phone": "13800000007",
        }
    ]


def memberships() -> list[dict[str, Any]]:
    since = "2021-03-01"
    branch, committee = f"{ZG}-XQ01", f"{ZG}-YWH01"
    return [
        {"person_id": "p-zg-003", "role": "secretary", "organisation_id": branch, "start_on": since},
        {"person_id": "p-zg-003", "role": "chair", "organisation_id": committee, "start_on": since},  # 一肩挑
        {"person_id": "p-zg-006", "role": "committee_member", "organisation_id": branch, "start_on": since},
        {"person_id": "p-zg-006", "role": "member", "organisation_id": committee, "start_on": since},
        {"person_id": "p-zg-004", "role": "member", "organisation_id": committee, "start_on": since},
        {
            "person_id": "p-zg-007",
            "role": "part_time_committee_member",
            "organisation_id": branch,
            "start_on": since,
            "on_behalf_of": f"{STREET}-WY01",
        },
        {"person_id": "p-zg-005", "role": "building_head", "place_id": f"{COMPOUND}-1", "start_on": since},
    ]


def dual_reports() -> list[dict[str, Any]]:
    return [
        {
            "person_id": "p-zg-001",
            "community_id": ZG,
            "reported_on": "2024-03-01",
            "commitment": "每月到社区参加一次志愿服务，认领治安巡逻岗",
            "posts": ["patrol", "policy_publicity"],
        },
        {
            "unit_id": f"{ZG}-GJ01",
            "community_id": ZG,
            "reported_on": "2024-03-05",
            "commitment": "结对共建，每季度开展一次环境整治",
            "posts": ["environment"],
        },
    ]


# 积分银行 (seeds 001, 002): a capped rule for parking duty and a catalogue of daily goods,
# housekeeping and a property-fee offset.
def earning_rules() -> list[dict[str, Any]]:
    return [
        {
            "rule_id": "zg-parking-2026",
            "community_id": ZG,
            "act_type": "parking_order",
            "fixed_points": 15,
            "daily_cap": 30,
            "yearly_cap": 1500,
            "valid_from": "2026-01-01",
            "approval_above_hours": "6",
        }
    ]


def catalogue() -> list[tuple[dict[str, Any], int]]:
    """(item, initial stock)."""
    common = {"community_id": ZG, "available_from": "2026-01-01"}
    return [
        ({**common, "item_id": "zg-detergent", "name": "洗衣液一瓶", "kind": "goods", "price": 50}, 40),
        (
            {
                **common,
                "item_id": "zg-rice",
                "name": "大米5斤",
                "kind": "goods",
                "price": 80,
                "per_person_limit": 2,
            },
            30,
        ),
        (
            {
                **common,
                "item_id": "zg-housekeeping",
                "name": "家政服务1小时",
                "kind": "service",
                "price": 200,
            },
            10,
        ),
        (
            {**common, "item_id": "zg-fee-10", "name": "抵扣物业费10元", "kind": "fee_offset", "price": 100},
            100,
        ),
    ]


def load_demo_data() -> None:
    with standalone_proxy(get_settings().amqp_uri, 30) as rpc:
        registry = rpc.registry
        for organisation in organisations():
            registry.register_organisation(organisation)
        for place in places():
            registry.register_place(place)
        for organisation in governance():
            registry.register_organisation(organisation)
        for person in people() + extra_people():
            registry.register_person(person)
        # Posts and reports answer 409 once they are there: loading again changes nothing.
        for membership in memberships():
            with suppress(Conflict):
                registry.start_membership(membership)
        for report in dual_reports():
            with suppress(Conflict):
                registry.register_dual_report(report)
        for rule in earning_rules():
            with suppress(Conflict):
                rpc.points_bank.add_earning_rule(rule)
        for item, stock in catalogue():
            with suppress(Conflict):
                rpc.points_bank.add_catalogue_item(item)
            # Keyed, so loading again adds no stock.
            rpc.points_bank.restock_item(
                item["item_id"], "demo-initial-stock", {"quantity": stock, "actor": "demo"}
            )


if __name__ == "__main__":
    load_demo_data()
    print(f"demo data loaded: {len(organisations())} organisations, {len(PEOPLE)} people")
