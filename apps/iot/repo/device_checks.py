"""Check a batch of device specs and report every problem, not only the first (the CSV import).

`devices.create_devices` stops at the first bad item, which suits an API call; a tenant fixing a
spreadsheet wants every bad line at once. Nothing is written here: the caller creates the devices only
when this returns no problem (and `create_devices` checks again, in its transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.errors import InputError
from iot.repo._db import Executor
from iot.repo.devices import SELECT_EXISTING_NAMES, SELECT_OWN_IDS, DeviceSpec, _check_spec, target_host


@dataclass(frozen=True, slots=True)
class SpecProblem:
    index: int  # position in the batch
    field: str  # e.g. `target`, `tags[1]`
    reason: str


async def spec_problems(db: Executor, tenant_id: int, specs: Sequence[DeviceSpec], *,
                        egress: EgressPolicy = PUBLIC_ONLY) -> list[SpecProblem]:
    """Every item's first problem (values, names used twice or taken, parents, egress), by item order."""
    found: dict[int, SpecProblem] = {}
    for i, spec in enumerate(specs):
        try:
            _check_spec(spec, "")  # normalises tags and push grace in place, like create_devices
        except InputError as exc:
            found[i] = SpecProblem(i, exc.field, exc.reason)
    first_of: dict[str, int] = {}
    for i, spec in enumerate(specs):
        if i in found:
            continue
        if spec.name in first_of:
            found[i] = SpecProblem(i, "name", f"{spec.name!r} is also the name of an earlier line; names must be unique")
        else:
            first_of[spec.name] = i
    ok = [i for i in range(len(specs)) if i not in found]
    taken = {r["name"] for r in await db.fetch(SELECT_EXISTING_NAMES, tenant_id, [specs[i].name for i in ok])}
    parents = sorted({specs[i].parent_id for i in ok if specs[i].parent_id is not None})
    own = {r["id"] for r in await db.fetch(SELECT_OWN_IDS, tenant_id, parents)} if parents else set()
    hosts = {i: target_host(specs[i].kind, specs[i].target) for i in ok
             if specs[i].kind != "push" and specs[i].target}
    refused = await egress.registration_problems(hosts.values())
    for i in ok:
        spec = specs[i]
        if spec.name in taken:
            found[i] = SpecProblem(i, "name", f"a device named {spec.name!r} already exists; rename it or leave the line out")
        elif spec.parent_id is not None and spec.parent_id not in own:
            found[i] = SpecProblem(i, "parent_id", f"no device {spec.parent_id} in this tenant")
        elif hosts.get(i) in refused:
            found[i] = SpecProblem(i, "target", f"{refused[hosts[i]]}; monitors only probe public internet addresses")
    return [found[i] for i in sorted(found)]
