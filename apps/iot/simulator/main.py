"""`iot simulate`: run the simulated devices and the control API until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from iot.log import log_fields, setup_logging
from iot.service import event_loop_factory, lift_open_files_limit
from iot.settings import SimulatorSettings
from iot.simulator.control import Fleet, create_control_app
from iot.simulator.fleet import SimDevice
from iot.simulator.push import PushFleet

logger = logging.getLogger("iot.simulator")


def parse_args(argv: list[str], settings: SimulatorSettings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="iot simulate", description="Serve simulated devices on loopback "
                                     "(control API documented in `python -m pydoc iot.simulator`).")
    parser.add_argument("--devices", type=int, default=100, help="number of HTTP devices (default 100)")
    parser.add_argument("--tcp-devices", type=int, default=0, help="number of TCP devices after the HTTP ones")
    parser.add_argument("--base-port", type=int, required=True, help="device i listens on base-port + i")
    parser.add_argument("--control-port", type=int, default=settings.control_port, help="control API port")
    parser.add_argument("--host", default=settings.host, help="address the devices listen on")
    parser.add_argument("--push-url", default=None, help="tracker base URL for push devices")
    args = parser.parse_args(argv)
    total = args.devices + args.tcp_devices
    if args.devices < 0 or args.tcp_devices < 0 or total == 0:
        parser.error("--devices and --tcp-devices must be >= 0, and at least one device in total")
    if not args.base_port >= 1 or args.base_port + total - 1 > 65535:
        parser.error(f"--base-port {args.base_port} + {total} devices does not fit below port 65536")
    if args.base_port <= args.control_port < args.base_port + total:
        parser.error(f"--control-port {args.control_port} collides with the device ports")
    return args


async def serve(args: argparse.Namespace) -> None:
    devices = [SimDevice(i, "http", args.host, args.base_port + i) for i in range(args.devices)]
    devices += [SimDevice(args.devices + j, "tcp", args.host, args.base_port + args.devices + j)
                for j in range(args.tcp_devices)]
    push = PushFleet(args.push_url)
    await push.start()
    fleet = Fleet(devices, push)
    await fleet.start()
    runner = web.AppRunner(create_control_app(fleet), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.control_port).start()
    log_fields(logger, logging.INFO, "simulator ready", http_devices=args.devices, tcp_devices=args.tcp_devices,
               base_port=args.base_port, control_port=args.control_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await fleet.close()
    await push.close()


def main(argv: list[str]) -> int:
    settings = SimulatorSettings()
    args = parse_args(argv, settings)
    setup_logging("info")
    lift_open_files_limit(2 * (args.devices + args.tcp_devices) + 1024)  # a socket per device, plus connections
    # uvloop roughly doubles the requests a device port can answer.
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(args))
    return 0
