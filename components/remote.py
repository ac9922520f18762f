"""SSH steps run by pulumi-command: the one way secrets reach a host (stdin, never arguments).

The command texts are module constants so tests can shellcheck them.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence

import pulumi
from pulumi_command import remote

# cloud-init exits 2 when it finished with (harmless) warnings.
WAIT_CLOUD_INIT = "cloud-init status --wait >/dev/null || test $? -eq 2"
INSTALL_FILES = "/usr/local/sbin/iot-install-files"
START_AGENTS = "systemctl enable consul.service nomad.service && systemctl restart consul.service nomad.service"
START_MONITOR = "systemctl enable iot-monitor.service && systemctl restart iot-monitor.service"
DIAL_TIMEOUT_SECONDS = 15
COMMAND_TIMEOUT = "20m"


def bootstrap_command(expected_nodes: int) -> str:
    return shlex.join(["/usr/local/sbin/iot-cluster-bootstrap", str(expected_nodes)])


def as_user(command: str, user: str) -> str:
    """Run `command` with root rights when connecting as a non-root user."""
    return command if user == "root" else f"sudo sh -c {shlex.quote(command)}"


def connection(host: pulumi.Input[str], user: str, private_key: pulumi.Input[str]) -> remote.ConnectionArgs:
    # A fresh server refuses SSH for a while: dial without limit, bounded by custom_timeouts.
    return remote.ConnectionArgs(
        host=host, user=user, private_key=private_key, dial_error_limit=-1,
        per_dial_timeout=DIAL_TIMEOUT_SECONDS,
    )


def file_entry(path: str, content: pulumi.Input[str], mode: str = "0600", owner: str = "root") -> dict:
    return {"path": path, "mode": mode, "owner": owner, "content": content}


def files_bundle(files: Sequence[Mapping[str, object]]) -> pulumi.Output[str]:
    """The JSON `iot-install-files` reads on stdin; always a secret."""
    return pulumi.Output.secret(pulumi.Output.from_input([dict(f) for f in files]).apply(
        lambda resolved: json.dumps({"files": resolved}, sort_keys=True)
    ))


def content_digest(bundle: pulumi.Output[str]) -> pulumi.Output[str]:
    """sha256 of a files bundle: a restart trigger that changes exactly when the pushed content does
    (the installer's own output repeats itself across deploys, so it cannot serve as a trigger)."""
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
    deleted_with: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
    stdin: pulumi.Input[str] | None = None,
    triggers: Sequence[pulumi.Input[object]] | None = None,
    timeout: str = COMMAND_TIMEOUT,
) -> remote.Command:
    """A remote command; with stdin (secrets) nothing is logged and outputs are secret."""
    secret = stdin is not None
    command = as_user(create, user)
    return remote.Command(
        name,
        connection=conn,
        create=command,
        update=command,
        stdin=pulumi.Output.secret(stdin) if secret else None,
        logging="none" if secret else "stdoutAndStderr",
        triggers=list(triggers) if triggers is not None else None,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            deleted_with=deleted_with,
            custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout),
            additional_secret_outputs=["stdout", "stderr"] if secret else None,
        ),
    )
