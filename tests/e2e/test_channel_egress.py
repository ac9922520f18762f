"""Issue 14 under the egress policy, end to end with no allow-list: channel URLs naming internal addresses
(every spelling of tests/egress_targets.py, and names that resolve to them through a hosts-file stub seen
only by the process under test) are refused when saved; channels written straight into the database are
refused when the worker delivers and when "send test" runs, and nothing connects to a listener behind them."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from egress_stack import LoopbackServer, Stack, answer_http_ok, stack_for_test, tenant_client
from egress_targets import INTERNAL_HOSTS, bracket, hosts_stub_command, write_hosts_stub
from iot_processes import wait_until

from iot.sealed import SecretBox

pytestmark = pytest.mark.e2e

REFUSED = "address not allowed"


@pytest.fixture
def stack(postgres_server, redis_server, tmp_path: Path, request) -> Iterator[Stack]:
    with stack_for_test(postgres_server, redis_server, tmp_path, request, "chanegress") as running:
        yield running


@pytest.fixture
def hosts_stub(tmp_path: Path) -> list[str]:
    return hosts_stub_command(write_hosts_stub(tmp_path))


def test_internal_channel_urls_are_refused_when_saved(stack: Stack, hosts_stub: list[str]) -> None:
    tracker = stack.service("tracker", ["tracker"], hosts_stub, EGRESS_ALLOW_CIDRS="")
    with tenant_client(tracker, "chanssrf") as tenant:
        accepted = []
        for host in INTERNAL_HOSTS:
            for kind, url in (("apprise", f"json://{bracket(host)}:8080/hook"), ("ntfy", f"ntfys://{bracket(host)}/t"),
                              ("msteams", f"workflows://{bracket(host)}/wf/sig"),
                              ("webhook", f"https://{bracket(host)}/hook")):
                response = tenant.post("/v1/channels", json={"name": f"{kind}-{host}", "kind": kind,
                                                             "config": {"url": url}})
                if response.status_code != 422 or response.json()["errors"][0]["field"] != "config.url":
                    accepted.append((kind, url, response.status_code))
        assert accepted == [], f"{len(accepted)} internal channel URLs were accepted: {accepted}"
        assert tenant.get("/v1/channels").json()["items"] == []
        reason = tenant.post("/v1/channels", json={"name": "m", "kind": "apprise", "config": {
            "url": "json://metadata.internal/latest"}}).json()["errors"][0]["reason"]
        assert "resolves to a link-local address" in reason


async def _insert_channels(database_url: str, tenant_id: int, urls: list[str]) -> list[int]:
    """Channels written straight into the database, as if saving had let them through, each with one event."""
    box = SecretBox.from_setting(os.environ["SECRETS_KEY"])
    conn = await asyncpg.connect(database_url)
    try:
        ids = []
        for n, url in enumerate(urls):
            channel = await conn.fetchval(
                "INSERT INTO channels (tenant_id, name, kind, config_sealed) VALUES ($1, $2, 'apprise', $3) "
                "RETURNING id", tenant_id, f"c{n}", box.seal(json.dumps({"url": url})))
            await conn.execute(
                "INSERT INTO webhook_deliveries (tenant_id, channel_id, event_id, event_type, payload) "
                "VALUES ($1, $2, $3, 'device.state_changed', $4::jsonb)", tenant_id, channel, f"e{n}",
                json.dumps({"event_id": f"e{n}", "kind": "down", "device": {"id": 1, "name": "gw"}}))
            ids.append(channel)
        return ids
    finally:
        await conn.close()


def test_internal_channels_are_refused_when_sent(stack: Stack, hosts_stub: list[str]) -> None:
    listener = LoopbackServer(answer_http_ok).start()
    try:
        tracker = stack.service("tracker", ["tracker"], hosts_stub, EGRESS_ALLOW_CIDRS="")
        with tenant_client(tracker, "chansend") as tenant:
            tenant_id = tenant.get("/v1/tenant").json()["id"]
            urls = [f"json://{h}:{listener.port}/hook" for h in ("127.0.0.1", "localhost", "redis.internal",
                                                                  "lo6.internal", "0x7f000001")]
            urls.append(f"ntfy://redis.internal:{listener.port}/topic")
            ids = asyncio.run(_insert_channels(stack.database_url, tenant_id, urls))
            for channel_id in ids:
                result = tenant.post(f"/v1/channels/{channel_id}/test").json()
                assert result["delivered"] is False and result["error"] in (
                    REFUSED, "Apprise does not understand the channel URL any more"), result
            stack.service("worker", ["worker"], hosts_stub, EGRESS_ALLOW_CIDRS="", LOCK_TTL_SECONDS=5,
                          WEBHOOK_BACKOFF_SECONDS=30)

            def tried() -> list[dict] | None:
                rows = [tenant.get(f"/v1/channels/{i}/deliveries").json()["items"][0] for i in ids]
                return rows if all(r["attempts"] >= 1 and r["last_error"] != "no answer recorded: the attempt "
                                   "was interrupted" for r in rows) else None

            rows = wait_until(tried, 60, "every channel delivery tried once", stack.procs, interval=1)
        assert [r["last_error"] for r in rows] == [REFUSED] * len(ids), rows
        assert listener.connections == 0
    finally:
        listener.stop()
