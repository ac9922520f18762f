"""Device tags of one tenant with how many devices carry each (GET /v1/tags, the dashboard's tag filter)."""

from __future__ import annotations

from dataclasses import dataclass

from iot.repo._db import Executor

# The tenant filter comes first, so another tenant's tags are never read.
SELECT_TAG_COUNTS = """
SELECT tag, count(*) AS devices
FROM devices d CROSS JOIN LATERAL unnest(d.tags) AS tag
WHERE d.tenant_id = $1
GROUP BY tag
ORDER BY devices DESC, tag
"""


@dataclass(frozen=True, slots=True)
class TagCount:
    tag: str
    devices: int


async def tag_counts(db: Executor, tenant_id: int) -> list[TagCount]:
    """Every tag the tenant uses, the most used first (ties by name)."""
    return [TagCount(r["tag"], r["devices"]) for r in await db.fetch(SELECT_TAG_COUNTS, tenant_id)]
