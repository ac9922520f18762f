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
LIMIT $2
"""


@dataclass(frozen=True, slots=True)
class TagCount:
    tag: str
    devices: int


# A tenant may hold 20 tags on each of its devices: answers are capped, the most used first.
MAX_TAG_COUNTS = 1000


async def tag_counts(db: Executor, tenant_id: int, limit: int) -> list[TagCount]:
    """The tenant's `limit` most used tags (ties by name), each with its device count."""
    return [TagCount(r["tag"], r["devices"]) for r in await db.fetch(SELECT_TAG_COUNTS, tenant_id, limit)]
