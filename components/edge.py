"""Cloudflare in front of the cluster (DESIGN §4.2 Edge, pulumi-cloudflare v6 shapes).

Prod: an account-scoped monitor on Traefik's ping entrypoint, one pool per EU location whose origins
are that location's nodes, and zone load balancers on the apex and `*`. Dev (no paid LB add-on):
plain proxied A records to the nodes for the same hostnames. Both: an Origin CA certificate for
Traefik. The stack that owns the zone (`iot:cloudflare.ownsZone`) also declares the zone-wide
singletons: SSL mode Full (strict), Authenticated Origin Pulls (Traefik demands Cloudflare's client
certificate), a config rule that lets monitor hosts reach their nodes over HTTP, and a custom rule
that admits only GET/HEAD /health on monitor hosts and nothing on internal hosts (the worker).
Monitor hostnames need that config rule, so a stack that does not own its zone publishes none.
Nodes come in as data, so a new location in `iot:cluster.locations` lands in its pool in the same
`pulumi up`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_tls as tls

from components.config import StackConfig
from components.edge_layout import INTERNAL_HOSTS, EdgeLayout, NodeRef, edge_layout
from components.edge_rules import EdgeRule, blocked_requests, plain_http_origins

TRAEFIK_PING_PORT = 8082
ORIGIN_CERT_VALIDITY_DAYS = 5475  # the Origin CA maximum (15 years)


class PublicNode(Protocol):
    name: str
    public_ipv4: pulumi.Output[str]


class AppNode(PublicNode, Protocol):
    location: str


def _slug(hostname: str) -> str:
    return hostname.replace("*", "wildcard").replace(".", "-")


class Edge(pulumi.ComponentResource):
    """DNS, load balancing and origin TLS for one stack's domain."""

    layout: EdgeLayout
    origin_certificate: pulumi.Output[str]
    origin_private_key: pulumi.Output[str]
    # Zone resources Traefik's client-certificate demand must wait for (empty when another stack owns the zone).
    origin_pulls: list[pulumi.Resource]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        app_nodes: Sequence[AppNode],
        monitor_nodes: Sequence[PublicNode],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("iot:edge:Edge", name, None, opts)
        self._config = config
        self._zone_id = config.cloudflare.zone_id
        self._account_id = config.cloudflare.account_id
        self.layout = edge_layout(
            config.domain,
            [NodeRef(n.name, n.location) for n in app_nodes],
            [m.name for m in monitor_nodes],
            config.edge.load_balancer,
            publish_monitors=config.cloudflare.owns_zone,
        )
        addresses = {n.name: n.public_ipv4 for n in app_nodes}
        monitor_addresses = {m.name: m.public_ipv4 for m in monitor_nodes}

        self._origin_tls(name)
        self.origin_pulls = []

        self.pool_ids: dict[str, pulumi.Output[str]] = {}
        self.load_balancers: list[cloudflare.LoadBalancer] = []
        self.records: list[cloudflare.DnsRecord] = []
        if self.layout.load_balancer:
            monitor = self._health_monitor(name)
            self.pool_ids = {
                pool.location: self._pool(name, pool.location, pool.origins, addresses, monitor)
                for pool in self.layout.pools
            }
        for host in self.layout.hosts:
            if host.kind == "load_balancer":
                self.load_balancers.append(self._load_balancer(name, host.hostname, host.targets))
            elif host.kind == "cname":
                self.records.append(self._record(name, host.hostname, "CNAME", host.targets[0]))
            else:
                ips = addresses if host.kind == "nodes" else monitor_addresses
                for target in host.targets:
                    suffix = f"-{target}" if host.kind == "nodes" else ""
                    self.records.append(self._record(name, host.hostname, "A", ips[target], suffix=suffix))
        if config.cloudflare.owns_zone:
            self._zone_singletons(name)

        self.register_outputs(
            {
                "hostnames": [h.hostname for h in self.layout.hosts],
                "pools": self.pool_ids,
                "origin_certificate": self.origin_certificate,
            }
        )

    def _child(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _origin_tls(self, name: str) -> None:
        """Key + CSR generated here (the key never leaves state); Cloudflare's Origin CA signs it."""
        domain = self._config.domain
        hostnames = [domain, f"*.{domain}"]
        key = tls.PrivateKey(f"{name}-origin-key", algorithm="ECDSA", ecdsa_curve="P256", opts=self._child())
        csr = tls.CertRequest(
            f"{name}-origin-csr",
            private_key_pem=key.private_key_pem,
            subject={"common_name": domain, "organization": domain},
            dns_names=hostnames,
            opts=self._child(),
        )
        cert = cloudflare.OriginCaCertificate(
            f"{name}-origin-cert",
            csr=csr.cert_request_pem,
            hostnames=hostnames,
            request_type="origin-ecc",
            requested_validity=ORIGIN_CERT_VALIDITY_DAYS,
            opts=self._child(),
        )
        self.origin_certificate = cert.certificate
        self.origin_private_key = pulumi.Output.secret(key.private_key_pem)

    def _health_monitor(self, name: str) -> cloudflare.LoadBalancerMonitor:
        return cloudflare.LoadBalancerMonitor(
            f"{name}-traefik-ping",
            account_id=self._account_id,
            description=f"iot {self._config.stack}: Traefik ping entrypoint",
            type="http",
            method="GET",
            path="/ping",
            port=TRAEFIK_PING_PORT,
            expected_codes="200",
            interval=60,
            timeout=5,
            retries=2,
            opts=self._child(),
        )

    def _pool(
        self,
        name: str,
        location: str,
        origins: Sequence[str],
        addresses: dict[str, pulumi.Output[str]],
        monitor: cloudflare.LoadBalancerMonitor,
    ) -> pulumi.Output[str]:
        pool = cloudflare.LoadBalancerPool(
            f"{name}-pool-{location}",
            account_id=self._account_id,
            name=f"iot-{self._config.stack}-{location}",
            description=f"iot {self._config.stack} app nodes in {location}",
            origins=[
                cloudflare.LoadBalancerPoolOriginArgs(
                    name=node, address=addresses[node], enabled=True, weight=1
                )
                for node in origins
            ],
            monitor=monitor.id,
            check_regions=list(self._config.edge.check_regions),
            minimum_origins=1,
            opts=self._child(),
        )
        return pool.id

    def _load_balancer(self, name: str, hostname: str, locations: Sequence[str]) -> cloudflare.LoadBalancer:
        pool_ids = [self.pool_ids[loc] for loc in locations]
        return cloudflare.LoadBalancer(
            f"{name}-lb-{_slug(hostname)}",
            zone_id=self._zone_id,
            name=hostname,
            description=f"iot {self._config.stack}: {hostname}",
            default_pools=pool_ids,
            fallback_pool=pool_ids[0],
            proxied=True,
            steering_policy=self._config.edge.steering_policy,
            opts=self._child(),
        )

    def _record(
        self, name: str, hostname: str, record_type: str, content: pulumi.Input[str], suffix: str = ""
    ) -> cloudflare.DnsRecord:
        return cloudflare.DnsRecord(
            f"{name}-{record_type.lower()}-{_slug(hostname)}{suffix}",
            zone_id=self._zone_id,
            name=hostname,
            type=record_type,
            content=content,
            proxied=True,
            ttl=1,  # required in v6; 1 = automatic (always the case for proxied records)
            comment=f"iot {self._config.stack} (managed by Pulumi)",
            opts=self._child(),
        )

    def _zone_singletons(self, name: str) -> None:
        """The zone-wide settings and entry-point rulesets: declared by the owning stack only."""
        cloudflare.ZoneSetting(
            f"{name}-ssl-strict", zone_id=self._zone_id, setting_id="ssl", value="strict", opts=self._child(),
        )
        # Cloudflare presents its origin-pull client certificate to every origin of the zone; Traefik's
        # websecure requires it (jobs/traefik.nomad.hcl), so it must be on before Traefik demands it.
        self.origin_pulls.append(cloudflare.ZoneSetting(
            f"{name}-origin-pulls", zone_id=self._zone_id, setting_id="tls_client_auth", value="on",
            opts=self._child(),
        ))
        domain = self._config.domain
        monitor_hosts = [h.hostname for h in self.layout.hosts if h.kind == "monitor"]
        internal_hosts = [f"{label}.{domain}" for label in INTERNAL_HOSTS]
        if monitor_hosts:
            rule = plain_http_origins(monitor_hosts)
            self._ruleset(
                f"{name}-monitor-hosts-ssl", "http_config_settings", "iot monitor hosts",
                "Monitor nodes serve /health over HTTP: flexible SSL for their hostnames only",
                [cloudflare.RulesetRuleArgs(
                    action="set_config", expression=rule.expression, description=rule.description, enabled=True,
                    action_parameters=cloudflare.RulesetRuleActionParametersArgs(ssl="flexible"),
                )],
            )
        blocked = blocked_requests(monitor_hosts, internal_hosts)
        self._ruleset(
            f"{name}-internal-hosts", "http_request_firewall_custom", "iot custom rules",
            "Monitor hosts serve GET /health only; internal hosts are never served through the edge",
            [self._block(rule) for rule in blocked],
        )

    def _block(self, rule: EdgeRule) -> cloudflare.RulesetRuleArgs:
        return cloudflare.RulesetRuleArgs(
            action="block", expression=rule.expression, description=rule.description, enabled=True,
        )

    def _ruleset(
        self, resource_name: str, phase: str, name: str, description: str, rules: list[cloudflare.RulesetRuleArgs]
    ) -> cloudflare.Ruleset:
        return cloudflare.Ruleset(
            resource_name, zone_id=self._zone_id, kind="zone", phase=phase, name=name,
            description=description, rules=rules, opts=self._child(),
        )
