"""What one cluster node gets pushed: the public files of cloud_init/cluster.py plus its secrets.

Kept apart from AppCluster (which wires servers and SSH steps) because this is where a new file or
a new secret is added, and where the bundle's shape is tested.
"""

from __future__ import annotations

import json

import pulumi

from cloud_init.cluster import SECRET_FILES, ClusterNodeSpec, cluster_node_files
from components import remote
from components.secrets import ClusterSecrets, NodeCertificate


def _json_secret(data: pulumi.Input[dict]) -> pulumi.Output[str]:
    return pulumi.Output.secret(
        pulumi.Output.from_input(data).apply(lambda d: json.dumps(d, indent=2, sort_keys=True) + "\n")
    )


def _token_file(token: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.secret(pulumi.Output.from_input(token).apply(lambda t: f"{t}\n"))


def cluster_node_bundle(
    spec: ClusterNodeSpec, secrets: ClusterSecrets, cert: NodeCertificate, registry_auth: pulumi.Output[str],
) -> list[dict]:
    """Bundle entries for one node: every file that may change during its life, secrets included.

    `registry_auth`: Docker's config.json for Nomad's docker driver (components/registry.py).
    """
    slot = SECRET_FILES
    return [
        *(f.entry() for f in cluster_node_files(spec)),
        remote.slot_entry(slot["consul_ca"], secrets.ca_cert_pem),
        remote.slot_entry(slot["consul_cert"], cert.cert_pem),
        remote.slot_entry(slot["consul_key"], cert.key_pem),
        remote.slot_entry(slot["consul_gossip"], _json_secret({"encrypt": secrets.consul_gossip_key})),
        remote.slot_entry(slot["consul_tokens"], _json_secret({
            "acl": {"tokens": {"initial_management": secrets.consul_management_token,
                               "agent": secrets.consul_agent_token}},
        })),
        remote.slot_entry(slot["nomad_ca"], secrets.ca_cert_pem),
        remote.slot_entry(slot["nomad_cert"], cert.cert_pem),
        remote.slot_entry(slot["nomad_key"], cert.key_pem),
        remote.slot_entry(slot["nomad_secrets"], _json_secret({
            "server": {"encrypt": secrets.nomad_gossip_key},
            "consul": {"token": secrets.nomad_consul_token},
        })),
        remote.slot_entry(slot["consul_management"], _token_file(secrets.consul_management_token)),
        remote.slot_entry(slot["nomad_management"], _token_file(secrets.nomad_bootstrap_token)),
        remote.slot_entry(slot["docker_config"], registry_auth),
    ]
