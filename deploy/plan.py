"""Offline plan of a stack: what `pulumi up` would create, without credentials, network or CLI.

    python -m deploy.plan --stack prod --out build/plan/prod      (or: make plan STACK=prod)

Runs the real program for the committed `Pulumi.<stack>.yaml` under Pulumi mocks (secure values
become visible placeholders), then writes for reviewers:

    resources.md             every resource, grouped by component: type, name, the inputs that matter
    user-data/<node>.yaml    every rendered cloud-init user data
    jobs/<job>.hcl           every Nomad job spec, and jobs/<job>.vars.json the HCL2 vars it gets
    jobs/<job>.rendered/     its templates with those vars applied (e.g. Traefik's static config)
    edge.md                  hostnames -> load balancers/pools/records -> origins

and validates them (`cloud-init schema --config-file`, 32 KiB limit, HCL2 parse, vars against the
declared variables, rendered YAML templates parse). Exit status 1 when any check fails, 2 when the
program itself fails, 3 when the output directory is refused.

The output directory must be new, empty, or one this command wrote before (it holds MARKER, the
list of files written): a re-run deletes exactly those files, never anything else, so `--out .`
cannot wipe a checkout.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from deploy import cloud_config_schema
from deploy.mocks import SECRET, PlannedResource, ProgramRun, run_program

USER_DATA_LIMIT = 32 * 1024  # Hetzner and Linode refuse larger user data
CLOUD_INIT = "cloud-init"

# Inputs worth a reviewer's eye, per resource type (others fall back to a few scalar inputs).
KEY_INPUTS: dict[str, tuple[str, ...]] = {
    "hcloud:index/server:Server": (
        "name",
        "serverType",
        "location",
        "image",
        "networks",
        "firewallIds",
        "placementGroupId",
        "deleteProtection",
    ),
    "hcloud:index/network:Network": ("name", "ipRange", "deleteProtection"),
    "hcloud:index/networkSubnet:NetworkSubnet": ("networkZone", "ipRange", "type"),
    "hcloud:index/firewall:Firewall": ("name", "rules"),
    "hcloud:index/placementGroup:PlacementGroup": ("name", "type"),
    "hcloud:index/sshKey:SshKey": ("name",),
    "linode:index/instance:Instance": ("label", "region", "type", "image"),
    "linode:index/firewall:Firewall": ("label", "inboundPolicy", "outboundPolicy", "inbounds", "linodes"),
    "tls:index/privateKey:PrivateKey": ("algorithm", "ecdsaCurve", "rsaBits"),
    "tls:index/selfSignedCert:SelfSignedCert": ("subject", "isCaCertificate", "validityPeriodHours"),
    "tls:index/locallySignedCert:LocallySignedCert": (
        "allowedUses",
        "validityPeriodHours",
        "earlyRenewalHours",
    ),
    "tls:index/certRequest:CertRequest": ("subject", "dnsNames", "ipAddresses"),
    "command:remote:Command": ("create", "delete", "stdin", "logging", "triggers"),
    "cloudflare:index/loadBalancerMonitor:LoadBalancerMonitor": (
        "type",
        "method",
        "port",
        "path",
        "expectedCodes",
        "interval",
    ),
    "cloudflare:index/loadBalancerPool:LoadBalancerPool": ("name", "origins", "checkRegions", "monitor"),
    "cloudflare:index/loadBalancer:LoadBalancer": (
        "name",
        "proxied",
        "steeringPolicy",
        "defaultPools",
        "fallbackPool",
    ),
    "cloudflare:index/dnsRecord:DnsRecord": ("name", "type", "content", "proxied", "ttl"),
    "cloudflare:index/originCaCertificate:OriginCaCertificate": (
        "hostnames",
        "requestType",
        "requestedValidity",
    ),
    "cloudflare:index/zoneSetting:ZoneSetting": ("settingId", "value"),
    "cloudflare:index/ruleset:Ruleset": ("phase", "rules"),
    "nomad:index/variable:Variable": ("path", "items"),
    "nomad:index/job:Job": ("jobspec", "hcl2", "detach", "purgeOnDestroy"),
    "pulumi:providers:nomad": ("address", "caPem", "certPem", "keyPem", "secretId"),
}
# Inputs holding another resource's id: shown as that resource's name.
REFERENCE_INPUTS = (
    "networkId",
    "firewallIds",
    "placementGroupId",
    "sshKeys",
    "monitor",
    "defaultPools",
    "fallbackPool",
    "linodes",
    "networks",
)
WRAP_AT = 100  # resources.md cells wrap (<br>) at item boundaries past this width; nothing is cut
SOURCES_PER_LINE = 5
SHORT_VAR = 60  # longer HCL2 vars are named with their size and file, not inlined
MARKER = ".iot-plan.json"  # what this command wrote into an output directory (the only files it deletes)
EXIT_PROBLEMS, EXIT_PROGRAM_FAILED, EXIT_REFUSED = 1, 2, 3


class OutputRefused(Exception):
    """The output directory holds files this command did not write."""


# ---------------------------------------------------------------- running


@functools.lru_cache(maxsize=4)
def _cached_run(stack: str) -> ProgramRun:
    return run_program(stack)


def run_plan(stack: str) -> list[PlannedResource]:
    """Every resource the program declares for the committed stack `stack` (cached per process)."""
    return list(_cached_run(stack).resources)


# ---------------------------------------------------------------- artifacts


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def user_data_of(resource: PlannedResource) -> tuple[str, str] | None:
    """(node name, user data text) of a server resource, or None."""
    inputs = resource.inputs
    if resource.type == "hcloud:index/server:Server" and isinstance(inputs.get("userData"), str):
        return inputs.get("name") or resource.name, inputs["userData"]
    if resource.type == "linode:index/instance:Instance":
        for metadata in inputs.get("metadatas") or []:
            encoded = metadata.get("userData")
            if isinstance(encoded, str) and encoded != SECRET:
                return inputs.get("label") or resource.name, base64.b64decode(encoded).decode()
    return None


def job_name_of(jobspec: str) -> str:
    match = re.search(r'^job\s+"([^"]+)"', jobspec, re.M)
    if not match:
        raise ValueError("a nomad.Job's jobspec has no job block")
    return match.group(1)


def write_artifacts(run: ProgramRun, out: Path) -> dict[str, list[Path]]:
    """Write user data, job specs + vars, resources.md and edge.md into `out`, then list them in MARKER.

    `out` must have been prepared by `prepare_output` (or be new): nothing here deletes anything.
    """
    (out / "user-data").mkdir(parents=True, exist_ok=True)
    (out / "jobs").mkdir(exist_ok=True)
    written: dict[str, list[Path]] = {"user-data": [], "jobs": [], "vars": [], "rendered": []}
    files_by_resource: dict[str, str] = {}
    for resource in run.resources:
        found = user_data_of(resource)
        if found:
            node, text = found
            path = out / "user-data" / f"{_safe_name(node)}.yaml"
            path.write_text(text)
            written["user-data"].append(path)
            files_by_resource[resource.urn] = f"user-data/{path.name} ({len(text.encode())} bytes)"
        if resource.type == "nomad:index/job:Job":
            spec = resource.inputs["jobspec"]
            job = job_name_of(spec)
            spec_path = out / "jobs" / f"{_safe_name(job)}.hcl"
            vars_path = out / "jobs" / f"{_safe_name(job)}.vars.json"
            spec_path.write_text(spec)
            vars_path.write_text(
                json.dumps((resource.inputs.get("hcl2") or {}).get("vars", {}), indent=2, sort_keys=True)
                + "\n"
            )
            written["jobs"].append(spec_path)
            written["vars"].append(vars_path)
            files_by_resource[resource.urn] = f"jobs/{spec_path.name} + jobs/{vars_path.name}"
            written["rendered"] += _write_rendered(spec_path, out / "jobs" / f"{_safe_name(job)}.rendered")
    (out / "resources.md").write_text(render_resources(run, files_by_resource))
    (out / "edge.md").write_text(render_edge(run))
    every = [path for paths in written.values() for path in paths] + [out / "resources.md", out / "edge.md"]
    root = out.resolve()
    write_marker(out, run.stack, [str(path.resolve().relative_to(root)) for path in every])
    return written


# ---------------------------------------------------------------- the output directory


def write_marker(out: Path, stack: str, files: Sequence[str]) -> None:
    (out / MARKER).write_text(json.dumps({"writtenBy": "python -m deploy.plan", "stack": stack,
                                          "files": sorted(set(files))}, indent=2) + "\n")


def read_marker(out: Path) -> list[str]:
    document = json.loads((out / MARKER).read_text())
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise OutputRefused(f"{out / MARKER} is not a plan marker (no file list); remove the directory yourself")
    return files


def prepare_output(out: Path) -> None:
    """Make `out` ready for write_artifacts, or raise OutputRefused; deletes only files MARKER lists."""
    if out.exists() and not out.is_dir():
        raise OutputRefused(f"--out {out} is a file, not a directory; choose a new directory such as build/plan/<stack>")
    if not out.exists():
        out.mkdir(parents=True)
        return
    if not any(out.iterdir()):
        return
    if not (out / MARKER).is_file():
        raise OutputRefused(
            f"--out {out} is not empty and has no {MARKER}, so deploy.plan did not write it; nothing was "
            "changed. Choose a new or empty directory (the default is build/plan/<stack>)"
        )
    root = out.resolve()
    parents: set[Path] = set()
    for name in read_marker(out):
        path = out / name
        # Only regular files inside `out`, reached without leaving it (no `..`, no absolute path, no symlink).
        if os.path.isabs(name) or path.is_symlink() or not path.resolve().is_relative_to(root):
            continue
        if path.is_file():
            path.unlink()
            parents.update(p for p in path.parents if p.resolve().is_relative_to(root) and p.resolve() != root)
    for directory in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # only when empty: files someone else put there stay, and their folder
            directory.rmdir()
    (out / MARKER).unlink()


def _write_rendered(spec_path: Path, directory: Path) -> list[Path]:
    """Best effort: the job's templates as Nomad would render them from the vars (validate() reports
    a template that cannot be rendered)."""
    from components.job_spec import SpecError

    try:
        rendered = render_templates(spec_path, json.loads(spec_path.with_suffix(".vars.json").read_text()))
    except (SpecError, ValueError):
        return []
    paths = []
    for destination, text in rendered.items():
        path = (directory / destination).resolve()
        if not path.is_relative_to(directory.resolve()):
            continue  # a destination outside the task dir is Nomad's to refuse, not ours to write
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths


# ---------------------------------------------------------------- resources.md


def _short_type(type_token: str) -> str:
    if type_token.startswith("pulumi:providers:"):
        return f"{type_token.split(':')[2]} provider"
    package, _, rest = type_token.partition(":")
    return f"{package} {rest.rsplit(':', 1)[-1]}"


def _component_of(resource: PlannedResource, by_urn: dict[str, PlannedResource]) -> PlannedResource | None:
    parent = by_urn.get(resource.parent_urn or "")
    while parent is not None and parent.custom:
        parent = by_urn.get(parent.parent_urn or "")
    return parent


def _display(value: Any, ids: dict[str, str], key: str = "") -> str:
    if key in REFERENCE_INPUTS:
        value = _resolve_ids(value, ids)
    if isinstance(value, str):
        pem = re.match(r"-----BEGIN ([A-Z ]+)-----", value)
        text = f"<{pem.group(1)} PEM>" if pem else value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {_display(v, ids, k)}" for k, v in value.items()) + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(_display(v, ids, key) for v in value) + "]"
    else:
        text = str(value)
    return text


def _resolve_ids(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, list):
        return [_resolve_ids(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _resolve_ids(v, ids) if k in ("networkId", "id") else v for k, v in value.items()}
    key = str(value)
    return f"<{ids[key]}>" if key in ids else value


def _summarise(resource: PlannedResource, ids: dict[str, str], files: dict[str, str]) -> str:
    """One table cell: `key=value` per line (<br>); long values wrap at item boundaries, never cut."""
    inputs = resource.inputs
    keys = KEY_INPUTS.get(resource.type)
    if keys is None:
        keys = tuple(k for k, v in inputs.items() if isinstance(v, str | int | float | bool))[:4]
    lines: list[str] = []
    for key in keys:
        if key not in inputs or key == "jobspec":
            continue
        value = inputs[key]
        if key == "rules" and resource.type == "hcloud:index/firewall:Firewall":
            pieces = [f"{r.get('protocol')}/{r.get('port')} from {_sources(r.get('sourceIps', []))}" for r in value]
            lines += [f"{key}=", *(f"&nbsp;&nbsp;{piece}" for piece in pieces)]
            continue
        if key == "origins":
            text = ", ".join(f"{o.get('name')}={o.get('address')}" for o in value)
        elif key == "hcl2" and isinstance(value, dict):
            text = ", ".join(
                f"{k}={v}" if len(str(v)) <= SHORT_VAR else f"{k}=<{len(str(v))} chars, see the .vars.json>"
                for k, v in sorted((value.get("vars") or {}).items())
            )
        elif key == "items" and isinstance(value, dict):
            text = ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
        elif key == "create" and isinstance(value, str):
            text = (value.strip().splitlines()[0] + " (first line)") if value.strip() else ""
        else:
            text = _display(value, ids, key)
        lines += _wrap(f"{key}={text}")
    if resource.urn in files:
        lines.append(f"-> {files[resource.urn]}")
    if resource.options.get("protect"):
        lines.append("**protected**")
    if resource.options.get("ignoreChanges"):
        lines.append(f"ignoreChanges={','.join(resource.options['ignoreChanges'])}")
    return "<br>".join(line.replace("|", "\\|").replace("\n", " ") for line in lines)


def _wrap(text: str, width: int = WRAP_AT) -> list[str]:
    """Split a long line after ', ' or '; ' so every piece stays readable; the text itself is kept whole."""
    if len(text) <= width:
        return [text]
    pieces, current = [], ""
    for token in re.split(r"(?<=[,;] )", text):
        if current and len(current) + len(token) > width:
            pieces.append(current.rstrip())
            current = ""
        current += token
    pieces.append(current.rstrip())
    return [pieces[0], *(f"&nbsp;&nbsp;{piece}" for piece in pieces[1:])]


def _sources(sources: Sequence[str]) -> str:
    """Every source of a firewall rule (security-relevant: never abbreviated), a few per line."""
    chunks = [", ".join(sources[i:i + SOURCES_PER_LINE]) for i in range(0, len(sources), SOURCES_PER_LINE)]
    return ",<br>&nbsp;&nbsp;&nbsp;&nbsp;".join(chunks)


def render_resources(run: ProgramRun, files: dict[str, str] | None = None) -> str:
    files = files or {}
    by_urn = {r.urn: r for r in run.resources}
    ids = {r.id: r.name for r in run.resources if r.id}
    groups: dict[str, list[PlannedResource]] = {}
    components: dict[str, PlannedResource | None] = {}
    for resource in run.resources:
        if not resource.custom and not resource.type.startswith("pulumi:"):
            continue
        component = _component_of(resource, by_urn)
        key = component.urn if component else ""
        groups.setdefault(key, []).append(resource)
        components[key] = component
    counts: dict[str, int] = {}
    for resource in run.resources:
        if resource.custom:
            package = (
                resource.type.split(":")[0]
                if not resource.type.startswith("pulumi:providers:")
                else "providers"
            )
            counts[package] = counts.get(package, 0) + 1
    lines = [
        f"# Offline plan: stack `{run.stack}`",
        "",
        f"{sum(counts.values())} resources ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}), "
        "from the committed stack file run under Pulumi mocks. Secret values show as `[secret]`; "
        "secret config shows as a `<secret:key>` placeholder; IPs and ids are fabricated by the mocks.",
        "",
    ]
    order = sorted(
        groups, key=lambda k: (k == "", run.resources.index(components[k]) if components[k] else 0)
    )
    for key in order:
        component = components[key]
        title = f"{component.type} `{component.name}`" if component else "Stack level"
        lines += [f"## {title}", "", "| type | name | key inputs |", "| --- | --- | --- |"]
        for resource in sorted(groups[key], key=lambda r: (r.type, r.name)):
            lines.append(
                f"| {_short_type(resource.type)} | {resource.name} | {_summarise(resource, ids, files)} |"
            )
        lines.append("")
    if run.outputs:
        lines += ["## Stack outputs", ""]
        lines += [f"- `{k}`: {' '.join(_display(v, {}).split())}" for k, v in run.outputs.items()]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- edge.md


def render_edge(run: ProgramRun) -> str:
    """Hostnames -> load balancers -> pools -> origins, from the Cloudflare resources the program declared."""
    pools = {p.id: p.inputs for p in run.of_type("cloudflare:index/loadBalancerPool:LoadBalancerPool")}
    lbs = [lb.inputs for lb in run.of_type("cloudflare:index/loadBalancer:LoadBalancer")]
    records = [r.inputs for r in run.of_type("cloudflare:index/dnsRecord:DnsRecord")]
    mode = "Cloudflare Load Balancer" if lbs else "plain proxied DNS records (no load balancer)"
    lines = [f"# Edge layout: stack `{run.stack}`", "", f"Mode: {mode}.", ""]
    if lbs:
        lines += [
            "## Load balancers",
            "",
            "| hostname | steering | pools (in order) | fallback |",
            "| --- | --- | --- | --- |",
        ]
        for lb in lbs:
            names = [pools[i]["name"] for i in lb["defaultPools"]]
            lines.append(
                f"| {lb['name']} | {lb.get('steeringPolicy', '')} | {', '.join(names)} | "
                f"{pools[lb['fallbackPool']]['name']} |"
            )
        lines += ["", "## Pools", "", "| pool | origins | check regions |", "| --- | --- | --- |"]
        for pool in pools.values():
            origins = ", ".join(f"{o['name']} ({o['address']})" for o in pool["origins"])
            lines.append(f"| {pool['name']} | {origins} | {', '.join(pool.get('checkRegions', []))} |")
        lines.append("")
    lines += _hostname_summary(lbs, pools, records)
    lines += [
        "## DNS records",
        "",
        "| hostname | type | content | proxied | ttl |",
        "| --- | --- | --- | --- | --- |",
    ]
    for record in sorted(records, key=lambda r: (r["name"], r["content"])):
        lines.append(
            f"| {record['name']} | {record['type']} | {record['content']} | "
            f"{'yes' if record.get('proxied') else 'no'} | {record.get('ttl')} |"
        )
    lines.append("")
    return "\n".join(lines)


def _hostname_summary(lbs: list[dict], pools: dict[str, dict], records: list[dict]) -> list[str]:
    """One row per hostname: how Cloudflare reaches it and which origins end up serving it."""
    lb_by_name = {lb["name"]: lb for lb in lbs}
    targets: dict[str, list[str]] = {}
    for record in records:
        targets.setdefault(record["name"], []).append(record)
    lines = ["## Hostnames -> origins", "", "| hostname | via | origins |", "| --- | --- | --- |"]

    def lb_origins(lb: dict) -> str:
        return "; ".join(
            f"{pools[i]['name']}: " + ", ".join(f"{o['name']} ({o['address']})" for o in pools[i]["origins"])
            for i in lb["defaultPools"]
        )

    for name in [*lb_by_name, *sorted(set(targets) - set(lb_by_name))]:
        if name in lb_by_name:
            lines.append(f"| {name} | load balancer | {lb_origins(lb_by_name[name])} |")
            continue
        recs = targets[name]
        if recs[0]["type"] == "CNAME" and recs[0]["content"] in lb_by_name:
            lines.append(
                f"| {name} | CNAME to {recs[0]['content']} | {lb_origins(lb_by_name[recs[0]['content']])} |"
            )
        else:
            via = f"{recs[0]['type']} record{'s' if len(recs) > 1 else ''}"
            lines.append(f"| {name} | {via} | {', '.join(r['content'] for r in recs)} |")
    lines.append("")
    return lines


# ---------------------------------------------------------------- validation


def _cloud_init_schema(path: Path) -> str | None:
    if shutil.which(CLOUD_INIT) is None:
        # No cloud-init here (a Mac, a plain Python image): the same schema, vendored, with jsonschema.
        errors = cloud_config_schema.problems(path.read_text())
        if errors:
            return (f"user-data/{path.name}: cloud-init schema failed (cloud-init "
                    f"{cloud_config_schema.CLOUD_INIT_VERSION} schema, vendored): {', '.join(errors)}")
        return None
    result = subprocess.run(
        [CLOUD_INIT, "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        detail = " ".join((result.stdout + result.stderr).split())
        return f"user-data/{path.name}: cloud-init schema failed: {detail}"
    return None


def validate_user_data(paths: Sequence[Path]) -> list[str]:
    problems = []
    checked = []
    for path in paths:
        text = path.read_text()
        if text.strip() == SECRET:
            problems.append(
                f"user-data/{path.name}: the user data is a secret output, so a secret value went "
                "into user_data; push secrets over SSH stdin instead (DESIGN §4.2)"
            )
            continue
        checked.append(path)
        if not text.startswith("#cloud-config"):
            problems.append(f"user-data/{path.name}: does not start with #cloud-config")
        if len(text.encode()) > USER_DATA_LIMIT:
            problems.append(
                f"user-data/{path.name}: {len(text.encode())} bytes, over the 32 KiB user data limit"
            )
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        problems += [p for p in pool.map(_cloud_init_schema, checked) if p]
    return problems


def validate_jobs(spec_paths: Sequence[Path]) -> list[str]:
    from components.job_spec import SpecError, load_job_spec

    problems = []
    for spec_path in spec_paths:
        vars_path = spec_path.with_suffix(".vars.json")
        try:
            spec = load_job_spec(spec_path)
        except SpecError as exc:
            problems.append(f"jobs/{spec_path.name}: {exc}")
            continue
        try:
            passed = json.loads(vars_path.read_text())
        except (OSError, ValueError) as exc:
            problems.append(f"jobs/{vars_path.name}: unreadable vars ({exc})")
            continue
        undeclared = sorted(set(passed) - set(spec.variables))
        missing = sorted(spec.required_variables - set(passed))
        if undeclared:
            problems.append(
                f"jobs/{spec_path.name}: vars passed but not declared (Nomad warns, or refuses in strict parsing): "
                f"{', '.join(undeclared)}"
            )
        if missing:
            problems.append(
                f"jobs/{spec_path.name}: variables without default that get no value: {', '.join(missing)}"
            )
        if undeclared or missing:
            continue
        try:
            rendered = render_templates(spec_path, passed)
        except SpecError as exc:
            problems.append(f"jobs/{spec_path.name}: a template cannot be rendered: {exc}")
            continue
        for destination, text in rendered.items():
            if destination.endswith((".yml", ".yaml")):
                try:
                    yaml.safe_load(text)
                except yaml.YAMLError as exc:
                    problems.append(f"jobs/{spec_path.name}: template {destination} is not valid YAML: {exc}")
    return problems


def render_templates(spec_path: Path, values: dict[str, str]) -> dict[str, str]:
    """destination -> data of every `template` block, with the HCL2 vars applied (Go template
    directives such as nomadVar stay as they are: Nomad renders those on the node)."""
    from components.job_spec import load_job_spec

    spec = load_job_spec(spec_path)
    return {
        str(spec.evaluate(t["destination"], values)): str(spec.evaluate(t["data"], values))
        for t in spec.templates()
    }


def validate(out: Path) -> list[str]:
    """Problems found in the artifacts under `out` (empty when everything is valid)."""
    user_data = sorted((out / "user-data").glob("*.yaml"))
    specs = sorted((out / "jobs").glob("*.hcl"))
    problems = []
    if not user_data:
        problems.append("no user data was rendered: the program declared no servers")
    if not specs:
        problems.append("no Nomad job was declared")
    return problems + validate_user_data(user_data) + validate_jobs(specs)


# ---------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    parser.add_argument("--out", type=Path, help="output directory (default build/plan/<stack>)")
    args = parser.parse_args(argv)
    out = args.out or Path("build/plan") / args.stack
    try:
        prepare_output(out)
    except (OutputRefused, OSError, ValueError) as exc:
        print(f"plan {args.stack}: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        run = _cached_run(args.stack)
    except Exception as exc:  # the program's own error (e.g. a ConfigError) is the message
        print(f"plan {args.stack}: the program failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_PROGRAM_FAILED
    written = write_artifacts(run, out)
    problems = validate(out)
    print(
        f"plan {args.stack}: {sum(r.custom for r in run.resources)} resources, "
        f"{len(written['user-data'])} user data, {len(written['jobs'])} jobs -> {out}"
    )
    for problem in problems:
        print(f"  FAIL {problem}", file=sys.stderr)
    if problems:
        print(f"plan {args.stack}: {len(problems)} problem(s)", file=sys.stderr)
        return EXIT_PROBLEMS
    print(f"plan {args.stack}: all artifacts valid (cloud-init schema, size, HCL2, job vars)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
