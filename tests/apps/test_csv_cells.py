"""CSV formula injection (issue 15 CSV export): cells a spreadsheet would evaluate are escaped, and the
import's unescape restores every string exactly."""

from __future__ import annotations

import pytest

from iot.csv_cells import escape_cell, unescape_cell

SAMPLES = ["", "plain", "=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'", "''", "'=x", "''=x", "'plain", "a=b",
           "=", "-", "'-", "'''", "'\t"]


@pytest.mark.parametrize("cell", SAMPLES)
def test_escape_round_trips_and_never_starts_with_a_formula(cell: str) -> None:
    escaped = escape_cell(cell)
    assert unescape_cell(escaped) == cell
    assert escaped[:1] not in ("=", "+", "-", "@", "\t", "\r")


def test_only_risky_cells_change() -> None:
    assert escape_cell("pump-1") == "pump-1" and escape_cell("'quoted") == "'quoted"
    assert escape_cell("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert unescape_cell("'quoted") == "'quoted"  # a hand-written leading quote stays
