"""The Nomad jobs on the cluster (DESIGN §4.2 NomadWorkloads, §4.3).

An explicit Nomad provider talks mTLS to the cluster with the least-privilege deployer token (submit
jobs, write their Variables; cloud_init/policies/deployer.hcl), once the bootstrap command created
it and saw every client ready. The management token never leaves the nodes. Secrets go into one Nomad Variable per job
(`nomad/jobs/<job>`, readable only by that job's templates); the job specs in `jobs/` get plain,
non-secret HCL2 vars from `job_vars`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pulumi
import pulumi_nomad as nomad
import pulumi_random as random

from components.config import StackConfig
from components.firewall import cloudflare_ip_ranges
from components.job_vars import JOB_NAMES, SECRET_ITEMS, job_vars, read_job_spec, variable_path

if TYPE_CHECKING:  # only for annotations: tests pass small doubles with the same attributes
    from components.cluster import AppCluster
    from components.edge import Edge
    from components.secrets import ClusterSecrets


def _as_list(value: object) -> list[pulumi.Resource]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]  # type: ignore[list-item]


class NomadWorkloads(pulumi.ComponentResource):
    """Traefik and the apps as Nomad jobs, with their secrets as Nomad Variables."""

    jobs: dict[str, nomad.Job]
    variables: dict[str, nomad.Variable]
    vars: dict[str, dict[str, str]]
    tracker_admin_token: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        secrets: ClusterSecrets,
        cluster: AppCluster,
        edge: Edge,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`cluster` gives the Nomad address, readiness and datacenters (one per location); `secrets`
        the mTLS client certificate, the deployer token and Traefik's Consul token; `edge` the origin
        certificate Traefik serves to Cloudflare."""
        super().__init__("iot:workloads:NomadWorkloads", name, None, opts)
        cloudflare_ipv4, cloudflare_ipv6 = cloudflare_ip_ranges()
        datacenters = list(dict.fromkeys(node.location for node in cluster.nodes))
        self.vars = job_vars(
            config, cloudflare_ipv4=cloudflare_ipv4, cloudflare_ipv6=cloudflare_ipv6, datacenters=datacenters
        )
        self.provider = nomad.Provider(
            f"{name}-nomad",
            address=cluster.nomad_address,
            ca_pem=secrets.ca_cert_pem,
            cert_pem=secrets.nomad_client_cert_pem,
            key_pem=pulumi.Output.secret(secrets.nomad_client_key_pem),
            secret_id=pulumi.Output.secret(secrets.nomad_deployer_token),
            # The bootstrap creates the deployer token and waits for ready clients: only then can jobs be placed.
            opts=pulumi.ResourceOptions(parent=self, depends_on=_as_list(cluster.ready)),
        )
        admin_token = random.RandomPassword(
            f"{name}-tracker-admin-token", length=40, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        self.tracker_admin_token = pulumi.Output.secret(admin_token.result)
        # Signs dashboard session cookies; generated so no stack ever runs with the public default.
        session_secret = random.RandomPassword(
            f"{name}-dashboard-session-secret", length=64, special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )

        # Seals stored secrets (notification channel URLs, TOTP seeds): one Fernet key shared by the apps that
        # seal and open them; 32 random bytes, url-safe base64 as Fernet wants them. Rotation: docs/operator-manual.md.
        secrets_key = random.RandomBytes(
            f"{name}-apps-secrets-key", length=32,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["base64", "hex"]),
        ).base64.apply(lambda value: value.replace("+", "-").replace("/", "_"))

        app_secrets = {"DATABASE_URL": config.database_url, "REDIS_URL": config.redis_url, "SECRETS_KEY": secrets_key,
                       **smtp_items(config)}
        items: dict[str, Mapping[str, pulumi.Input[str]]] = {
            "traefik": {
                "origin_cert": edge.origin_certificate,
                "origin_key": edge.origin_private_key,
                "consul_token": secrets.consul_catalog_token,
                "consul_ca": secrets.ca_cert_pem,
            },
            "tracker": {**app_secrets, "ADMIN_TOKEN": admin_token.result},
            "worker": app_secrets,
            "dashboard": {**app_secrets, "SESSION_SECRET": session_secret.result},
        }
        for job, keys in SECRET_ITEMS.items():
            if set(items[job]) != set(keys):
                raise ValueError(
                    f"Nomad Variable for {job} must hold exactly {keys}, got {sorted(items[job])}"
                )

        self.variables = {
            job: nomad.Variable(
                f"{name}-{job}-secrets",
                path=variable_path(job),
                items={k: pulumi.Output.secret(v) for k, v in values.items()},
                opts=pulumi.ResourceOptions(
                    parent=self, provider=self.provider, additional_secret_outputs=["items"]
                ),
            )
            for job, values in items.items()
        }

        self.jobs = {}
        for job in JOB_NAMES:
            depends: list[pulumi.Resource] = [self.variables[job]] if job in self.variables else []
            if job == "traefik":
                # Traefik demands Cloudflare's client certificate: origin pulls must be on first.
                depends += list(getattr(edge, "origin_pulls", []))
            else:
                depends.append(self.jobs["traefik"])  # routes exist before the apps register
            self.jobs[job] = nomad.Job(
                f"{name}-{job}",
                jobspec=read_job_spec(job),
                hcl2=nomad.JobHcl2Args(vars=self.vars[job], allow_fs=False),
                detach=False,  # `pulumi up` waits for a healthy deployment
                purge_on_destroy=True,
                opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=depends),
            )

        self.register_outputs({"jobs": {job: j.id for job, j in self.jobs.items()}})


def smtp_items(config: StackConfig) -> dict[str, pulumi.Input[str]]:
    """SMTP_* for the apps' Nomad Variables: the relay of iot:smtp, or an empty host (no e-mail) without it."""
    smtp = config.smtp
    if smtp is None:
        return {"SMTP_HOST": "", "SMTP_PORT": "587", "SMTP_SECURITY": "starttls", "SMTP_USERNAME": "",
                "SMTP_PASSWORD": "", "SMTP_FROM": f"my-iot-app <alerts@{config.domain}>"}
    return {"SMTP_HOST": smtp.host, "SMTP_PORT": str(smtp.port), "SMTP_SECURITY": smtp.security,
            "SMTP_USERNAME": smtp.username, "SMTP_PASSWORD": smtp.password, "SMTP_FROM": smtp.sender}
