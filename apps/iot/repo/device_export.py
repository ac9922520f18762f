"""The filtered device list as CSV, page by page (GET /v1/devices.csv and the dashboard's download).

The columns are the ones the CSV import reads (`iot.dashboard.csv_import`), so an export imports again;
cells that a spreadsheet would run as formulas are escaped (`iot.csv_cells`). Pages follow the keyset
cursor, so memory stays one page however large the fleet is.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import replace

from iot.csv_cells import escape_cell
from iot.repo._db import Executor
from iot.repo.check_secrets import masked
from iot.repo.device_list import DeviceQuery, list_devices
from iot.repo.devices import Device

# options: the kind's options as JSON with secret values (http headers) masked: they never leave sealed, so
# an import of such a line asks for the values instead of storing the mask.
COLUMNS = ("name", "kind", "target", "interval_s", "timeout_ms", "grace_s", "enabled", "tags", "retries", "options",
           "parent")
SELECT_NAMES = "SELECT id, name FROM devices WHERE tenant_id = $1 AND id = ANY($2::bigint[])"
TAG_SEPARATOR = ";"  # as the import splits the `tags` cell
EXPORT_PAGE = 1000


def _cells(device: Device, parent_names: dict[int, str]) -> list[str]:
    values = {
        "name": device.name, "kind": device.kind, "target": device.target or "",
        "interval_s": str(device.interval_s), "timeout_ms": str(device.timeout_ms),
        "grace_s": "" if device.grace_s is None else str(device.grace_s),
        "enabled": "true" if device.enabled else "false", "tags": TAG_SEPARATOR.join(device.tags),
        "retries": "" if device.retries is None else str(device.retries),
        "options": json.dumps(masked(device.options), ensure_ascii=False, sort_keys=True) if device.options else "",
        "parent": parent_names.get(device.parent_id, "") if device.parent_id else "",  # by name, as the import reads it
    }
    return [escape_cell(values[c]) for c in COLUMNS]


def _line(cells: list[str] | tuple[str, ...]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)  # RFC 4180 line ends
    return out.getvalue()


async def csv_chunks(db: Executor, tenant_id: int, query: DeviceQuery) -> AsyncIterator[str]:
    """The header, then one chunk of lines per page of devices matching `query` (its limit/offset ignored)."""
    yield _line(COLUMNS)
    page_query = replace(query, limit=EXPORT_PAGE, offset=0, cursor=None)
    while True:
        page = await list_devices(db, tenant_id, page_query)
        if page.items:
            parent_ids = sorted({d.parent_id for d in page.items if d.parent_id})
            names = ({r["id"]: r["name"] for r in await db.fetch(SELECT_NAMES, tenant_id, parent_ids)}
                     if parent_ids else {})
            yield "".join(_line(_cells(d, names)) for d in page.items)
        if page.next_cursor is None:
            return
        page_query = replace(page_query, cursor=page.next_cursor)
