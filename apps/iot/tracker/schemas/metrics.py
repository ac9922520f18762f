"""Bodies of the metric endpoints: metric rules (threshold / anomaly) and chart series of a device's metrics."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from iot.inputs import Id, Name, TagText
from iot.tracker.schemas import Strict

Operator = Literal[">", ">=", "<", "<=", "==", "!="]
RuleKind = Literal["threshold", "anomaly"]
FOR_DESCRIPTION = "Seconds the condition must hold on every point before an incident opens (0: at once)."


class MetricRuleIn(Strict):
    """`temperature > 8 for 5 min` on one device or on every device carrying a tag."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    metric: Name = Field(description="Metric name as the devices push it.", examples=["temperature"])
    device_id: Id | None = Field(None, description="The one device the rule watches (or give tag).")
    tag: TagText | None = Field(None, description="Every device carrying this tag (or give device_id).",
                                examples=["cold-chain"])
    kind: RuleKind = Field("threshold", description="threshold: value <operator> threshold; anomaly: more than "
                                                    "z_score standard deviations from the day-before baseline.")
    operator: Operator | None = Field(None, description="threshold rules.", examples=[">"])
    threshold: float | None = Field(None, ge=-1e15, le=1e15, description="threshold rules.", examples=[8])
    z_score: float | None = Field(None, gt=0, le=100, description="anomaly rules, e.g. 3.")
    for_s: int = Field(0, ge=0, le=86400, description=FOR_DESCRIPTION, examples=[300])
    enabled: bool = True


class MetricRulePatch(Strict):
    """Fields to change; setting device_id clears tag and the other way round."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    metric: Name | None = None
    device_id: Id | None = None
    tag: TagText | None = None
    kind: RuleKind | None = None
    operator: Operator | None = None
    threshold: float | None = Field(None, ge=-1e15, le=1e15)
    z_score: float | None = Field(None, gt=0, le=100)
    for_s: int | None = Field(None, ge=0, le=86400, description=FOR_DESCRIPTION)
    enabled: bool | None = None


class MetricRuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    metric: str
    device_id: int | None
    device_name: str | None = Field(description="The device's name, for a device rule.")
    tag: str | None
    kind: RuleKind
    operator: Operator | None
    threshold: float | None
    z_score: float | None
    for_s: int
    enabled: bool
    description: str = Field(description="The rule in words, as incidents quote it: `temperature > 8 for 5 min`.")
    created_at: datetime
    updated_at: datetime


class SeriesPointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    ts: datetime = Field(description="The point's time, or the start of its bucket.")
    value: float = Field(description="The value, or the mean over the bucket.")
    min: float
    max: float
    count: int = Field(description="Points in the bucket (1 for raw points).")


class SeriesOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    device_id: int
    name: str
    range: Literal["1h", "1d", "30d"]
    bucket_s: int = Field(description="0: raw points (1h); 60: per minute (1d); 3600: per hour (30d).")
    truncated: bool = Field(description="1h only: more points arrived than returned; the newest are shown.")
    points: list[SeriesPointOut]


class LatestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    value: float
    ts: datetime
