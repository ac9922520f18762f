"""Fixed texts for failed outbound connections (probes, webhook deliveries).

A tenant reads these in `last_error`, the API and the dashboard. They name what went wrong and never carry
bytes the other side sent (banners, status lines, TLS alerts): a target must not be able to use our error
messages to show a tenant what some internal service says.
"""

from __future__ import annotations

import os
import socket
import ssl

import aiohttp

from iot.egress import REFUSED, EgressRefused

TIMEOUT = "timeout"
CANNOT_RESOLVE = "cannot resolve host"
TLS_FAILED = "TLS handshake failed"
TLS_CERTIFICATE = "TLS certificate not valid"
NOT_HTTP = "not an HTTP response"
CLOSED = "connection closed before the HTTP status line"
FAILED = "request failed"


def http_status(code: int) -> str:
    return f"HTTP {code}"


def describe(exc: BaseException) -> str:
    """The fixed text for a failed connection or request (the exception's own message is never used)."""
    if isinstance(exc, EgressRefused):
        return REFUSED
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return TLS_CERTIFICATE
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return REFUSED if isinstance(exc.os_error, EgressRefused) else CANNOT_RESOLVE
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return TLS_FAILED
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return CLOSED
    if isinstance(exc, aiohttp.ClientResponseError):  # unparsable status line or headers
        return NOT_HTTP
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL"
    if isinstance(exc, socket.gaierror):
        return CANNOT_RESOLVE
    if isinstance(exc, aiohttp.ClientConnectorError):
        return describe(exc.os_error) if exc.os_error is not exc else FAILED
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # the C library's fixed text, e.g. "Connection refused"
    return FAILED
