"""Check kinds: one registry, one module per kind (see base.CheckKind).

Everything that needs the list of kinds reads it here: tracker bodies, the dashboard form and CSV import,
device validation, and (by the same names) the monitor's `PROBES`; a sync test holds the database CHECK
to it. Adding a kind: a module, one line below, a probe, a migration for the CHECK.
"""

from __future__ import annotations

from iot.checks import dns, http, icmp, push, tcp, tls
from iot.checks.base import CheckKind, OptionsProblem

KINDS: dict[str, CheckKind] = {
    "http": http.KIND,
    "tcp": tcp.KIND,
    "icmp": icmp.KIND,
    "push": push.KIND,
    "dns": dns.KIND,
    "tls": tls.KIND,
}
KIND_NAMES = tuple(KINDS)
SCHEDULED = tuple(name for name, kind in KINDS.items() if kind.scheduled)

__all__ = ["KINDS", "KIND_NAMES", "SCHEDULED", "CheckKind", "OptionsProblem"]
