"""ClusterSecrets: every credential the cluster needs, generated in the stack and kept secret.

TLS CA and certificates (pulumi-tls), gossip keys and ACL tokens (pulumi-random), SSH deploy key.
None of them ever reaches user data: components push them over SSH through command stdin.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_random as random
import pulumi_tls as tls

CA_VALIDITY_HOURS = 10 * 365 * 24
CERT_VALIDITY_HOURS = 365 * 24
# `pulumi up` within the last 30 days of a certificate's life issues and pushes a new one.
CERT_EARLY_RENEWAL_HOURS = 30 * 24
# Node certificates are issued together but expire 14 days apart per node id, so renewals come due
# on different days: one node's certificate at a time, each applied by a reload behind the health
# gate (components/cluster.py) rather than every node at once.
CERT_STAGGER_HOURS = 14 * 24
CERT_STAGGER_SLOTS = 8  # node ids 1..8 get offsets 0..7 steps, id 9 starts over
ORGANIZATION = "my-iot-app"

SERVER_CERT_USES = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]
CLIENT_CERT_USES = ["digital_signature", "key_encipherment", "client_auth"]


@dataclass(frozen=True)
class NodeCertificate:
    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]  # secret


# Credentials come from RandomBytes, never RandomUuid/RandomId: those use the value itself as the
# resource ID, and Pulumi cannot encrypt IDs, so the token would sit in plain text in the state.
# RandomBytes has the constant ID "none" and its values are secret outputs.
def _random_bytes(name: str, length: int, parent: pulumi.Resource) -> random.RandomBytes:
    return random.RandomBytes(
        name, length=length,
        opts=pulumi.ResourceOptions(parent=parent, additional_secret_outputs=["base64", "hex"]),
    )


def _secret_uuid(name: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    # Consul and Nomad ACL tokens are UUIDs: format 16 random bytes as one.
    token = _random_bytes(name, 16, parent).hex.apply(lambda h: str(uuid.UUID(hex=h)))
    return pulumi.Output.secret(token)


def _gossip_key(name: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    # Consul and Nomad both take a base64-encoded 32-byte key.
    return pulumi.Output.secret(_random_bytes(name, 32, parent).base64)


class ClusterSecrets(pulumi.ComponentResource):
    """Credentials for one stack's cluster; every private value is a Pulumi secret output."""

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iot:secrets:ClusterSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self._ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca_cert = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=self._ca_key.private_key_pem,
            is_ca_certificate=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"{ORGANIZATION} cluster CA", organization=ORGANIZATION),
            opts=child,
        )
        self.ca_cert_pem: pulumi.Output[str] = ca_cert.cert_pem

        # Operators and the Nomad provider authenticate with this client certificate
        # (Nomad runs with verify_https_client).
        client = self.issue_certificate(
            f"{name}-nomad-client", common_name="nomad operator", dns_names=["client.global.nomad"],
            ip_addresses=[], uses=CLIENT_CERT_USES, parent=self,
        )
        self.nomad_client_cert_pem: pulumi.Output[str] = client.cert_pem
        self.nomad_client_key_pem: pulumi.Output[str] = client.key_pem

        # Nomad's management token: pushed to the nodes for the bootstrap, health gate and leave steps,
        # never handed to Pulumi's Nomad provider or exported.
        self.nomad_bootstrap_token = _secret_uuid(f"{name}-nomad-bootstrap-token", self)
        # Least-privilege Nomad tokens the bootstrap creates with these ids (cloud_init/policies/):
        # the deployer for Pulumi's Nomad provider, the operator for the exported `nomadToken`.
        self.nomad_deployer_accessor = _secret_uuid(f"{name}-nomad-deployer-accessor", self)
        self.nomad_deployer_token = _secret_uuid(f"{name}-nomad-deployer-token", self)
        self.nomad_operator_accessor = _secret_uuid(f"{name}-nomad-operator-accessor", self)
        self.nomad_operator_token = _secret_uuid(f"{name}-nomad-operator-token", self)
        self.consul_management_token = _secret_uuid(f"{name}-consul-management-token", self)
        self.consul_agent_token = _secret_uuid(f"{name}-consul-agent-token", self)
        self.nomad_consul_token = _secret_uuid(f"{name}-nomad-consul-token", self)
        # Read-only catalog token for Traefik's Consul Catalog provider.
        self.consul_catalog_token = _secret_uuid(f"{name}-consul-catalog-token", self)
        self.consul_gossip_key = _gossip_key(f"{name}-consul-gossip-key", self)
        self.nomad_gossip_key = _gossip_key(f"{name}-nomad-gossip-key", self)

        ssh_key = tls.PrivateKey(f"{name}-ssh-key", algorithm="ED25519", opts=child)
        self.ssh_private_key: pulumi.Output[str] = pulumi.Output.secret(ssh_key.private_key_openssh)
        self.ssh_public_key: pulumi.Output[str] = ssh_key.public_key_openssh.apply(str.strip)

        self.register_outputs({
            "caCertPem": self.ca_cert_pem,
            "nomadClientCertPem": self.nomad_client_cert_pem,
            "sshPublicKey": self.ssh_public_key,
        })

    def issue_certificate(
        self,
        name: str,
        *,
        common_name: str,
        dns_names: Sequence[str],
        ip_addresses: Sequence[pulumi.Input[str]],
        uses: Sequence[str] = tuple(SERVER_CERT_USES),
        parent: pulumi.Resource,
        stagger: int = 0,
    ) -> NodeCertificate:
        """Key + certificate signed by the cluster CA; resources are children of `parent`.

        `stagger` (from a node's id) moves the expiry by CERT_STAGGER_HOURS per step."""
        child = pulumi.ResourceOptions(parent=parent)
        key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        request = tls.CertRequest(
            f"{name}-csr",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=common_name, organization=ORGANIZATION),
            dns_names=list(dns_names),
            ip_addresses=list(ip_addresses),
            opts=child,
        )
        cert = tls.LocallySignedCert(
            f"{name}-cert",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=self._ca_key.private_key_pem,
            ca_cert_pem=self.ca_cert_pem,
            validity_period_hours=CERT_VALIDITY_HOURS + (stagger % CERT_STAGGER_SLOTS) * CERT_STAGGER_HOURS,
            early_renewal_hours=CERT_EARLY_RENEWAL_HOURS,
            allowed_uses=list(uses),
            opts=child,
        )
        return NodeCertificate(cert_pem=cert.cert_pem, key_pem=pulumi.Output.secret(key.private_key_pem))
