"""The simulator's control API (HTTP JSON); documented in `iot.simulator` (package docstring)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from iot.simulator.fleet import SimDevice, parse_changes
from iot.simulator.push import PushDevice, PushFleet
from iot.simulator.servers import DeviceListener


class Fleet:
    """All simulated devices with their listeners."""

    def __init__(self, devices: list[SimDevice], push: PushFleet) -> None:
        self.devices = devices
        self.listeners = [DeviceListener(d) for d in devices]
        self.push = push

    async def start(self) -> None:
        for listener in self.listeners:
            await listener.start()

    async def close(self) -> None:
        for listener in self.listeners:
            await listener.close()

    async def change(self, indexes: list[int], changes: dict[str, Any]) -> None:
        for i in indexes:
            device = self.devices[i]
            for name, value in changes.items():
                setattr(device, name, value)
            await self.listeners[i].apply()

    async def reset(self, indexes: list[int], hits: bool) -> None:
        for i in indexes:
            self.devices[i].reset_behaviour()
            if hits:
                self.devices[i].reset_hits()
            await self.listeners[i].apply()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"detail": message}, status=status)


async def _json(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        return await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f'{{"detail": "body: not valid JSON ({exc})"}}',
                                 content_type="application/json") from exc


def _index(request: web.Request, fleet: Fleet) -> int:
    raw = request.match_info["index"]
    if not raw.isdigit() or int(raw) >= len(fleet.devices):
        raise web.HTTPNotFound(text=f'{{"detail": "index: no device {raw}; valid 0..{len(fleet.devices) - 1}"}}',
                               content_type="application/json")
    return int(raw)


def _selection(body: dict[str, Any], fleet: Fleet) -> list[int]:
    selected = body.get("devices", "all")
    count = len(fleet.devices)
    if selected == "all":
        return list(range(count))
    if isinstance(selected, dict) and set(selected) == {"from", "to"} and all(
        isinstance(v, int) for v in selected.values()
    ):
        selected = list(range(selected["from"], selected["to"]))
    if not isinstance(selected, list) or not all(isinstance(i, int) and 0 <= i < count for i in selected):
        raise ValueError(f'devices: "all", a list of indexes 0..{count - 1}, or {{"from": a, "to": b}}')
    return selected


def create_control_app(fleet: Fleet) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/health")
    async def health(request: web.Request) -> web.Response:
        kinds = Counter(d.kind for d in fleet.devices)
        return web.json_response({"status": "ok", "http_devices": kinds["http"], "tcp_devices": kinds["tcp"],
                                  "push_devices": len(fleet.push.devices)})

    @routes.get("/devices")
    async def list_devices(request: web.Request) -> web.Response:
        return web.json_response([d.summary() for d in fleet.devices])

    @routes.post("/devices")
    async def change_many(request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            changes = parse_changes(body)
            indexes = _selection(body, fleet)
        except ValueError as exc:
            return _error(400, str(exc))
        await fleet.change(indexes, changes)
        return web.json_response({"changed": len(indexes)})

    @routes.get("/devices/{index}")
    async def get_device(request: web.Request) -> web.Response:
        return web.json_response(fleet.devices[_index(request, fleet)].summary())

    @routes.post("/devices/{index}")
    async def change_one(request: web.Request) -> web.Response:
        i = _index(request, fleet)
        body = await _json(request)
        try:
            if isinstance(body, dict) and "devices" in body:
                raise ValueError("devices: not allowed here; POST /devices to change several")
            changes = parse_changes(body)
        except ValueError as exc:
            return _error(400, str(exc))
        await fleet.change([i], changes)
        return web.json_response(fleet.devices[i].summary())

    @routes.post("/devices/{index}/reset")
    async def reset_one(request: web.Request) -> web.Response:
        i = _index(request, fleet)
        await fleet.reset([i], hits=False)
        return web.json_response(fleet.devices[i].summary())

    @routes.post("/reset")
    async def reset_all(request: web.Request) -> web.Response:
        body = await _json(request)
        await fleet.reset(list(range(len(fleet.devices))), hits=bool(isinstance(body, dict) and body.get("hits")))
        return web.json_response({"reset": len(fleet.devices)})

    @routes.get("/devices/{index}/hits")
    async def hits_one(request: web.Request) -> web.Response:
        device = fleet.devices[_index(request, fleet)]
        return web.json_response({"index": device.index, "hits": device.hits, "by_source": dict(device.hits_by_source)})

    @routes.get("/hits")
    async def hits_all(request: web.Request) -> web.Response:
        by_source: Counter[str] = Counter()
        for device in fleet.devices:
            by_source.update(device.hits_by_source)
        body: dict[str, Any] = {"hits": [d.hits for d in fleet.devices], "total": sum(d.hits for d in fleet.devices),
                                "by_source": dict(by_source)}
        if request.query.get("per_source") in ("1", "true"):
            body["per_device_by_source"] = [dict(d.hits_by_source) for d in fleet.devices]
        return web.json_response(body)

    @routes.post("/hits/reset")
    async def hits_reset(request: web.Request) -> web.Response:
        for device in fleet.devices:
            device.reset_hits()
        return web.json_response({"reset": len(fleet.devices)})

    @routes.get("/push")
    async def push_list(request: web.Request) -> web.Response:
        return web.json_response([d.summary() for d in fleet.push.devices.values()])

    @routes.put("/push/{key}")
    async def push_put(request: web.Request) -> web.Response:
        if fleet.push.push_url is None:
            return _error(409, "push: start the simulator with --push-url <tracker URL> to use push devices")
        body = await _json(request)
        try:
            device = _push_device(request.match_info["key"], body)
        except ValueError as exc:
            return _error(400, str(exc))
        await fleet.push.put(device)
        return web.json_response(device.summary())

    @routes.post("/push/{key}")
    async def push_silence(request: web.Request) -> web.Response:
        device = fleet.push.devices.get(request.match_info["key"])
        if device is None:
            return _error(404, f"key: no push device {request.match_info['key']!r}; PUT it first")
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("silent"), bool):
            return _error(400, 'silent: expected {"silent": true} or {"silent": false}')
        device.silent = body["silent"]
        return web.json_response(device.summary())

    @routes.delete("/push/{key}")
    async def push_delete(request: web.Request) -> web.Response:
        if not await fleet.push.remove(request.match_info["key"]):
            return _error(404, f"key: no push device {request.match_info['key']!r}")
        return web.json_response({"deleted": request.match_info["key"]})

    app = web.Application()
    app.add_routes(routes)
    return app


def _push_device(key: str, body: Any) -> PushDevice:
    if not isinstance(body, dict):
        raise ValueError('body: expected {"token": "...", "interval_s": 5}')
    token = body.get("token")
    if not isinstance(token, str) or not token:
        raise ValueError("token: required, the device's ingest token from POST /v1/devices")
    interval = body.get("interval_s", 5)
    if not isinstance(interval, int | float) or isinstance(interval, bool) or not 0.05 <= interval <= 86400:
        raise ValueError("interval_s: must be a number of seconds between 0.05 and 86400")
    metric = body.get("metric", "value")
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise ValueError("metric: a metric name, or null to send bare heartbeats")
    silent = body.get("silent", False)
    if not isinstance(silent, bool):
        raise ValueError("silent: must be true or false")
    return PushDevice(key=key, token=token, interval_s=float(interval), metric=metric, silent=silent)
