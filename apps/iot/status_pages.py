"""What a public status page shows, and its short-lived cache.

`public_view` reads one published page of a tenant: its components (the tenant's devices the page lists,
by id or tag), their current state, 90 daily uptime figures each (iot.repo.history, maintenance windows
excluded), open and recent incidents with their notes, and active and scheduled maintenance. Only what a
visitor may see is kept: device names and states, incident kinds and times, note texts, window reasons.
No ids, targets, error texts, regions, summaries (they quote targets and errors) or note authors.

The cache (`PageCache`): computing 90-day uptime costs ~3 ms per device, so the HTML of a page is kept in
Redis for CACHE_SECONDS under its tenant and slug: never older than the public `Cache-Control: max-age`
already lets browsers and proxies keep it. Editing or deleting a page drops its entry (`forget`), so a page
unpublished is gone at once, not after the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from redis.exceptions import RedisError

from iot.maintenance import Times, current_or_next, occurrences
from iot.repo import history
from iot.repo import status_pages as repo
from iot.repo._db import Executor, connection
from iot.uptime import Interval, Uptime, combine

CACHE_SECONDS = 30  # also the page's Cache-Control max-age
RECENT_INCIDENTS = timedelta(days=14)
MAX_INCIDENTS = 50
MAX_NOTES_PER_INCIDENT = 20
UPCOMING_MAINTENANCE = timedelta(days=30)  # scheduled windows shown this far ahead
MAX_WINDOWS_SHOWN = 20
UPTIME_CHUNK = 25  # components per uptime_reports call

STATE_LABELS = {"up": "Operational", "degraded": "Degraded performance", "down": "Outage", "unknown": "No data",
                "maintenance": "Under maintenance"}
KIND_LABELS = {"down": "Outage", "degraded": "Degraded performance", "silent": "Not reporting"}


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    state: str  # up, degraded, down, unknown, or maintenance (a window is active now)
    since: datetime
    uptime: Uptime  # 90 days
    days: list[Uptime]

    @property
    def label(self) -> str:
        return STATE_LABELS[self.state]


@dataclass(frozen=True, slots=True)
class Update:
    at: datetime
    text: str


@dataclass(frozen=True, slots=True)
class PublicIncident:
    kind: str
    component: str
    opened_at: datetime
    resolved_at: datetime | None
    updates: list[Update] = field(default_factory=list)

    @property
    def label(self) -> str:
        return KIND_LABELS.get(self.kind, "Incident")


@dataclass(frozen=True, slots=True)
class PublicWindow:
    reason: str
    starts_at: datetime
    ends_at: datetime
    active: bool
    components: list[str]  # the page's components it covers (all of them: `everything`)
    everything: bool


@dataclass(frozen=True, slots=True)
class PublicView:
    page: repo.StatusPage
    now: datetime
    components: list[Component]
    incidents: list[PublicIncident]
    maintenance: list[PublicWindow]
    total: Uptime | None  # the 90 days of all components together

    @property
    def overall(self) -> tuple[str, str]:
        """(css level, sentence) for the banner."""
        states = [c.state for c in self.components]
        if not states:
            return "none", "No components yet"
        down = states.count("down")
        if down and down == len(states):
            return "bad", "Major outage"
        if down:
            return "bad", "Partial outage"
        if "degraded" in states:
            return "warn", "Degraded performance"
        if "maintenance" in states:
            return "maint", "Maintenance in progress"
        if all(s == "unknown" for s in states):
            return "none", "No data yet"
        return "ok", "All systems operational"


def _covers(window: dict, device_id: int, tags: Sequence[str]) -> bool:
    return (window["scope"] == "tenant" or window["device_id"] == device_id
            or (window["scope"] == "tag" and window["tag"] in tags))


async def public_view(db: Executor, tenant_id: int, slug: str, *, now: datetime | None = None) -> PublicView | None:
    """The published page `slug` of the tenant as a visitor sees it; None: no such published page."""
    now = now or datetime.now(UTC)
    async with connection(db) as conn:
        page = await repo.published_page(conn, tenant_id, slug)
        if page is None:
            return None
        devices = await conn.fetch(repo.SELECT_COMPONENTS, tenant_id, page.device_ids, page.tags, repo.MAX_COMPONENTS)
        ids = [d["id"] for d in devices]
        windows = [dict(w) for w in await conn.fetch(repo.SELECT_TENANT_WINDOWS, tenant_id)] if ids else []
        since = history.day_start(now) - timedelta(days=90)
        spans: dict[int, list[Interval]] = {}
        for w in windows:
            times = Times(w["starts_at"], w["ends_at"], w["rrule"])
            w["past"] = list(occurrences(times, since, now))
            w["next"] = current_or_next(times, now, UPCOMING_MAINTENANCE)
        for d in devices:
            spans[d["id"]] = [s for w in windows if _covers(w, d["id"], d["tags"]) for s in w["past"]]
        # In chunks: the uptime sweep is Python that holds the event loop (~3 ms a device); between chunks
        # the dashboard answers its other requests (one call for 500 components stalled it ~1.5 s).
        reports: dict[int, history.UptimeReport] = {}
        for i in range(0, len(ids), UPTIME_CHUNK):
            chunk = ids[i:i + UPTIME_CHUNK]
            reports |= await history.uptime_reports(conn, tenant_id, chunk, "90d", now=now,
                                                    excluded={d: spans[d] for d in chunk})
        incidents = await conn.fetch(repo.SELECT_PUBLIC_INCIDENTS, tenant_id, ids, now - RECENT_INCIDENTS,
                                     MAX_INCIDENTS) if ids else []
        notes = await conn.fetch(repo.SELECT_PUBLIC_NOTES, tenant_id, [i["id"] for i in incidents]) if incidents else []
    names = {d["id"]: d["name"] for d in devices}
    active_now = {d["id"] for d in devices for w in windows
                  if w["next"] and w["next"][0] <= now and _covers(w, d["id"], d["tags"])}
    components = []
    for d in devices:
        report = reports.get(d["id"])
        if report is None:
            continue  # deleted between the two reads
        state = "maintenance" if d["id"] in active_now and d["state"] != "down" else d["state"]
        components.append(Component(d["name"], state, d["state_since"], report.total, report.days))
    updates: dict[int, list[Update]] = {}
    for n in notes:
        kept = updates.setdefault(n["incident_id"], [])
        if len(kept) < MAX_NOTES_PER_INCIDENT:
            kept.append(Update(n["at"], n["text"]))
    public_incidents = [PublicIncident(i["kind"], names[i["device_id"]], i["opened_at"], i["resolved_at"],
                                       updates.get(i["id"], [])) for i in incidents if i["device_id"] in names]
    shown = []
    for w in windows:
        if w["next"] is None:
            continue
        covered = [d["name"] for d in devices if _covers(w, d["id"], d["tags"])]
        if not covered:
            continue
        start, end = w["next"]
        shown.append((not w["pinned"], start, PublicWindow(w["reason"], start, end, start <= now, covered,
                                                          len(covered) == len(devices))))
    shown.sort(key=lambda s: (not s[2].active, s[0], s[1]))
    return PublicView(page, now, components, public_incidents, [s[2] for s in shown[:MAX_WINDOWS_SHOWN]],
                      combine(c.uptime for c in components))


# --- cache ---------------------------------------------------------------------------------------------
# An entry is "<epoch seconds the render started>\n<html>", kept CACHE_SECONDS. A visitor who finds it older
# than REFRESH_AFTER gets it (it is still within max-age) and starts one re-render in the background, so a
# visited page never makes anyone wait; only the first visitor after a quiet spell renders in line.
# Renders are single-flight (a Redis lock per page), and `forget` bumps a generation counter so a render that
# started before an edit cannot store the old page after it.

REFRESH_AFTER = CACHE_SECONDS / 2
LOCK_SECONDS = 10  # a render taking longer than this lets a second one start
WAIT_SECONDS = 5.0  # a visitor waits this long for another's render before rendering itself
GENERATION_TTL = 86400
# Store the entry only if the page was not edited since the render started (KEYS: entry, generation).
STORE_IF_CURRENT = """
if (redis.call('GET', KEYS[2]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""

Render = Callable[[int, str], Awaitable[bytes | None]]


def cache_key(tenant_id: int, slug: str) -> str:
    return f"status-page:{tenant_id}:{slug}"


def _generation_key(tenant_id: int, slug: str) -> str:
    return f"status-page-gen:{tenant_id}:{slug}"


def _lock_key(tenant_id: int, slug: str) -> str:
    return f"status-page-lock:{tenant_id}:{slug}"


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


class PageCache:
    """The rendered HTML of public pages in Redis; `render(tenant_id, slug)` draws one (None: not published).
    Redis unavailable: every request renders from the database (slower, still correct)."""

    def __init__(self, redis: Redis, render: Render) -> None:
        self.redis = redis
        self.render = render
        self._background: set[asyncio.Task] = set()

    async def get(self, tenant_id: int, slug: str) -> bytes | None:
        try:
            entry = await self.redis.get(cache_key(tenant_id, slug))
        except RedisError:
            return await self.render(tenant_id, slug)
        if entry is None:
            return await self._render_once(tenant_id, slug, wait=True)
        stamp, _, body = entry.partition(b"\n")
        if time.time() - float(stamp) >= REFRESH_AFTER:
            task = asyncio.create_task(self._render_once(tenant_id, slug, wait=False))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return body

    async def _render_once(self, tenant_id: int, slug: str, *, wait: bool) -> bytes | None:
        key = cache_key(tenant_id, slug)
        try:
            generation = (await self.redis.get(_generation_key(tenant_id, slug)) or b"0").decode()
            locked = await self.redis.set(_lock_key(tenant_id, slug), b"1", nx=True, ex=LOCK_SECONDS)
        except RedisError:
            return await self.render(tenant_id, slug)
        if not locked:
            if not wait:
                return None  # another request is refreshing it
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                with contextlib.suppress(RedisError):
                    entry = await self.redis.get(key)
                    if entry is not None:
                        return entry.partition(b"\n")[2]
            return await self.render(tenant_id, slug)  # the other render failed or hangs: no more waiting
        try:
            started = time.time()
            body = await self.render(tenant_id, slug)
            if body is not None:
                with contextlib.suppress(RedisError):
                    await self.redis.eval(STORE_IF_CURRENT, 2, key, _generation_key(tenant_id, slug), generation,
                                          f"{started:.3f}\n".encode() + body, CACHE_SECONDS)
            return body
        finally:
            with contextlib.suppress(RedisError):
                await self.redis.delete(_lock_key(tenant_id, slug))


async def forget(redis: Redis, tenant_id: int, *slugs: str) -> None:
    """Drop the cached HTML of the tenant's pages at these slugs (after an edit, a rename or a delete); a
    render in flight will not store what it read before the change."""
    if not slugs:
        return
    # Redis down: nothing is served from it either; an entry that survives expires within CACHE_SECONDS.
    with contextlib.suppress(RedisError):
        async with redis.pipeline(transaction=True) as pipe:
            for slug in slugs:
                pipe.incr(_generation_key(tenant_id, slug))
                pipe.expire(_generation_key(tenant_id, slug), GENERATION_TTL)
                pipe.delete(cache_key(tenant_id, slug))
            await pipe.execute()
