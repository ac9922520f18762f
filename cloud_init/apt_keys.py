"""Apt signing keys shipped inside user data (armored), each checked against its published fingerprint.

Embedding the key means first boot needs no keyserver (a keyserver outage or a tampered answer used to
decide what a node trusted). The fingerprint check runs whenever user data is rendered: a key file
that does not hash to the fingerprint the vendor publishes is refused, so a swapped file cannot ship.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

KEYS_DIR = Path(__file__).parent / "keys"


@dataclass(frozen=True)
class AptKey:
    name: str
    file: str  # under cloud_init/keys/
    fingerprint: str  # as published by the vendor (40 hex digits, no spaces)
    published_at: str  # where the fingerprint is published


# HashiCorp: developer.hashicorp.com install pages ("798A EC65 4E5C 1542 8C8E 42EE AA16 FCBC A621 E701");
# key material as served at https://apt.releases.hashicorp.com/gpg (expires 2028-01-09).
# Docker: docs.docker.com/engine/install/debian ("9DC8 5822 9FC7 DD38 854A E2D8 8D81 803C 0EBF CD88").
HASHICORP = AptKey("hashicorp", "hashicorp-archive-keyring.asc", "798AEC654E5C15428C8E42EEAA16FCBCA621E701",
                   "https://www.hashicorp.com/official-packaging-guide")
DOCKER = AptKey("docker", "docker-archive-keyring.asc", "9DC858229FC7DD38854AE2D88D81803C0EBFCD88",
                "https://docs.docker.com/engine/install/debian/")


class AptKeyError(ValueError):
    """An embedded key is malformed or is not the key its vendor publishes."""


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(armored: str) -> bytes:
    """OpenPGP ASCII armor -> packets, verifying the armor checksum (RFC 4880 section 6)."""
    lines = [line.strip() for line in armored.strip().splitlines()]
    if not lines or lines[0] != "-----BEGIN PGP PUBLIC KEY BLOCK-----" or lines[-1] != "-----END PGP PUBLIC KEY BLOCK-----":
        raise AptKeyError("not an armored OpenPGP public key block")
    body = lines[1:-1]
    while body and body[0]:  # armor headers (e.g. "Version:") end at the first blank line
        body = body[1:]
    checksum = next((line for line in body if line.startswith("=")), None)
    data = base64.b64decode("".join(line for line in body if line and not line.startswith("=")))
    if checksum is None or int.from_bytes(base64.b64decode(checksum[1:]), "big") != _crc24(data):
        raise AptKeyError("armor checksum mismatch: the key text is damaged")
    return data


def primary_fingerprint(packets: bytes) -> str:
    """V4 fingerprint of the first (primary) public key packet: SHA-1 over 0x99, length, body."""
    tag = packets[0]
    if not tag & 0x80:
        raise AptKeyError("not an OpenPGP packet")
    if tag & 0x40:  # new packet format
        kind, first = tag & 0x3F, packets[1]
        if first < 192:
            length, start = first, 2
        elif first < 224:
            length, start = ((first - 192) << 8) + packets[2] + 192, 3
        else:
            length, start = int.from_bytes(packets[2:6], "big"), 6
    else:  # old packet format
        kind, length_type = (tag >> 2) & 0x0F, tag & 0x03
        size = {0: 1, 1: 2, 2: 4}.get(length_type)
        if size is None:
            raise AptKeyError("indeterminate packet length")
        length, start = int.from_bytes(packets[1:1 + size], "big"), 1 + size
    if kind != 6:
        raise AptKeyError(f"first packet is type {kind}, not a public key")
    body = packets[start:start + length]
    if body[:1] != b"\x04":
        raise AptKeyError(f"public key packet version {body[:1].hex()} is not v4")
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()  # noqa: S324 (OpenPGP v4)


@cache
def armored_key(key: AptKey) -> str:
    """The key's armored text, refused unless it is the key with the published fingerprint."""
    text = (KEYS_DIR / key.file).read_text()
    actual = primary_fingerprint(dearmor(text))
    if actual != key.fingerprint:
        raise AptKeyError(
            f"cloud_init/keys/{key.file} has fingerprint {actual}, not {key.fingerprint} as published at "
            f"{key.published_at}: replace the file with the vendor's key"
        )
    return text
