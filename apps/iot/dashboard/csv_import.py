"""Devices from pasted or uploaded CSV: one device per line, a header naming the columns.

Only the shape is checked here (header, column names, row length, numbers); `repo.device_checks`
validates the values. Every bad line is reported (line number, field, reason with the fix), and nothing
is imported while any line is bad. Cells escaped against formula injection by the export (`'=...`) are
restored (`iot.csv_cells`), so an exported list imports again.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from iot.csv_cells import unescape_cell

REQUIRED_COLUMNS = ("name", "kind")
OPTIONAL_COLUMNS = ("target", "interval_s", "timeout_ms", "grace_s", "enabled", "tags", "retries", "options", "parent")
PARENT_COLUMN = "parent"  # the parent's name: a device of the tenant, or another line of the file
TAG_SEPARATOR = ";"  # inside the `tags` cell: "env:prod;site/berlin" (a comma would split the CSV cell)
INTEGER_COLUMNS = frozenset({"interval_s", "timeout_ms", "grace_s", "retries"})
# The `options` cell is the kind's options as a JSON object, quoted like any CSV cell with commas:
# "{""expected_status"": [""200-299""], ""keyword"": ""ok""}" (checked by the kind's model, like the API).
OPTIONS_EXAMPLE = '"{""expected_status"": [""200-299""], ""keyword"": ""ok""}"'
MAX_ROWS = 10_000
EXAMPLE = ("name,kind,target,interval_s\nsensor-1,http,http://sensor-1.example.com/health,30\n"
           "gateway-1,tcp,gateway-1.example.com:22,60\n")


@dataclass(frozen=True, slots=True)
class CsvProblem:
    line: int  # 1-based line in the pasted text (the header is line 1); 0 for the whole file
    message: str
    field: str = ""  # the column (or `tags[1]`) at fault, when one is

    def __str__(self) -> str:
        text = f"{self.field}: {self.message}" if self.field else self.message
        return f"line {self.line}: {text}" if self.line else text


@dataclass
class ParsedCsv:
    devices: list[dict[str, object]]
    lines: list[int]  # CSV line of each device, to report repository errors by line
    problems: list[CsvProblem]


def parse_devices_csv(text: str) -> ParsedCsv:
    result = ParsedCsv([], [], [])
    text = text.lstrip("\ufeff")  # spreadsheets like to start UTF-8 files with a BOM
    if not text.strip():
        result.problems.append(CsvProblem(0, "the CSV is empty; paste a header line and one device per line"))
        return result
    reader = csv.reader(io.StringIO(text))
    rows = _rows(reader, result)
    header = [h.strip().lower() for h in next(rows, [])]
    unknown = [h for h in header if h not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if unknown or missing:
        allowed = ", ".join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
        what = []
        if missing:
            what.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            what.append(f"unknown column(s) {', '.join(unknown)}")
        result.problems.append(CsvProblem(1, f"header: {'; '.join(what)}. Allowed columns: {allowed}"))
        return result
    for row in rows:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            result.problems.append(CsvProblem(line, f"has {len(row)} values but the header has {len(header)} columns"))
            continue
        if len(result.devices) >= MAX_ROWS:
            result.problems.append(CsvProblem(line, f"more than {MAX_ROWS} devices; split the file"))
            break
        device, problems = _device_from_row(dict(zip(header, (unescape_cell(c.strip()) for c in row), strict=True)))
        if problems:
            result.problems.extend(CsvProblem(line, reason, column) for column, reason in problems)
            continue
        result.devices.append(device)
        result.lines.append(line)
    if not result.devices and not result.problems:
        result.problems.append(CsvProblem(0, "the CSV has a header but no devices"))
    return result


def _rows(reader: Any, result: ParsedCsv) -> Iterator[list[str]]:
    """The reader's rows; a line the csv module refuses (a cell past its field limit) ends the file as a
    problem of that line instead of an exception."""
    try:
        yield from reader
    except csv.Error as exc:
        limit = csv.field_size_limit()
        result.problems.append(CsvProblem(reader.line_num, f"a cell is longer than {limit:,} characters or its "
                                                           f"quotes are unbalanced ({exc}); fix that line"))


def _device_from_row(row: dict[str, str]) -> tuple[dict[str, object], list[tuple[str, str]]]:
    """The device of one line, and (column, reason) for each cell that is not even the right type."""
    device: dict[str, object] = {}
    problems: list[tuple[str, str]] = []
    for column, value in row.items():
        if value == "":
            continue  # empty cell: the default applies
        if column in INTEGER_COLUMNS:
            try:
                device[column] = int(value)
            except ValueError:
                problems.append((column, f"must be a whole number, got {value[:60]!r}"))
        elif column == "tags":
            device[column] = [tag.strip() for tag in value.split(TAG_SEPARATOR) if tag.strip()]
        elif column == "options":
            try:
                options = json.loads(value)
            except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past Python's stack
                options = None
            if isinstance(options, dict):
                device[column] = options
            else:
                problems.append((column, "must be a JSON object in one quoted cell, e.g. "
                                         f"{OPTIONS_EXAMPLE} (double the quotes inside)"))
        elif column == "enabled":
            if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
                problems.append((column, f"must be true or false, got {value[:60]!r}"))
            device[column] = value.lower() in ("true", "yes", "1")
        else:
            device[column] = value
    return device, problems
