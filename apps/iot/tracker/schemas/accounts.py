"""Bodies of /v1/api-keys and /v1/audit-log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from iot.inputs import Name

Scope = Literal["read", "write", "ingest"]


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="What the key is for, e.g. 'grafana' or 'deploy script'.", examples=["grafana"])
    scopes: list[Scope] = Field(min_length=1, max_length=3, examples=[["read"]],
                                description="read: GET and HEAD; write: every other method (includes managing "
                                            "devices, channels, keys); ingest: POST /v1/metrics and "
                                            "/v1/heartbeat for any device of the tenant, named in the "
                                            "X-Device-Id header (ingest implies neither read nor write). At "
                                            "most the scopes of the key that creates it.")


class ApiKeyInfoOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str = Field(description="The first characters of the key, to tell keys apart.")
    scopes: list[Scope]
    created_at: datetime
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    revoked_at: datetime | None


class ApiKeyCreatedOut(ApiKeyInfoOut):
    key: str = Field(description="The key itself: shown only in this answer; only its sha256 is stored.")


class ApiKeyPageOut(BaseModel):
    items: list[ApiKeyInfoOut]
    next_before: int | None = Field(description="Pass as `before` for the next page; null on the last page.")


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    actor_kind: Literal["user", "api_key"]
    actor_id: int | None = Field(description="The user's or API key's id (null if it has been deleted).")
    actor_name: str = Field(description="The user's email or the API key's name, as it was then.")
    action: str = Field(description="What was done, e.g. `POST /v1/devices` or `dashboard: invite user`.")
    target: str = Field(description="What it was done to, e.g. `device_id=12`.")
    details: dict[str, Any]
    ip: str | None = Field(description="The client address (behind the proxy: the address the proxy reports).")
    at: datetime


class AuditPageOut(BaseModel):
    items: list[AuditEntryOut]
    next_before: int | None = Field(description="Pass as `before` for the next page; null on the last page.")
