"""Request and response bodies of the tracker API (they are also its OpenAPI documentation).

This module holds the bodies of tenants, devices, incidents, regions and webhooks; each newer resource has
its own module beside it (`iot.tracker.schemas.<resource>`).

Bodies that accept "one item, a list, or an object wrapping a list" use a callable discriminator, so a
validation error reports only the shape that was sent (e.g. `devices[3].target`), not every alternative.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag
from typing_extensions import TypedDict

from iot.checks import KIND_NAMES, KINDS
from iot.inputs import INT4_MAX, MAX_TAGS, DisplayName, Id, Name, Secret, Slug, TagText, Target, Url

Kind = Literal[KIND_NAMES]  # type: ignore[valid-type]  # iot.checks.KINDS is the one list
State = Literal["up", "down", "degraded", "unknown"]

# Tags of the shape branches; the error formatter drops them from field paths.
SHAPE_TAGS = ("single", "list", "wrapped")


def _shape_for(wrapper: str):
    def shape(value: Any) -> str:
        if isinstance(value, list):
            return "list"
        if isinstance(value, dict) and wrapper in value:
            return "wrapped"
        return "single"

    return shape


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantCreate(Strict):
    slug: Slug = Field(description="One DNS label; the dashboard lives at <slug>.<domain>.", examples=["acme"])
    name: DisplayName = Field("", description="Display name (defaults to the slug).")


class TenantCreated(BaseModel):
    id: int
    slug: str
    api_key: str = Field(description="Bearer key for the tenant API. Shown only once: store it now.")


class TenantOut(BaseModel):
    id: int
    slug: str
    name: str
    webhook_url: str | None
    created_at: datetime
    devices_by_state: dict[str, int]


class QuotasIn(Strict):
    """A tenant's quota overrides; null (or omitted) keeps the service default (QUOTA_* settings)."""

    max_devices: int | None = Field(None, ge=0, le=INT4_MAX, description="Devices the tenant may have.")
    checks_per_second: float | None = Field(
        None, ge=0, le=1e6, description="Sum of 1/interval_s over its enabled http, tcp and icmp devices.")
    points_per_second: float | None = Field(
        None, ge=0, le=1e9, description="Metric points (heartbeats count 1) per second; bursts up to 2 s of it.")


class QuotaUse(BaseModel):
    limit: float
    used: float | None = Field(description="Current use; null where it is a rate the tracker meters per request.")


class QuotasOut(BaseModel):
    devices: QuotaUse
    checks_per_second: QuotaUse
    points_per_second: QuotaUse


class ApiKeyOut(BaseModel):
    api_key: str = Field(description="The new key; the old one no longer works. Shown only once.")


TAGS_DESCRIPTION = (f"Free-form labels, at most {MAX_TAGS}: 1-50 letters, digits or -_.:/ each; stored "
                    "trimmed and lower-case, duplicates collapsed.")


# Checked against the kind's model in iot.repo.devices (the dashboard and CSV import share that check);
# here only bounded in size, so a huge object is refused before the model sees it.
CheckOptions = Annotated[dict[str, Any], Field(max_length=20)]
Retries = Annotated[int, Field(ge=1, le=20)]
OPTIONS_DESCRIPTION = (
    "Per-kind options (omitted ones take their defaults). http: method, headers, body, expected_status "
    "(codes and ranges like \"200-299\"), keyword, absent_keyword, json_path + json_equals; tls: warn_days; "
    "dns: record_type (A, AAAA, CNAME, MX, TXT, NS), expected, resolver (IP[:port]). tcp, icmp, push: none.")
RETRIES_DESCRIPTION = ("Failed checks in a row before a region counts this device as failing "
                       "(default: the service's FAILURES_TO_DOWN).")


class DeviceIn(Strict):
    name: Name = Field(examples=["pump-17"])
    kind: Kind = Field(description="; ".join(k.description for k in KINDS.values()) + ".")
    target: Target | None = Field(None, examples=["http://pump-1.example.com:8080/health"])
    interval_s: int = Field(60, ge=5, le=86400, description="Check (or expected push) interval.")
    timeout_ms: int = Field(5000, ge=100, le=60000)
    grace_s: int | None = Field(None, ge=5, le=604800,
                                description="push: silence allowed before `down` (default 3 intervals).")
    parent_id: Id | None = Field(None, description="Gateway this device sits behind (same tenant).")
    enabled: bool = True
    anomaly_factor: float | None = Field(None, gt=0, le=100, description="Slow = above mean + factor * stddev.")
    anomaly_min_ms: float | None = Field(None, ge=0, le=60000, description="... and at least this far above the mean.")
    anomaly_checks: int | None = Field(None, ge=1, le=100, description="Slow checks in a row before `degraded`.")
    tags: list[TagText] = Field([], max_length=MAX_TAGS, examples=[["env:prod", "site/berlin"]],
                                description=TAGS_DESCRIPTION)
    options: CheckOptions = Field({}, description=OPTIONS_DESCRIPTION, examples=[KINDS["http"].options_example])
    retries: Retries | None = Field(None, description=RETRIES_DESCRIPTION)


class DevicePatch(Strict):
    name: Name | None = None
    kind: Kind | None = None
    target: Target | None = None
    interval_s: int | None = Field(None, ge=5, le=86400)
    timeout_ms: int | None = Field(None, ge=100, le=60000)
    grace_s: int | None = Field(None, ge=5, le=604800)
    parent_id: Id | None = None
    enabled: bool | None = None
    anomaly_factor: float | None = Field(None, gt=0, le=100)
    anomaly_min_ms: float | None = Field(None, ge=0, le=60000)
    anomaly_checks: int | None = Field(None, ge=1, le=100)
    tags: list[TagText] | None = Field(None, max_length=MAX_TAGS, description="Replaces all tags ([] clears them).")
    options: CheckOptions | None = Field(None, description="Replaces all options ({} resets them to the defaults).")
    retries: Retries | None = None


class DevicesWrapped(Strict):
    devices: list[DeviceIn]


DeviceCreateBody = Annotated[
    Annotated[DeviceIn, Tag("single")] | Annotated[list[DeviceIn], Tag("list")]
    | Annotated[DevicesWrapped, Tag("wrapped")],
    Discriminator(_shape_for("devices")),
]


class DeviceCreated(BaseModel):
    id: int
    name: str
    token: str = Field(description="The device's ingest token (Bearer for /v1/metrics). Shown only once.")


class DevicesCreated(BaseModel):
    devices: list[DeviceCreated]


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: Kind
    target: str | None
    interval_s: int
    timeout_ms: int
    grace_s: int | None
    parent_id: int | None
    enabled: bool
    anomaly_factor: float | None
    anomaly_min_ms: float | None
    anomaly_checks: int | None
    state: State
    state_since: datetime
    last_seen_at: datetime | None
    latency_ms: float | None = Field(description="Mean of the last successful latency over the regions.")
    created_at: datetime
    updated_at: datetime
    tags: list[str]
    options: dict[str, Any] = Field(description="The kind's options that differ from their defaults.")
    retries: int | None


class TagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    tag: str
    devices: int = Field(description="How many of the tenant's devices carry the tag.")


class RegionStateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    region: str
    state: State
    last_ok: bool | None
    last_latency_ms: float | None
    last_error: str | None
    last_checked_at: datetime | None
    consecutive_failures: int
    latency_mean_ms: float | None
    latency_stddev_ms: float | None
    samples: int


class DeviceDetailOut(DeviceOut):
    regions: list[RegionStateOut] = Field(description="The last result and latency seen from each region.")


class DevicePageOut(BaseModel):
    items: list[DeviceOut]
    total: int = Field(description="All devices matching the filters (not just this page).")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class TokenOut(BaseModel):
    token: str = Field(description="The device's new ingest token; the old one stops working. Shown once.")


class IncidentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    device_id: int
    device_name: str
    kind: str
    summary: str
    details: dict[str, Any]
    cause_device_id: int | None = Field(description="The parent (gateway) blamed instead of this device.")
    opened_at: datetime
    resolved_at: datetime | None
    acknowledged_by: str | None = Field(None, description="Who acknowledged it (POST .../ack), if anyone.")
    acknowledged_at: datetime | None = None


class IncidentPageOut(BaseModel):
    items: list[IncidentOut]
    next_before: int | None = Field(description="Pass as ?before= for older incidents; null when none.")


class WebhookIn(Strict):
    url: Url | None = Field(description="https URL to POST events to (a public address); null disables webhooks.",
                            examples=["https://example.com/hooks/iot"])
    secret: Secret | None = Field(None, description="HMAC-SHA256 key for the signature header; generated when omitted.")
    previous_secret_valid_s: int = Field(
        86400, ge=0, le=7 * 86400,
        description="When the secret changes, deliveries are also signed with the previous secret for this "
                    "many seconds (0: stop at once), so receivers can switch without rejecting events.")


class WebhookOut(BaseModel):
    url: str | None
    secret: str | None
    previous_secret_expires_at: datetime | None = Field(
        None, description="Until then deliveries carry a second signature, under the previous secret.")


class DeliveryOut(BaseModel):
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
    payload: dict[str, Any]


class DeliveryPageOut(BaseModel):
    items: list[DeliveryOut]
    next_before: int | None


class MetricPoint(TypedDict):
    """One measurement. A TypedDict, not a model: batches of thousands validate about twice as fast."""

    __pydantic_config__ = ConfigDict(extra="forbid", allow_inf_nan=False)  # type: ignore[misc]

    name: Annotated[Name, Field(examples=["temperature_c"])]
    value: Annotated[float, Field(examples=[21.5])]
    ts: NotRequired[Annotated[datetime | None, Field(description="When it was measured (RFC 3339); default: arrival time.")]]


class MetricsWrapped(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    points: list[MetricPoint]


MetricsBody = Annotated[
    Annotated[MetricPoint, Tag("single")] | Annotated[list[MetricPoint], Tag("list")]
    | Annotated[MetricsWrapped, Tag("wrapped")],
    Discriminator(_shape_for("points")),
]


class RegionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    healthy: bool = Field(description="False while the region's canaries fail; it is then left out of quorums.")
    reason: str | None
    last_heartbeat_at: datetime | None


class IngestOut(BaseModel):
    stored: int = Field(description="Points written to the database.")


class ErrorItem(BaseModel):
    field: str
    reason: str
    location: str | None = None


class ErrorOut(BaseModel):
    detail: str
    errors: list[ErrorItem] = []
