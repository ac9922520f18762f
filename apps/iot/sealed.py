"""Secrets we must read back later (notification channel URLs with tokens, TOTP seeds), sealed at rest.

A sealed value is a Fernet token (AES-128-CBC with HMAC-SHA256, from `cryptography`) under SECRETS_KEY. It is
authenticated: a row edited in the database fails to open instead of yielding text an attacker chose, and a
database dump without the key reveals nothing. SECRETS_KEY holds one or more comma-separated keys: the first
seals, every one opens, so a key is rotated by putting a new one first, re-sealing (`SecretBox.reseal`), then
dropping the old one.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

GENERATE_KEY = "python3 -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"


class SealError(Exception):
    """A sealed value that no key of SECRETS_KEY opens (another key, or an edited row)."""


def key_problem(value: str) -> str | None:
    """Why `value` is not a usable SECRETS_KEY (comma-separated Fernet keys), or None."""
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        return f"is empty; set one or more comma-separated keys (generate one with: {GENERATE_KEY})"
    for index, key in enumerate(keys):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return (f"key {index + 1} is not a Fernet key (32 url-safe base64-encoded bytes, 44 characters); "
                    f"generate one with: {GENERATE_KEY}")
    return None


class SecretBox:
    """Seals and opens secrets with the keys of SECRETS_KEY (the first seals, all open)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("SecretBox needs at least one key")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    @classmethod
    def from_setting(cls, value: str) -> SecretBox:
        problem = key_problem(value)
        if problem:
            raise ValueError(f"SECRETS_KEY {problem}")
        return cls([k.strip() for k in value.split(",") if k.strip()])

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise SealError("cannot open a sealed secret: it was sealed under a key that is not in SECRETS_KEY, "
                            "or it was altered; restore the old key (as a second key) or set the secret again") from exc

    def reseal(self, sealed: str) -> str:
        """The same secret sealed under the first key (after a rotation)."""
        try:
            return self._fernet.rotate(sealed.encode("ascii")).decode("ascii")
        except InvalidToken as exc:
            raise SealError("cannot reseal: no key of SECRETS_KEY opens this value") from exc


def masked(secret: str | None, keep: int = 4) -> str | None:
    """What a tenant is shown of a stored secret: its length hidden, its last `keep` characters kept when the
    secret is long enough that they reveal little (never the whole of a short one)."""
    if secret is None:
        return None
    if len(secret) < 4 * keep:
        return "••••••••"
    return "••••••••" + secret[-keep:]
