"""HCL2 variables for the Nomad job specs in `jobs/` (DESIGN §4.3), as a pure function of stack config.

Nomad's HCL2 `vars` are strings: numbers are written in decimal and lists are JSON (the jobs
`jsondecode` them). Every value here is known at preview time (config and invoke results), so the
vars map is never unknown; secrets never pass through here, they go to Nomad Variables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from cloud_init.cluster import CONSUL_HTTPS_PORT
from components.config import StackConfig
from components.origin_pull import origin_pull_ca_pem

JOBS_DIR = Path(__file__).resolve().parent.parent / "jobs"

# Deployment order: Traefik first so routes exist as soon as the apps register.
JOB_NAMES = ("traefik", "tracker", "worker", "dashboard", "marketing", "docs")
APP_JOBS = ("tracker", "worker", "dashboard")
STATIC_JOBS = ("marketing", "docs")

# The items each job's templates read with nomadVar "nomad/jobs/<job>" (jobs without secrets: none).
# The SMTP relay (iot:smtp) goes to every app that sends mail: channel tests (tracker), e-mail channels
# (worker), invitations and password resets (dashboard).
SMTP_ITEMS = ("SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_FROM")
SECRET_ITEMS: dict[str, tuple[str, ...]] = {
    "traefik": ("origin_cert", "origin_key", "consul_token", "consul_ca"),
    "tracker": ("DATABASE_URL", "REDIS_URL", "SECRETS_KEY", "ADMIN_TOKEN", *SMTP_ITEMS),
    "worker": ("DATABASE_URL", "REDIS_URL", "SECRETS_KEY", *SMTP_ITEMS),
    "dashboard": ("DATABASE_URL", "REDIS_URL", "SECRETS_KEY", "SESSION_SECRET", *SMTP_ITEMS),
}


def job_spec_path(job: str) -> Path:
    """Path of the job spec file for `job`."""
    if job not in JOB_NAMES:
        raise ValueError(f"unknown job {job!r}; jobs are {', '.join(JOB_NAMES)}")
    return JOBS_DIR / f"{job}.nomad.hcl"


def read_job_spec(job: str) -> str:
    return job_spec_path(job).read_text(encoding="utf-8")


def variable_path(job: str) -> str:
    """Nomad Variable path a job's templates can read (Nomad grants nomad/jobs/<job> implicitly)."""
    return f"nomad/jobs/{job}"


def _json_list(values: Sequence[str]) -> str:
    return json.dumps(list(values))


def job_vars(
    config: StackConfig,
    *,
    cloudflare_ipv4: Sequence[str],
    cloudflare_ipv6: Sequence[str],
    datacenters: Sequence[str] = ("*",),
) -> dict[str, dict[str, str]]:
    """HCL2 vars per job, every value a string; keys match the `variable` blocks of jobs/<job>.nomad.hcl."""
    if not cloudflare_ipv4:
        raise ValueError(
            "no Cloudflare IPv4 ranges: Traefik would trust no proxy; check cloudflare.get_ip_ranges()"
        )
    common = {"datacenters": _json_list(list(dict.fromkeys(datacenters)))}
    result: dict[str, dict[str, str]] = {
        "traefik": {
            **common,
            "traefik_version": config.versions.traefik,
            # Consul's HTTPS API on the node, as the cluster's agent config sets it (client_addr 127.0.0.1).
            "consul_address": f"127.0.0.1:{CONSUL_HTTPS_PORT}",
            "cloudflare_ipv4": _json_list(sorted(cloudflare_ipv4)),
            "cloudflare_ipv6": _json_list(sorted(cloudflare_ipv6)),
            "origin_pull_ca": origin_pull_ca_pem(),
        }
    }
    monitor_names = ",".join(config.monitor_names)
    for job in APP_JOBS + STATIC_JOBS:
        service = config.services[job]
        image_kind = "app" if job in APP_JOBS else job
        values = {
            **common,
            "image": config.images.ref(image_kind),
            "domain": config.domain,
            "count": str(service.count),
            "cpu": str(service.cpu),
            "memory": str(service.memory),
        }
        if job in APP_JOBS:
            values["monitor_names"] = monitor_names
        result[job] = values
    return result
