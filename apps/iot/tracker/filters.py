"""The device filter language of the tenant API as query parameters (GET /v1/devices, /v1/devices.csv).

POST /v1/devices/bulk takes the same filters as a JSON object (`schemas.fleet.DeviceFilter`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from iot.inputs import MAX_TAGS, Id, Label, SearchText, TagText
from iot.repo.device_list import DeviceQuery
from iot.tracker.schemas import Kind, State


def device_filters(
    state: State | None = None,
    kind: Kind | None = None,
    region: Annotated[Label | None, Query(description="Only devices checked from this region.")] = None,
    region_state: Annotated[State | None, Query(description="With region: that region's view.")] = None,
    q: Annotated[SearchText | None, Query(description="Substring of name or target.")] = None,
    name: Annotated[SearchText | None, Query(description="Substring of the name alone (e.g. to pick a parent by name).")] = None,
    parent_id: Annotated[Id | None, Query(description="Only children of this gateway.")] = None,
    tag: Annotated[list[TagText] | None, Query(max_length=MAX_TAGS,
                                               description="Only devices having all of these tags (repeat it).")] = None,
) -> DeviceQuery:
    return DeviceQuery(state=state, kind=kind, region=region, region_state=region_state, text=q, name=name,
                       parent_id=parent_id, tags=tag)


DeviceFilters = Annotated[DeviceQuery, Depends(device_filters)]
