"""A loopback address range whose packets vanish: an nftables drop rule in a table of its own.

TCP SYNs and ICMP echoes to the range are dropped on the way in (after they were sent: dropping on the
way out fails the send at once with EPERM), so connects and pings hang until the
prober's timeout, like devices that died. The table has a unique name (`issue13_bench_<pid>`) and is
always deleted: on leaving the context, and at interpreter exit or SIGTERM if the bench is cut short.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator

BLACKHOLE_CIDR = "127.77.0.0/16"


def _nft(*args: str) -> None:
    subprocess.run(["nft", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def blackhole(cidr: str = BLACKHOLE_CIDR) -> Iterator[str]:
    table = f"issue13_bench_{os.getpid()}"
    removed = False

    def remove() -> None:
        nonlocal removed
        if not removed:
            removed = True
            with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
                _nft("delete", "table", "inet", table)

    def on_term(_signum: int, _frame: object) -> None:
        remove()
        raise SystemExit(143)

    _nft("add", "table", "inet", table)
    atexit.register(remove)
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        _nft("add", "chain", "inet", table, "in", "{ type filter hook input priority 0; policy accept; }")
        _nft("add", "rule", "inet", table, "in", "ip", "daddr", cidr, "drop")
        yield table
    finally:
        remove()
        signal.signal(signal.SIGTERM, previous)


def blackholed_address(index: int) -> str:
    """The index-th address of the range (127.77.x.y, y never 0 or 255)."""
    return f"127.77.{(index // 254) % 256}.{index % 254 + 1}"
