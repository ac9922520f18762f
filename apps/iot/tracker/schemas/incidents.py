"""Bodies of /v1/incidents/{id}: the timeline, acknowledging and notes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from iot.inputs import DisplayName
from iot.repo.incidents import MAX_NOTE
from iot.tracker.schemas import IncidentOut

EventKind = Literal["opened", "notified", "acknowledged", "note", "resolved", "suppressed"]
NoteText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NOTE)]
ACTOR = Field("api", description="Who does it, shown on the timeline (a name or e-mail address).",
              examples=["alice@example.com"])


class TimelineEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    kind: EventKind = Field(description="opened, notified (a notification sent, with its result), acknowledged, "
                                        "note, resolved, or suppressed (its alert was held back: by which parent "
                                        "or maintenance window).")
    actor: str = Field(description="'system' for the worker, else who acknowledged or wrote it.")
    text: str
    result: str | None = Field(None, description="For notified: delivered, pending (being retried) or failed, "
                                                 "with the receiver's last answer.")


class SuppressedChildOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    state: str
    state_since: datetime


class IncidentDetailOut(IncidentOut):
    timeline: list[TimelineEventOut] = Field(description="Oldest first.")
    suppressed_children: list[SuppressedChildOut] = Field(
        description="While open: children of this device failing too, whose alerts this incident holds back.")


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: DisplayName = ACTOR


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: DisplayName = ACTOR
    text: NoteText = Field(description="The note; line breaks are kept.", examples=["Power restored on site"])
