"""SSH steps run by pulumi-command: the one way config and secrets reach a host after first boot.

`provision()` is the shape every node type shares: wait for first boot -> push the node's files
(stdin, never arguments; the bundle's digest is the trigger) -> start. Command texts are module
constants or small builders so tests can shellcheck and run them.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from cloud_init.cluster import SecretSlot
from cloud_init.common import FIRST_BOOT_FAILED
from cloud_init.script_files import installed_path, script_text

# cloud-init exits 2 when it finished with (harmless) warnings; anything else names what failed.
WAIT_CLOUD_INIT = (
    "cloud-init status --wait >/dev/null || test $? -eq 2 || "
    f'{{ echo "first boot failed on $(hostname): $(cat {FIRST_BOOT_FAILED} 2>/dev/null || echo "see below")" >&2; '
    "cloud-init status --long >&2; exit 1; }"
)
# The installer runs inline (python3 -c): no installed copy on the node can be outdated.
INSTALL_FILES = f"python3 -c {shlex.quote(script_text('install_files.py'))}"
HEALTH_GATE = installed_path("health-gate.sh")
NODE_LEAVE = installed_path("node-leave.sh")
NO_OP = "true"
DIAL_TIMEOUT_SECONDS = 15
COMMAND_TIMEOUT = "20m"


def apply_command(units: Sequence[str], *, start_only: bool = False) -> str:
    return shlex.join([installed_path("apply.sh"), *(["--start-only"] if start_only else []), *units])


def bootstrap_command(expected_nodes: int) -> str:
    return shlex.join([installed_path("cluster-bootstrap.sh"), str(expected_nodes)])


def as_user(command: str, user: str) -> str:
    """Run `command` with root rights when connecting as a non-root user."""
    return command if user == "root" else f"sudo sh -c {shlex.quote(command)}"


def connection(
    host: pulumi.Input[str], user: str, private_key: pulumi.Input[str], *, dial_error_limit: int = -1,
) -> remote.ConnectionArgs:
    # A fresh server refuses SSH for a while: dial without limit, bounded by custom_timeouts.
    return remote.ConnectionArgs(
        host=host, user=user, private_key=private_key, dial_error_limit=dial_error_limit,
        per_dial_timeout=DIAL_TIMEOUT_SECONDS,
    )


def file_entry(
    path: str, content: pulumi.Input[str], mode: str = "0600", owner: str = "root", on_change: Sequence[str] = (),
) -> dict:
    return {"path": path, "mode": mode, "owner": owner, "content": content, "on_change": list(on_change)}


def slot_entry(slot: SecretSlot, content: pulumi.Input[str]) -> dict:
    return file_entry(slot.path, content, slot.mode, slot.owner, slot.on_change)


def files_bundle(files: Sequence[Mapping[str, object]]) -> pulumi.Output[str]:
    """The JSON `iot-install-files` reads on stdin; always a secret."""
    return pulumi.Output.secret(pulumi.Output.from_input([dict(f) for f in files]).apply(
        lambda resolved: json.dumps({"files": resolved}, sort_keys=True)
    ))


def content_digest(bundle: pulumi.Output[str]) -> pulumi.Output[str]:
    """sha256 of a files bundle: a trigger that changes exactly when the pushed content does (the
    installer's own output repeats itself across deploys, so it cannot serve as a trigger). Secret:
    a digest of secrets could confirm a guessed one."""
    return pulumi.Output.secret(bundle.apply(lambda text: hashlib.sha256(text.encode()).hexdigest()))


def lines(values: Sequence[pulumi.Input[str]]) -> pulumi.Output[str]:
    """Secret values one per line, for scripts that `read` them from stdin."""
    return pulumi.Output.secret(pulumi.Output.all(*values).apply(lambda vs: "".join(f"{v}\n" for v in vs)))


def run(
    name: str,
    *,
    conn: remote.ConnectionArgs,
    user: str,
    create: str,
    parent: pulumi.Resource,
    deleted_with: pulumi.Resource | None,
    depends_on: Sequence[pulumi.Resource] = (),
    stdin: pulumi.Input[str] | None = None,
    triggers: Sequence[pulumi.Input[object]] | None = None,
    delete: str | None = None,
    timeout: str = COMMAND_TIMEOUT,
) -> remote.Command:
    """A remote command; with stdin (secrets) nothing is logged and outputs are secret.

    `deleted_with`: the server whose deletion makes this step's own deletion moot. Only steps with a
    `delete` command (leaving the cluster) must run while their server still exists: they pass None.
    """
    secret = stdin is not None
    command = as_user(create, user)
    return remote.Command(
        name,
        connection=conn,
        create=command,
        update=command,  # a trigger change re-runs the step in place (no delete command in between)
        delete=as_user(delete, user) if delete else None,
        stdin=pulumi.Output.secret(stdin) if secret else None,
        logging="none" if secret else "stdoutAndStderr",
        triggers=list(triggers) if triggers is not None else None,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            deleted_with=deleted_with,
            custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout, delete=timeout),
            additional_secret_outputs=["stdout", "stderr"] if secret else None,
        ),
    )


@dataclass(frozen=True)
class Provisioned:
    conn: remote.ConnectionArgs
    wait: remote.Command
    push: remote.Command
    start: remote.Command
    digest: pulumi.Output[str]  # of everything pushed: the trigger of every later step


def provision(
    name: str,
    *,
    host: pulumi.Resource,
    address: pulumi.Input[str],
    user: str,
    private_key: pulumi.Input[str],
    files: Sequence[Mapping[str, object]],
    start: str,
    restart_on_change: bool,
    parent: pulumi.Resource,
) -> Provisioned:
    """wait for first boot -> push the node's files -> start.

    The push re-runs whenever any file's content changes (its digest is the trigger) and writes only
    what differs. `restart_on_change=False` makes `start` a first start only: a cluster node applies
    later changes in a rolling, health-gated step of its own (components/cluster.py).
    """
    conn = connection(address, user, private_key)
    common = {"conn": conn, "user": user, "parent": parent, "deleted_with": host}
    wait = run(f"{name}-wait-cloud-init", create=WAIT_CLOUD_INIT, timeout="30m", **common)
    bundle = files_bundle(files)
    digest = content_digest(bundle)
    push = run(f"{name}-push", create=INSTALL_FILES, stdin=bundle, triggers=[digest], depends_on=[wait], **common)
    started = run(f"{name}-start", create=start, depends_on=[push],
                  triggers=[digest] if restart_on_change else None, **common)
    return Provisioned(conn=conn, wait=wait, push=push, start=started, digest=digest)
