"""The registry's ledgers (台账) as CSV and Excel files: reading uploads and writing exports.

Communities keep their organisations, compounds and buildings, people and posts in spreadsheets;
these pure functions turn such a sheet into validated input models (reporting every bad row by
line and field) and turn registry records back into a sheet of the same shape, so an export can
be edited and uploaded again.
"""

from __future__ import annotations

import csv
import io
import re
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from pydantic import BaseModel, ValidationError

from shared.schemas import field_errors
from shared.schemas.registry import NewMembership, NewOrganisation, NewPerson, NewPlace

LEDGER_KINDS = ("organisations", "places", "people", "memberships")
FILE_FORMATS = ("csv", "xlsx")


@dataclass(frozen=True)
class Column:
    field: str
    label: str


COLUMNS: dict[str, tuple[Column, ...]] = {
    "organisations": (
        Column("code", "编码"),
        Column("name", "名称"),
        Column("classification", "类别"),
        Column("parent_id", "上级组织编码"),
        Column("founded_on", "成立日期"),
        Column("compound_id", "所在小区编码"),
        Column("party_status", "党组织建设方式"),
        Column("party_branch_id", "物业党支部编码"),
        Column("serves_compounds", "服务小区"),
    ),
    "places": (
        Column("code", "编码"),
        Column("name", "名称"),
        Column("kind", "类型"),
        Column("parent_id", "上级编码"),
        Column("community_id", "所属社区编码"),
        Column("grid_id", "所属网格编码"),
    ),
    "people": (
        Column("person_id", "人员编号"),
        Column("name", "姓名"),
        Column("community_id", "所在社区编码"),
        Column("household_id", "住户编码"),
        Column("is_party_member", "是否党员"),
        Column("party_organisation_id", "所属党组织编码"),
        Column("is_cadre", "是否干部"),
        Column("employer", "工作单位"),
        Column("employer_unit_id", "工作单位编码"),
        Column("is_volunteer", "是否志愿者"),
        Column("is_party_member_household", "是否党员中心户"),
        Column("phone", "手机号"),
        Column("id_number", "身份证号"),
    ),
    "memberships": (
        Column("person_id", "人员编号"),
        Column("role", "职务"),
        Column("organisation_id", "组织编码"),
        Column("place_id", "场所编码"),
        Column("start_on", "任职开始日期"),
        Column("end_on", "任职结束日期"),
        Column("on_behalf_of", "代表单位编码"),
    ),
}

MODELS: dict[str, type[BaseModel]] = {
    "organisations": NewOrganisation,
    "places": NewPlace,
    "people": NewPerson,
    "memberships": NewMembership,
}

SHEET_TITLES = {
    "organisations": "组织台账",
    "places": "小区楼栋台账",
    "people": "人员台账",
    "memberships": "任职台账",
}

TRUE_WORDS = frozenset({"是", "true", "1", "y", "yes"})
FALSE_WORDS = frozenset({"否", "false", "0", "n", "no"})
# People type lists with whichever separator their keyboard gives them, full-width ones included.
LIST_SEPARATORS = re.compile(r"[;；、,，]")
# A cell starting with one of these is run as a formula when Excel opens a CSV (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class LedgerFormatError(ValueError):
    """The file as a whole cannot be read (as opposed to bad values in some rows)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _annotated_as(annotation: Any, kind: type) -> bool:
    """Whether a field's annotation is `kind`, `kind | None`, or (for list) `list[...]`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_annotated_as(arg, kind) for arg in typing.get_args(annotation))
    return annotation is kind or typing.get_origin(annotation) is kind


def _fields_of_type(kind: type) -> dict[str, frozenset[str]]:
    return {
        ledger: frozenset(
            name for name, info in model.model_fields.items() if _annotated_as(info.annotation, kind)
        )
        for ledger, model in MODELS.items()
    }


LIST_FIELDS = _fields_of_type(list)
BOOL_FIELDS = _fields_of_type(bool)


def _columns(kind: str) -> tuple[Column, ...]:
    if kind not in COLUMNS:
        raise ValueError(f"unknown ledger kind {kind!r}; expected one of {', '.join(LEDGER_KINDS)}")
    return COLUMNS[kind]


def _check_format(file_format: str) -> None:
    if file_format not in FILE_FORMATS:
        raise LedgerFormatError("file", f"unsupported format {file_format!r}; use csv or xlsx")


# Reading


def read_rows(kind: str, file_format: str, content: bytes, max_rows: int) -> list[tuple[int, dict[str, Any]]]:
    """(line number, raw values by field name) for every non-blank data row.

    Line 1 is the header (Chinese labels or field names); lines count spreadsheet rows, blank ones
    included, so they match what the user sees. Empty cells are left out so model defaults apply.
    """
    columns = _columns(kind)
    _check_format(file_format)
    if file_format == "csv":
        return _table_rows(kind, columns, _csv_lines(content), max_rows)
    return _xlsx_rows(kind, columns, content, max_rows)


def _csv_lines(content: bytes) -> Iterator[list[Any]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Excel on Chinese Windows saves "CSV" in the ANSI code page, i.e. GBK/GB18030.
        try:
            text = content.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise LedgerFormatError("file", "not a UTF-8 or GB18030 text file") from exc
    if "\x00" in text:
        raise LedgerFormatError("file", "not a CSV text file")
    try:
        yield from csv.reader(io.StringIO(text, newline=""))
    except csv.Error as exc:
        raise LedgerFormatError("file", f"unreadable CSV: {exc}") from exc


def _xlsx_rows(
    kind: str, columns: tuple[Column, ...], content: bytes, max_rows: int
) -> list[tuple[int, dict[str, Any]]]:
    # openpyxl raises many different errors (zip, XML, key, value) for a damaged or foreign file.
    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:
        raise LedgerFormatError("file", "not a readable .xlsx workbook") from exc
    try:
        if not workbook.worksheets:
            raise LedgerFormatError("file", "the workbook has no worksheet")
        sheet = workbook.worksheets[0]
        # Files written by other tools often declare a wrong sheet size; read what is really there.
        sheet.reset_dimensions()
        return _table_rows(kind, columns, sheet.iter_rows(values_only=True), max_rows)
    except LedgerFormatError:
        raise
    except Exception as exc:
        raise LedgerFormatError("file", "not a readable .xlsx workbook") from exc
    finally:
        workbook.close()


def _cell(value: Any) -> Any:
    """A cell as the models expect it: text stripped, whole numbers and dates as text."""
    if isinstance(value, str):
        value = value.strip()
        # Undo the quote write() puts before formula-like text in CSV exports.
        if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
            value = value[1:]
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        # Excel keeps phone numbers and codes typed as numbers as floats: 13800138000.0.
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _header(kind: str, columns: tuple[Column, ...], cells: Sequence[Any]) -> list[str | None]:
    """The field name of each column (None for a column without a header)."""
    names = {column.label.lower(): column.field for column in columns}
    names.update({column.field.lower(): column.field for column in columns})
    fields: list[str | None] = []
    unknown: list[str] = []
    for cell in cells:
        text = "" if cell is None else str(cell).strip()
        fields.append(names.get(text.lower()) if text else None)
        if text and fields[-1] is None:
            unknown.append(text)
    labels = "、".join(column.label for column in columns)
    if unknown:
        listed = "、".join(f"“{name}”" for name in unknown)
        raise LedgerFormatError("header", f"unknown column {listed}; the columns are {labels}")
    if not any(fields):
        raise LedgerFormatError("header", f"line 1 must be the header row; the columns are {labels}")
    seen: set[str] = set()
    for field in fields:
        if field is not None and field in seen:
            raise LedgerFormatError("header", f"column “{_label(columns, field)}” ({field}) appears twice")
        if field is not None:
            seen.add(field)
    required = [name for name, info in MODELS[kind].model_fields.items() if info.is_required()]
    missing = [_label(columns, name) for name in required if name not in seen]
    if missing:
        raise LedgerFormatError("header", f"required column missing: {'、'.join(missing)}")
    return fields


def _label(columns: tuple[Column, ...], field: str) -> str:
    return next(column.label for column in columns if column.field == field)


def _table_rows(
    kind: str, columns: tuple[Column, ...], lines: Iterable[Sequence[Any]], max_rows: int
) -> list[tuple[int, dict[str, Any]]]:
    lines = iter(lines)
    first = next(lines, None)
    if first is None:
        raise LedgerFormatError("file", "the file is empty")
    fields = _header(kind, columns, [_cell(cell) for cell in first])
    rows: list[tuple[int, dict[str, Any]]] = []
    for line, cells in enumerate(lines, start=2):
        values: dict[str, Any] = {}
        for position, raw in enumerate(cells):
            value = _cell(raw)
            if value is None or value == "":
                continue
            field = fields[position] if position < len(fields) else None
            if field is None:
                # Refuse rather than silently drop data the user typed outside the known columns.
                raise LedgerFormatError(
                    "header", f"line {line} has a value in column {position + 1}, which has no header"
                )
            values[field] = value
        if not values:
            continue
        if len(rows) == max_rows:
            raise LedgerFormatError("file", f"more than {max_rows} rows; split the ledger into smaller files")
        rows.append((line, values))
    return rows


# Validating


def parse_rows(
    kind: str, rows: list[tuple[int, dict[str, Any]]]
) -> tuple[list[tuple[int, BaseModel]], list[dict[str, Any]]]:
    """Validate each row; returns the valid (line, model) pairs and one error per problem found.

    Errors are {"line", "field", "message"}. Every row is checked so the user can fix them all at
    once; deciding whether to store anything when some rows are bad is the caller's business.
    """
    _columns(kind)
    model = MODELS[kind]
    valid: list[tuple[int, BaseModel]] = []
    errors: list[dict[str, Any]] = []
    for line, values in rows:
        try:
            valid.append((line, model.model_validate(_converted(kind, values))))
        except ValidationError as exc:
            errors.extend({"line": line, **error} for error in field_errors(exc))
    return valid, errors


def _converted(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    converted = dict(values)
    for field, value in values.items():
        if not isinstance(value, str):
            continue
        if field in LIST_FIELDS[kind]:
            converted[field] = [item.strip() for item in LIST_SEPARATORS.split(value) if item.strip()]
        elif field in BOOL_FIELDS[kind]:
            word = value.strip().lower()
            # Anything else is left as typed so pydantic reports it against the field.
            if word in TRUE_WORDS:
                converted[field] = True
            elif word in FALSE_WORDS:
                converted[field] = False
    return converted


# Writing


def write(kind: str, file_format: str, rows: list[dict[str, Any]]) -> bytes:
    """An export: a header row of Chinese labels, then one row per record (looked up by field)."""
    columns = _columns(kind)
    _check_format(file_format)
    header = [column.label for column in columns]
    table = [[_text(row.get(column.field)) for column in columns] for row in rows]
    if file_format == "csv":
        return _write_csv(header, table)
    return _write_xlsx(SHEET_TITLES[kind], header, table)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list | tuple):
        return ";".join(_text(item) for item in value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _write_csv(header: list[str], table: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    # Quote formula-like text so Excel shows it instead of running it; read_rows removes the quote.
    writer.writerows(
        [f"'{text}" if text.startswith(FORMULA_STARTS) else text for text in row] for row in table
    )
    # The BOM makes Excel read the file as UTF-8 rather than the local code page.
    return buffer.getvalue().encode("utf-8-sig")


def _write_xlsx(title: str, header: list[str], table: list[list[str]]) -> bytes:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title)
    bold = Font(bold=True)
    header_cells = []
    for label in header:
        cell = WriteOnlyCell(sheet, value=label)
        cell.font = bold
        header_cells.append(cell)
    sheet.append(header_cells)
    for row in table:
        sheet.append([_text_cell(sheet, text) for text in row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _text_cell(sheet: Any, text: str) -> Any:
    if not text:
        return None
    # Control characters are not allowed in XML; drop them rather than fail the whole export.
    cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("", text))
    # Always text: openpyxl would store "=..." as a formula, and numbers-as-text keep their digits.
    cell.data_type = "s"
    return cell
