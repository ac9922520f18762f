"""Check batches as the monitor holds them: the decoded entries and each batch's progress.

Entry format (protocol.CHECKS_FIELD, one JSON array per check, produced by `iot.worker.catalog`):

    [device_id, kind, target, timeout_ms, tenant_id, interval_s, options, ...]

Elements are only ever appended: a reader takes the ones it knows and ignores the rest; `options` (the
device's per-kind options object, issue 15) is left out when the device has none, and entries from an older worker without tenant_id / interval_s still work
(tenant 0, never dropped as late).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from iot import protocol

UNKNOWN_TENANT = 0


class Batch:
    """One stream message held by this monitor: acknowledged once every check of it is handled."""

    __slots__ = ("lost", "message_id", "remaining", "size")

    def __init__(self, message_id: str, size: int, remaining: int) -> None:
        self.message_id = message_id
        self.size = size  # checks in the message (the stored-results bitmap counts up to this)
        self.remaining = remaining  # checks this monitor still has to store or drop
        self.lost = False  # another monitor took it over: its results are no longer ours to write


class Check:
    __slots__ = ("batch", "deadline", "device_id", "index", "kind", "options", "target", "tenant", "timeout_s")

    def __init__(self, batch: Batch, index: int, device_id: int, kind: str, target: str, timeout_s: float,
                 tenant: int, deadline: float, options: dict[str, Any] | None = None) -> None:
        self.batch, self.index = batch, index
        self.device_id, self.kind, self.target, self.timeout_s = device_id, kind, target, timeout_s
        self.tenant = tenant
        self.deadline = deadline  # unix time: not started by then, its next check is already due -> drop
        self.options = options  # None: the kind's defaults (the plain, fast probes)


@dataclass(slots=True)
class DecodedBatch:
    sent: float
    entries: list[list[Any]] = field(default_factory=list)


def decode(fields: dict[Any, Any]) -> DecodedBatch:
    """The entries and send time of a check batch message; ValueError when it is malformed."""
    raw = fields.get(protocol.CHECKS_FIELD.encode(), fields.get(protocol.CHECKS_FIELD))
    sent_raw = fields.get(protocol.SENT_FIELD.encode(), fields.get(protocol.SENT_FIELD))
    if raw is None:
        raise ValueError("no checks field")
    entries = json.loads(raw)
    if not isinstance(entries, list):
        raise ValueError("checks is not a JSON array")
    for entry in entries:
        if not isinstance(entry, list) or len(entry) < 4:
            raise ValueError(f"check entry {str(entry)[:80]} has fewer than 4 elements")
    try:
        sent = float(sent_raw) if sent_raw is not None else 0.0
    except ValueError:
        sent = 0.0
    return DecodedBatch(sent, entries)


def make_checks(batch: Batch, decoded: DecodedBatch, skip: set[int] | frozenset[int] = frozenset()) -> list[Check]:
    """Checks of `decoded` except the indexes in `skip` (already stored by an earlier holder)."""
    checks: list[Check] = []
    for index, entry in enumerate(decoded.entries):
        if index in skip:
            continue
        tenant = int(entry[4]) if len(entry) > 4 and entry[4] is not None else UNKNOWN_TENANT
        interval_s = float(entry[5]) if len(entry) > 5 and entry[5] is not None else math.inf
        deadline = decoded.sent + interval_s if decoded.sent > 0 else math.inf
        options = entry[6] if len(entry) > 6 and isinstance(entry[6], dict) and entry[6] else None
        checks.append(Check(batch, index, int(entry[0]), str(entry[1]), str(entry[2]), int(entry[3]) / 1000.0,
                            tenant, deadline, options))
    return checks


def stored_indexes(bitmap: bytes | None, size: int) -> set[int]:
    """Indexes whose bit is set in a Redis bitmap (SETBIT numbers bits from the most significant one)."""
    if not bitmap:
        return set()
    return {i for i in range(min(size, len(bitmap) * 8)) if bitmap[i >> 3] & (0x80 >> (i & 7))}
