"""The monitor's HTTP endpoints: GET /health (JSON) and GET /metrics (Prometheus text).

With a separate metrics listener (METRICS_PORT), the main app serves /health alone: monitor nodes
publish only that listener, so /metrics is never reachable from the internet.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from iot import __version__
from iot.monitor.heartbeat import Heartbeat
from iot.monitor.metrics import MonitorMetrics


def build_app(
    metrics: MonitorMetrics, heartbeat: Heartbeat, instance: str, with_metrics: bool = True
) -> web.Application:
    async def health(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "region": metrics.region,
                "instance": instance,
                "version": __version__,
                "checks_per_second": metrics.checks_per_second(),
                "last_batch_age_s": metrics.last_batch_age_s(),
                "canaries_ok": heartbeat.canaries_ok,
                "canaries_failed": heartbeat.canaries_failed,
            }
        )

    app = web.Application()
    app.router.add_get("/health", health)
    if with_metrics:
        app.router.add_get("/metrics", _prometheus(metrics))
    return app


def build_metrics_app(metrics: MonitorMetrics) -> web.Application:
    """/metrics alone, for its own listener."""
    app = web.Application()
    app.router.add_get("/metrics", _prometheus(metrics))
    return app


def _prometheus(metrics: MonitorMetrics):
    async def prometheus(_request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return prometheus
