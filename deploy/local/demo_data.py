"""A small demo dataset, loaded through the registry like any other data (so its events flow).

One street (白浪街道, after seed 000), two communities, two grids each, two buildings per grid,
residents, and in-service party members who are cadres (双报到, seed 001). Loading twice
changes nothing: the registry treats a repeated registration as a no-op.
"""

from __future__ import annotations

from typing import Any

from nameko.standalone.rpc import ClusterRpcProxy

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


def load_demo_data() -> None:
    with ClusterRpcProxy({"AMQP_URI": get_settings().amqp_uri}, timeout=30) as rpc:
        for organisation in organisations():
            rpc.registry.register_organisation(organisation)
        for person in people():
            rpc.registry.register_person(person)


if __name__ == "__main__":
    load_demo_data()
    print(f"demo data loaded: {len(organisations())} organisations, {len(PEOPLE)} people")
