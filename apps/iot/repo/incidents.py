"""Incident repository: one tenant's incidents, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from iot.repo._db import Executor, check_ids, check_page_limit

SELECT_INCIDENTS = """
SELECT i.id, i.device_id, d.name AS device_name, i.kind, i.summary, i.details, i.cause_device_id,
       i.opened_at, i.resolved_at
FROM incidents i JOIN devices d ON d.id = i.device_id
WHERE i.tenant_id = $1
  AND ($2::bigint IS NULL OR i.device_id = $2)
  AND (NOT $3::bool OR i.resolved_at IS NULL)
  AND ($4::bigint IS NULL OR i.id < $4)
ORDER BY i.id DESC
LIMIT $5
"""


@dataclass(frozen=True, slots=True)
class Incident:
    id: int
    device_id: int
    device_name: str
    kind: str
    summary: str
    details: dict[str, Any]
    cause_device_id: int | None
    opened_at: datetime
    resolved_at: datetime | None


async def list_incidents(
    db: Executor, tenant_id: int, *, device_id: int | None = None, open_only: bool = False,
    before_id: int | None = None, limit: int = 50,
) -> list[Incident]:
    """Newest first; page with `before_id` = the last id of the previous page."""
    check_page_limit(limit)
    check_ids(device_id=device_id, before=before_id)
    rows = await db.fetch(SELECT_INCIDENTS, tenant_id, device_id, open_only, before_id, limit)
    return [Incident(**dict(r)) for r in rows]
