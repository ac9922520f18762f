"""Typed, validated stack configuration (DESIGN §4.2).

`parse_stack_config` is pure: it turns the raw `iot:*` values into a frozen dataclass tree and
raises `ConfigError` (naming the key, the bad value and the fix) before any resource exists.
`load_stack_config` is the only reader of `pulumi.Config` in the program.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from components.stack_collisions import collisions, committed_stacks, footprint, lenient_footprint

NAMESPACE = "iot"

# Hetzner location -> network zone (DESIGN §4.1). A private Network cannot span zones.
HETZNER_LOCATIONS: dict[str, str] = {
    "fsn1": "eu-central",
    "nbg1": "eu-central",
    "hel1": "eu-central",
    "ash": "us-east",
    "hil": "us-west",
    "sin": "ap-southeast",
}
EU_LOCATIONS: frozenset[str] = frozenset(loc for loc, zone in HETZNER_LOCATIONS.items() if zone == "eu-central")

# Linode (Akamai) regions that serve cloud-init metadata, with their city, for error messages.
LINODE_REGIONS: dict[str, str] = {
    "jp-tyo-3": "Tokyo",
    "jp-osa": "Osaka",
    "ap-northeast": "Tokyo 2",
    "sg-sin-2": "Singapore 2",
    "ap-south": "Singapore",
    "ap-southeast": "Sydney",
    "au-mel": "Melbourne",
    "ap-west": "Mumbai",
    "in-bom-2": "Mumbai 2",
    "in-maa": "Chennai",
    "id-cgk": "Jakarta",
    "us-east": "Newark",
    "us-iad": "Washington",
    "us-ord": "Chicago",
    "us-central": "Dallas",
    "us-southeast": "Atlanta",
    "us-mia": "Miami",
    "us-west": "Fremont",
    "us-lax": "Los Angeles",
    "us-sea": "Seattle",
    "ca-central": "Toronto",
    "br-gru": "Sao Paulo",
    "eu-west": "London",
    "gb-lon": "London 2",
    "eu-central": "Frankfurt",
    "de-fra-2": "Frankfurt 2",
    "fr-par": "Paris",
    "nl-ams": "Amsterdam",
    "se-sto": "Stockholm",
    "es-mad": "Madrid",
    "it-mil": "Milan",
}

# Places people ask for that Hetzner does not serve, and where Linode does.
LINODE_HINTS: dict[str, str] = {
    "tokyo": "jp-tyo-3",
    "osaka": "jp-osa",
    "japan": "jp-tyo-3",
    "jp": "jp-tyo-3",
    "jp-tyo-3": "jp-tyo-3",
    "jp-osa": "jp-osa",
    "ap-northeast": "ap-northeast",
}

PROVIDERS = ("hetzner", "linode")
DEFAULT_MONITOR_SERVER_TYPE = {"hetzner": "cpx12", "linode": "g6-nanode-1"}
DEFAULT_MONITOR_IMAGE = {"hetzner": "debian-12", "linode": "linode/debian12"}
# Hetzner families sold only in EU locations (cx23..cx53, cax*).
EU_ONLY_SERVER_TYPE_PREFIXES = ("cx", "cax")
DEPRECATED_SERVER_TYPES = frozenset({"cx11", "cx21", "cx22", "cx31", "cx32", "cx41", "cx42", "cx51", "cx52",
                                     "cpx11", "cpx21", "cpx31", "cpx41", "cpx51"})

# Same list as apps/iot/names.py RESERVED_NAMES (a test keeps them in sync).
RESERVED_NAMES = frozenset({"www", "docs", "tracker", "collect", "worker", "api", "admin", "status"})

SERVICE_NAMES = ("tracker", "worker", "dashboard", "marketing", "docs")
DEFAULT_SERVICES: dict[str, dict[str, int]] = {
    "tracker": {"count": 2, "cpu": 500, "memory": 256},
    "worker": {"count": 2, "cpu": 500, "memory": 256},
    "dashboard": {"count": 2, "cpu": 300, "memory": 256},
    "marketing": {"count": 2, "cpu": 100, "memory": 64},
    "docs": {"count": 2, "cpu": 100, "memory": 64},
}
# Per-instance bounds of a Nomad job (count, cpu in MHz, memory in MB): typos like `memory: 25600000`
# or `count: 0` are refused instead of becoming a job Nomad can never place (or a silent outage).
SERVICE_BOUNDS: dict[str, tuple[int, int, str]] = {
    "count": (1, 20, ""),
    "cpu": (20, 8000, " MHz"),
    "memory": (32, 8192, " MB"),
}
DEFAULT_VERSIONS = {"consul": "1.22.7", "nomad": "2.0.7", "traefik": "v3.6.25", "cni": "1.6.2"}
DEFAULT_IMAGES = {
    "app": "ghcr.io/my-iot-app/iot",
    "marketing": "ghcr.io/my-iot-app/marketing",
    "docs": "ghcr.io/my-iot-app/docs",
}
STEERING_POLICIES = ("off", "geo", "random", "dynamic_latency", "proximity",
                     "least_outstanding_requests", "least_connections")
CHECK_REGIONS = ("WNAM", "ENAM", "WEU", "EEU", "NSAM", "SSAM", "OC", "ME", "NAF", "SAF", "SAS", "SEAS",
                 "NEAS", "ALL_REGIONS")
SECRET_KEYS = ("databaseUrl", "redisUrl")
OPTIONAL_SECRET_KEYS = ("registry", "smtp")
REGISTRY_EXAMPLE = '{"server": "ghcr.io", "username": "<user>", "password": "<token with read:packages>"}'
SMTP_EXAMPLE = ('{"host": "smtp.example.com", "port": 587, "security": "starttls", "username": "<login>", '
                '"password": "<password>", "from": "my-iot-app <alerts@example.com>"}')
SMTP_SECURITY = ("starttls", "tls", "none")

_LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_SEMVER_RE = re.compile(r"^\d+\.\d+\.\d+$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_IMAGE_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+"
                       r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$")
_DIGEST_SUFFIX_RE = re.compile(r"@sha256:[a-f0-9]{64}$")
_CF_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_REGISTRY_HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$")
_SECRET_SCHEMES = {"databaseUrl": ("postgresql://", "postgres://"), "redisUrl": ("redis://", "rediss://")}


class ConfigError(ValueError):
    """A stack configuration value is invalid; the message names the key, the value and the fix."""


@dataclass(frozen=True)
class ClusterNodeConfig:
    """One app node. `id` is its stable identity: name and private IP derive from it, never from
    the node's position in the list, so reordering or removing another entry leaves it alone."""

    id: int
    location: str


@dataclass(frozen=True)
class ClusterConfig:
    server_type: str
    image: str
    nodes: tuple[ClusterNodeConfig, ...]  # sorted by id

    @property
    def locations(self) -> tuple[str, ...]:
        """Every node's location, in id order (one entry per node)."""
        return tuple(node.location for node in self.nodes)


@dataclass(frozen=True)
class MonitorConfig:
    name: str
    provider: str
    location: str
    server_type: str
    image: str


@dataclass(frozen=True)
class Versions:
    consul: str
    nomad: str
    traefik: str
    cni: str


@dataclass(frozen=True)
class Images:
    app: str
    marketing: str
    docs: str
    tag: str

    def ref(self, kind: str) -> str:
        """Full image reference for `kind` (app, marketing, docs); a pinned reference is kept as is."""
        if kind not in DEFAULT_IMAGES:
            raise ConfigError(f"unknown image kind {kind!r}; use one of {', '.join(DEFAULT_IMAGES)}")
        image = getattr(self, kind)
        return image if _has_tag_or_digest(image) else f"{image}:{self.tag}"

    def by_digest(self, kind: str) -> bool:
        """True when `kind` resolves to an immutable `@sha256:` reference (what a protected stack requires)."""
        return bool(_DIGEST_SUFFIX_RE.search(self.ref(kind)))


@dataclass(frozen=True)
class ServiceConfig:
    count: int
    cpu: int
    memory: int


@dataclass(frozen=True)
class EdgeConfig:
    load_balancer: bool
    steering_policy: str
    check_regions: tuple[str, ...]


@dataclass(frozen=True)
class CloudflareConfig:
    account_id: str
    zone_id: str
    # This stack manages the zone-wide singletons (SSL mode, Authenticated Origin Pulls, entry-point
    # rulesets). Exactly one stack per zone may; see components/stack_collisions.py.
    owns_zone: bool = True


@dataclass(frozen=True)
class RegistryConfig:
    """Credentials for pulling private images (iot:registry); the password is a secret Output."""

    server: str
    username: str
    password: pulumi.Output[str]


@dataclass(frozen=True)
class SmtpConfig:
    """The deployment's SMTP relay (iot:smtp): e-mail channels, invitations, password resets. The whole
    object is a secret (it holds the password), so every field reaches the apps as a Nomad Variable."""

    host: str
    port: int
    security: str
    username: str
    password: pulumi.Output[str]
    sender: str


@dataclass(frozen=True)
class StackConfig:
    stack: str
    domain: str
    admin_cidrs: tuple[str, ...]
    cluster: ClusterConfig
    monitors: tuple[MonitorConfig, ...]
    versions: Versions
    images: Images
    services: Mapping[str, ServiceConfig]
    edge: EdgeConfig
    cloudflare: CloudflareConfig
    protect: bool
    ssh_user: str
    database_url: pulumi.Output[str]
    redis_url: pulumi.Output[str]
    registry: RegistryConfig | None = None
    smtp: SmtpConfig | None = None

    @property
    def monitor_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.monitors)


def _has_tag_or_digest(image: str) -> bool:
    return "@" in image or ":" in image.rsplit("/", 1)[-1]


def _key(key: str) -> str:
    return f"{NAMESPACE}:{key}"


def _mapping(raw: object, key: str, example: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{_key(key)} must be an object, got {raw!r}; example: {example}")
    return raw


def _sequence(raw: object, key: str, example: str) -> Sequence[Any]:
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
        raise ConfigError(f"{_key(key)} must be a list, got {raw!r}; example: {example}")
    return raw


def _string(raw: object, key: str, fix: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{_key(key)} must be a non-empty string, got {raw!r}; {fix}")
    return raw.strip()


def _bool(raw: object, key: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ConfigError(f"{_key(key)} must be true or false, got {raw!r}; set `pulumi config set {_key(key)} true`")


def _integer(raw: object, key: str, expected: str) -> int:
    """`raw` as an int (YAML ints or digit strings from the CLI), or a ConfigError saying what is `expected`."""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ConfigError(f"{_key(key)} must be an integer {expected}, got {raw!r}")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{_key(key)} must be an integer {expected}, got {raw!r}") from None


def _int(raw: object, key: str, minimum: int) -> int:
    value = _integer(raw, key, f">= {minimum}")
    if value < minimum:
        raise ConfigError(f"{_key(key)} must be >= {minimum}, got {value}; raise it to at least {minimum}")
    return value


def _bounded_int(raw: object, key: str, low: int, high: int, unit: str = "") -> int:
    value = _integer(raw, key, f"between {low} and {high}{unit}")
    if not low <= value <= high:
        raise ConfigError(
            f"{_key(key)} is {value}{unit}; it must be between {low} and {high}{unit} per instance "
            "(scale out with count rather than one huge instance)"
        )
    return value


def _nearest(name: str, allowed: Sequence[str]) -> str:
    """'did you mean iot:X?' for the closest allowed key (case-insensitive), or '' when none is close."""
    lowered = {a.lower(): a for a in allowed}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean {_key(lowered[match[0]])}?" if match else ""


def _unknown_fields(raw: Mapping[str, Any], key: str, allowed: Sequence[str]) -> None:
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{_key(key)} has unknown field(s) {', '.join(unknown)}; allowed fields: {', '.join(allowed)}"
        )


def _domain(raw: object) -> str:
    domain = _string(raw, "domain", "example: my-iot-app.com").lower()
    if not _DOMAIN_RE.match(domain):
        raise ConfigError(f"iot:domain {domain!r} is not a valid domain name; use e.g. my-iot-app.com")
    return domain


def _admin_cidrs(raw: object) -> tuple[str, ...]:
    example = '["198.51.100.7/32"]'
    items = _sequence(raw, "adminCidrs", example)
    if not items:
        raise ConfigError(f"iot:adminCidrs is empty; list the networks that may reach SSH and Nomad, e.g. {example}")
    cidrs = []
    for i, item in enumerate(items):
        key = f"adminCidrs[{i}]"
        text = _string(item, key, f"example: {example}")
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            hint = ""
            try:
                hint = f"; did you mean {ipaddress.ip_network(text, strict=False)}?"
            except ValueError:
                hint = "; write an address with a prefix length, e.g. 198.51.100.7/32"
            raise ConfigError(f"iot:{key} {text!r} is not a valid CIDR ({exc}){hint}") from None
        if network.prefixlen == 0:
            raise ConfigError(
                f"iot:{key} {text!r} opens SSH and the Nomad API to the whole internet; "
                "list your own address instead, e.g. 198.51.100.7/32"
            )
        cidrs.append(str(network))
    return tuple(cidrs)


def _check_server_type(server_type: str, location: str, key: str) -> None:
    if server_type in DEPRECATED_SERVER_TYPES:
        raise ConfigError(
            f"{_key(key)} {server_type!r} is a deprecated Hetzner server type; use cx23/cx33 (EU) or cpx12/cpx22"
        )
    if location not in EU_LOCATIONS and server_type.startswith(EU_ONLY_SERVER_TYPE_PREFIXES):
        raise ConfigError(
            f"{_key(key)} {server_type!r} is sold only in EU locations, not in {location!r}; "
            "use a cpx type such as cpx12 or cpx22"
        )


MAX_NODE_ID = 200  # private IPs 10.0.1.11 .. 10.0.1.210 (components/cluster.py)
CLUSTER_EXAMPLE = "{serverType: cx23, image: debian-12, nodes: [{id: 1, location: fsn1}]}"


def _locations_migration(raw: object) -> ConfigError:
    """The old `locations` list gave nodes their identity by position: say exactly what to write instead."""
    locations = list(raw) if isinstance(raw, Sequence) and not isinstance(raw, str | bytes) else []
    nodes = ", ".join(f"{{id: {i + 1}, location: {loc}}}" for i, loc in enumerate(locations)) or "{id: 1, location: fsn1}"
    return ConfigError(
        "iot:cluster.locations is no longer supported: a node's name and private IP came from its position in "
        "that list, so removing or reordering an entry renamed and re-addressed live Raft servers. Replace it with "
        f"`nodes: [{nodes}]`; these ids keep your existing servers (name iot-<stack>-<id>-<location>, private IP "
        "10.0.1.<10+id>), and a new node takes an id no node has used before"
    )


def _cluster_node(raw: object, i: int, server_type: str) -> ClusterNodeConfig:
    key = f"cluster.nodes[{i}]"
    data = _mapping(raw, key, "{id: 1, location: fsn1}")
    _unknown_fields(data, key, ("id", "location"))
    node_id = _int(data.get("id"), f"{key}.id", 1)
    if node_id > MAX_NODE_ID:
        raise ConfigError(
            f"iot:{key}.id {node_id} is above {MAX_NODE_ID}; ids name nodes and pick their private IP "
            f"(10.0.1.<10+id>): use a number from 1 to {MAX_NODE_ID}"
        )
    loc = _string(data.get("location"), f"{key}.location", "use fsn1, nbg1 or hel1")
    if loc not in HETZNER_LOCATIONS:
        raise ConfigError(
            f"iot:{key}.location {loc!r} is not a Hetzner location; use one of {', '.join(sorted(EU_LOCATIONS))}"
        )
    if loc not in EU_LOCATIONS:
        raise ConfigError(
            f"iot:{key}.location {loc!r} is in network zone {HETZNER_LOCATIONS[loc]}, outside the EU; the private "
            f"network lives in eu-central: use one of {', '.join(sorted(EU_LOCATIONS))}"
        )
    _check_server_type(server_type, loc, "cluster.serverType")
    return ClusterNodeConfig(id=node_id, location=loc)


def _cluster(raw: object) -> ClusterConfig:
    data = _mapping(raw, "cluster", CLUSTER_EXAMPLE)
    if "locations" in data:
        raise _locations_migration(data["locations"])
    _unknown_fields(data, "cluster", ("serverType", "image", "nodes"))
    server_type = _string(data.get("serverType", "cx23"), "cluster.serverType", "example: cx23")
    image = _string(data.get("image", "debian-12"), "cluster.image", "example: debian-12")
    items = _sequence(data.get("nodes"), "cluster.nodes", "[{id: 1, location: fsn1}]")
    if len(items) % 2 == 0:
        raise ConfigError(
            f"iot:cluster.nodes has {len(items)} entries; Consul and Nomad need an odd number of "
            "servers for a quorum: use 1, 3 or 5 nodes, e.g. "
            "[{id: 1, location: fsn1}, {id: 2, location: nbg1}, {id: 3, location: hel1}]"
        )
    nodes = [_cluster_node(item, i, server_type) for i, item in enumerate(items)]
    seen: dict[int, int] = {}
    for i, node in enumerate(nodes):
        if node.id in seen:
            raise ConfigError(
                f"iot:cluster.nodes[{i}].id {node.id} duplicates iot:cluster.nodes[{seen[node.id]}]; each node "
                f"needs its own id (it names the server and picks its private IP): use {max(seen) + 1}"
            )
        seen[node.id] = i
    return ClusterConfig(server_type=server_type, image=image, nodes=tuple(sorted(nodes, key=lambda n: n.id)))


def _monitor(raw: object, i: int) -> MonitorConfig:
    key = f"monitors[{i}]"
    example = "{name: frankfurt, provider: hetzner, location: fsn1, serverType: cpx12}"
    data = _mapping(raw, key, example)
    _unknown_fields(data, key, ("name", "provider", "location", "serverType", "image"))
    name = _string(data.get("name"), f"{key}.name", "use a lowercase city name such as frankfurt")
    if not _LABEL_RE.match(name):
        raise ConfigError(
            f"iot:{key}.name {name!r} must be one DNS label (lowercase letters, digits, '-'): it becomes "
            f"the hostname <name>.<domain>; e.g. frankfurt"
        )
    if name in RESERVED_NAMES:
        raise ConfigError(
            f"iot:{key}.name {name!r} is a reserved hostname ({', '.join(sorted(RESERVED_NAMES))}); "
            "name the monitor after its city, e.g. frankfurt"
        )
    provider = _string(data.get("provider", "hetzner"), f"{key}.provider", "use hetzner or linode")
    if provider not in PROVIDERS:
        raise ConfigError(f"iot:{key}.provider {provider!r} is unknown; use one of {', '.join(PROVIDERS)}")
    location = _string(data.get("location"), f"{key}.location", "e.g. fsn1 (hetzner) or jp-tyo-3 (linode)")
    if provider == "hetzner" and location not in HETZNER_LOCATIONS:
        hint = LINODE_HINTS.get(location.lower())
        if hint or location in LINODE_REGIONS:
            raise ConfigError(
                f"iot:{key}.location {location!r} is not a Hetzner location (Hetzner has no Japan region); "
                f"use provider: linode with location: jp-tyo-3 (Tokyo) or jp-osa (Osaka)"
            )
        raise ConfigError(
            f"iot:{key}.location {location!r} is not a Hetzner location; use one of "
            f"{', '.join(HETZNER_LOCATIONS)}, or provider: linode for other places (e.g. jp-tyo-3 for Tokyo)"
        )
    if provider == "linode" and location not in LINODE_REGIONS:
        hint = LINODE_HINTS.get(location.lower())
        fix = f"did you mean {hint}?" if hint else f"use one of {', '.join(sorted(LINODE_REGIONS))}"
        raise ConfigError(f"iot:{key}.location {location!r} is not a Linode region; {fix}")
    server_type = _string(
        data.get("serverType", DEFAULT_MONITOR_SERVER_TYPE[provider]), f"{key}.serverType", "e.g. cpx12"
    )
    if provider == "hetzner":
        _check_server_type(server_type, location, f"{key}.serverType")
    elif not server_type.startswith("g"):
        raise ConfigError(
            f"iot:{key}.serverType {server_type!r} is not a Linode plan; use e.g. g6-nanode-1"
        )
    image = _string(data.get("image", DEFAULT_MONITOR_IMAGE[provider]), f"{key}.image", "e.g. debian-12")
    if (provider == "linode") != image.startswith("linode/"):
        raise ConfigError(
            f"iot:{key}.image {image!r} is not a {provider} image; use {DEFAULT_MONITOR_IMAGE[provider]} "
            "(or leave image out for the provider default)"
        )
    return MonitorConfig(name=name, provider=provider, location=location, server_type=server_type, image=image)


def _monitors(raw: object) -> tuple[MonitorConfig, ...]:
    items = _sequence(raw if raw is not None else [], "monitors", "[{name: frankfurt, location: fsn1}]")
    monitors = tuple(_monitor(item, i) for i, item in enumerate(items))
    seen: dict[str, int] = {}
    for i, monitor in enumerate(monitors):
        if monitor.name in seen:
            raise ConfigError(
                f"iot:monitors[{i}].name {monitor.name!r} duplicates iot:monitors[{seen[monitor.name]}]; "
                "each monitor name is a hostname and must be unique"
            )
        seen[monitor.name] = i
    return monitors


def _versions(raw: object) -> Versions:
    data = _mapping(raw if raw is not None else {}, "versions", '{consul: "1.22.7", nomad: "2.0.7"}')
    _unknown_fields(data, "versions", tuple(DEFAULT_VERSIONS))
    values = {name: str(data.get(name, default)).strip() for name, default in DEFAULT_VERSIONS.items()}
    for name, value in values.items():
        plain = value[1:] if name == "traefik" and value.startswith("v") else value
        if name == "traefik" and "@" in plain:
            # The Traefik image may also be pinned by digest: `v3.6.x@sha256:<digest>`.
            plain, _, digest = plain.partition("@")
            if not _DIGEST_SUFFIX_RE.fullmatch("@" + digest):
                raise ConfigError(
                    f"iot:versions.traefik {value!r} has a malformed digest; use v<x.y.z>@sha256:<64 hex digits>"
                )
        if not _SEMVER_RE.match(plain):
            example = "v" + DEFAULT_VERSIONS[name].lstrip("v") if name == "traefik" else DEFAULT_VERSIONS[name]
            raise ConfigError(
                f"iot:versions.{name} {value!r} is not an exact version; pin one such as {example!r}"
            )
    if not values["traefik"].startswith("v3."):
        raise ConfigError(
            f"iot:versions.traefik {values['traefik']!r} is not Traefik v3; the job uses v3 rule syntax: "
            f"pin e.g. {DEFAULT_VERSIONS['traefik']!r}"
        )
    return Versions(**values)


def _images(raw: object, tag: object) -> Images:
    data = _mapping(raw if raw is not None else {}, "images", "{app: ghcr.io/my-iot-app/iot}")
    _unknown_fields(data, "images", tuple(DEFAULT_IMAGES))
    tag_text = _string(tag if tag is not None else "latest", "imageTag", "e.g. latest or a commit SHA")
    if not _TAG_RE.match(tag_text):
        raise ConfigError(
            f"iot:imageTag {tag_text!r} is not a valid image tag; use letters, digits, '.', '_' or '-'"
        )
    values = {}
    for kind, default in DEFAULT_IMAGES.items():
        ref = _string(data.get(kind, default), f"images.{kind}", f"e.g. {default}")
        if "@" in ref and not _DIGEST_SUFFIX_RE.search(ref):
            raise ConfigError(
                f"iot:images.{kind} {ref!r} has a malformed digest; use <registry/name>@sha256:<64 hex digits>, "
                f"e.g. {default}@sha256:{'0' * 64} (the images workflow prints each digest it pushed)"
            )
        if not _IMAGE_RE.match(ref):
            raise ConfigError(
                f"iot:images.{kind} {ref!r} is not an image reference; use registry/name[:tag][@sha256:<digest>], "
                f"e.g. {default}"
            )
        values[kind] = ref
    return Images(tag=tag_text, **values)


def repository_of(image: str) -> str:
    """`ghcr.io/x/iot:1.2@sha256:..` -> `ghcr.io/x/iot` (a registry port is not a tag)."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else name


def _require_digests(images: Images, tag_set: bool) -> None:
    """A protected stack runs exactly what a reviewed commit built: every app image by digest."""
    for kind in DEFAULT_IMAGES:
        if images.by_digest(kind):
            continue
        image = getattr(images, kind)
        fix = (f"pass the digest the images workflow built from the same commit, e.g. `python -m deploy up "
               f"--config iot:images.{kind}={repository_of(image)}@sha256:<digest>` (the deploy workflow does "
               f"this), or `pulumi config set --path iot:images.{kind} <name>@sha256:<digest>`")
        if not _has_tag_or_digest(image) and images.tag == "latest":
            where = "iot:imageTag" if tag_set else "iot:imageTag (default)"
            raise ConfigError(
                f"{where} 'latest' is a moving tag and iot:protect is true: two nodes could run different code "
                f"and a redeploy is not reproducible; {fix}"
            )
        raise ConfigError(
            f"iot:images.{kind} resolves to {images.ref(kind)!r}, a tag that can be moved; iot:protect is true, "
            f"so images are deployed by digest only: {fix}"
        )


def _services(raw: object) -> dict[str, ServiceConfig]:
    data = _mapping(raw if raw is not None else {}, "services", "{tracker: {count: 2}}")
    unknown = sorted(set(data) - set(SERVICE_NAMES))
    if unknown:
        raise ConfigError(
            f"iot:services has unknown service(s) {', '.join(unknown)}; services are {', '.join(SERVICE_NAMES)}"
        )
    services = {}
    for name in SERVICE_NAMES:
        key = f"services.{name}"
        given = _mapping(data.get(name, {}), key, "{count: 2, cpu: 500, memory: 256}")
        _unknown_fields(given, key, ("count", "cpu", "memory"))
        merged = {**DEFAULT_SERVICES[name], **given}
        services[name] = ServiceConfig(**{
            field: _bounded_int(merged[field], f"{key}.{field}", low, high, unit)
            for field, (low, high, unit) in SERVICE_BOUNDS.items()
        })
    return services


def _edge(raw: object) -> EdgeConfig:
    data = _mapping(raw if raw is not None else {}, "edge", "{loadBalancer: false}")
    _unknown_fields(data, "edge", ("loadBalancer", "steeringPolicy", "checkRegions"))
    policy = _string(data.get("steeringPolicy", "dynamic_latency"), "edge.steeringPolicy", "e.g. dynamic_latency")
    if policy not in STEERING_POLICIES:
        raise ConfigError(
            f"iot:edge.steeringPolicy {policy!r} is not a Cloudflare steering policy; "
            f"use one of {', '.join(STEERING_POLICIES)}"
        )
    regions = _sequence(data.get("checkRegions", ["WEU", "EEU"]), "edge.checkRegions", "[WEU, EEU]")
    for i, region in enumerate(regions):
        if region not in CHECK_REGIONS:
            raise ConfigError(
                f"iot:edge.checkRegions[{i}] {region!r} is not a Cloudflare check region; "
                f"use one of {', '.join(CHECK_REGIONS)}"
            )
    if not regions:
        raise ConfigError("iot:edge.checkRegions is empty; list at least one region, e.g. [WEU, EEU]")
    return EdgeConfig(
        load_balancer=_bool(data.get("loadBalancer", False), "edge.loadBalancer"),
        steering_policy=policy,
        check_regions=tuple(regions),
    )


def _cloudflare(raw: object) -> CloudflareConfig:
    example = "{accountId: <32 hex chars>, zoneId: <32 hex chars>, ownsZone: true}"
    data = _mapping(raw, "cloudflare", example)
    _unknown_fields(data, "cloudflare", ("accountId", "zoneId", "ownsZone"))
    ids = {}
    for field in ("accountId", "zoneId"):
        value = _string(data.get(field), f"cloudflare.{field}", "copy it from the Cloudflare dashboard")
        if not _CF_ID_RE.match(value):
            raise ConfigError(
                f"iot:cloudflare.{field} {value!r} is not a Cloudflare id (32 lowercase hex characters); "
                "copy it from the zone's Overview page in the Cloudflare dashboard"
            )
        ids[field] = value
    return CloudflareConfig(
        account_id=ids["accountId"], zone_id=ids["zoneId"],
        owns_zone=_bool(data.get("ownsZone", True), "cloudflare.ownsZone"),
    )


def _secret(secrets: Mapping[str, object], key: str) -> pulumi.Output[str]:
    value = secrets.get(key)
    if isinstance(value, pulumi.Output):
        return pulumi.Output.secret(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"iot:{key} is missing; set it with `pulumi config set --secret {_key(key)} <value>`"
        )
    if not value.startswith(_SECRET_SCHEMES[key]):
        # Never echo the value: it carries a password.
        raise ConfigError(
            f"iot:{key} does not start with {' or '.join(_SECRET_SCHEMES[key])}; set a full URL with "
            f"`pulumi config set --secret {_key(key)} <url>`"
        )
    return pulumi.Output.secret(value)


def _registry(value: object) -> RegistryConfig | None:
    """iot:registry: a JSON object {server, username, password}; the password is never echoed."""
    if value is None:
        return None
    fix = f"set it with `pulumi config set --secret iot:registry '{REGISTRY_EXAMPLE}'`"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, Mapping):
        raise ConfigError(f"iot:registry must be a JSON object with server, username and password; {fix}")
    unknown = sorted(set(value) - {"server", "username", "password"})
    if unknown:
        raise ConfigError(f"iot:registry has unknown field(s) {', '.join(unknown)}; allowed fields: server, "
                          f"username, password; {fix}")
    for field in ("server", "username", "password"):
        if not isinstance(value.get(field), str) or not value[field].strip():
            raise ConfigError(f"iot:registry.{field} is missing; {fix}")
    server = value["server"].strip().lower()
    if not _REGISTRY_HOST_RE.match(server):
        raise ConfigError(f"iot:registry.server {value['server']!r} is not a registry host; use the host name "
                          f"only, e.g. ghcr.io (no scheme, no path); {fix}")
    return RegistryConfig(server=server, username=value["username"].strip(),
                          password=pulumi.Output.secret(value["password"]))


def _smtp(value: object) -> SmtpConfig | None:
    """iot:smtp: a JSON object {host, port, security, username, password, from}; the password is never echoed."""
    if value is None:
        return None
    fix = f"set it with `pulumi config set --secret iot:smtp '{SMTP_EXAMPLE}'`"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, Mapping):
        raise ConfigError(f"iot:smtp must be a JSON object with host, port, security, username, password and from; {fix}")
    allowed = ("host", "port", "security", "username", "password", "from")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(f"iot:smtp has unknown field(s) {', '.join(unknown)}; allowed fields: "
                          f"{', '.join(allowed)}; {fix}")
    host = value.get("host")
    if not isinstance(host, str) or not _REGISTRY_HOST_RE.match(host.strip().lower()) or ":" in host:
        raise ConfigError(f"iot:smtp.host {host!r} is not a host name; give the relay's name only, e.g. "
                          f"smtp.example.com (the port goes in port); {fix}")
    port = value.get("port", 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"iot:smtp.port {port!r} is not a port; use 587 (starttls), 465 (tls) or 25; {fix}")
    security = value.get("security", "starttls")
    if security not in SMTP_SECURITY:
        raise ConfigError(f"iot:smtp.security {security!r} is not one of {', '.join(SMTP_SECURITY)}; {fix}")
    username, password = value.get("username", ""), value.get("password", "")
    if (not isinstance(username, str) or not isinstance(password, str) or bool(username) != bool(password)
            or not (username + password).isprintable()):
        raise ConfigError(f"iot:smtp.username and iot:smtp.password go together (printable strings, both set or "
                          f"both empty for a relay without login); {fix}")
    sender = value.get("from")
    if not isinstance(sender, str) or "@" not in sender or any(c in sender for c in "\r\n"):
        raise ConfigError(f"iot:smtp.from {sender!r} is not a From: address; use e.g. "
                          f"'my-iot-app <alerts@example.com>'; {fix}")
    return SmtpConfig(host=host.strip().lower(), port=port, security=security, username=username,
                      password=pulumi.Output.secret(password), sender=sender)


TOP_LEVEL_KEYS = ("domain", "adminCidrs", "cluster", "monitors", "versions", "images", "imageTag", "services",
                  "edge", "cloudflare", "protect", "sshUser", *SECRET_KEYS)


def parse_stack_config(
    raw: Mapping[str, object],
    stack: str,
    secrets: Mapping[str, object],
    other_stacks: Mapping[str, Mapping[str, Any]] | None = None,
) -> StackConfig:
    """Validate raw `iot:*` values (keys without the namespace) into a StackConfig, or raise ConfigError.

    `other_stacks`: raw values of the project's other stacks (by name): this stack must not collide with
    them in Cloudflare (shared zone singletons, overlapping names).
    """
    if "registry" in raw:
        raise ConfigError(
            "iot:registry holds credentials and is stored in plain text; remove it from the stack file and "
            f"set it with `pulumi config set --secret iot:registry '{REGISTRY_EXAMPLE}'`"
        )
    if "smtp" in raw:
        raise ConfigError(
            "iot:smtp holds the relay's password and is stored in plain text; remove it from the stack file and "
            f"set it with `pulumi config set --secret iot:smtp '{SMTP_EXAMPLE}'`"
        )
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        described = []
        for key in unknown:
            hint = _nearest(key, TOP_LEVEL_KEYS)
            described.append(f"{_key(key)} ({hint})" if hint else _key(key))
        raise ConfigError(
            f"unknown configuration key(s) {', '.join(described)}; "
            f"known keys: {', '.join(_key(k) for k in sorted(TOP_LEVEL_KEYS))}"
        )
    if "cluster" not in raw:
        raise ConfigError(f"iot:cluster is missing; add e.g. `iot:cluster: {CLUSTER_EXAMPLE}`")
    ssh_user = _string(raw.get("sshUser", "root"), "sshUser", "e.g. root")
    if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", ssh_user):
        raise ConfigError(f"iot:sshUser {ssh_user!r} is not a valid Unix user name; use e.g. root")
    monitors = _monitors(raw.get("monitors"))
    images = _images(raw.get("images"), raw.get("imageTag"))
    protect = _bool(raw.get("protect", False), "protect")
    if protect:
        _require_digests(images, tag_set="imageTag" in raw)
    config = StackConfig(
        stack=stack,
        domain=_domain(raw.get("domain")),
        admin_cidrs=_admin_cidrs(raw.get("adminCidrs")),
        cluster=_cluster(raw["cluster"]),
        monitors=monitors,
        versions=_versions(raw.get("versions")),
        images=images,
        services=_services(raw.get("services")),
        edge=_edge(raw.get("edge")),
        cloudflare=_cloudflare(raw.get("cloudflare")),
        protect=protect,
        ssh_user=ssh_user,
        database_url=_secret(secrets, "databaseUrl"),
        redis_url=_secret(secrets, "redisUrl"),
        registry=_registry(secrets.get("registry")),
        smtp=_smtp(secrets.get("smtp")),
    )
    _check_collisions(config, other_stacks or {})
    return config


def _check_collisions(config: StackConfig, other_stacks: Mapping[str, Mapping[str, Any]]) -> None:
    own = footprint(config.stack, config.domain, config.cloudflare.zone_id, config.cloudflare.owns_zone,
                    list(config.monitor_names))
    others = [f for name, raw in other_stacks.items() if (f := lenient_footprint(name, raw)) is not None]
    problems = collisions(own, others)
    if problems:
        raise ConfigError("; and ".join(problems))


STRUCTURED_KEYS = ("adminCidrs", "cluster", "monitors", "versions", "images", "services", "edge", "cloudflare")
SCALAR_KEYS = ("domain", "imageTag", "protect", "sshUser")


PROJECT_DIR = Path(__file__).resolve().parent.parent


def _configured_keys() -> set[str]:
    """Every config key the engine handed the program (explicit config and the PULUMI_CONFIG bag)."""
    from pulumi.runtime import config as runtime_config

    return set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())


def load_stack_config(project_dir: Path = PROJECT_DIR) -> StackConfig:
    """Read every `iot:*` key from the stack (the only pulumi.Config reader) and validate it."""
    config = pulumi.Config(NAMESPACE)
    raw: dict[str, object] = {}
    for key in STRUCTURED_KEYS:
        value = config.get_object(key)
        if value is not None:
            raw[key] = value
    for key in SCALAR_KEYS:
        value = config.get(key)
        if value is not None:
            raw[key] = value
    # Keys nobody reads would be silently ignored (`iot:edgee`): hand them to the validator.
    prefix = f"{NAMESPACE}:"
    for full_key in _configured_keys():
        key = full_key[len(prefix):] if full_key.startswith(prefix) else None
        if key and key not in TOP_LEVEL_KEYS and key not in OPTIONAL_SECRET_KEYS:  # secrets: read below
            raw[key] = config.get(key)
    secrets: dict[str, object] = {}
    # Which keys the stack stores encrypted: from the runtime, or the env the CLI hands the program.
    secret_keys = set(pulumi.runtime.get_config_secret_keys_env())
    secret_keys |= {_key(k) for k in (*SECRET_KEYS, *OPTIONAL_SECRET_KEYS) if pulumi.runtime.is_config_secret(_key(k))}
    for key in (*SECRET_KEYS, *OPTIONAL_SECRET_KEYS):
        value = config.get(key)
        # With no secret-key information at all we cannot tell, so only a known plaintext key fails.
        if value is not None and secret_keys and _key(key) not in secret_keys:
            raise ConfigError(
                f"iot:{key} is stored in plain text in the stack file; remove it and set it with "
                f"`pulumi config set --secret {_key(key)} <value>`"
            )
        secrets[key] = value
    stack = pulumi.get_stack()
    return parse_stack_config(raw, stack, secrets, other_stacks=committed_stacks(project_dir, exclude=stack))
