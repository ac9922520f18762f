"""The public status pages' cache (iot.status_pages.PageCache) on a real Redis: one render per page however
many visitors arrive at once, an entry past half its life is served while one refresh runs in the
background, `forget` drops the entry and keeps a render that started before the edit from storing the old
page, and without Redis every request renders (slower, still right)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from redis.asyncio import Redis

from iot import status_pages
from iot.status_pages import PageCache

_tenants = itertools.count(1000)


class Renderer:
    """A page whose HTML says how many times it was drawn; `delay` plays a slow database."""

    def __init__(self, delay: float = 0.0, published: bool = True) -> None:
        self.calls = 0
        self.delay = delay
        self.published = published

    async def __call__(self, tenant_id: int, slug: str) -> bytes | None:
        self.calls += 1
        seen, published = self.calls, self.published  # what the database said when the render began
        await asyncio.sleep(self.delay)
        return f"{tenant_id}/{slug} render {seen}".encode() if published else None


@pytest.fixture
async def redis(redis_server):
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_concurrent_visitors_of_a_cold_page_share_one_render(redis) -> None:
    tenant = next(_tenants)
    render = Renderer(delay=0.3)
    cache = PageCache(redis, render)
    bodies = await asyncio.gather(*(cache.get(tenant, "public") for _ in range(20)))
    assert render.calls == 1
    assert set(bodies) == {f"{tenant}/public render 1".encode()}
    assert await cache.get(tenant, "public") == f"{tenant}/public render 1".encode() and render.calls == 1
    ttl = await redis.ttl(status_pages.cache_key(tenant, "public"))
    assert 0 < ttl <= status_pages.CACHE_SECONDS


async def test_an_aging_entry_is_served_and_refreshed_once_in_the_background(redis) -> None:
    tenant = next(_tenants)
    render = Renderer(delay=0.2)
    cache = PageCache(redis, render)
    key = status_pages.cache_key(tenant, "public")
    old = time.time() - status_pages.REFRESH_AFTER - 1
    await redis.set(key, f"{old:.3f}\n".encode() + b"old page", ex=status_pages.CACHE_SECONDS)
    served = await asyncio.gather(*(cache.get(tenant, "public") for _ in range(5)))
    assert served == [b"old page"] * 5  # nobody waits for the refresh
    await asyncio.sleep(0.5)
    assert render.calls == 1
    assert await cache.get(tenant, "public") == f"{tenant}/public render 1".encode()
    stamp = float((await redis.get(key)).partition(b"\n")[0])
    assert time.time() - stamp < 2


async def test_forget_drops_the_entry_and_a_render_in_flight_does_not_store_the_old_page(redis) -> None:
    tenant = next(_tenants)
    render = Renderer(delay=0.3)
    cache = PageCache(redis, render)
    assert await cache.get(tenant, "public") == f"{tenant}/public render 1".encode()
    await status_pages.forget(redis, tenant, "public")
    assert await redis.get(status_pages.cache_key(tenant, "public")) is None
    in_flight = asyncio.create_task(cache.get(tenant, "public"))  # reads the page as it was
    await asyncio.sleep(0.1)
    render.published = False  # ... the tenant unpublishes it meanwhile
    await status_pages.forget(redis, tenant, "public")
    assert await in_flight == f"{tenant}/public render 2".encode()  # that visitor was already served
    assert await redis.get(status_pages.cache_key(tenant, "public")) is None  # but it was not kept
    assert await cache.get(tenant, "public") is None and render.calls == 3


async def test_unpublished_pages_are_not_cached_and_tenants_do_not_share_entries(redis) -> None:
    first, second = next(_tenants), next(_tenants)
    render = Renderer()
    cache = PageCache(redis, render)
    assert await cache.get(first, "public") == f"{first}/public render 1".encode()
    assert await cache.get(second, "public") == f"{second}/public render 2".encode()
    render.published = False
    assert await cache.get(first, "draft") is None and await cache.get(first, "draft") is None
    assert render.calls == 4 and await redis.get(status_pages.cache_key(first, "draft")) is None


async def test_without_redis_every_request_renders() -> None:
    broken = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    render = Renderer()
    cache = PageCache(broken, render)
    assert await cache.get(1, "public") == b"1/public render 1"
    assert await cache.get(1, "public") == b"1/public render 2"
    await status_pages.forget(broken, 1, "public")  # no error either
    await broken.aclose()
