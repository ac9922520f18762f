"""The policy pack's rules as pure functions of (resource type, input properties).

Each rule returns the list of violation messages for one resource (empty: compliant). Property names are
the engine's camelCase input names (``userData``, ``sourceIps``, ``placementGroupId``, ``purgeOnDestroy``),
which is what CrossGuard hands to a policy and what the offline plan records. This module imports only
the standard library, so the pack runs from its own virtualenv and the tests call the rules directly.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HCLOUD_SERVER = "hcloud:index/server:Server"
HCLOUD_FIREWALL = "hcloud:index/firewall:Firewall"
LINODE_INSTANCE = "linode:index/instance:Instance"
LINODE_FIREWALL = "linode:index/firewall:Firewall"
CF_LOAD_BALANCER = "cloudflare:index/loadBalancer:LoadBalancer"
CF_DNS_RECORD = "cloudflare:index/dnsRecord:DnsRecord"
CF_ZONE_SETTING = "cloudflare:index/zoneSetting:ZoneSetting"
NOMAD_JOB = "nomad:index/job:Job"

# Hetzner locations in the eu-central network zone: the only place the app cluster (and its data) may live.
EU_LOCATIONS = frozenset({"fsn1", "nbg1", "hel1"})
# The app cluster's servers carry this label (components/cluster.py); monitors run worldwide on purpose.
CLUSTER_ROLE = "cluster"

# Ports that must never face the internet: SSH, Nomad HTTP/RPC/Serf, Consul RPC/Serf and HTTP/HTTPS/gRPC.
MANAGEMENT_PORTS: Mapping[str, tuple[int, int]] = {
    "SSH": (22, 22),
    "Nomad": (4646, 4648),
    "Consul RPC/Serf": (8300, 8302),
    "Consul HTTP/gRPC": (8500, 8503),
    # Traefik's internal entrypoint (jobs/traefik.nomad.hcl): the worker's /status, private network only.
    "Traefik internal entrypoint": (8081, 8081),
}
WEB_PORTS = (80, 443, 8082)  # 8082: Traefik ping, probed by the Cloudflare LB monitor

# Cloudflare's published edge ranges (https://www.cloudflare.com/ips/). A module constant, not a live
# fetch: a policy must decide the same way offline and on every run. The program reads the live list
# (cloudflare.get_ip_ranges); should Cloudflare add a range, the pack flags it until this list (or the
# pack's `cloudflareRanges` config) is updated after review, which fails safe.
CLOUDFLARE_IPV4 = (
    "173.245.48.0/20", "103.21.244.0/22", "103.22.200.0/22", "103.31.4.0/22", "141.101.64.0/18",
    "108.162.192.0/18", "190.93.240.0/20", "188.114.96.0/20", "197.234.240.0/22", "198.41.128.0/17",
    "162.158.0.0/15", "104.16.0.0/13", "104.24.0.0/14", "172.64.0.0/13", "131.0.72.0/22",
)
CLOUDFLARE_IPV6 = (
    "2400:cb00::/32", "2606:4700::/32", "2803:f800::/32", "2405:b500::/32", "2405:8100::/32",
    "2a06:98c0::/29", "2c0f:f248::/32",
)
CLOUDFLARE_RANGES = CLOUDFLARE_IPV4 + CLOUDFLARE_IPV6

# Record types Cloudflare can proxy; every web hostname of this project is served through the proxy.
PROXIABLE_RECORD_TYPES = frozenset({"A", "AAAA", "CNAME"})

# What must never be inside user_data (the metadata service serves it to anything on the host).
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("a URL with a password", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]*:[^\s/@'\"]+@[^\s'\"]+", re.I)),
    (
        "a token or password assignment",
        re.compile(
            r"(?i)\b[\w.-]*(?:token|secret|password|passwd|api[_-]?key|encrypt)\b['\"]?\s*[:=]\s*['\"]?"
            r"(?![$/{<\[])(?!\[secret\])[A-Za-z0-9+/_.=-]{16,}"
        ),
    ),
    ("an Authorization header", re.compile(r"(?i)authorization:\s*(?:bearer|basic)\s+[A-Za-z0-9+/_.=-]{8,}")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})")),
    ("an AWS access key", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
)

Props = Mapping[str, Any]


def cluster_server_outside_eu(resource_type: str, props: Props) -> list[str]:
    if resource_type != HCLOUD_SERVER or not _is_cluster(props):
        return []
    location = props.get("location") or str(props.get("datacenter") or "").split("-")[0]
    if location in EU_LOCATIONS:
        return []
    return [
        f"cluster server is in location {location or '(none)'!r}, outside the EU; cluster servers (and the data "
        f"they hold) must run in {', '.join(sorted(EU_LOCATIONS))}"
    ]


def cluster_server_without_placement_group(resource_type: str, props: Props) -> list[str]:
    if resource_type != HCLOUD_SERVER or not _is_cluster(props):
        return []
    if props.get("placementGroupId") not in (None, "", 0):
        return []
    return [
        "cluster server has no placementGroupId: without the spread placement group two Raft peers can land "
        "on the same host and fail together; set placement_group_id"
    ]


def management_ports_open_to_world(resource_type: str, props: Props) -> list[str]:
    violations = []
    for rule in _inbound_rules(resource_type, props):
        world = [s for s in rule.sources if _is_world(s)]
        if not world:
            continue
        for service, (low, high) in MANAGEMENT_PORTS.items():
            if _overlaps(rule.ports, low, high):
                span = str(low) if low == high else f"{low}-{high}"
                violations.append(
                    f"inbound rule {rule.label} opens {service} ({span}) to {', '.join(world)}; allow only the "
                    "admin networks (iot:adminCidrs) or the cluster's private network"
                )
    return violations


def web_ports_not_cloudflare_only(
    resource_type: str, props: Props, cloudflare_ranges: Sequence[str] = CLOUDFLARE_RANGES
) -> list[str]:
    """80/443/8082 on a firewall may only admit Cloudflare's edge (every firewall here guards an app or monitor node)."""
    allowed = [ipaddress.ip_network(c, strict=False) for c in cloudflare_ranges]
    violations = []
    for rule in _inbound_rules(resource_type, props):
        ports = [p for p in WEB_PORTS if _overlaps(rule.ports, p, p)]
        if not ports:
            continue
        outside = [s for s in rule.sources if not _within_any(s, allowed)]
        if outside:
            violations.append(
                f"inbound rule {rule.label} opens {'/'.join(map(str, ports))} to {', '.join(outside)}, which is "
                "not Cloudflare; origins must accept HTTP(S) only from Cloudflare's ranges"
            )
    return violations


def proxied_hostname_not_proxied(
    resource_type: str, props: Props, unproxied_hostnames: Iterable[str] = ()
) -> list[str]:
    """Load balancers and web records must go through Cloudflare's proxy (origins only trust Cloudflare)."""
    if resource_type == CF_LOAD_BALANCER:
        if props.get("proxied") is True:
            return []
        return [f"load balancer {props.get('name')!r} is not proxied; set proxied=True"]
    if resource_type != CF_DNS_RECORD:
        return []
    record_type = str(props.get("type") or "").upper()
    name = str(props.get("name") or "")
    if record_type not in PROXIABLE_RECORD_TYPES or name in set(unproxied_hostnames):
        return []
    if props.get("proxied") is True:
        return []
    return [
        f"{record_type} record {name!r} is not proxied: the origin firewall only admits Cloudflare, so the "
        "hostname breaks (or exposes the origin); set proxied=True"
    ]


def secret_in_user_data(resource_type: str, props: Props) -> list[str]:
    texts = list(_user_data(resource_type, props))
    found = []
    for what, pattern in SECRET_PATTERNS:
        if any(pattern.search(text) for text in texts):
            found.append(what)
    if not found:
        return []
    return [
        f"user_data contains {', '.join(found)}: the metadata service serves user_data to every process on "
        "the host; push secrets over SSH (pulumi_command with stdin) instead"
    ]


# Zone settings the origins depend on: Traefik holds an Origin CA certificate (Full strict) and demands
# Cloudflare's origin-pull client certificate (tls_client_auth), so weakening either breaks or bypasses it.
REQUIRED_ZONE_SETTINGS: Mapping[str, str] = {"ssl": "strict", "tls_client_auth": "on"}


def zone_tls_weakened(resource_type: str, props: Props) -> list[str]:
    if resource_type != CF_ZONE_SETTING:
        return []
    setting, value = props.get("settingId"), props.get("value")
    required = REQUIRED_ZONE_SETTINGS.get(str(setting))
    if required is None or value == required:
        return []
    return [
        f"zone setting {setting} is {value!r}, expected {required!r}: the origins hold an Origin CA certificate "
        "and accept only Cloudflare's origin pulls (Full strict + Authenticated Origin Pulls); per-host "
        "exceptions belong in a config rule, not in the zone-wide setting"
    ]


def nomad_job_without_purge(resource_type: str, props: Props) -> list[str]:
    if resource_type != NOMAD_JOB or props.get("purgeOnDestroy") is True:
        return []
    return [
        "nomad job without purgeOnDestroy=True: a destroyed or renamed job stays registered as 'dead' and "
        "blocks re-creating it under the same ID; set purge_on_destroy=True"
    ]


# Rule name -> (description, function): the pack registers exactly these, the tests iterate them.
RULES: Mapping[str, tuple[str, Callable[..., list[str]]]] = {
    "cluster-servers-in-eu": ("App cluster servers run only in EU locations.", cluster_server_outside_eu),
    "cluster-servers-in-placement-group": (
        "App cluster servers belong to the spread placement group.",
        cluster_server_without_placement_group,
    ),
    "no-world-open-management-ports": (
        "No inbound rule opens SSH, Nomad or Consul ports to 0.0.0.0/0 or ::/0.",
        management_ports_open_to_world,
    ),
    "web-ports-from-cloudflare-only": (
        "HTTP(S) on app and monitor nodes is open to Cloudflare's ranges only.",
        web_ports_not_cloudflare_only,
    ),
    "proxied-hostnames-are-proxied": (
        "Load balancers and web DNS records go through the Cloudflare proxy.",
        proxied_hostname_not_proxied,
    ),
    "no-secrets-in-user-data": (
        "Server user_data holds no private key, token or URL with a password.",
        secret_in_user_data,
    ),
    "zone-tls-strict-with-origin-pulls": (
        "Zone SSL mode stays Full (strict) and Authenticated Origin Pulls stay on.",
        zone_tls_weakened,
    ),
    "nomad-jobs-purge-on-destroy": ("Nomad jobs are purged on destroy.", nomad_job_without_purge),
}


def evaluate(resource_type: str, props: Props, **config: Any) -> dict[str, list[str]]:
    """Every rule's violations for one resource (rules without violations are left out)."""
    results = {}
    for name, (_, rule) in RULES.items():
        kwargs = {}
        if rule is web_ports_not_cloudflare_only and "cloudflare_ranges" in config:
            kwargs["cloudflare_ranges"] = config["cloudflare_ranges"]
        if rule is proxied_hostname_not_proxied and "unproxied_hostnames" in config:
            kwargs["unproxied_hostnames"] = config["unproxied_hostnames"]
        violations = rule(resource_type, props, **kwargs)
        if violations:
            results[name] = violations
    return results


# ---------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Inbound:
    label: str
    ports: list[tuple[int, int]]
    sources: list[str]


def _is_cluster(props: Props) -> bool:
    labels = props.get("labels") or {}
    return isinstance(labels, Mapping) and labels.get("role") == CLUSTER_ROLE


def _inbound_rules(resource_type: str, props: Props) -> list[_Inbound]:
    """Inbound allow rules of an hcloud or Linode firewall, normalised to port ranges and source CIDRs."""
    rules: list[_Inbound] = []
    if resource_type == HCLOUD_FIREWALL:
        for rule in props.get("rules") or []:
            if rule.get("direction", "in") != "in" or str(rule.get("protocol", "")).lower() not in ("tcp", "udp"):
                continue
            label = f"'{rule.get('description') or rule.get('protocol')} {rule.get('port')}'"
            rules.append(_Inbound(label, _port_ranges(rule.get("port")), list(rule.get("sourceIps") or [])))
    elif resource_type == LINODE_FIREWALL:
        if str(props.get("inboundPolicy", "DROP")).upper() == "ACCEPT":
            rules.append(_Inbound("'inbound_policy ACCEPT'", [(0, 65535)], ["0.0.0.0/0", "::/0"]))
        for rule in props.get("inbounds") or []:
            if str(rule.get("action", "")).upper() != "ACCEPT":
                continue
            if str(rule.get("protocol", "")).upper() not in ("TCP", "UDP"):
                continue
            sources = list(rule.get("ipv4s") or []) + list(rule.get("ipv6s") or [])
            rules.append(_Inbound(f"'{rule.get('label')}'", _port_ranges(rule.get("ports")), sources))
    return rules


def _port_ranges(spec: Any) -> list[tuple[int, int]]:
    """'22', '8300-8302', '22, 80' or 'any'/empty (= every port) -> [(low, high), ...]."""
    text = str(spec if spec is not None else "").strip().lower()
    if text in ("", "any", "none"):
        return [(0, 65535)]
    ranges = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        ranges.append((int(low), int(high or low)))
    return ranges


def _overlaps(ranges: list[tuple[int, int]], low: int, high: int) -> bool:
    return any(a <= high and low <= b for a, b in ranges)


def _is_world(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def _within_any(cidr: str, allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False  # not even an address: certainly not Cloudflare
    return any(network.version == a.version and network.subnet_of(a) for a in allowed)  # type: ignore[arg-type]


def _user_data(resource_type: str, props: Props) -> Iterable[str]:
    if resource_type == HCLOUD_SERVER:
        value = props.get("userData")
        if isinstance(value, str):
            yield value
    elif resource_type == LINODE_INSTANCE:
        # Linode metadata user_data is base64; scan the decoded text as well as the raw value.
        for item in props.get("metadatas") or []:
            value = item.get("userData") if isinstance(item, Mapping) else None
            if isinstance(value, str):
                yield value
                decoded = _base64_text(value)
                if decoded is not None:
                    yield decoded


def _base64_text(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
