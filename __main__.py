"""my-iot-app infrastructure: config -> secrets -> EU cluster -> regional monitors -> edge + workloads."""

import pulumi

from components.cluster import AppCluster
from components.config import load_stack_config
from components.edge import Edge
from components.monitors import MonitorFleet
from components.secrets import ClusterSecrets
from components.workloads import NomadWorkloads

config = load_stack_config()

secrets = ClusterSecrets("cluster-secrets")
cluster = AppCluster("cluster", config, secrets)
monitors = MonitorFleet("monitors", config, secrets, ssh_key=cluster.ssh_key)

pulumi.export("nodes", {
    node.name: {"location": node.location, "publicIpv4": node.public_ipv4, "privateIp": node.private_ip}
    for node in cluster.nodes
})
pulumi.export("nomadAddress", cluster.nomad_address)
pulumi.export("monitors", {
    m.name: {"hostname": m.hostname, "provider": m.provider, "location": m.location, "publicIpv4": m.public_ipv4}
    for m in monitors.nodes
})
pulumi.export("caCertPem", secrets.ca_cert_pem)
pulumi.export("sshPrivateKey", secrets.ssh_private_key)  # secret: `pulumi stack output --show-secrets`
# What an operator's `nomad` CLI needs (mTLS + ACL token); the key and the token are secrets. The token
# is the operator token (cloud_init/policies/operator.hcl), not the management token.
pulumi.export("nomadClientCertPem", secrets.nomad_client_cert_pem)
pulumi.export("nomadClientKeyPem", secrets.nomad_client_key_pem)
pulumi.export("nomadToken", secrets.nomad_operator_token)
# What this deploy runs (by digest in protected stacks); `python -m deploy preview` reuses it.
pulumi.export("images", {kind: config.images.ref(kind) for kind in ("app", "marketing", "docs")})

# Cloudflare in front of the cluster and the monitors, then the Nomad jobs behind it.

edge = Edge("edge", config, cluster.nodes, monitors.nodes)
workloads = NomadWorkloads("workloads", config, secrets=secrets, cluster=cluster, edge=edge)

pulumi.export("domain", config.domain)
pulumi.export("hostnames", [host.hostname for host in edge.layout.hosts])
pulumi.export("originCertificate", edge.origin_certificate)
pulumi.export("nomadJobs", {job: j.id for job, j in workloads.jobs.items()})
pulumi.export("trackerAdminToken", workloads.tracker_admin_token)  # secret
