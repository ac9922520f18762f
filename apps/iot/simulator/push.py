"""Push devices: send metrics (or bare heartbeats) to the tracker with the device's token, every interval."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class PushDevice:
    key: str
    token: str
    interval_s: float
    metric: str | None = "value"  # None: heartbeats only
    silent: bool = False
    sent: int = 0
    failures: int = 0
    last_status: int | None = None
    last_error: str | None = None
    task: asyncio.Task[None] | None = None

    def summary(self) -> dict[str, Any]:
        return {"key": self.key, "interval_s": self.interval_s, "metric": self.metric, "silent": self.silent,
                "sent": self.sent, "failures": self.failures, "last_status": self.last_status,
                "last_error": self.last_error}


class PushFleet:
    def __init__(self, push_url: str | None) -> None:
        self.push_url = push_url.rstrip("/") if push_url else None
        self.devices: dict[str, PushDevice] = {}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def close(self) -> None:
        for device in list(self.devices.values()):
            await self.remove(device.key)
        if self._session:
            await self._session.close()

    async def put(self, device: PushDevice) -> None:
        await self.remove(device.key)
        self.devices[device.key] = device
        device.task = asyncio.create_task(self._run(device), name=f"push-{device.key}")

    async def remove(self, key: str) -> bool:
        device = self.devices.pop(key, None)
        if device is None:
            return False
        if device.task:
            device.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await device.task
        return True

    async def _run(self, device: PushDevice) -> None:
        assert self._session is not None and self.push_url is not None
        while True:
            if not device.silent:
                await self._send_once(device)
            await asyncio.sleep(device.interval_s)

    async def _send_once(self, device: PushDevice) -> None:
        assert self._session is not None
        headers = {"Authorization": f"Bearer {device.token}"}
        if device.metric is None:
            url, body = f"{self.push_url}/v1/heartbeat", None
        else:
            # A smooth signal so charts of simulated devices look like something.
            url, body = f"{self.push_url}/v1/metrics", {"name": device.metric, "value": 20 + 5 * math.sin(time.time() / 60)}
        try:
            async with self._session.post(url, json=body, headers=headers) as response:
                device.last_status = response.status
                if response.status >= 400:
                    device.failures += 1
                    device.last_error = (await response.text())[:200]
                else:
                    device.sent += 1
                    device.last_error = None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            device.failures += 1
            device.last_error = f"{type(exc).__name__}: {exc}"[:200]
