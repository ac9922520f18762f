"""Shared helpers of the job tests: recognisable fake secrets and the vars Pulumi passes per stack."""

from __future__ import annotations

from components.config import StackConfig
from components.job_vars import job_vars
from deploy.mocks import CLOUDFLARE_IPV4, CLOUDFLARE_IPV6, committed_stack_config

# Recognisable fake secrets: none of them may ever show up in a job spec or its vars.
FAKE_DATABASE_URL = "postgresql://iot:FAKE-DB-PASSWORD-5f1e@db.example.net:5432/iot"
FAKE_REDIS_URL = "rediss://default:FAKE-REDIS-PASSWORD-9c2a@redis.example.net:6380/0"
FAKE_SECRETS = {"databaseUrl": FAKE_DATABASE_URL, "redisUrl": FAKE_REDIS_URL}


def stack_config(stack: str) -> StackConfig:
    return committed_stack_config(stack, secrets=FAKE_SECRETS)


def stack_vars(stack: str) -> dict[str, dict[str, str]]:
    config = stack_config(stack)
    return job_vars(
        config,
        cloudflare_ipv4=CLOUDFLARE_IPV4,
        cloudflare_ipv6=CLOUDFLARE_IPV6,
        datacenters=config.cluster.locations,
    )
