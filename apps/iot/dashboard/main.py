"""`iot dashboard`: serve the tenant dashboard on APP_HOST:APP_PORT."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from iot.dashboard.app import create_app
from iot.log import setup_logging
from iot.published_secrets import published_secrets_problem
from iot.service import load_settings, ready_to_serve
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
    refused = ready_to_serve("dashboard", settings, settings_problem(settings), logger)
    if refused is not None:
        return refused
    uvicorn.run(create_app(settings), host=settings.app_host, port=settings.app_port, log_config=None,
                proxy_headers=True, server_header=False, timeout_graceful_shutdown=10)
    return 0
