"""Which tenant a request is for: the first label of the Host header under DOMAIN."""

from __future__ import annotations

from iot.names import RESERVED_NAMES


def tenant_slug_from_host(host: str | None, domain: str, monitor_names: frozenset[str] = frozenset()) -> str | None:
    """`acme.localhost:8000` with domain `localhost` -> `acme`; None for the apex, deeper names,
    reserved hosts (docs., tracker., monitors...) and other domains."""
    if not host:
        return None
    name = host.strip().lower().rstrip(".")
    if name.startswith("["):  # IPv6 literal: never a tenant
        return None
    name = name.rsplit(":", 1)[0] if ":" in name else name
    suffix = "." + domain.lower().strip(".")
    if not name.endswith(suffix):
        return None
    label = name[: -len(suffix)]
    if not label or "." in label or label in RESERVED_NAMES or label in monitor_names:
        return None
    return label
