"""Registry ledgers (台账): reading CSV/Excel uploads, reporting bad rows, writing exports."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime

import pytest
from openpyxl import Workbook, load_workbook

from services.registry.domain.ledgers import (
    COLUMNS,
    LEDGER_KINDS,
    MODELS,
    LedgerFormatError,
    parse_rows,
    read_rows,
    write,
)
from shared.schemas.registry import (
    Classification,
    NewMembership,
    NewOrganisation,
    NewPerson,
    NewPlace,
    PartyStatus,
    PlaceKind,
    Role,
)

SAMPLES = {
    "organisations": [
        NewOrganisation(
            code="420391-001-001",
            name="东风社区大党委",
            classification=Classification.COMMUNITY,
            parent_id="420391-001",
            founded_on=date(2019, 7, 1),
        ),
        NewOrganisation(code="420391-001-001-01", name="第一网格党支部", classification=Classification.GRID),
        NewOrganisation(
            code="wy-001",
            name="=恒安物业 有限公司",
            classification=Classification.PROPERTY_COMPANY,
            party_status=PartyStatus.JOINT_BRANCH,
            party_branch_id="wy-branch-01",
            serves_compounds=["xq-001", "xq-002", "xq-003"],
        ),
    ],
    "places": [
        NewPlace(code="xq-001", name="幸福小区", kind=PlaceKind.COMPOUND, community_id="420391-001-001"),
        NewPlace(code="xq-001-01", name="1栋", kind=PlaceKind.BUILDING, parent_id="xq-001", grid_id="g-01"),
    ],
    "people": [
        NewPerson(
            person_id="p-001",
            name="张三",
            community_id="420391-001-001",
            household_id="xq-001-01-0101",
            is_party_member=True,
            party_organisation_id="420391-001-001-01",
            is_cadre=False,
            employer="十堰市税务局",
            employer_unit_id="unit-07",
            is_volunteer=True,
            is_party_member_household=False,
            phone="+8613800138000",
            id_number="42030319800101123X",
        ),
        NewPerson(name="李四", community_id="420391-001-001"),
    ],
    "memberships": [
        NewMembership(
            person_id="p-001",
            role=Role.SECRETARY,
            organisation_id="420391-001-001-01",
            start_on=date(2021, 1, 1),
            end_on=date(2024, 12, 31),
            on_behalf_of="unit-07",
        ),
        NewMembership(
            person_id="p-002", role=Role.BUILDING_HEAD, place_id="xq-001-01", start_on=date(2023, 5, 4)
        ),
    ],
}


def csv_bytes(text: str, encoding: str = "utf-8") -> bytes:
    return text.replace("\n", "\r\n").encode(encoding)


def xlsx_bytes(*rows: list[object]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def with_sheet_text_replaced(content: bytes, old: str, new: str) -> bytes:
    """The workbook with text in its first sheet's XML replaced (to store a cell as another tool would)."""
    source = zipfile.ZipFile(io.BytesIO(content))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                assert old.encode() in data
                data = data.replace(old.encode(), new.encode())
            target.writestr(item, data)
    return buffer.getvalue()


def read_and_parse(kind, file_format, content, max_rows=100):
    return parse_rows(kind, read_rows(kind, file_format, content, max_rows))


def test_columns_cover_every_model_field_with_distinct_labels():
    assert set(COLUMNS) == set(MODELS) == set(LEDGER_KINDS)
    for kind, columns in COLUMNS.items():
        assert sorted(column.field for column in columns) == sorted(MODELS[kind].model_fields), kind
        labels = [column.label for column in columns]
        assert len(set(labels)) == len(labels), kind


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
@pytest.mark.parametrize("kind", LEDGER_KINDS)
def test_round_trip(kind, file_format):
    models = SAMPLES[kind]
    content = write(kind, file_format, [model.model_dump() for model in models])
    valid, errors = read_and_parse(kind, file_format, content)
    assert errors == []
    assert [line for line, _ in valid] == list(range(2, 2 + len(models)))
    assert [model for _, model in valid] == models


def test_csv_export_is_excel_friendly():
    content = write("organisations", "csv", [SAMPLES["organisations"][2].model_dump()])
    assert content.startswith(b"\xef\xbb\xbf")
    text = content.decode("utf-8-sig")
    header, row, end = text.split("\r\n")
    assert (
        header == "编码,名称,类别,上级组织编码,成立日期,所在小区编码,党组织建设方式,物业党支部编码,服务小区"
    )
    # Formula-like text is quoted so Excel does not run it; values stay codes, lists join with ";".
    assert (
        row == "wy-001,'=恒安物业 有限公司,property_company,,,,joint_branch,wy-branch-01,xq-001;xq-002;xq-003"
    )
    assert end == ""


def test_xlsx_export_has_a_chinese_sheet_and_labels():
    person = {"name": "王五", "community_id": "c-1", "is_volunteer": False, "phone": "138****5678"}
    workbook = load_workbook(io.BytesIO(write("people", "xlsx", [person])))
    sheet = workbook.worksheets[0]
    assert sheet.title == "人员台账"
    header, row = sheet.iter_rows(values_only=True)
    assert header[:3] == ("人员编号", "姓名", "所在社区编码")
    assert row[1:3] == ("王五", "c-1")
    assert row[9] == "否"
    assert row[11] == "138****5678"
    assert row[0] is None


def test_english_headers_in_any_case_and_spacing():
    content = csv_bytes(
        " CODE ,Name,classification,Serves_Compounds\nwy-1,恒安物业,property_company,xq-1；xq-2、xq-3\n"
    )
    valid, errors = read_and_parse("organisations", "csv", content)
    assert errors == []
    [(line, organisation)] = valid
    assert line == 2
    assert organisation.code == "wy-1"
    assert organisation.serves_compounds == ["xq-1", "xq-2", "xq-3"]


def test_bom_and_gb18030_csv_are_read():
    text = "姓名,所在社区编码,是否党员\n张三,c-1,是\n"
    with_bom = "\ufeff" + text
    for content in (csv_bytes(with_bom), csv_bytes(text, "gb18030")):
        assert read_rows("people", "csv", content, 10) == [
            (2, {"name": "张三", "community_id": "c-1", "is_party_member": "是"})
        ]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("是", True),
        ("否", False),
        ("TRUE", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ("Y", True),
        ("no", False),
    ],
)
def test_boolean_words(cell, expected):
    [(_, person)], errors = parse_rows(
        "people", [(2, {"name": "张三", "community_id": "c-1", "is_cadre": cell})]
    )
    assert errors == []
    assert person.is_cadre is expected


def test_bad_rows_are_reported_by_line_and_field_and_good_rows_kept():
    content = csv_bytes(
        "编码,名称,类别,上级组织编码\n"
        "g-01,第一网格党支部,grid_party_branch,c-1\n"
        "g-02,第二网格党支部,grid_branch,c-1\n"
        "g-03,第三网格党支部,grid_party_branch,c-1\n"
        "g 04!,第四网格党支部,grid_party_branch,c-1\n"
        "g-05,第五网格党支部,grid_party_branch,c-1\n"
    )
    valid, errors = read_and_parse("organisations", "csv", content)
    assert [(error["line"], error["field"]) for error in errors] == [(3, "classification"), (5, "code")]
    assert all(error["message"] for error in errors)
    assert [(line, model.code) for line, model in valid] == [(2, "g-01"), (4, "g-03"), (6, "g-05")]


def test_bad_booleans_and_model_rules_name_their_field():
    _, person_errors = parse_rows(
        "people", [(3, {"name": "张三", "community_id": "c-1", "is_volunteer": "maybe"})]
    )
    assert [(e["line"], e["field"]) for e in person_errors] == [(3, "is_volunteer")]
    membership = {"person_id": "p-1", "role": "member", "place_id": "b-1", "start_on": "2024-03-01"}
    _, membership_errors = parse_rows("memberships", [(7, {**membership, "end_on": "2024-01-01"})])
    assert membership_errors == [{"line": 7, "field": "end_on", "message": "before start_on"}]


def test_model_rules_on_non_companies_name_the_field():
    rows = [
        (
            2,
            {
                "code": "g-1",
                "name": "网格",
                "classification": "grid_party_branch",
                "serves_compounds": "xq-1",
            },
        )
    ]
    valid, errors = parse_rows("organisations", rows)
    assert valid == []
    assert [(e["line"], e["field"]) for e in errors] == [(2, "serves_compounds")]


@pytest.mark.parametrize(
    ("header", "field", "words"),
    [
        ("编码,名称,类别,备注", "header", ["备注"]),
        ("编码,名称,类别,code", "header", ["编码", "twice"]),
        ("编码,名称", "header", ["类别"]),
    ],
)
def test_header_problems(header, field, words):
    with pytest.raises(LedgerFormatError) as caught:
        read_rows("organisations", "csv", csv_bytes(header + "\n"), 10)
    assert caught.value.field == field
    for word in words:
        assert word in caught.value.message


def test_too_many_rows():
    content = csv_bytes("姓名,所在社区编码\n" + "张三,c-1\n" * 4)
    assert len(read_rows("people", "csv", content, 4)) == 4
    with pytest.raises(LedgerFormatError) as caught:
        read_rows("people", "csv", content, 3)
    assert caught.value.field == "file"


def test_value_under_a_column_without_header_is_refused():
    content = csv_bytes("姓名,所在社区编码,\n张三,c-1,\n李四,c-1,x\n")
    with pytest.raises(LedgerFormatError) as caught:
        read_rows("people", "csv", content, 10)
    assert caught.value.field == "header"
    assert "line 3" in caught.value.message


@pytest.mark.parametrize(
    ("file_format", "content"),
    [
        ("csv", b""),
        ("csv", b"\xff\xfe\x00\x00\x81\x30"),
        ("xlsx", b"not a workbook"),
        ("xlsx", b""),
        ("pdf", b"x"),
    ],
)
def test_unreadable_files(file_format, content):
    with pytest.raises(LedgerFormatError) as caught:
        read_rows("people", file_format, content, 10)
    assert caught.value.field == "file"


def test_blank_rows_are_skipped_but_counted():
    content = csv_bytes("姓名,所在社区编码\n张三,c-1\n\n , \n李四,c-2\n")
    rows = read_rows("people", "csv", content, 2)
    assert rows == [
        (2, {"name": "张三", "community_id": "c-1"}),
        (5, {"name": "李四", "community_id": "c-2"}),
    ]
    xlsx = xlsx_bytes(["姓名", "所在社区编码"], ["张三", "c-1"], [None, None], [], ["李四", "c-2"])
    assert read_rows("people", "xlsx", xlsx, 2) == [
        (2, {"name": "张三", "community_id": "c-1"}),
        (5, {"name": "李四", "community_id": "c-2"}),
    ]


def test_xlsx_numbers_and_dates_become_text():
    people = xlsx_bytes(
        ["姓名", "所在社区编码", "手机号", "是否志愿者"],
        ["张三", 420391, 13800138000, 1],
        ["李四", "c-1", 13900139000.0, True],
    )
    # Some tools store whole numbers as floats in scientific notation; openpyxl reads those as floats.
    people = with_sheet_text_replaced(people, "<v>13900139000</v>", "<v>1.3900139E10</v>")
    rows = read_rows("people", "xlsx", people, 10)
    assert rows == [
        (2, {"name": "张三", "community_id": "420391", "phone": "13800138000", "is_volunteer": "1"}),
        (3, {"name": "李四", "community_id": "c-1", "phone": "13900139000", "is_volunteer": True}),
    ]
    valid, errors = parse_rows("people", rows)
    assert errors == []
    assert [(person.phone, person.is_volunteer) for _, person in valid] == [
        ("13800138000", True),
        ("13900139000", True),
    ]
    memberships = xlsx_bytes(
        ["人员编号", "职务", "组织编码", "任职开始日期", "任职结束日期"],
        ["p-1", "secretary", "g-1", date(2024, 3, 1), datetime(2025, 2, 28, 9, 30)],
    )
    assert read_rows("memberships", "xlsx", memberships, 10) == [
        (
            2,
            {
                "person_id": "p-1",
                "role": "secretary",
                "organisation_id": "g-1",
                "start_on": "2024-03-01",
                "end_on": "2025-02-28",
            },
        )
    ]


def test_a_large_people_ledger_parses():
    lines = ["人员编号,姓名,所在社区编码,是否党员,手机号"]
    lines += [f"p-{n:05d},居民{n},c-{n % 7},{'是' if n % 3 else '否'},139{n:08d}" for n in range(5000)]
    content = csv_bytes("\n".join(lines) + "\n")
    valid, errors = read_and_parse("people", "csv", content, max_rows=5000)
    assert errors == []
    assert len(valid) == 5000
    line, last = valid[-1]
    assert line == 5001
    assert (last.person_id, last.name, last.is_party_member, last.phone) == (
        "p-04999",
        "居民4999",
        True,
        "13900004999",
    )
