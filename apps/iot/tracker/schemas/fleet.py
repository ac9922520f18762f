"""Bodies of the fleet endpoints: bulk actions on a filtered selection of devices."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from iot.inputs import MAX_TAGS, Id, Label, SearchText, TagText
from iot.repo.device_bulk import MAX_BULK
from iot.tracker.schemas import Kind, State, Strict

BulkAction = Literal["pause", "resume", "tag_add", "tag_remove", "set_interval", "delete"]


class DeviceFilter(Strict):
    """The filters of GET /v1/devices, as an object; all given terms must match."""

    state: State | None = None
    kind: Kind | None = None
    region: Label | None = Field(None, description="Only devices checked from this region.")
    region_state: State | None = Field(None, description="With region: that region's view.")
    q: SearchText | None = Field(None, description="Substring of name or target.")
    name: SearchText | None = Field(None, description="Substring of the name alone.")
    parent_id: Id | None = Field(None, description="Only children of this gateway.")
    tag: list[TagText] | None = Field(None, max_length=MAX_TAGS, description="Devices having all of these tags.")


class BulkIn(Strict):
    action: BulkAction = Field(description="pause / resume: checks off / on; tag_add / tag_remove: `tags`; "
                                           "set_interval: `interval_s`; delete: the devices and their history.")
    filter: DeviceFilter = Field(default_factory=DeviceFilter, description="Which devices (as GET /v1/devices).")
    ids: list[Id] | None = Field(None, max_length=MAX_BULK,
                                 description="Only these devices (and only those the filter matches).")
    all: bool = Field(False, description="Must be true to act on every device (an empty filter and no ids).")
    tags: list[TagText] | None = Field(None, max_length=MAX_TAGS, examples=[["env:prod"]],
                                       description="tag_add / tag_remove: the tags.")
    interval_s: int | None = Field(None, ge=5, le=86400, description="set_interval: the new check interval.")


class BulkOut(BaseModel):
    action: BulkAction
    matched: int = Field(description="Devices the selection matched.")
    changed: int = Field(description="Devices the action changed (pausing a paused device changes nothing).")
