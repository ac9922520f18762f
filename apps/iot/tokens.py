"""Bearer tokens (tenant API keys, device ingest tokens): random, shown once, stored only as sha256."""

from __future__ import annotations

import hashlib
import secrets

TENANT_KEY_PREFIX = "iotk_"
DEVICE_TOKEN_PREFIX = "iotd_"


def new_token(prefix: str) -> str:
    # 32 random bytes: a sha256 lookup without salt is safe because the input is not guessable.
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)
