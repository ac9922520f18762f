"""Run the Pulumi program (`__main__.py`) under `pulumi.runtime.set_mocks` for a committed stack file.

No engine, no CLI, no cloud: the mock monitor records every registration request (inputs with their
secret markers, options such as protect/ignoreChanges/deletedWith) so tests can assert on what
`pulumi up` would ask the providers for. Secure config values are replaced by recognisable fakes.
"""

from __future__ import annotations

import ipaddress
import json
import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings

from deploy import release

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

# Recognisable fake values for every `secure:` key; tests grep for them where secrets must not be.
FAKE_SECRETS: dict[str, str] = {
    "iot:databaseUrl": "postgresql://iot:FAKE-DB-PASSWORD-7f3a9c@db.example.net:5432/iot",
    "iot:redisUrl": "rediss://default:FAKE-REDIS-PASSWORD-91c2e4@redis.example.net:6380/0",
    "hcloud:token": "FAKE-HCLOUD-TOKEN-5d1e0b",
    "cloudflare:apiToken": "FAKE-CLOUDFLARE-TOKEN-2b8f77",
    "linode:token": "FAKE-LINODE-TOKEN-c0ffee",
}
CLOUDFLARE_V4 = ["173.245.48.0/20", "103.21.244.0/22", "104.16.0.0/13", "172.64.0.0/13"]
CLOUDFLARE_V6 = ["2400:cb00::/32", "2606:4700::/32"]
HETZNER_ALL = ["fsn1", "nbg1", "hel1", "ash", "hil", "sin"]
HETZNER_EU = ["fsn1", "nbg1", "hel1"]


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    raw_inputs: dict[str, Any]  # with secret markers kept
    inputs: dict[str, Any]  # plain values
    options: dict[str, Any]

    def input_is_secret(self, key: str) -> bool:
        value = self.raw_inputs.get(key)
        return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG


@dataclass
class ProgramRun:
    stack: str
    resources: list[Registration] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    ids: dict[str, str] = field(default_factory=dict)  # urn -> mock id
    fake_secret_values: tuple[str, ...] = ()

    def secret_fragments(self) -> set[str]:
        """Every line of every fake secret except PEM armor: none may appear where secrets must not."""
        return {line for value in self.fake_secret_values for line in value.splitlines()
                if line and not line.startswith("-----")}

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> Registration:
        (match,) = [r for r in self.resources if r.name == name]
        return match


def _fake_uuid(n: int) -> str:
    return f"fa4e5ec7-0000-4000-8000-{n:012d}"


class FakeCloud(pulumi.runtime.Mocks):
    """Provider stand-ins: numeric ids, plausible computed outputs, recognisable generated secrets."""

    def __init__(self, sold_out: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.sold_out = sold_out  # (server type, location) pairs the fake API reports unavailable
        self.counter = 0
        self.generated_secrets: list[str] = []

    def _secret(self, value: str) -> str:
        self.generated_secrets.append(value)
        return value

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.counter += 1
        n = self.counter
        state = dict(args.inputs)
        typ = args.typ
        if typ == "hcloud:index/server:Server":
            state.update(ipv4Address=str(ipaddress.ip_address("203.0.113.0") + n), ipv6Address=f"2001:db8::{n:x}")
        elif typ == "linode:index/instance:Instance":
            state.update(ipv4s=[str(ipaddress.ip_address("192.0.2.0") + n)], ipv6=f"2001:db8:1::{n:x}/128")
        elif typ == "tls:index/privateKey:PrivateKey":
            state.update(
                privateKeyPem=self._secret(f"-----BEGIN PRIVATE KEY-----\nFAKE-PRIVATE-KEY-{n}\n-----END PRIVATE KEY-----\n"),
                privateKeyOpenssh=self._secret(f"-----BEGIN OPENSSH PRIVATE KEY-----\nFAKE-SSH-KEY-{n}\n-----END OPENSSH PRIVATE KEY-----\n"),
                publicKeyOpenssh=f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAFAKE{n}\n",
                publicKeyPem=f"-----BEGIN PUBLIC KEY-----\nPUB{n}\n-----END PUBLIC KEY-----\n",
            )
        elif typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            state.update(certPem=f"-----BEGIN CERTIFICATE-----\nCERT{n}\n-----END CERTIFICATE-----\n")
        elif typ == "tls:index/certRequest:CertRequest":
            state.update(certRequestPem=f"-----BEGIN CERTIFICATE REQUEST-----\nCSR{n}\n-----END CERTIFICATE REQUEST-----\n")
        elif typ == "random:index/randomBytes:RandomBytes":
            length = int(args.inputs.get("length", 32))
            hex_value = _fake_uuid(n).replace("-", "")[: 2 * length].ljust(2 * length, "0")
            state.update(base64=self._secret(f"FAKEGOSSIPKEY{n:04d}AAAAAAAAAAAAAAAAAAAAAAAAAA="),
                         hex=self._secret(hex_value))
            if length == 16:  # the program formats 16 bytes as a UUID ACL token: watch for that form too
                self._secret(_fake_uuid(n))
            return "none", state  # as the real provider: the ID carries no secret
        elif typ == "command:remote:Command":
            state.update(stdout="", stderr="")
        return str(1000 + n), state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list] | dict:
        if args.token == "cloudflare:index/getIpRanges:getIpRanges":
            return {"ipv4Cidrs": CLOUDFLARE_V4, "ipv6Cidrs": CLOUDFLARE_V6, "etag": "fake"}
        if args.token == "hcloud:index/getServerType:getServerType":
            name = args.args.get("name", "")
            offered = HETZNER_EU if name.startswith(("cx", "cax")) else HETZNER_ALL
            return {
                "id": 1, "name": name,
                "locations": [{"id": i, "name": loc, "available": (name, loc) not in self.sold_out, "recommended": True, "isDeprecated": False,
                               "deprecationAnnounced": "", "unavailableAfter": ""}
                              for i, loc in enumerate(offered)],
            }
        raise AssertionError(f"unexpected invoke {args.token}: add it to FakeCloud.call")


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: FakeCloud, run: ProgramRun) -> None:
        super().__init__(mocks)
        self.run = run

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            raw = json_format.MessageToDict(request.object, preserving_proto_field_name=True)
            options = {
                "protect": request.protect,
                "ignoreChanges": list(request.ignoreChanges),
                "additionalSecretOutputs": list(request.additionalSecretOutputs),
                "deletedWith": request.deletedWith,
                "dependencies": list(request.dependencies),
                "customTimeouts": {"create": request.customTimeouts.create, "update": request.customTimeouts.update},
            }
            self.run.ids[response.urn] = response.id
            self.run.resources.append(Registration(
                type=request.type, name=request.name, urn=response.urn, parent=request.parent,
                custom=request.custom, raw_inputs=raw, inputs=_unwrap(raw), options=options,
            ))
        return response


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            return _unwrap(value.get("value"))
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def stack_config(stack_file: Path) -> tuple[dict[str, str], list[str]]:
    """PULUMI_CONFIG-style map (structured values as JSON) and secret keys, fakes for `secure:`."""
    document = yaml.safe_load(stack_file.read_text())
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (document.get("config") or {}).items():
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            config[key] = FAKE_SECRETS[key]
            secret_keys.append(key)
        elif isinstance(value, str):
            config[key] = value
        else:
            config[key] = json.dumps(value)
    # Release digests are deploy-time inputs (like secrets): stand them in for a protected stack.
    images = release.placeholder_images(document.get("config") or {})
    if images is not None:
        config["iot:images"] = json.dumps(images)
    return config, secret_keys


def run_stack(
    stack: str,
    overrides: Mapping[str, object] | None = None,
    sold_out: frozenset[tuple[str, str]] = frozenset(),
    secret_overrides: Mapping[str, str] | None = None,
) -> ProgramRun:
    """Run __main__.py for Pulumi.<stack>.yaml under mocks; `overrides` replace config keys,
    `secret_overrides` set keys as `pulumi config set --secret` would, `sold_out` lists
    (server type, location) pairs the fake Hetzner API reports unavailable."""
    config, secret_keys = stack_config(ROOT / f"Pulumi.{stack}.yaml")
    for key, value in (overrides or {}).items():
        config[key] = value if isinstance(value, str) else json.dumps(value)
    for key, value in (secret_overrides or {}).items():
        config[key] = value
        secret_keys.append(key)
    run = ProgramRun(stack=stack)
    cloud = FakeCloud(sold_out)
    pulumi_settings.set_root_resource(None)  # each run gets a fresh root stack (and its outputs)
    pulumi.runtime.set_mocks(cloud, project="iot", stack=stack, preview=False, monitor=RecordingMonitor(cloud, run))
    pulumi.runtime.set_all_config(config, secret_keys)

    @pulumi.runtime.test
    def program() -> pulumi.Output:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        exported = dict(pulumi_settings.get_root_resource().outputs)
        checks = []
        for value in exported.values():
            output = pulumi.Output.from_input(value)
            checks.append(pulumi.Output.all(output, pulumi.Output.from_input(output.is_secret())))

        def record(values: list) -> None:
            for name, (value, is_secret) in zip(exported, values, strict=True):
                run.outputs[name] = value
                if is_secret:
                    run.secret_outputs.add(name)

        return pulumi.Output.all(*checks).apply(record)

    program()
    run.fake_secret_values = (tuple(FAKE_SECRETS.values()) + tuple((secret_overrides or {}).values())
                              + tuple(cloud.generated_secrets))
    return run
