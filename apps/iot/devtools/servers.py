"""Real Redis and PostgreSQL servers from the OS packages, each on a free port in a temp dir.

Used by the tests (tests/servers.py re-exports this module) and by `iot demo`. PostgreSQL refuses to
run as root, so when run as root the cluster is created and started as the `postgres` system user
(Debian's package creates it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(count: int, low: int = 20000, high: int = 32000) -> int:
    """A base port with `count` consecutive ports free right now (simulated devices listen on base + i).

    Below Linux's ephemeral range (32768+), so a client's outgoing port never takes one of them.
    """
    for _ in range(50):
        base = random.randrange(low, high - count)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports between {low} and {high}")


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class RedisServer:
    """A redis-server process; `restart()` keeps the port (for outage tests)."""

    def __init__(self, port: int | None = None, parent: Path | None = None, own_session: bool = False) -> None:
        """`parent`: where its temp dir goes (default: the system's); `own_session`: out of the caller's
        process group, so a Ctrl-C at the terminal reaches only the caller, which stops Redis last."""
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-", dir=parent))
        self.own_session = own_session
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            raise RuntimeError("redis-server not found: install the OS package (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=self.own_session,
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pg_bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: install the OS package (apt-get install postgresql)")
    return os.path.dirname(found[-1])


class PostgresServer:
    """A throwaway PostgreSQL cluster with trust auth on 127.0.0.1."""

    def __init__(self, port: int | None = None, parent: Path | None = None) -> None:
        """`parent`: where its temp dir goes (default: the system's). As root, `parent` must be
        traversable by the postgres user."""
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pg-", dir=parent))
        self.data = self.dir / "data"
        self.bindir = _pg_bindir()
        self._as_root = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self._as_root:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(_quote(a) for a in cmd)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> PostgresServer:
        if self._as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")
        return self

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        self._psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _psql(self, sql: str) -> None:
        subprocess.run(
            [os.path.join(self.bindir, "psql"), "-q", "-v", "ON_ERROR_STOP=1", self.url(), "-c", sql],
            check=True, stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


@contextlib.contextmanager
def running(server) -> Iterator:
    server.start()
    try:
        yield server
    finally:
        server.cleanup()
