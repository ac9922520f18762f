"""Parents given by name (the CSV `parent` column): check them all, then link them after the create.

A parent is a device of the same tenant: one that exists already, or another line of the same file (a
gateway and the sensors behind it import together). The names are checked before anything is written;
`link_parents` runs in the import's transaction, right after the devices are created.
"""

from __future__ import annotations

from collections.abc import Sequence

from iot.repo._db import Executor

SELECT_IDS_BY_NAME = "SELECT id, name FROM devices WHERE tenant_id = $1 AND name = ANY($2::text[])"
UPDATE_PARENTS = """
UPDATE devices d SET parent_id = x.parent_id, updated_at = now()
FROM unnest($2::bigint[], $3::bigint[]) AS x(id, parent_id)
WHERE d.tenant_id = $1 AND d.id = x.id
  AND EXISTS (SELECT 1 FROM devices p WHERE p.tenant_id = $1 AND p.id = x.parent_id)
"""


async def parent_problems(db: Executor, tenant_id: int, names: Sequence[str],
                          parents: Sequence[str | None]) -> dict[int, str]:
    """Line index -> why its parent name cannot be linked (unknown, itself, or a cycle within the file)."""
    in_file = {name: i for i, name in enumerate(names)}
    wanted = sorted({p for p in parents if p and p not in in_file})
    existing = {r["name"] for r in await db.fetch(SELECT_IDS_BY_NAME, tenant_id, wanted)} if wanted else set()
    problems: dict[int, str] = {}
    for i, parent in enumerate(parents):
        if not parent:
            continue
        if parent == names[i]:
            problems[i] = "a device cannot be its own parent; leave the cell empty"
        elif parent not in in_file and parent not in existing:
            problems[i] = f"no device named {parent!r} in this tenant or this file; add the gateway first or fix the name"
        else:
            chain, at = [names[i]], parent
            while at in in_file and at not in chain:  # only new devices can form a cycle among themselves
                chain.append(at)
                at = parents[in_file[at]] or ""
            if at in chain:
                problems[i] = f"{' -> '.join([*chain, at])} is a cycle; a gateway cannot sit behind its own device"
    return problems


async def link_parents(db: Executor, tenant_id: int, created: dict[str, int], parents: dict[str, str]) -> int:
    """Set `parent_id` of the created devices (name -> id) from `parents` (child name -> parent name)."""
    unknown = sorted({p for p in parents.values() if p not in created})
    ids = dict(created)
    if unknown:
        ids.update({r["name"]: r["id"] for r in await db.fetch(SELECT_IDS_BY_NAME, tenant_id, unknown)})
    pairs = [(created[child], ids[parent]) for child, parent in parents.items() if parent in ids]
    if not pairs:
        return 0
    status = await db.execute(UPDATE_PARENTS, tenant_id, [c for c, _ in pairs], [p for _, p in pairs])
    return int(status.rsplit(" ", 1)[-1])
