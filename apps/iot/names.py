"""Hostnames that can never be a tenant slug (DESIGN.md §2).

Tenants live at `<slug>.<domain>`, so a slug must not shadow a fixed host or a monitor's host.
Monitor names are configuration (`MONITOR_NAMES`), the rest is fixed.
"""

from iot.inputs import DNS_LABEL

FIXED_HOSTS = frozenset({"www", "docs", "tracker", "collect", "worker"})
RESERVED_EXTRA = frozenset({"api", "admin", "status"})
RESERVED_NAMES = FIXED_HOSTS | RESERVED_EXTRA

# One DNS label: Cloudflare Universal SSL covers exactly one level of subdomains. Always `fullmatch`:
# `$` in `re.match` also accepts a trailing newline ("abc\n").
SLUG_RE = DNS_LABEL


def slug_problem(slug: str, monitor_names: frozenset[str] = frozenset()) -> str | None:
    """Return why `slug` cannot be a tenant slug, or None when it can."""
    if not SLUG_RE.fullmatch(slug):
        return (
            f"slug {slug!r} must be one DNS label: 1-63 lowercase letters, digits or '-', "
            "not starting or ending with '-'"
        )
    if slug in RESERVED_NAMES or slug in monitor_names:
        return f"slug {slug!r} is reserved (it is a fixed or monitor hostname); choose another name"
    return None
