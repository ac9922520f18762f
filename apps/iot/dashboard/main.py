"""`iot dashboard`: serve the tenant dashboard on APP_HOST:APP_PORT."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from iot.dashboard.app import create_app
from iot.log import log_fields, setup_logging
from iot.settings import DashboardSettings

logger = logging.getLogger("iot.dashboard")
LOCAL_DOMAINS = frozenset({"localhost"})
MIN_SECRET_LENGTH = 16


def settings_problem(settings: DashboardSettings) -> str | None:
    """Why these settings must not serve real tenants, or None."""
    secret = settings.session_secret.get_secret_value()
    default = DashboardSettings.model_fields["session_secret"].default.get_secret_value()
    if len(secret) < MIN_SECRET_LENGTH:
        return f"SESSION_SECRET is shorter than {MIN_SECRET_LENGTH} characters; set a long random value"
    if secret == default and settings.domain not in LOCAL_DOMAINS:
        # Anyone who knows the published default could forge a session for any tenant.
        return (f"SESSION_SECRET is the built-in default but DOMAIN is {settings.domain!r}; set a long random "
                "value (e.g. `openssl rand -base64 32`) before serving real tenants")
    return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="iot dashboard",
        description="Tenant dashboard at <tenant>.DOMAIN (settings from the environment: `iot env`).",
    )
    parser.parse_args(argv)
    settings = DashboardSettings()
    setup_logging(settings.log_level)
    problem = settings_problem(settings)
    if problem:
        log_fields(logger, logging.ERROR, "refusing to start", problem=problem)
        return 2
    uvicorn.run(create_app(settings), host=settings.app_host, port=settings.app_port, log_config=None,
                proxy_headers=True, server_header=False, timeout_graceful_shutdown=10)
    return 0
