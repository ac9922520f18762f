"""Devices from pasted or uploaded CSV: one device per line, a header naming the columns.

Only the shape is checked here (header, column names, row length, numbers); the devices repository
validates the values, and its field paths (`devices[3].target`) are mapped back to CSV line numbers.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

REQUIRED_COLUMNS = ("name", "kind")
OPTIONAL_COLUMNS = ("target", "interval_s", "timeout_ms", "grace_s", "enabled", "tags", "retries", "options")
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

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


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
    header = [h.strip().lower() for h in next(reader)]
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
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            result.problems.append(CsvProblem(line, f"has {len(row)} values but the header has {len(header)} columns"))
            continue
        if len(result.devices) >= MAX_ROWS:
            result.problems.append(CsvProblem(line, f"more than {MAX_ROWS} devices; split the file"))
            break
        device, problem = _device_from_row(dict(zip(header, (c.strip() for c in row), strict=True)))
        if problem:
            result.problems.append(CsvProblem(line, problem))
            continue
        result.devices.append(device)
        result.lines.append(line)
    if not result.devices and not result.problems:
        result.problems.append(CsvProblem(0, "the CSV has a header but no devices"))
    return result


def _device_from_row(row: dict[str, str]) -> tuple[dict[str, object], str | None]:
    device: dict[str, object] = {}
    for column, value in row.items():
        if value == "":
            continue  # empty cell: the default applies
        if column in INTEGER_COLUMNS:
            try:
                device[column] = int(value)
            except ValueError:
                return device, f"{column} must be a whole number, got {value!r}"
        elif column == "tags":
            device[column] = [tag.strip() for tag in value.split(TAG_SEPARATOR) if tag.strip()]
        elif column == "options":
            try:
                options = json.loads(value)
            except ValueError:
                options = None
            if not isinstance(options, dict):
                return device, ("options must be a JSON object in one quoted cell, e.g. "
                                f"{OPTIONS_EXAMPLE} (double the quotes inside)")
            device[column] = options
        elif column == "enabled":
            if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
                return device, f"enabled must be true or false, got {value!r}"
            device[column] = value.lower() in ("true", "yes", "1")
        else:
            device[column] = value
    return device, None
