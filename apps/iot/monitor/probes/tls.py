"""TLS probes: connect to host:port (an address the egress policy allows), handshake, read the certificate.

Up when the handshake verifies (system trust store, or `ca_file`) for the target's name; `degraded`
(ok, with a warning text) when the certificate expires within the device's `warn_days`; failed when it
has expired, does not verify or the handshake fails. Latency is connect + handshake.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import Any

from iot import failures
from iot.checks.tls import TlsOptions, tls_address
from iot.egress import PUBLIC_ONLY, EgressPolicy
from iot.monitor.probes.common import (
    ProbeResult,
    TaskProbe,
    elapsed_ms,
    failed,
    failed_because,
    prepare_probe_socket,
    resolve,
)

CERT_EXPIRED = "TLS certificate expired"
DEFAULT_WARN_DAYS = TlsOptions.model_fields["warn_days"].default
_X509_V_ERR_CERT_HAS_EXPIRED = 10


def expires_warning(days_left: float) -> str:
    days = max(int(days_left), 0)
    return f"TLS certificate expires in {days} day{'' if days == 1 else 's'}"


class TlsProbe(TaskProbe):
    def __init__(self, source_address: str | None = None, egress: EgressPolicy = PUBLIC_ONLY,
                 ca_file: str | None = None) -> None:
        self._source = source_address
        self._egress = egress
        self._context = ssl.create_default_context(cafile=ca_file)
        super().__init__()

    async def _check(self, target: str, timeout_s: float, options: dict[str, Any]) -> ProbeResult:
        warn_days = int(options.get("warn_days", DEFAULT_WARN_DAYS))
        start = time.perf_counter()
        sock: socket.socket | None = None
        handshaking = False
        try:
            host, port = tls_address(target)
            async with asyncio.timeout(timeout_s):
                address = await resolve(host, self._egress)
                sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                prepare_probe_socket(sock)
                if self._source:
                    sock.bind((self._source, 0))
                await asyncio.get_running_loop().sock_connect(sock, (address, port))
                handshaking = True
                _reader, writer = await asyncio.open_connection(sock=sock, ssl=self._context, server_hostname=host)
                sock = None  # the transport owns it now
            latency = elapsed_ms(start)
            cert = writer.get_extra_info("peercert") or {}
            writer.transport.abort()  # no close_notify round trip: the check is done
        except TimeoutError:
            return failed(f"timeout after {timeout_s:g}s")
        except ssl.SSLCertVerificationError as exc:
            return failed(CERT_EXPIRED if exc.verify_code == _X509_V_ERR_CERT_HAS_EXPIRED else failures.TLS_CERTIFICATE)
        except (OSError, ValueError) as exc:
            if handshaking and isinstance(exc, OSError) and not exc.errno:
                return failed(failures.TLS_FAILED)  # the peer hung up mid-handshake (not a TLS server?)
            return failed_because(exc)
        finally:
            if sock is not None:
                sock.close()
        if "notAfter" not in cert:
            return ProbeResult(False, latency, failures.TLS_CERTIFICATE)
        days_left = (ssl.cert_time_to_seconds(cert["notAfter"]) - time.time()) / 86400.0
        if days_left <= 0:
            return ProbeResult(False, latency, CERT_EXPIRED)
        if days_left < warn_days:
            return ProbeResult(True, latency, expires_warning(days_left))  # ok with a warning: degraded
        return ProbeResult(True, latency)
