"""Metric rule repository: one tenant's threshold and anomaly rules (evaluated by worker.metric_rules).

Validation that spans fields lives here, so the API and the dashboard refuse the same rules with the same
reasons. A rule's device must be the tenant's own; a deleted or disabled rule's open incidents are resolved by
the worker's next pass ("rule no longer applies") with their notifications.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from iot.errors import Conflict, InputError
from iot.inputs import normalise_tag, text_problem
from iot.repo._db import Executor, check_ids, connection

OPERATORS = (">", ">=", "<", "<=", "==", "!=")
KINDS = ("threshold", "anomaly")
MAX_RULES = 500  # per tenant: every pass evaluates each rule on each device it applies to
MAX_FOR_S = 86_400
MAX_ABS_THRESHOLD = 1e15

COLUMNS = """r.id, r.device_id, (SELECT d.name FROM devices d WHERE d.id = r.device_id AND d.tenant_id = r.tenant_id)
    AS device_name, r.tag, r.metric, r.kind, r.operator, r.threshold, r.z_score, r.for_s, r.enabled, r.created_at,
    r.updated_at"""

SELECT_RULES = f"SELECT {COLUMNS} FROM metric_rules r WHERE r.tenant_id = $1 ORDER BY r.id LIMIT $2"
SELECT_RULE = f"SELECT {COLUMNS} FROM metric_rules r WHERE r.tenant_id = $1 AND r.id = $2"
SELECT_DEVICE_RULES = f"""
SELECT {COLUMNS} FROM metric_rules r
WHERE r.tenant_id = $1
  AND (r.device_id = $2 OR r.tag = ANY((SELECT tags FROM devices WHERE tenant_id = $1 AND id = $2)::text[]))
ORDER BY r.id
"""
COUNT_RULES = "SELECT count(*) FROM metric_rules WHERE tenant_id = $1"
SELECT_TENANT_DEVICE = "SELECT id FROM devices WHERE tenant_id = $1 AND id = $2"
SELECT_DEVICE_BY_NAME = "SELECT id FROM devices WHERE tenant_id = $1 AND name = $2"
INSERT_RULE = f"""
INSERT INTO metric_rules AS r (tenant_id, device_id, tag, metric, kind, operator, threshold, z_score, for_s, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING {COLUMNS}
"""
UPDATE_RULE = f"""
UPDATE metric_rules r SET device_id = $3, tag = $4, metric = $5, kind = $6, operator = $7, threshold = $8,
    z_score = $9, for_s = $10, enabled = $11, updated_at = now()
WHERE r.tenant_id = $1 AND r.id = $2
RETURNING {COLUMNS}
"""
DELETE_RULE = "DELETE FROM metric_rules WHERE tenant_id = $1 AND id = $2"
# Serialises rule creation per tenant, so two concurrent creates cannot both pass the MAX_RULES count. NO KEY:
# rows that reference the tenant (devices, incidents, deliveries) can still be written meanwhile.
LOCK_TENANT = "SELECT id FROM tenants WHERE id = $1 FOR NO KEY UPDATE"


@dataclass(slots=True)
class RuleSpec:
    metric: str
    device_id: int | None = None
    tag: str | None = None
    kind: str = "threshold"
    operator: str | None = None
    threshold: float | None = None
    z_score: float | None = None
    for_s: int = 0
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class MetricRule:
    id: int
    device_id: int | None
    device_name: str | None
    tag: str | None
    metric: str
    kind: str
    operator: str | None
    threshold: float | None
    z_score: float | None
    for_s: int
    enabled: bool
    created_at: datetime
    updated_at: datetime
    description: str = field(default="")


OPERATOR_WORDS = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "==": "=", "!=": "!="}


def duration_text(seconds: int) -> str:
    if seconds == 0:
        return ""
    if seconds % 3600 == 0:
        return f" for {seconds // 3600} h"
    if seconds % 60 == 0:
        return f" for {seconds // 60} min"
    return f" for {seconds} s"


def rule_text(metric: str, kind: str, operator: str | None, threshold: float | None, z_score: float | None,
              for_s: int) -> str:
    """`temperature > 8 for 5 min`, `vibration anomaly (z > 3)`."""
    if kind == "anomaly":
        return f"{metric} anomaly (z > {z_score:g}){duration_text(for_s)}"
    return f"{metric} {OPERATOR_WORDS.get(operator or '', operator)} {threshold:g}{duration_text(for_s)}"


def _rule(row: Any) -> MetricRule:
    values = dict(row)
    return MetricRule(**values, description=rule_text(values["metric"], values["kind"], values["operator"],
                                                       values["threshold"], values["z_score"], values["for_s"]))


def validate(spec: RuleSpec) -> RuleSpec:
    """The spec, normalised (tag lower-cased, fields of the other kind dropped), or InputError naming the field."""
    problem = text_problem(spec.metric, 200, min_length=1)
    if problem:
        raise InputError("metric", problem)
    if (spec.device_id is None) == (spec.tag is None):
        raise InputError("device_id", "give either device_id (one device) or tag (every device carrying it), "
                                      "exactly one of them")
    if spec.device_id is not None:
        check_ids(device_id=spec.device_id)
    if spec.tag is not None:
        tag, tag_problem = normalise_tag(spec.tag)
        if tag_problem:
            raise InputError("tag", tag_problem)
        spec.tag = tag
    if spec.kind not in KINDS:
        raise InputError("kind", f"must be one of {', '.join(KINDS)}")
    if not 0 <= spec.for_s <= MAX_FOR_S:
        raise InputError("for_s", f"must be between 0 (at once) and {MAX_FOR_S} seconds")
    if spec.kind == "threshold":
        if spec.operator not in OPERATORS:
            raise InputError("operator", f"required for a threshold rule: one of {' '.join(OPERATORS)}")
        if spec.threshold is None:
            raise InputError("threshold", "required for a threshold rule, e.g. 8 for 'temperature > 8'")
        if not math.isfinite(spec.threshold) or abs(spec.threshold) > MAX_ABS_THRESHOLD:
            raise InputError("threshold", f"must be a finite number between -{MAX_ABS_THRESHOLD:g} and "
                                          f"{MAX_ABS_THRESHOLD:g}")
        spec.z_score = None
    else:
        if spec.z_score is None:
            raise InputError("z_score", "required for an anomaly rule: standard deviations from the baseline, "
                                        "e.g. 3")
        if not math.isfinite(spec.z_score) or not 0 < spec.z_score <= 100:
            raise InputError("z_score", "must be above 0 and at most 100 (3 is a common choice)")
        spec.operator = spec.threshold = None
    return spec


def _args(spec: RuleSpec) -> tuple:
    return (spec.device_id, spec.tag, spec.metric, spec.kind, spec.operator, spec.threshold, spec.z_score,
            spec.for_s, spec.enabled)


async def _check_device(conn: Any, tenant_id: int, spec: RuleSpec) -> None:
    if spec.device_id is not None and await conn.fetchval(SELECT_TENANT_DEVICE, tenant_id, spec.device_id) is None:
        raise InputError("device_id", f"no such device: {spec.device_id}; use the id of one of your devices")


async def device_id_by_name(db: Executor, tenant_id: int, name: str) -> int | None:
    """The tenant's device of that name (the dashboard picks a rule's device by name)."""
    return await db.fetchval(SELECT_DEVICE_BY_NAME, tenant_id, name)


async def list_rules(db: Executor, tenant_id: int) -> list[MetricRule]:
    return [_rule(r) for r in await db.fetch(SELECT_RULES, tenant_id, MAX_RULES)]


async def rules_for_device(db: Executor, tenant_id: int, device_id: int) -> list[MetricRule]:
    """The rules watching this device: its own and those of its tags."""
    check_ids(device_id=device_id)
    return [_rule(r) for r in await db.fetch(SELECT_DEVICE_RULES, tenant_id, device_id)]


async def get_rule(db: Executor, tenant_id: int, rule_id: int) -> MetricRule | None:
    check_ids(rule_id=rule_id)
    row = await db.fetchrow(SELECT_RULE, tenant_id, rule_id)
    return _rule(row) if row else None


async def create_rule(db: Executor, tenant_id: int, spec: RuleSpec) -> MetricRule:
    spec = validate(spec)
    async with connection(db) as conn, conn.transaction():
        await conn.execute(LOCK_TENANT, tenant_id)
        if await conn.fetchval(COUNT_RULES, tenant_id) >= MAX_RULES:
            raise Conflict("body", f"at most {MAX_RULES} metric rules per tenant; delete or reuse one "
                                   "(a tag rule covers many devices)")
        await _check_device(conn, tenant_id, spec)
        return _rule(await conn.fetchrow(INSERT_RULE, tenant_id, *_args(spec)))


async def update_rule(db: Executor, tenant_id: int, rule_id: int, changes: dict[str, Any]) -> MetricRule | None:
    """Apply `changes` (field -> value) to the rule and validate the result; None when there is no such rule."""
    check_ids(rule_id=rule_id)
    async with connection(db) as conn, conn.transaction():
        current = await conn.fetchrow(SELECT_RULE + " FOR UPDATE OF r", tenant_id, rule_id)
        if current is None:
            return None
        merged = {f.name: current[f.name] for f in fields(RuleSpec)} | changes
        # moving a rule between a device and a tag: setting one clears the other
        if "tag" in changes and changes["tag"] is not None and "device_id" not in changes:
            merged["device_id"] = None
        if "device_id" in changes and changes["device_id"] is not None and "tag" not in changes:
            merged["tag"] = None
        spec = validate(RuleSpec(**merged))
        await _check_device(conn, tenant_id, spec)
        return _rule(await conn.fetchrow(UPDATE_RULE, tenant_id, rule_id, *_args(spec)))


async def delete_rule(db: Executor, tenant_id: int, rule_id: int) -> bool:
    check_ids(rule_id=rule_id)
    return await db.execute(DELETE_RULE, tenant_id, rule_id) == "DELETE 1"
