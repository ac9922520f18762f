"""Bodies of /v1/maintenance: a window's scope, reason and times (one-off or recurring)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from iot.inputs import Id, TagText
from iot.maintenance import MAX_REASON, MAX_RRULE, RRULE_HELP

Scope = Literal["tenant", "tag", "device"]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=MAX_REASON)]
RuleText = Annotated[str, StringConstraints(max_length=MAX_RRULE)]


class MaintenanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Scope = Field("tenant", description="What the window covers: every device, those with `tag`, or "
                                                "`device_id`.")
    tag: TagText | None = Field(None, description="With scope 'tag': a tag at least one of your devices carries.")
    device_id: Id | None = Field(None, description="With scope 'device': one of your devices.")
    reason: Reason = Field(description="Why (shown on the incidents page and status pages).",
                           examples=["Firmware upgrade"])
    starts_at: datetime = Field(description="Start of the first occurrence (RFC 3339; without offset: UTC).")
    ends_at: datetime | None = Field(None, description="End of the first occurrence; or send duration_minutes.")
    duration_minutes: int | None = Field(None, ge=1, le=31 * 24 * 60,
                                         description="Length of each occurrence; or send ends_at.")
    rrule: RuleText | None = Field(None, description=f"Repeat it: {RRULE_HELP}. Null: a one-off window.",
                                   examples=["FREQ=WEEKLY;BYDAY=SU"])
    pinned: bool = Field(False, description="Show it first (dashboard, status pages).")


class MaintenanceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    scope: Scope
    tag: str | None
    device_id: int | None
    reason: str
    starts_at: datetime
    ends_at: datetime
    rrule: str | None
    pinned: bool
    created_at: datetime
    next_starts_at: datetime | None = Field(description="The occurrence in progress, else the next; null: over.")
    next_ends_at: datetime | None
    active: bool = Field(description="An occurrence is in progress: incidents and notifications are held back.")


class MaintenancePageOut(BaseModel):
    items: list[MaintenanceOut]
    next_before: int | None = Field(description="Pass as ?before= for older windows; null when none.")
