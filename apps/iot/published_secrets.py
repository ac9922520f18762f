"""Secrets whose values are public: refused by the tracker and the dashboard unless ALLOW_DEFAULT_SECRETS is set.

Anyone who has read this repository knows the built-in defaults (settings.py) and the playground's values
(.env.example, docker-compose.yml): a dashboard signing cookies with one of them lets anyone forge a
session for any tenant, a tracker with the playground's ADMIN_TOKEN lets anyone create tenants. Docker
compose, `iot demo` and the tests that need them set ALLOW_DEFAULT_SECRETS=true (development only).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic_settings import BaseSettings

from iot.sealed import GENERATE_KEY
from iot.settings import CommonSettings, DashboardSettings, SecretsKeySettings

# setting -> its published values (a sync test compares these with settings.py and .env.example)
PUBLISHED: dict[str, frozenset[str]] = {
    "SESSION_SECRET": frozenset({
        DashboardSettings.model_fields["session_secret"].default.get_secret_value(),
        "local-only-dashboard-session-secret-change-me",
    }),
    "ADMIN_TOKEN": frozenset({"admin-local-only-change-me"}),
    "SECRETS_KEY": frozenset({
        SecretsKeySettings.model_fields["secrets_key"].default.get_secret_value(),
        "VuDDQkIvWJFRFEDF1LNs9sRYRFzs_K0qyfWdETYmqeA=",
    }),
    # the password inside DATABASE_URL
    "DATABASE_URL": frozenset({
        urlsplit(CommonSettings.model_fields["database_url"].default.get_secret_value()).password or "",
        "iot-local-only",
    }),
}
FIX = ("set a long random value (e.g. `openssl rand -base64 32`), or ALLOW_DEFAULT_SECRETS=true for "
       "development on this machine only")


def published_secrets_in(settings: BaseSettings) -> list[str]:
    """The settings of `settings` whose value is one of the published ones."""
    found = []
    for name, published in PUBLISHED.items():
        value = getattr(settings, name.lower(), None)
        if value is None:
            continue
        text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
        if name == "DATABASE_URL":
            try:
                text = urlsplit(text).password or ""
            except ValueError:
                continue
            if not text:
                continue  # no password at all (trust or peer auth): nothing published about it
        if text in published:
            found.append(name)
    return found


def published_secrets_problem(settings: BaseSettings) -> str | None:
    """Why these settings must not serve, or None (also None when ALLOW_DEFAULT_SECRETS accepts them)."""
    found = published_secrets_in(settings)
    if not found or getattr(settings, "allow_default_secrets", False):
        return None
    what = " and ".join("the password in DATABASE_URL" if n == "DATABASE_URL" else n for n in found)
    verb = "is" if len(found) == 1 else "are"
    fix = FIX + (f"; SECRETS_KEY takes Fernet keys: {GENERATE_KEY}" if "SECRETS_KEY" in found else "")
    return f"{what} {verb} published in this repository (a built-in default or the playground's); {fix}"
