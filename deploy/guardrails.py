"""Guardrail decisions over the Pulumi engine's preview events.

Everything here is a pure function of recorded engine events (``pulumi.automation.events``), so the
decisions are unit-tested from JSON fixtures without a Pulumi CLI.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pulumi.automation.events import EngineEvent, OpType, PolicyEvent, StepEventMetadata

# Kinds of resource whose loss hurts: replacing or deleting them drops a Raft peer and its data, changes
# public addresses that DNS and load-balancer pools point at, or takes a hostname offline.
PROTECTED_KINDS: Mapping[str, str] = {
    "hcloud:index/server:Server": "Hetzner server (Consul/Nomad peer or monitor; local data is lost)",
    "hcloud:index/network:Network": "Hetzner private network (every node loses its private address)",
    "hcloud:index/networkSubnet:NetworkSubnet": "Hetzner subnet (fixed private IPs and retry_join break)",
    "hcloud:index/placementGroup:PlacementGroup": "Hetzner placement group (servers in it are recreated)",
    "hcloud:index/primaryIp:PrimaryIp": "Hetzner primary IP (DNS records and pool origins point at it)",
    "hcloud:index/volume:Volume": "Hetzner volume (its data is lost)",
    "hcloud:index/loadBalancer:LoadBalancer": "Hetzner load balancer (its public address changes)",
    "cloudflare:index/loadBalancer:LoadBalancer": "Cloudflare load balancer (the hostname goes offline)",
    "cloudflare:index/loadBalancerPool:LoadBalancerPool": "Cloudflare pool (load balancers lose origins)",
    "cloudflare:index/dnsRecord:DnsRecord": "Cloudflare DNS record (the hostname stops resolving)",
    "linode:index/instance:Instance": "Linode instance (monitor node; its address changes)",
}

# Operations that take the existing cloud object away. A replacement shows up as up to three steps
# (create-replacement, the logical replace, delete-replaced); all of them name the same URN.
_REPLACE_OPS = {OpType.REPLACE, OpType.CREATE_REPLACEMENT, OpType.DELETE_REPLACED}
_DELETE_OPS = {OpType.DELETE}
# Steps that change nothing in the cloud.
_NO_CHANGE_OPS = {OpType.SAME, OpType.READ, OpType.REFRESH}


@dataclass(frozen=True)
class GuardedChange:
    """A delete or replace of a protected kind of resource, with the reason a human needs."""

    urn: str
    type: str
    name: str
    op: str  # "replace" or "delete"
    reason: str
    protect: bool = False

    @property
    def kind(self) -> str:
        return PROTECTED_KINDS.get(self.type, self.type)


@dataclass(frozen=True)
class PolicyViolation:
    policy: str
    pack: str
    enforcement: str
    message: str
    urn: str | None

    @property
    def mandatory(self) -> bool:
        return self.enforcement == "mandatory"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    message: str


def resource_name(urn: str) -> str:
    """The logical name at the end of a URN (``urn:pulumi:stack::project::type::name``)."""
    return urn.rsplit("::", 1)[-1]


def steps(events: Iterable[EngineEvent]) -> list[StepEventMetadata]:
    """Every step the engine announced (resource pre-events), in order."""
    return [e.resource_pre_event.metadata for e in events if e.resource_pre_event is not None]


def policy_violations(events: Iterable[EngineEvent]) -> list[PolicyViolation]:
    found: list[PolicyViolation] = []
    for event in events:
        pe: PolicyEvent | None = event.policy_event
        if pe is None:
            continue
        found.append(
            PolicyViolation(
                policy=pe.policy_name,
                pack=pe.policy_pack_name,
                enforcement=pe.enforcement_level,
                message=pe.message.strip(),
                urn=pe.resource_urn,
            )
        )
    return found


def change_counts(events: Iterable[EngineEvent]) -> dict[str, int]:
    """Resources per operation, from the engine's summary event when there is one.

    The summary counts each replacement once (as ``replace``); without a summary (a failed run) the
    logical steps are counted instead, skipping the create-replacement/delete-replaced halves.
    """
    events = list(events)
    for event in reversed(events):
        if event.summary_event is not None:
            return {str(_op_value(op)): int(n) for op, n in event.summary_event.resource_changes.items() if n}
    counted = Counter(
        _op_value(s.op) for s in steps(events) if s.op not in (OpType.CREATE_REPLACEMENT, OpType.DELETE_REPLACED)
    )
    return dict(counted)


def has_changes(counts: Mapping[str, int]) -> bool:
    no_change = {_op_value(op) for op in _NO_CHANGE_OPS}
    return any(n > 0 for op, n in counts.items() if op not in no_change)


def guarded_changes(events: Iterable[EngineEvent]) -> list[GuardedChange]:
    """Deletes and replacements of protected kinds, one entry per resource, in plan order."""
    all_steps = steps(events)
    created_names = {(s.type, resource_name(s.urn)) for s in all_steps if s.op == OpType.CREATE}
    by_urn: dict[str, GuardedChange] = {}
    for step in all_steps:
        if step.type not in PROTECTED_KINDS:
            continue
        if step.op in _REPLACE_OPS:
            op = "replace"
            reason = _replace_reason(step)
        elif step.op in _DELETE_OPS:
            op = "delete"
            reason = _delete_reason(step, created_names)
        else:
            continue
        previous = by_urn.get(step.urn)
        # Keep the most informative record: the logical replace step carries the replace keys.
        if previous is None or (step.op == OpType.REPLACE and previous.op == "replace"):
            by_urn[step.urn] = GuardedChange(
                urn=step.urn,
                type=step.type,
                name=resource_name(step.urn),
                op=op,
                reason=reason,
                protect=bool(step.old is not None and step.old.protect),
            )
    return list(by_urn.values())


def decide_up(changes: list[GuardedChange], allow_replace: bool) -> Decision:
    """May ``up`` go ahead after this preview?"""
    if not changes:
        return Decision(True, "no protected resource is deleted or replaced")
    listing = "; ".join(f"{c.op} {c.type} '{c.name}': {c.reason} [{c.kind}]" for c in changes)
    if allow_replace:
        return Decision(True, f"--allow-replace given, proceeding although the plan will {listing}")
    return Decision(
        False,
        f"refusing: the plan would {listing}. Review the preview; if this is intended, "
        "re-run with --allow-replace.",
    )


def decide_destroy(stack: str, yes_destroy_prod: bool) -> Decision:
    if stack == "prod" and not yes_destroy_prod:
        return Decision(
            False,
            "refusing to destroy stack 'prod': it deletes the production cluster, its DNS and load "
            "balancers. If you really mean it, re-run with --yes-destroy-prod.",
        )
    return Decision(True, f"destroying stack '{stack}'")


def mandatory_violations(violations: Iterable[PolicyViolation]) -> list[PolicyViolation]:
    return [v for v in violations if v.mandatory]


def _op_value(op: OpType | str) -> str:
    return op.value if isinstance(op, OpType) else str(op)


def _replace_reason(step: StepEventMetadata) -> str:
    keys = list(step.keys or [])
    protect = " (it is protect=True, so the engine would fail half way)" if step.old and step.old.protect else ""
    if keys:
        return f"replaced because {', '.join(f'`{k}`' for k in keys)} changed{protect}"
    return f"replaced (the provider requires a new resource){protect}"


def _delete_reason(step: StepEventMetadata, created: set[tuple[str, str]]) -> str:
    if (step.type, resource_name(step.urn)) in created:
        return (
            "deleted while a resource of the same type and name is created under another URN: it was "
            "probably moved or renamed without `aliases=`"
        )
    protect = " and it is protect=True, so the engine would fail" if step.old and step.old.protect else ""
    return f"deleted because the program no longer declares it{protect}"
