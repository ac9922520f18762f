"""Start the aiohttp listeners of a service (worker, monitor): all of them or none, and a port that
cannot be bound is one line naming the variable to change, not a traceback."""

from __future__ import annotations

import os
from dataclasses import dataclass

from aiohttp import web

from iot.service import ListenError


@dataclass(frozen=True, slots=True)
class Listener:
    app: web.Application
    variable: str  # the setting that chose the port, e.g. "APP_PORT"
    port: int


class HttpServers:
    """The started listeners; `close()` stops them (call it once the service stops)."""

    def __init__(self, runners: list[web.AppRunner]) -> None:
        self._runners = runners

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()


async def serve(host: str, *listeners: Listener) -> HttpServers:
    """Listen on `host` at every listener's port; on a failure close the ones started and raise ListenError."""
    runners: list[web.AppRunner] = []
    for listener in listeners:
        runner = web.AppRunner(listener.app, access_log=None)
        await runner.setup()
        runners.append(runner)
        try:
            await web.TCPSite(runner, host, listener.port).start()
        except OSError as exc:
            await HttpServers(runners).close()
            # asyncio words it "error while attempting to bind on address (...): ..."; the errno says it plainly
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ListenError(
                f"cannot listen on APP_HOST {host} {listener.variable} {listener.port}: {reason}; choose a free port"
            ) from exc
    return HttpServers(runners)
