"""`REGION=frankfurt iot monitor`: heartbeat + canaries, the check consumer, and /health + /metrics."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from urllib.parse import urlsplit

from iot.egress import EgressPolicy
from iot.http_server import Listener, serve
from iot.log import log_fields, setup_logging
from iot.monitor.app import build_app, build_metrics_app
from iot.monitor.consumer import CheckConsumer
from iot.monitor.heartbeat import Canary, Heartbeat, parse_canaries
from iot.monitor.metrics import MonitorMetrics
from iot.monitor.probes import Prober, ProbeSetupError, split_host_port
from iot.service import (
    event_loop_factory,
    lift_open_files_limit,
    load_settings,
    redis_client,
    tune_gc_for_many_live_objects,
)
from iot.settings import MonitorSettings
from iot.waiting import StartupError, wait_for_redis

logger = logging.getLogger("iot.monitor")


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def run(settings: MonitorSettings, canaries: list[Canary]) -> None:
    instance = settings.instance_id or default_instance_id()
    await wait_for_redis(settings.redis_url.get_secret_value())
    client = redis_client(settings.redis_url.get_secret_value())
    prober = Prober(settings.monitor_source_address, settings.concurrency, settings.http_keepalive,
                    egress=settings.egress_policy(), tls_ca_file=settings.tls_ca_file)
    await prober.start()
    metrics = MonitorMetrics(settings.region)
    heartbeat = Heartbeat(
        client, prober, region=settings.region, instance=instance, canaries=canaries,
        heartbeat_seconds=settings.heartbeat_seconds, canary_seconds=settings.canary_seconds,
    )
    consumer = CheckConsumer(
        client, prober, metrics, region=settings.region, instance=instance,
        read_count=settings.batch_read_count, concurrency=settings.concurrency,
        icmp_concurrency=settings.icmp_concurrency, tenant_share=settings.tenant_share,
        queue_checks=settings.queue_checks,
        queue_checks_max=settings.queue_checks_max, reclaim_idle_seconds=settings.reclaim_idle_seconds,
        flush_seconds=settings.result_flush_seconds, flush_max=settings.result_flush_max,
        result_buffer_max=settings.result_buffer_max,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    separate_metrics = settings.metrics_port > 0
    listeners = [Listener(build_app(metrics, heartbeat, instance, with_metrics=not separate_metrics), "APP_PORT",
                          settings.app_port)]
    if separate_metrics:
        listeners.append(Listener(build_metrics_app(metrics), "METRICS_PORT", settings.metrics_port))
    servers = await serve(settings.app_host, *listeners)
    log_fields(logger, logging.INFO, "monitor started", region=settings.region, instance=instance,
               source_address=settings.monitor_source_address, port=settings.app_port,
               metrics_port=settings.metrics_port or settings.app_port, canaries=len(canaries))
    beating = asyncio.create_task(heartbeat.run(stop))
    try:
        await consumer.run(stop)  # returns after stop, with every taken batch stored and acknowledged
    finally:
        stop.set()
        await beating
        await heartbeat.leave()
        await servers.close()
        await prober.close()
        await client.aclose()
        log_fields(logger, logging.INFO, "monitor stopped", region=settings.region, instance=instance)


def canary_problems(canaries: list[Canary], egress: EgressPolicy) -> list[str]:
    """Canaries go through the same egress policy as tenants' devices: refuse at startup the ones it forbids."""
    problems = []
    for canary in canaries:
        if canary.kind == "http":
            host = urlsplit(canary.target).hostname or ""
        elif canary.kind == "tcp":
            host = split_host_port(canary.target)[0]
        else:
            host = canary.target
        problem = egress.host_problem(host)
        if problem:
            problems.append(f"CANARIES {canary.target!r}: {problem}, which the egress policy refuses; use "
                            "public canaries, or list the network in EGRESS_ALLOW_CIDRS")
    return problems


# Open files besides the checks' sockets: Redis connections, /health and /metrics clients, the ICMP socket,
# canaries, DNS, logs.
OPEN_FILES_HEADROOM = 256


def open_files_problem(concurrency: int) -> str | None:
    """Lift the open files limit to what CONCURRENCY needs (a socket per check in flight); a problem when
    the hard limit is too low: checks beyond it would fail at once ("Too many open files"), false failures."""
    needed = concurrency + OPEN_FILES_HEADROOM
    soft, hard = lift_open_files_limit(needed)
    if soft >= needed:
        return None
    return (f"CONCURRENCY={concurrency} needs {needed} open files (a socket per check in flight plus "
            f"{OPEN_FILES_HEADROOM}) but the hard limit is {hard}: raise it (LimitNOFILE= in a systemd unit, "
            "--ulimit nofile= for docker, ulimit -Hn as root) or lower CONCURRENCY")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="iot monitor", description="Regional monitor; configured by environment variables (see `iot env`)."
    )
    parser.parse_args(argv)
    settings = load_settings(MonitorSettings)
    try:
        canaries = parse_canaries(settings.canaries)
        problems = canary_problems(canaries, settings.egress_policy())
    except ValueError as exc:
        sys.exit(f"invalid configuration: {exc}")
    problem = open_files_problem(settings.concurrency)
    if problem:
        problems.append(problem)
    if problems:
        sys.exit("invalid configuration:\n  " + "\n  ".join(problems))
    setup_logging(settings.log_level)
    try:
        tune_gc_for_many_live_objects()
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(run(settings, canaries))
    except ProbeSetupError as exc:
        sys.exit(f"monitor cannot probe: {exc}")
    except StartupError as exc:  # ListenError too
        sys.exit(f"monitor cannot start: {exc}")
    return 0
