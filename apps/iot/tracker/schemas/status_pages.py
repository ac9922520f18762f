"""Bodies of /v1/status-pages: a public page's slug, title, logo, components (device ids and tags)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from iot.inputs import MAX_NAME, MAX_TAG, Id
from iot.repo.status_pages import MAX_COMPONENTS, MAX_DESCRIPTION, MAX_HOST, MAX_LOGO_URL, SLUG_RULE

# Lengths bound here; formats (slug, https, host name, tags) are checked in iot.repo.status_pages, which
# names the field and the fix in the same words for the API and the dashboard.
SlugText = Annotated[str, StringConstraints(max_length=100)]
TitleText = Annotated[str, StringConstraints(max_length=MAX_NAME)]
DescriptionText = Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION)]
LogoText = Annotated[str, StringConstraints(max_length=MAX_LOGO_URL)]
HostText = Annotated[str, StringConstraints(max_length=MAX_HOST + 1)]
TagName = Annotated[str, StringConstraints(max_length=MAX_TAG + 10)]


class StatusPageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: SlugText = Field(description=f"Where the page lives: /status/<slug>. {SLUG_RULE}.", examples=["public"])
    title: TitleText = Field(description="Shown at the top of the page and in the browser tab.",
                             examples=["Acme service status"])
    description: DescriptionText = Field("", description="A short text under the title (optional).")
    logo_url: LogoText | None = Field(None, description="https:// address of a logo image (visitors' browsers "
                                                        "load it); null: no logo.")
    custom_domain: HostText | None = Field(None, description="A host name such as status.example.com, stored for "
                                                             "later: not served yet.")
    device_ids: list[Id] = Field([], max_length=MAX_COMPONENTS, description="Your devices shown as components.")
    tags: list[TagName] = Field([], max_length=MAX_COMPONENTS,
                                description="Every device carrying one of these tags is a component too (also "
                                            "devices tagged later).")
    published: bool = Field(False, description="Visible without sign-in at its public_url; unpublished: 404.")


class StatusPageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    slug: str
    title: str
    description: str
    logo_url: str | None
    custom_domain: str | None
    device_ids: list[int]
    tags: list[str]
    published: bool
    created_at: datetime
    updated_at: datetime
    public_url: str = Field(description="https://<tenant>.<domain>/status/<slug>, without sign-in once published.")


class StatusPageListOut(BaseModel):
    items: list[StatusPageOut]
