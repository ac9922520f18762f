"""Bodies of the notification channel endpoints (/v1/channels, /v1/channel-kinds)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from iot.inputs import DisplayName, Id, TagText
from iot.notify.base import EventKind

ChannelKind = Literal["webhook", "email", "slack", "msteams", "discord", "telegram", "pagerduty", "opsgenie",
                      "ntfy", "pushover", "apprise"]
Route = Literal["all", "tags", "devices"]


class ChannelIn(BaseModel):
    """A channel: where alerts go (kind + config), which events, and for which devices."""

    model_config = ConfigDict(extra="forbid")
    name: DisplayName = Field(min_length=1, description="Unique per tenant, e.g. \"On-call Slack\".")
    kind: ChannelKind = Field(description="See GET /v1/channel-kinds for each kind's config and an example.")
    config: dict[str, Any] | None = Field(
        None, description="The kind's settings, e.g. {\"url\": \"https://hooks.slack.com/services/...\"} or "
        "{\"to\": [\"ops@example.com\"]}. Stored encrypted, answered masked. On PUT, omit (or null) to keep the "
        "stored config (the kind must stay the same).",
        examples=[{"url": "https://hooks.slack.com/services/T000/B000/XXXX"}])
    events: list[EventKind] = Field(["down", "up", "degraded", "silent", "metric"], min_length=1, max_length=6,
                                    description="Events to send; region_unhealthy is opt-in.")
    route: Route = Field("all", description="all devices, devices with any of `route_tags`, or `route_device_ids`.")
    route_tags: list[TagText] = Field([], max_length=20, description="For route 'tags'.")
    route_device_ids: list[Id] = Field([], max_length=1000, description="For route 'devices': your device ids.")
    enabled: bool = True


class ChannelOut(BaseModel):
    id: int
    name: str
    kind: str
    config: dict[str, Any] = Field(description="The config with every secret masked (URLs with tokens, secrets).")
    events: list[str]
    route: str
    route_tags: list[str]
    route_device_ids: list[int]
    enabled: bool
    created_at: datetime
    updated_at: datetime


class ChannelListOut(BaseModel):
    items: list[ChannelOut]


class ChannelKindOut(BaseModel):
    kind: str
    label: str
    example: dict[str, Any] = Field(description="An example config of this kind.")


class ChannelTestOut(BaseModel):
    delivered: bool
    status_code: int | None = Field(None, description="HTTP status of the receiver, when the kind has one.")
    error: str | None = Field(None, description="Why the test did not arrive (fixed texts, tokens removed).")


class ChannelDeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class ChannelDeliveryPageOut(BaseModel):
    items: list[ChannelDeliveryOut]
    next_before: int | None
