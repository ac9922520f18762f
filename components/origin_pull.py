"""Cloudflare's Authenticated Origin Pulls CA, vendored, and the Traefik ports that depend on it.

Cloudflare presents a client certificate signed by this CA on every origin connection of a zone with
Authenticated Origin Pulls on (zone setting `tls_client_auth`, declared by the owning stack in
components/edge.py); Traefik's websecure entrypoint requires and verifies it (jobs/traefik.nomad.hcl).
The CA is public. Source: https://developers.cloudflare.com/ssl/static/authenticated_origin_pull_ca.pem
(also printed in Cloudflare's "Authenticated Origin Pulls" set-up docs). The fingerprint below was
checked against that copy; the file is refused if it no longer matches, so a silent edit cannot make
Traefik trust another CA. Cloudflare rotates it before it expires (2029-11-01): update both together.
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

CA_PATH = Path(__file__).resolve().parent / "certs" / "cloudflare-origin-pull-ca.pem"
CA_SHA256 = "9a1ac2b4be15f9f27eee20a734cba4e9898f61001b3bd7c84b69b56a3e25a2b9"
CA_SUBJECT_CN = "origin-pull.cloudflare.net"
CA_NOT_AFTER = "2029-11-01"

# Traefik's entrypoint for hosts served only inside the cluster (the worker's status API): bound on
# every interface, but no firewall rule admits it, so only the private network (and SSH tunnels) reach it.
TRAEFIK_INTERNAL_PORT = 8081


class OriginPullCaError(ValueError):
    """The vendored CA file is not the one whose fingerprint this module pins."""


def origin_pull_ca_pem(path: Path = CA_PATH) -> str:
    """The CA's PEM text, after checking its SHA-256 fingerprint."""
    pem = path.read_text()
    try:
        der = ssl.PEM_cert_to_DER_cert(pem)
    except ValueError as exc:
        raise OriginPullCaError(f"{path} is not a PEM certificate ({exc}); restore it from git") from None
    digest = hashlib.sha256(der).hexdigest()
    if digest != CA_SHA256:
        raise OriginPullCaError(
            f"{path} has SHA-256 fingerprint {digest}, expected {CA_SHA256} (Cloudflare's origin-pull CA); "
            "restore the file, or, after Cloudflare rotated its CA, update CA_SHA256 in components/origin_pull.py"
        )
    return pem
