"""Redis keys and streams shared by tracker, worker, monitor and dashboard.

Kept in one module so every service agrees on names. Stream payload formats are documented where they
are produced (worker.dispatch for checks, monitor for results).
"""

# Bumped (INCR) by the tracker/dashboard on every device create/update/delete; the worker reloads its
# device table when the value changes instead of polling Postgres every tick.
DEVICES_VERSION_KEY = "devices:version"

# Sorted set "<region>/<instance>" scored by unix time of the monitor's last heartbeat.
MONITOR_HEARTBEATS_KEY = "monitors:heartbeat"

# Leader lock of the scheduler (SET NX PX, renewed by the leader).
WORKER_LOCK_KEY = "worker:leader"

# Results of all regions, consumed by the worker's evaluator through a consumer group.
RESULTS_STREAM = "results"
RESULTS_GROUP = "evaluator"

CHECKS_GROUP = "monitors"


def checks_stream(region: str) -> str:
    """Stream of check batches for one region (DESIGN §5: `checks:<region>`)."""
    return f"checks:{region}"


def stored_bitmap_prefix(region: str) -> str:
    """Prefix of the per-batch bitmaps `checks:<region>:stored:<message id>`: bit i is set once check i of
    that batch has its result stored (or was dropped). Written with the results, in one script, so a monitor
    that takes over a half-done batch probes only the checks without a result."""
    return f"checks:{region}:stored:"


# Monotonic fencing counter: every leadership term gets a larger number; dispatch checks the lock still
# holds this term's token, so a paused ex-leader can never enqueue checks.
WORKER_FENCE_KEY = "worker:fence"

# Unix second up to which the scheduler has dispatched (inclusive). A new leader resumes from here, so a
# failover neither repeats nor (within the catch-up window) skips a second of the schedule.
WORKER_PLANNED_UNTIL_KEY = "worker:planned_until"

# Hash "<region>/<instance>" -> JSON {"ok": bool, "at": unix, "failed": [targets]} of the monitor's last
# canary round. A region whose canaries fail is excluded from quorums (DESIGN §5).
MONITOR_CANARIES_KEY = "monitors:canaries"

# Hash region -> JSON {"healthy": bool, "reason": str | None, "at": unix}, written by the evaluator for the
# dashboard/tracker (also mirrored into the `regions` table).
REGION_HEALTH_KEY = "regions:health"

# Streams are capped so a region whose monitors all died cannot grow Redis without bound (approximate
# trimming; a live region consumes long before this). Check streams are also trimmed by age on every
# dispatch (XADD MINID, see worker.dispatch): a batch older than that is past every device's next check,
# so the memory of deleted devices' entries is freed within that time, whatever their size.
CHECKS_STREAM_MAXLEN = 20_000
RESULTS_STREAM_MAXLEN = 100_000

# Stream message fields. A check batch: {"checks": JSON [[device_id, kind, target, timeout_ms, tenant_id,
# interval_s], ...], "sent": unix}; new elements are only ever appended to an entry and readers ignore the
# ones they do not know (iot.monitor.batches documents the entry). A batch is bounded by BATCH_SIZE entries
# and BATCH_MAX_BYTES bytes. A result batch: {"region", "instance", "results": JSON [[device_id, ok,
# latency_ms|null, error|null, checked_at], ...]}, checked_at = unix time the probe started. JSON arrays
# rather than objects keep batches of hundreds compact.
CHECKS_FIELD = "checks"
SENT_FIELD = "sent"
RESULTS_FIELD = "results"
REGION_FIELD = "region"
INSTANCE_FIELD = "instance"


def heartbeat_member(region: str, instance: str) -> str:
    """Member of MONITOR_HEARTBEATS_KEY / MONITOR_CANARIES_KEY for one monitor process."""
    return f"{region}/{instance}"


def region_of_member(member: str) -> str:
    return member.split("/", 1)[0]
