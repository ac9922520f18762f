"""Run the real Pulumi program for a committed stack file with every cloud call mocked.

`run_program(stack)` reads `Pulumi.yaml` and `Pulumi.<stack>.yaml`, replaces every `secure:` value
(and every required secret the file leaves out) with a visible placeholder, runs `__main__.py` under
`pulumi.runtime.set_mocks`, and returns every registered resource with its inputs and parent. No
credentials, no network, no pulumi CLI. The offline plan, the edge/workload tests and the policy tests
share it, so they all look at the resources the program really declares.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import runpy
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from deploy import release

ROOT = Path(__file__).resolve().parent.parent

SECRET = "[secret]"  # how a secret input shows in recorded inputs
UNKNOWN = "[unknown]"

# Keys the program needs as secrets even when a stack file does not carry them (users set them).
REQUIRED_SECRETS = ("iot:databaseUrl", "iot:redisUrl")
# Secret placeholders must still pass config validation (URL schemes), yet read as placeholders.
_PLACEHOLDER_PREFIX = {"iot:databaseUrl": "postgresql://", "iot:redisUrl": "redis://"}

# Cloudflare's published ranges (www.cloudflare.com/ips), fixed so plans are reproducible.
CLOUDFLARE_IPV4 = [
    "173.245.48.0/20",
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "141.101.64.0/18",
    "108.162.192.0/18",
    "190.93.240.0/20",
    "188.114.96.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "162.158.0.0/15",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "172.64.0.0/13",
    "131.0.72.0/22",
]
CLOUDFLARE_IPV6 = [
    "2400:cb00::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2405:b500::/32",
    "2405:8100::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
]
HETZNER_LOCATIONS = ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")


class MockError(RuntimeError):
    """The program needs something the offline mocks do not provide."""


@dataclass
class PlannedResource:
    """One resource the program registered: its type token, name, inputs (secrets masked) and parent."""

    type: str
    name: str
    inputs: dict[str, Any]
    parent: str | None  # the parent's resource name (None for the stack itself)
    urn: str = ""
    id: str = ""
    parent_urn: str | None = None
    custom: bool = True
    outputs: dict[str, Any] = field(default_factory=dict)
    dependencies: list[str] = field(default_factory=list)  # URNs from depends_on and inputs
    provider: str | None = None  # explicit provider reference "urn::id"
    options: dict[str, Any] = field(default_factory=dict)  # protect, ignoreChanges, deletedWith...


@dataclass
class ProgramRun:
    stack: str
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    config: dict[str, Any]

    def of_type(self, type_token: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_token]

    def children_of(self, parent_name: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.parent == parent_name]


def secret_placeholder(key: str) -> str:
    """A visible stand-in for a secret config value, e.g. `postgresql://<secret:iot:databaseUrl>`."""
    return f"{_PLACEHOLDER_PREFIX.get(key, '')}<secret:{key}>"


# ---------------------------------------------------------------- config


def _qualify(key: str, project: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def load_stack_config_values(stack: str, root: Path = ROOT) -> tuple[str, dict[str, Any], list[str]]:
    """(project, config values by full key, secret keys) from Pulumi.yaml defaults + Pulumi.<stack>.yaml."""
    project_file = root / "Pulumi.yaml"
    stack_file = root / f"Pulumi.{stack}.yaml"
    if not project_file.exists():
        raise MockError(f"{project_file} not found: run from the repository root")
    if not stack_file.exists():
        stacks = sorted(p.name.split(".")[1] for p in root.glob("Pulumi.*.yaml"))
        raise MockError(f"no stack file {stack_file.name}; committed stacks: {', '.join(stacks) or 'none'}")
    project_doc = yaml.safe_load(project_file.read_text()) or {}
    project = project_doc.get("name") or "project"
    values: dict[str, Any] = {}
    for key, schema in (project_doc.get("config") or {}).items():
        if isinstance(schema, Mapping) and "default" in schema:
            values[_qualify(key, project)] = schema["default"]
        elif isinstance(schema, Mapping) and "value" in schema:
            values[_qualify(key, project)] = schema["value"]
        elif not isinstance(schema, Mapping):
            values[_qualify(key, project)] = schema
    secret_keys: list[str] = []
    stack_doc = yaml.safe_load(stack_file.read_text()) or {}
    for key, value in (stack_doc.get("config") or {}).items():
        full = _qualify(key, project)
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            values[full] = secret_placeholder(full)
            secret_keys.append(full)
        else:
            values[full] = value
    for key in REQUIRED_SECRETS:
        if key not in values:
            values[key] = secret_placeholder(key)
            secret_keys.append(key)
    images = release.placeholder_images(values)
    if images is not None:
        values["iot:images"] = images
    return project, values, secret_keys


def committed_stack_config(
    stack: str,
    *,
    root: Path = ROOT,
    overrides: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> Any:
    """The validated StackConfig of a committed stack file (placeholders for secrets), for pure tests.

    `overrides` replace `iot:` keys (without the namespace); `secrets` replace secret values.
    """
    from components.config import NAMESPACE, SECRET_KEYS, parse_stack_config

    _, values, _ = load_stack_config_values(stack, root)
    prefix = f"{NAMESPACE}:"
    raw = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
    raw.update(overrides or {})
    secret_values = {key: raw.pop(key, secret_placeholder(prefix + key)) for key in SECRET_KEYS}
    secret_values.update(secrets or {})
    return parse_stack_config(raw, stack, secret_values)


def _config_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """Pulumi passes config to programs as strings; structured values as JSON."""
    out = {}
    for key, value in values.items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = json.dumps(value)
    return out


# ---------------------------------------------------------------- fabricated cloud state


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("/".join(parts).encode()).digest()


def fake_ipv4(name: str, network: str = "203.0.113") -> str:
    """Deterministic documentation-range address (RFC 5737) for a resource name."""
    return f"{network}.{_digest(name)[0] % 250 + 2}"


def _fake_pem(kind: str, name: str) -> str:
    body = base64.b64encode(_digest(kind, name) * 2).decode()
    return f"-----BEGIN {kind}-----\nMOCK{body}\n-----END {kind}-----\n"


def _outputs_for(type_token: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The computed outputs a real provider would return, for the resource types the program uses."""
    if type_token == "hcloud:index/server:Server":
        return {
            "ipv4Address": fake_ipv4(name),
            "ipv6Address": f"2001:db8:{_digest(name)[1]:x}::1",
            "status": "running",
        }
    if type_token == "hcloud:index/primaryIp:PrimaryIp":
        return {"ipAddress": fake_ipv4(name)}
    if type_token == "linode:index/instance:Instance":
        ip = fake_ipv4(name, "198.51.100")
        return {"ipAddress": ip, "ipv4s": [ip], "ipv6": "2001:db8:ffff::1/128", "status": "running"}
    if type_token == "tls:index/privateKey:PrivateKey":
        return {
            "privateKeyPem": _fake_pem("PRIVATE KEY", name),
            "privateKeyOpenssh": _fake_pem("OPENSSH PRIVATE KEY", name),
            "publicKeyPem": _fake_pem("PUBLIC KEY", name),
            "publicKeyOpenssh": f"ssh-ed25519 MOCK{base64.b64encode(_digest(name)).decode()} {name}\n",
            "publicKeyFingerprintSha256": "SHA256:" + base64.b64encode(_digest(name)).decode(),
        }
    if type_token in (
        "tls:index/selfSignedCert:SelfSignedCert",
        "tls:index/locallySignedCert:LocallySignedCert",
    ):
        return {"certPem": _fake_pem("CERTIFICATE", name)}
    if type_token == "tls:index/certRequest:CertRequest":
        return {"certRequestPem": _fake_pem("CERTIFICATE REQUEST", name)}
    if type_token == "cloudflare:index/originCaCertificate:OriginCaCertificate":
        return {"certificate": _fake_pem("CERTIFICATE", name), "expiresOn": "2041-01-01T00:00:00Z"}
    if type_token.startswith("random:index/"):
        length = int(inputs.get("length") or inputs.get("byteLength") or 32)
        raw = (_digest("random", name) * 4)[:length]
        text = (
            base64.b64encode(_digest("random", name) * 4)
            .decode()
            .replace("+", "a")
            .replace("/", "b")[:length]
        )
        return {
            "result": text,
            "b64Std": base64.b64encode(raw).decode(),
            "b64Url": base64.urlsafe_b64encode(raw).decode(),
            "hex": raw.hex(),
            "dec": str(int.from_bytes(raw[:8], "big")),
            "base64": base64.b64encode(raw).decode(),
            "bcryptHash": "$2a$10$" + text,
        }
    if type_token.startswith("command:remote:") or type_token.startswith("command:local:"):
        return {"stdout": "", "stderr": ""}
    return {}


class RecordingMocks(pulumi.runtime.Mocks):
    """Fabricates provider state and answers the invokes the program makes."""

    def __init__(self, invokes: Mapping[str, Callable[[Mapping[str, Any]], dict]] | None = None) -> None:
        self._ids = itertools.count(1000)
        self.invokes: dict[str, Callable[[Mapping[str, Any]], dict]] = {
            "cloudflare:index/getIpRanges:getIpRanges": lambda _args: {
                "ipv4Cidrs": list(CLOUDFLARE_IPV4),
                "ipv6Cidrs": list(CLOUDFLARE_IPV6),
                "etag": "mock",
                "jdcloudCidrs": [],
            },
            "hcloud:index/getServerType:getServerType": lambda args: {
                "id": 1,
                "name": args.get("name"),
                "architecture": "x86",
                "cores": 2,
                "memory": 4,
                "disk": 80,
                "deprecationAnnounced": "",
                "isDeprecated": False,
                "unavailableAfter": "",
                "locations": [
                    {
                        "id": i,
                        "name": loc,
                        "available": True,
                        "recommended": True,
                        "isDeprecated": False,
                        "deprecationAnnounced": "",
                        "unavailableAfter": "",
                    }
                    for i, loc in enumerate(HETZNER_LOCATIONS)
                ],
            },
            **(invokes or {}),
        }
        self.calls: list[tuple[str, dict]] = []

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        self.calls.append((args.token, dict(args.args)))
        handler = self.invokes.get(args.token)
        if handler is None:
            raise MockError(
                f"the offline mocks do not answer invoke {args.token}; add a handler to "
                "RecordingMocks.invokes in deploy/mocks.py with a realistic fixed result"
            )
        return handler(args.args)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        if not args.custom:
            return None, {}
        state = {**args.inputs, **_outputs_for(args.typ, args.name, args.inputs)}
        return str(next(self._ids)), state


# ---------------------------------------------------------------- recording monitor


def _plain(value: Any) -> Any:
    """Protobuf-JSON property value -> Python, with secrets masked and resource refs as URNs."""
    if isinstance(value, dict):
        sig = value.get(rpc._special_sig_key)
        if sig == rpc._special_secret_sig:
            return SECRET
        if sig == rpc._special_output_value_sig:
            if value.get("secret"):
                return SECRET
            return _plain(value["value"]) if "value" in value else UNKNOWN
        if sig == rpc._special_resource_sig:
            return value.get("urn", "")
        if sig is not None:
            return f"[{sig}]"
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if value == rpc.UNKNOWN:
        return UNKNOWN
    if isinstance(value, float) and value.is_integer():
        return int(value)  # protobuf carries every number as a double
    return value


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """MockMonitor that also keeps every registration's type, name, masked inputs and parent."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.registrations: list[PlannedResource] = []

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        secret_outputs = [k for k in request.additionalSecretOutputs if k in response.object.fields]
        if secret_outputs:
            # The engine (not the SDK) marks provider-declared secret outputs; do the same here.
            state = json_format.MessageToDict(response.object)
            for key in secret_outputs:
                state[key] = {rpc._special_sig_key: rpc._special_secret_sig, "value": state[key]}
            response.object.Clear()
            response.object.update(state)
        if request.type != "pulumi:pulumi:Stack":
            inputs = _plain(json_format.MessageToDict(request.object))
            self.registrations.append(
                PlannedResource(
                    type=request.type,
                    name=request.name,
                    inputs=inputs,
                    parent=None,
                    urn=response.urn,
                    id=response.id,
                    parent_urn=request.parent or None,
                    custom=bool(request.custom),
                    outputs=_plain(json_format.MessageToDict(response.object)) if request.custom else {},
                    dependencies=list(request.dependencies),
                    provider=request.provider or None,
                    options={
                        "protect": request.protect if request.HasField("protect") else False,
                        "ignoreChanges": list(request.ignoreChanges),
                        "deletedWith": request.deletedWith or None,
                        "additionalSecretOutputs": list(request.additionalSecretOutputs),
                    },
                )
            )
        return response


def _link_parents(resources: list[PlannedResource]) -> None:
    names = {r.urn: r.name for r in resources}
    for r in resources:
        r.parent = names.get(r.parent_urn or "")


# ---------------------------------------------------------------- running the program


def run_program(
    stack: str,
    *,
    root: Path = ROOT,
    program: Path | Callable[[], object] | None = None,
    preview: bool = False,
    invokes: Mapping[str, Callable[[Mapping[str, Any]], dict]] | None = None,
    config_overrides: Mapping[str, Any] | None = None,
) -> ProgramRun:
    """Run `__main__.py` (or `program`: a file or a function) for `stack` under mocks.

    Returns every registered resource; `config_overrides` replace stack config values by full key.
    """
    project, values, secret_keys = load_stack_config_values(stack, root)
    values.update(config_overrides or {})
    mocks = RecordingMocks(invokes)
    monitor = RecordingMonitor(mocks)
    settings.ROOT.set(None)  # a fresh root stack per run (several stacks may run in one process)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)
    # Outputs made outside any run (unit tests that parse config) stay tracked on the loop they were made
    # on; once that loop is no longer current, waiting for them would hang this run forever. Each run tracks
    # only its own, as pulumi.runtime.mocks.test does.
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    pulumi.runtime.set_all_config(_config_strings(values), secret_keys)
    if callable(program):
        body = program
    else:
        program_path = Path(program or root / "__main__.py")
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))

        def body() -> object:
            return runpy.run_path(str(program_path), run_name="__main__")

    _sync_await(run_pulumi_func(body))
    stack_resource = settings.get_root_resource()
    outputs: dict[str, Any] = {}
    if stack_resource is not None:
        outputs = _sync_await(_resolve_outputs(stack_resource))
    resources = monitor.registrations
    _link_parents(resources)
    return ProgramRun(stack=stack, resources=resources, outputs=outputs, config=values)


async def _resolve_outputs(stack_resource: Any) -> dict[str, Any]:
    result = {}
    for key, value in dict(getattr(stack_resource, "outputs", {}) or {}).items():
        output = pulumi.Output.from_input(value)
        secret = await output.is_secret()
        result[key] = SECRET if secret else await output.future()
    return result
