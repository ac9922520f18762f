"""Which checks are due in which second, precomputed so a tick is a few list lookups.

Each device gets a phase in [0, interval): phase = hash(id) mod interval. It is due in every unix second
`s` with `s mod interval == phase`. The hash is fixed (not Python's per-process hash), so every worker
computes the same schedule and a failover neither repeats nor shifts checks; no per-device Redis key is
needed. For each distinct interval, devices are bucketed by phase, holding their pre-encoded check
fragment: planning one second is `len(intervals)` list lookups plus concatenation.
"""

from __future__ import annotations

from collections.abc import Iterable

from iot.worker.catalog import Device

_GOLDEN = 0x9E3779B97F4A7C15  # Fibonacci hashing: spreads sequential ids evenly over the phases
_MASK64 = (1 << 64) - 1


def phase_of(device_id: int, interval_s: int) -> int:
    return (((device_id * _GOLDEN) & _MASK64) >> 16) % interval_s


# Default bound of one check batch message, in bytes (BATCH_MAX_BYTES).
DEFAULT_BATCH_MAX_BYTES = 256 * 1024


class Schedule:
    def __init__(self, devices: Iterable[Device], max_batch_bytes: int = DEFAULT_BATCH_MAX_BYTES) -> None:
        buckets: dict[int, list[list[str]]] = {}
        count = 0
        # Devices whose entry alone would not fit a batch (a huge target) are not scheduled: a batch stays
        # bounded by bytes whatever the API accepted. The scheduler logs them by id.
        self.oversize: list[int] = []
        for device in devices:
            fragment = device.check_fragment()
            if len(fragment) + 2 > max_batch_bytes:
                self.oversize.append(device.id)
                continue
            slots = buckets.get(device.interval_s)
            if slots is None:
                slots = buckets[device.interval_s] = [[] for _ in range(device.interval_s)]
            slots[phase_of(device.id, device.interval_s)].append(fragment)
            count += 1
        self._buckets = list(buckets.items())
        self.device_count = count

    def due(self, second: int) -> list[str]:
        """Check fragments due in unix second `second`."""
        out: list[str] = []
        for interval, slots in self._buckets:
            out.extend(slots[second % interval])
        return out

    def due_between(self, first: int, last: int) -> list[str]:
        """Check fragments due in seconds first..last inclusive (a catch-up after a stall or failover).

        Each device at most once: a device due several times in a long catch-up span (failover gap longer
        than its interval) is checked once now, not several times in the same second.
        """
        out: list[str] = []
        for interval, slots in self._buckets:
            phases = range(interval) if last - first + 1 >= interval else sorted(
                {second % interval for second in range(first, last + 1)})
            for phase in phases:
                out.extend(slots[phase])
        return out


def batch_payloads(fragments: list[str], batch_size: int, max_bytes: int = DEFAULT_BATCH_MAX_BYTES) -> list[str]:
    """JSON arrays of at most `batch_size` checks and `max_bytes` bytes each: one stream message per payload,
    per region (a single fragment larger than `max_bytes` goes alone; `Schedule` never plans one).

    The same payload goes to every region, so encoding cost does not grow with the number of regions.
    """
    payloads: list[str] = []
    start, size = 0, 2  # the brackets
    for index, fragment in enumerate(fragments):
        length = len(fragment) + (1 if index > start else 0)  # the comma
        if index > start and (index - start >= batch_size or size + length > max_bytes):
            payloads.append("[" + ",".join(fragments[start:index]) + "]")
            start, size, length = index, 2, len(fragment)
        size += length
    if start < len(fragments):
        payloads.append("[" + ",".join(fragments[start:]) + "]")
    return payloads
