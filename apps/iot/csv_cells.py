"""CSV cells a spreadsheet would run as formulas: escaped on export, restored on import.

A cell starting with `=`, `+`, `-`, `@`, tab or carriage return is a formula to Excel, LibreOffice and
Google Sheets (OWASP "CSV injection"); a device name is tenant text, so the export prefixes such cells with
`'`, which spreadsheets show as text. The import removes that one `'` again, so an export round-trips.
A cell that already starts with `'` before one of these characters (or a second `'`) gets one more `'`,
so `unescape_cell(escape_cell(s)) == s` for every string.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def _escaped_start(cell: str) -> bool:
    return cell.startswith(QUOTE) and cell[1:2] in (*FORMULA_STARTS, QUOTE) and len(cell) > 1


def escape_cell(cell: str) -> str:
    """`=cmd()` -> `'=cmd()`; other text unchanged."""
    if cell[:1] in FORMULA_STARTS or _escaped_start(cell):
        return QUOTE + cell
    return cell


def unescape_cell(cell: str) -> str:
    """`'=cmd()` -> `=cmd()` (the inverse of `escape_cell`)."""
    return cell[1:] if _escaped_start(cell) else cell
