"""`iot dashboard`: serve the tenant dashboard on APP_HOST:APP_PORT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import uvicorn

from iot import waiting
from iot.dashboard.app import create_app
from iot.log import log_fields, setup_logging
from iot.published_secrets import published_secrets_in, published_secrets_problem
from iot.service import load_settings
from iot.settings import DashboardSettings

logger = logging.getLogger("iot.dashboard")
MIN_SECRET_LENGTH = 16


def settings_problem(settings: DashboardSettings) -> str | None:
    """Why these settings must not serve real tenants, or None."""
    secret = settings.session_secret.get_secret_value()
    if len(secret) < MIN_SECRET_LENGTH:
        return f"SESSION_SECRET is shorter than {MIN_SECRET_LENGTH} characters; set a long random value"
    # Anyone who knows a published secret could forge a session for any tenant.
    return published_secrets_problem(settings)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="iot dashboard",
        description="Tenant dashboard at <tenant>.DOMAIN (settings from the environment: `iot env`).",
    )
    parser.parse_args(argv)
    settings = load_settings(DashboardSettings)
    setup_logging(settings.log_level)
    problem = settings_problem(settings)
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
        sys.exit(f"dashboard cannot start: {exc}")
    uvicorn.run(create_app(settings), host=settings.app_host, port=settings.app_port, log_config=None,
                proxy_headers=True, server_header=False, timeout_graceful_shutdown=10)
    return 0
