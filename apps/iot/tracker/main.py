"""`iot tracker`: serve the tracker API with uvicorn on APP_HOST:APP_PORT."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from iot.log import setup_logging
from iot.published_secrets import published_secrets_problem
from iot.service import load_settings, ready_to_serve
from iot.settings import TrackerSettings
from iot.tracker.app import create_app

logger = logging.getLogger("iot.tracker")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="iot tracker", description="Run the tracker HTTP API (settings: `iot env`).")
    parser.parse_args(argv)
    settings = load_settings(TrackerSettings)
    setup_logging(settings.log_level)
    refused = ready_to_serve("tracker", settings, published_secrets_problem(settings), logger)
    if refused is not None:
        return refused
    # uvicorn handles SIGTERM: stops accepting, finishes requests, runs the lifespan shutdown.
    uvicorn.run(create_app(settings), host=settings.app_host, port=settings.app_port,
                log_config=None, access_log=False, proxy_headers=True, forwarded_allow_ips="*")
    return 0
