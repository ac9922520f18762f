"""Metric endpoints of the tenant API: metric rules (CRUD) and a device's metric series and latest values.

Another tenant's rule or device answers 404, like a missing one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response

from iot.errors import InputError
from iot.inputs import Id, Name
from iot.repo import metric_rules, metrics
from iot.repo.metric_rules import RuleSpec
from iot.tracker.auth import AuthenticateFirst, TenantAuth
from iot.tracker.schemas import ErrorOut
from iot.tracker.schemas.metrics import LatestOut, MetricRuleIn, MetricRuleOut, MetricRulePatch, SeriesOut

router = APIRouter(prefix="/v1", tags=["metrics"], route_class=AuthenticateFirst,
                   responses={status: {"model": ErrorOut} for status in (401, 408, 413, 422)})


def _rule_not_found(rule_id: int) -> HTTPException:
    return HTTPException(404, detail=f"no such metric rule: {rule_id}")


@router.get("/metric-rules", response_model=list[MetricRuleOut], summary="List metric rules")
async def list_rules(tenant: TenantAuth, request: Request) -> list[MetricRuleOut]:
    """The tenant's metric rules, oldest first (at most 500 exist)."""
    return [MetricRuleOut.model_validate(r) for r in await metric_rules.list_rules(request.app.state.pool, tenant.id)]


@router.post("/metric-rules", status_code=201, response_model=MetricRuleOut, summary="Create a metric rule",
             responses={409: {"model": ErrorOut}})
async def create_rule(body: MetricRuleIn, tenant: TenantAuth, request: Request) -> MetricRuleOut:
    """A threshold rule (`{"metric": "temperature", "operator": ">", "threshold": 8, "for_s": 300, "tag":
    "cold-chain"}`) or an anomaly rule (`"kind": "anomaly", "z_score": 3`). When it holds for `for_s` seconds on a
    device, the worker opens an incident of kind `metric` (details.rule_id) and notifies; it resolves on the first
    point where the condition no longer holds."""
    rule = await metric_rules.create_rule(request.app.state.pool, tenant.id, RuleSpec(**body.model_dump()))
    return MetricRuleOut.model_validate(rule)


@router.get("/metric-rules/{rule_id}", response_model=MetricRuleOut, summary="Get a metric rule",
            responses={404: {"model": ErrorOut}})
async def get_rule(rule_id: Id, tenant: TenantAuth, request: Request) -> MetricRuleOut:
    rule = await metric_rules.get_rule(request.app.state.pool, tenant.id, rule_id)
    if rule is None:
        raise _rule_not_found(rule_id)
    return MetricRuleOut.model_validate(rule)


@router.patch("/metric-rules/{rule_id}", response_model=MetricRuleOut, summary="Change a metric rule",
              responses={404: {"model": ErrorOut}})
async def update_rule(rule_id: Id, body: MetricRulePatch, tenant: TenantAuth, request: Request) -> MetricRuleOut:
    """Change some fields; the result is checked as a whole. Disabling a rule resolves its open incidents."""
    changes = body.model_dump(exclude_unset=True)
    for required in ("metric", "kind", "for_s", "enabled"):
        if required in changes and changes[required] is None:
            raise InputError(required, "cannot be null")
    if not changes:
        raise InputError("body", "no field to change; send at least one")
    rule = await metric_rules.update_rule(request.app.state.pool, tenant.id, rule_id, changes)
    if rule is None:
        raise _rule_not_found(rule_id)
    return MetricRuleOut.model_validate(rule)


@router.delete("/metric-rules/{rule_id}", status_code=204, summary="Delete a metric rule",
               responses={404: {"model": ErrorOut}})
async def delete_rule(rule_id: Id, tenant: TenantAuth, request: Request) -> Response:
    """Its open incidents are resolved by the worker's next pass ("rule no longer applies")."""
    if not await metric_rules.delete_rule(request.app.state.pool, tenant.id, rule_id):
        raise _rule_not_found(rule_id)
    return Response(status_code=204)


@router.get("/devices/{device_id}/metrics", response_model=SeriesOut, summary="A metric's chart series",
            responses={404: {"model": ErrorOut}})
async def metric_series(
    device_id: Id,
    tenant: TenantAuth,
    request: Request,
    name: Annotated[Name, Query(description="Metric name, e.g. temperature.")],
    range: Annotated[Literal["1h", "1d", "30d"], Query(  # noqa: A002
        description="1h: raw points; 1d: per-minute mean/min/max; 30d: per hour.")] = "1h",
) -> SeriesOut:
    """One metric of the device over the range, oldest first (from rollups for 1d and 30d)."""
    pool = request.app.state.pool
    if not await metrics.device_exists(pool, tenant.id, device_id):
        raise HTTPException(404, detail=f"no such device: {device_id}")
    series = await metrics.series(pool, tenant.id, device_id, name, range)
    return SeriesOut(device_id=device_id, name=series.name, range=range, bucket_s=series.bucket_s,
                     truncated=series.truncated, points=series.points)  # type: ignore[arg-type]


@router.get("/devices/{device_id}/metrics/latest", response_model=list[LatestOut],
            summary="Latest value of each metric", responses={404: {"model": ErrorOut}})
async def latest_metrics(device_id: Id, tenant: TenantAuth, request: Request) -> list[LatestOut]:
    """The newest value of each metric the device pushed, by name (at most 100 names)."""
    pool = request.app.state.pool
    if not await metrics.device_exists(pool, tenant.id, device_id):
        raise HTTPException(404, detail=f"no such device: {device_id}")
    return [LatestOut.model_validate(m) for m in await metrics.latest(pool, tenant.id, device_id)]
