"""The deploy access window: admit one CI runner to SSH and the Nomad API for the length of one job.

    python -m deploy window open  --stack prod [--address auto|<ip>]   (before `python -m deploy up`)
    python -m deploy window close --stack prod                          (always, even when `up` failed)

GitHub-hosted runners do not sit inside `iot:adminCidrs`, yet `up` talks SSH (22) to every node and
the Nomad API (4646) to the cluster. `open` admits the runner's egress address, as a single /32 (or
/128), and nothing else:

- Hetzner: two temporary firewalls, `iot-<stack>-deploy-window-cluster` (22 + 4646) and
  `...-monitor` (22), applied by label selector (`stack=<stack>,role=cluster|monitor`), so servers
  `up` creates mid-job are covered too. They live outside Pulumi state; the servers set
  `ignore_remote_firewall_ids`, so `up` neither sees drift nor tries to detach them.
- Linode (monitors Hetzner cannot host, e.g. Tokyo): one extra inbound rule (22 from the runner,
  label `iot-deploy-window`) on the stack's `iot-<stack>-monitors` firewall; a Linode may have only
  one active firewall, so the window joins the existing one and `close` removes exactly that rule.

`close` deletes whatever window exists for the stack (also one a crashed run left half open) and
succeeds when there is none, so the workflow runs it with `if: always()`. It needs only the
provider APIs, not Pulumi state, so a cancelled or failed `up` (even one that left the state
locked) cannot keep the window open.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.firewall import Rule, window_rules

REPO_DIR = Path(__file__).resolve().parent.parent
EXIT_OK, EXIT_FAILED = 0, 1
PURPOSE = "deploy-window"
LINODE_RULE_LABEL = "iot-deploy-window"
DEFAULT_IP_URL = "https://api.ipify.org"
ROLES = ("cluster", "monitor")


class WindowError(Exception):
    """A window operation cannot proceed; the message names the fix (never a token)."""


# ---------------------------------------------------------------- what a window is (pure)


@dataclass(frozen=True)
class HetznerWindow:
    name: str
    selector: str  # servers it applies to
    labels: dict[str, str]
    rules: tuple[Rule, ...]


def runner_address(text: str) -> str:
    """`text` as one public host network (`a.b.c.d/32`, `x::y/128`), or WindowError."""
    value = text.strip()
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        network = None
    if network is None or network.num_addresses != 1 or not network.network_address.is_global:
        raise WindowError(
            f"--address {value!r} is not one public address; the window admits exactly the runner's "
            "egress address (e.g. 4.231.12.34), or pass --address auto to look it up"
        )
    return str(network)


def hetzner_windows(stack: str, address: str) -> list[HetznerWindow]:
    return [
        HetznerWindow(
            name=f"iot-{stack}-deploy-window-{role}",
            selector=f"stack={stack},role={role}",
            labels={"app": "iot", "stack": stack, "role": role, "purpose": PURPOSE},
            rules=tuple(window_rules(address, role)),
        )
        for role in ROLES
    ]


def linode_firewall_label(stack: str) -> str:
    """The label components/monitors.py gives the stack's Linode firewall."""
    return f"iot-{stack}-monitors"


def linode_window_rule(address: str) -> dict:
    family = "ipv4" if ipaddress.ip_network(address).version == 4 else "ipv6"
    return {"label": LINODE_RULE_LABEL, "action": "ACCEPT", "protocol": "TCP", "ports": "22",
            "addresses": {family: [address]}, "description": "deploy window: SSH from the CI runner"}


def stack_uses_linode(work_dir: Path, stack: str) -> bool:
    path = work_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise WindowError(f"no stack file {path.name} in {work_dir}; pass --stack with a committed stack")
    config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    monitors = config.get("iot:monitors") or []
    return any(isinstance(m, Mapping) and m.get("provider") == "linode" for m in monitors)


def discover_address(url: str, timeout: float = 10.0) -> str:
    """The runner's public egress address, as a what-is-my-IP service sees it (plain-text answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read(64).decode("ascii", "replace").strip()
    except OSError as exc:
        raise WindowError(f"could not look up the runner's address at {url} ({exc}); pass --address <ip>") from None


# ---------------------------------------------------------------- the providers


class Hetzner:
    """Temporary firewalls applied by label selector (hcloud client)."""

    def __init__(self, token: str, endpoint: str | None) -> None:
        from hcloud import Client

        kwargs = {"api_endpoint": endpoint} if endpoint else {}
        self._client = Client(token=token, application_name="iot-deploy-window", poll_interval=0.5, **kwargs)

    def open(self, windows: list[HetznerWindow]) -> None:
        from hcloud.firewalls import FirewallResource, FirewallResourceLabelSelector, FirewallRule

        for window in windows:
            created = self._client.firewalls.create(
                name=window.name,
                labels=window.labels,
                rules=[FirewallRule(direction="in", protocol=r.protocol, port=r.port, source_ips=list(r.sources),
                                    description=r.description) for r in window.rules],
                resources=[FirewallResource(type="label_selector",
                                            label_selector=FirewallResourceLabelSelector(window.selector))],
            )
            for action in created.actions:
                action.wait_until_finished()

    def close(self, stack: str) -> list[str]:
        closed = []
        for firewall in self._client.firewalls.get_all(label_selector=f"purpose={PURPOSE},stack={stack}"):
            if firewall.applied_to:
                for action in self._client.firewalls.remove_from_resources(firewall, firewall.applied_to):
                    action.wait_until_finished()
            self._client.firewalls.delete(firewall)
            closed.append(firewall.name)
        return closed


class Linode:
    """One extra inbound rule on the stack's existing Linode firewall (linode_api4 client)."""

    def __init__(self, token: str, endpoint: str | None) -> None:
        from linode_api4 import LinodeClient

        kwargs = {"base_url": endpoint} if endpoint else {}
        self._client = LinodeClient(token, user_agent="iot-deploy-window", **kwargs)

    def _firewall(self, label: str):
        from linode_api4 import Firewall

        found = list(self._client.networking.firewalls(Firewall.label == label))
        return found[0] if found else None

    def set_window(self, label: str, rule: dict | None) -> bool:
        """Replace the window rule on firewall `label` by `rule` (None: remove it); True when changed."""
        firewall = self._firewall(label)
        if firewall is None:
            return False  # nothing deployed yet: the instance will be created with the window closed
        rules = firewall.get_rules()
        inbound = [r for r in rules.get("inbound") or [] if r.get("label") != LINODE_RULE_LABEL]
        changed = len(inbound) != len(rules.get("inbound") or [])
        if rule is not None:
            inbound.append(rule)
            changed = True
        if changed:
            firewall.update_rules({
                "inbound": inbound,
                "inbound_policy": rules.get("inbound_policy", "DROP"),
                "outbound": rules.get("outbound") or [],
                "outbound_policy": rules.get("outbound_policy", "ACCEPT"),
            })
        return changed


# ---------------------------------------------------------------- open / close


@dataclass
class Providers:
    hetzner: Hetzner
    linode: Linode | None


def open_window(stack: str, address: str, providers: Providers, say: Callable[[str], None]) -> None:
    # A window left behind by a crashed run is replaced, never stacked on.
    close_window(stack, providers, lambda _line: None)
    windows = hetzner_windows(stack, address)
    providers.hetzner.open(windows)
    for window in windows:
        ports = ", ".join(f"tcp/{r.port}" for r in window.rules)
        say(f"window open: {window.name}: {ports} from {address} on servers {window.selector}")
    if providers.linode is not None:
        label = linode_firewall_label(stack)
        if providers.linode.set_window(label, linode_window_rule(address)):
            say(f"window open: Linode firewall {label}: tcp/22 from {address}")
        else:
            say(f"window open: no Linode firewall {label} yet (created closed by `up`; admin CIDRs only)")


def close_window(stack: str, providers: Providers, say: Callable[[str], None]) -> None:
    for name in providers.hetzner.close(stack):
        say(f"window closed: deleted Hetzner firewall {name}")
    if providers.linode is not None and providers.linode.set_window(linode_firewall_label(stack), None):
        say(f"window closed: removed {LINODE_RULE_LABEL} from Linode firewall {linode_firewall_label(stack)}")
    say(f"window closed for stack {stack}: only iot:adminCidrs reach SSH and the Nomad API")


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy window",
        description="Admit this machine's public address to SSH (22) and the Nomad API (4646) of a stack's "
        "nodes for one deploy job (open), and remove it again (close). Tokens: HCLOUD_TOKEN, and LINODE_TOKEN "
        "for stacks with Linode monitors. Exit 0 done, 1 failed.",
    )
    parser.add_argument("action", choices=("open", "close"))
    parser.add_argument("--stack", required=True, help="stack name, e.g. dev or prod (org/prod works too)")
    parser.add_argument("--address", default="auto",
                        help="the runner's public address, or `auto` to ask --ip-url (default: auto)")
    parser.add_argument("--ip-url", default=DEFAULT_IP_URL, help=f"what-is-my-IP service (default {DEFAULT_IP_URL})")
    parser.add_argument("--work-dir", type=Path, default=REPO_DIR, help="project directory with Pulumi.<stack>.yaml")
    return parser


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = build_parser().parse_args(argv)
    stack = args.stack.rsplit("/", 1)[-1]
    try:
        address = None
        if args.action == "open":
            address = runner_address(discover_address(args.ip_url) if args.address == "auto" else args.address)
        providers = _providers(stack, args.work_dir, env)
        if address is not None:
            open_window(stack, address, providers, print)
        else:
            close_window(stack, providers, print)
    except WindowError as exc:
        print(f"error: window {args.action}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # provider API errors: say which call failed, never the token
        print(f"error: window {args.action} for stack {stack} failed: {type(exc).__name__}: {exc}; "
              "run `python -m deploy window close` to remove whatever was opened", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _providers(stack: str, work_dir: Path, env: Mapping[str, str]) -> Providers:
    if not env.get("HCLOUD_TOKEN"):
        raise WindowError("HCLOUD_TOKEN is not set; export the Hetzner Cloud token the deploy uses")
    linode = None
    if stack_uses_linode(work_dir, stack):
        if not env.get("LINODE_TOKEN"):
            raise WindowError(f"stack {stack} has Linode monitors: set LINODE_TOKEN so their SSH opens too")
        linode = Linode(env["LINODE_TOKEN"], env.get("LINODE_ENDPOINT"))
    return Providers(Hetzner(env["HCLOUD_TOKEN"], env.get("HCLOUD_ENDPOINT")), linode)
