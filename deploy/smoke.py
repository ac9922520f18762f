"""Smoke checks of a deployed stack, through Cloudflare, as a user would meet it.

    pulumi stack output --json --show-secrets > outputs.json      (keep it out of artifacts)
    python -m deploy.smoke --outputs outputs.json                  real stack (e2e-cloud.yml)
    python -m deploy.smoke --dry-run --local local.json            the same checks against local processes

Checks: Nomad servers alive and clients ready (mTLS + token from the outputs); every public host
answers through Cloudflare (cf-ray) with the app it should serve; monitor /metrics and the worker's
/status are not public; monitor and app nodes refuse direct connections (only Cloudflare may reach
them); a test device goes DOWN and back UP through the whole pipeline. The dry run points the
host checks at local `iot` processes (Host header), and skips, naming them, the checks that need the
cloud (Nomad, Cloudflare's cf-ray, the firewalls). Exit 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.edge_layout import INTERNAL_HOSTS
from components.origin_pull import TRAEFIK_INTERNAL_PORT
from deploy.smoke_checks import (
    Check,
    DeviceProbe,
    Endpoint,
    NomadAccess,
    device_goes_down_and_up,
    host_serves,
    nomad_alive,
    path_not_served,
    port_closed,
)

# The app each fixed public host must serve (DESIGN §2); "" is the apex.
HOST_KINDS = {"": "marketing", "www": "marketing", "docs": "docs", "tracker": "tracker", "collect": "tracker"}


@dataclass
class SmokeTarget:
    domain: str
    through_edge: bool
    hosts: list[tuple[Endpoint, str]] = field(default_factory=list)
    not_public: list[tuple[Endpoint, str]] = field(default_factory=list)
    closed_ports: list[tuple[str, int, str]] = field(default_factory=list)
    nomad: NomadAccess | None = None
    device: DeviceProbe | None = None
    skipped: list[str] = field(default_factory=list)


def from_outputs(outputs: Mapping[str, Any], secrets_dir: Path, device_timeout: float = 900.0) -> SmokeTarget:
    """A real stack, from `pulumi stack output --json --show-secrets`."""
    domain = outputs["domain"]

    def edge(label: str) -> Endpoint:
        hostname = f"{label}.{domain}" if label else domain
        return Endpoint(hostname, f"https://{hostname}")

    target = SmokeTarget(domain=domain, through_edge=True)
    target.hosts = [(edge(label), kind) for label, kind in HOST_KINDS.items()]
    target.hosts.append((edge(f"smoke-tenant-{os.getpid()}"), "dashboard"))  # the tenant wildcard
    published = set(outputs["hostnames"])
    for name, monitor in outputs["monitors"].items():
        target.closed_ports.append((monitor["publicIpv4"], 80, "monitor health is for Cloudflare only"))
        if monitor["hostname"] in published:  # a stack that does not own its zone publishes none
            endpoint = Endpoint(monitor["hostname"], f"https://{monitor['hostname']}")
            target.hosts.append((endpoint, f"monitor:{name}"))
            target.not_public.append((endpoint, "/metrics"))
    for label in INTERNAL_HOSTS:
        target.not_public.append((edge(label), "/status"))
    for node in outputs["nodes"].values():
        target.closed_ports.append((node["publicIpv4"], 443, "origins admit Cloudflare only"))
        target.closed_ports.append((node["publicIpv4"], TRAEFIK_INTERNAL_PORT, "Traefik's internal entrypoint"))
    files = {}
    for key in ("caCertPem", "nomadClientCertPem", "nomadClientKeyPem"):
        path = secrets_dir / f"{key}.pem"
        path.write_text(outputs[key])
        path.chmod(0o600)
        files[key] = str(path)
    target.nomad = NomadAccess(outputs["nomadAddress"], outputs["nomadToken"], files["caCertPem"],
                               files["nomadClientCertPem"], files["nomadClientKeyPem"], len(outputs["nodes"]))
    target.device = DeviceProbe(edge("tracker"), outputs["trackerAdminToken"], up_target=f"https://{domain}/health",
                                down_target=f"https://{domain}/smoke-this-page-does-not-exist",
                                interval_s=15, timeout_s=device_timeout)
    return target


def from_local(local: Mapping[str, Any]) -> SmokeTarget:
    """A dry run: the same checks against local processes (see tests/deploy/test_smoke.py).

    `local`: {"domain", "hosts": {hostname: [base_url, kind]}, "notPublic": [[hostname, base_url, path]],
    "trackerAdminToken", "device": {"up", "down", "intervalS", "timeoutS"}}.
    """
    target = SmokeTarget(domain=local["domain"], through_edge=False)
    target.hosts = [(Endpoint(host, url), kind) for host, (url, kind) in local["hosts"].items()]
    target.not_public = [(Endpoint(host, url), path) for host, url, path in local.get("notPublic", [])]
    tracker = next(endpoint for endpoint, kind in target.hosts if kind == "tracker")
    device = local["device"]
    target.device = DeviceProbe(tracker, local["trackerAdminToken"], device["up"], device["down"],
                                interval_s=device.get("intervalS", 5), timeout_s=device.get("timeoutS", 120))
    served = {kind for _, kind in target.hosts}
    target.skipped = [f"{kind} host: not running locally" for kind in ("marketing", "docs") if kind not in served]
    target.skipped += [
        "Nomad servers and clients: no Nomad in a dry run",
        "cf-ray on every answer: no Cloudflare in a dry run",
        "direct connections refused: no provider firewall in a dry run",
        "worker /status blocked at the edge: no edge in a dry run (Traefik's internal entrypoint is not local)",
    ]
    return target


def run_checks(target: SmokeTarget) -> list[Check]:
    results: list[Check] = []
    if target.nomad is not None:
        results.append(nomad_alive(target.nomad))
    results += [host_serves(endpoint, kind, target.through_edge) for endpoint, kind in target.hosts]
    results += [path_not_served(endpoint, path, target.through_edge) for endpoint, path in target.not_public]
    results += [port_closed(host, port, why) for host, port, why in target.closed_ports]
    if target.device is not None:
        results.append(device_goes_down_and_up(target.device))
    return results


def report(results: list[Check], skipped: list[str]) -> str:
    lines = ["| check | result | detail |", "| --- | --- | --- |"]
    lines += [f"| {c.name} | {'ok' if c.ok else 'FAILED'} | {c.detail.replace('|', '/')} |" for c in results]
    lines += [f"| {s.split(':')[0]} | skipped | {s.split(':', 1)[1].strip()} |" for s in skipped]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.smoke", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--outputs", type=Path, help="JSON of `pulumi stack output --json --show-secrets`")
    source.add_argument("--local", type=Path, help="dry run: JSON map of local endpoints (needs --dry-run)")
    parser.add_argument("--dry-run", action="store_true", help="check local processes instead of a real stack")
    parser.add_argument("--device-timeout", type=float, default=900.0, help="seconds for each device state change")
    args = parser.parse_args(argv)
    if args.dry_run != (args.local is not None):
        parser.error("--dry-run goes with --local, a real run with --outputs")
    with tempfile.TemporaryDirectory(prefix="iot-smoke-") as secrets_dir:
        if args.dry_run:
            target = from_local(json.loads(args.local.read_text()))
        else:
            target = from_outputs(json.loads(args.outputs.read_text()), Path(secrets_dir), args.device_timeout)
        results = run_checks(target)
    text = report(results, target.skipped)
    print(text, end="")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(f"## Smoke checks of {target.domain}{' (dry run)' if args.dry_run else ''}\n\n{text}")
    failed = [c for c in results if not c.ok]
    print(f"smoke: {len(results) - len(failed)} of {len(results)} checks passed, {len(target.skipped)} skipped",
          file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
