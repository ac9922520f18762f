"""`iot tracker`: serve the tracker API with uvicorn on APP_HOST:APP_PORT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import uvicorn

from iot import waiting
from iot.log import log_fields, setup_logging
from iot.published_secrets import published_secrets_in, published_secrets_problem
from iot.service import load_settings
from iot.settings import TrackerSettings
from iot.tracker.app import create_app

logger = logging.getLogger("iot.tracker")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="iot tracker", description="Run the tracker HTTP API (settings: `iot env`).")
    parser.parse_args(argv)
    settings = load_settings(TrackerSettings)
    setup_logging(settings.log_level)
    problem = published_secrets_problem(settings)
    if problem:
        log_fields(logger, logging.ERROR, "refusing to start", problem=problem)
        return 2
    if published_secrets_in(settings):
        log_fields(logger, logging.WARNING, "running with published secrets (ALLOW_DEFAULT_SECRETS): development only",
                   settings=published_secrets_in(settings))
    try:
        asyncio.run(waiting.wait_for(database_url=settings.database_url.get_secret_value(),
                                     redis_url=settings.redis_url.get_secret_value()))
    except waiting.StartupError as exc:
        sys.exit(f"tracker cannot start: {exc}")
    # uvicorn handles SIGTERM: stops accepting, finishes requests, runs the lifespan shutdown.
    uvicorn.run(create_app(settings), host=settings.app_host, port=settings.app_port,
                log_config=None, access_log=False, proxy_headers=True, forwarded_allow_ips="*")
    return 0
