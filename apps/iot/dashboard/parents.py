"""The parent picker of the device form: the tenant's devices whose name contains what was typed."""

from __future__ import annotations

from dataclasses import dataclass

from iot.inputs import MAX_SEARCH, id_problem, text_problem
from iot.repo import devices
from iot.repo._db import Executor
from iot.repo.device_list import DeviceQuery, list_devices

MAX_CHOICES = 10  # a picker, not a list: more matches ask for more of the name


@dataclass(frozen=True, slots=True)
class ParentChoices:
    search: str
    current: devices.Device | None  # the parent chosen so far (kept checked across searches)
    matches: list[devices.Device]
    more: bool  # more devices match than are shown


def _as_id(value: object) -> int | None:
    try:
        number = int(str(value))
    except ValueError:
        return None
    return None if id_problem(number) else number


async def parent_choices(db: Executor, tenant_id: int, search: object, current: object,
                         exclude: object = None) -> ParentChoices:
    """Up to MAX_CHOICES devices named like `search`; `current` (an id) first; never `exclude` (the device itself)."""
    text = str(search or "").strip()[:MAX_SEARCH]
    if text_problem(text, MAX_SEARCH):
        text = ""
    current_id, exclude_id = _as_id(current), _as_id(exclude)
    chosen = None
    if current_id is not None and current_id != exclude_id:
        detail = await devices.get_device(db, tenant_id, current_id)  # another tenant's id: None
        chosen = detail.device if detail else None
    page = await list_devices(db, tenant_id, DeviceQuery(name=text or None, sort="name", limit=MAX_CHOICES + 2))
    matches = [d for d in page.items if d.id not in (exclude_id, current_id)]
    return ParentChoices(text, chosen, matches[:MAX_CHOICES], len(matches) > MAX_CHOICES)
