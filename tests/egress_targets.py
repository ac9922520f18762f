"""Internal addresses a tenant must never make our monitors or workers connect to (issue 12, case 6).

One table for the registration tests and the probe-time tests. `HOSTS_STUB` maps names to internal
addresses; tests run a process under `hosts_stub_command(...)` so that process (and only it) resolves
those names through that file, as an attacker's DNS would.
"""

from __future__ import annotations

from pathlib import Path

# What every test process may reach although it is not a public address: the simulator, receivers and
# listeners of the tests all live on loopback. Tests of the refusal run their processes without it.
TEST_EGRESS_ALLOW_CIDRS = "127.0.0.0/8,::1/128"

# The examples first, then every other form of "internal" the policy must know.
INTERNAL_HOSTS: tuple[str, ...] = (
    "localhost",                 # name of loopback (the localhost:6379)
    "169.254.169.254",           # cloud metadata
    "10.0.1.11",                 # the Nomad server (10.0.1.11:4646)
    "::1",                       # [::1]:22
    "fd00:a9fe:a9fe::1",         # metadata over IPv6 (ULA)
    "2130706433",                # 127.0.0.1 as one decimal number
    "0x7f000001",                # ... as hex
    "0177.0.0.1",                # ... with an octal first part
    "127.1",                     # ... in short form
    "127.0.0.1",
    "0.0.0.0",                   # unspecified: Linux connects it to loopback
    "172.16.0.1",                # RFC 1918
    "192.168.1.1",               # RFC 1918
    "100.64.0.1",                # carrier-grade NAT
    "224.0.0.1",                 # multicast
    "255.255.255.255",           # broadcast
    "198.18.0.1",                # benchmarking
    "192.0.2.1",                 # documentation
    "::",                        # unspecified IPv6
    "fe80::1",                   # link-local IPv6
    "ff02::1",                   # multicast IPv6
    "::ffff:127.0.0.1",          # IPv4-mapped loopback
    "::ffff:a9fe:a9fe",          # IPv4-mapped metadata, hex spelling
    "::127.0.0.1",               # IPv4-compatible loopback
    "64:ff9b::a9fe:a9fe",        # NAT64 of the metadata address
    "2002:a9fe:a9fe::1",         # 6to4 of the metadata address
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    # names that resolve to internal addresses (through HOSTS_STUB)
    "metadata.internal",
    "nomad.internal",
    "redis.internal",
    "md6.internal",
    "lo6.internal",
    "localhost.",
)

HOSTS_STUB = """\
127.0.0.1 localhost redis.internal
169.254.169.254 metadata.internal
10.0.1.11 nomad.internal
fd00:a9fe:a9fe::1 md6.internal
::1 lo6.internal
"""

# Loopback forms: a probe that ignored the policy would reach a listener of the test on them.
LOOPBACK_HOSTS: tuple[str, ...] = (
    "localhost", "::1", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "127.0.0.1", "0.0.0.0",
    "::ffff:127.0.0.1", "redis.internal", "lo6.internal", "localhost.",
)


def bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def http_target(host: str, port: int) -> str:
    return f"http://{bracket(host)}:{port}/health"


def tcp_target(host: str, port: int) -> str:
    return f"{bracket(host)}:{port}"


def write_hosts_stub(directory: Path) -> Path:
    path = directory / "hosts"
    path.write_text(HOSTS_STUB)
    return path


def hosts_stub_command(hosts_file: Path) -> list[str]:
    """Prefix for a command: run it in its own mount namespace where /etc/hosts is `hosts_file`.

    Only that process sees the stub (as root: `unshare -m` plus a bind mount); the machine's /etc/hosts
    stays as it is.
    """
    return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts_file)]
