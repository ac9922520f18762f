"""Local receivers for notification channel tests (loopback only): an HTTP server that records every request
(Apprise's json://, form://, ntfy://, workflows:// and the signed webhook all land here) with a status the
test can change, and an aiosmtpd SMTP server that keeps the messages it was handed."""

from __future__ import annotations

import datetime
import email
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    status: int = 200
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    answer: bytes | Callable[[str], bytes] = b""  # body of a 2xx answer, or a function of the path
    location: str | None = None  # answered as Location (with a 3xx status)
    body_size: int = 0  # bytes of answer body to send (until the client hangs up)
    body_sent: int = 0
    tls: bool = False  # https with a self-signed certificate (clients must not verify: Apprise's ?verify=no)
    requests: list[Request] = field(default_factory=list)
    refused: int = 0  # requests answered with a non-2xx status

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if 200 <= receiver.status < 300:
                    receiver.requests.append(Request(self.command, self.path, dict(self.headers), body))
                else:
                    receiver.refused += 1
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                answer = receiver.answer(self.path) if callable(receiver.answer) else receiver.answer
                answer = answer if 200 <= receiver.status < 300 else b""
                self.send_header("Content-Length", str(receiver.body_size or len(answer)))
                self.end_headers()
                if answer and not receiver.body_size:
                    self.wfile.write(answer)
                chunk = b"x" * 65536
                try:
                    while receiver.body_sent < receiver.body_size:
                        self.wfile.write(chunk)
                        receiver.body_sent += len(chunk)
                except OSError:
                    pass  # the client closed the connection

            do_POST = do_PUT = do_GET = _any  # noqa: N815 - http.server's handler names

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            with tempfile.NamedTemporaryFile("wb", suffix=".pem") as pem:
                pem.write(_self_signed_pem(self.host))
                pem.flush()
                context.load_cert_chain(pem.name)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's handler name
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


class SmtpReceiver:
    def start(self) -> SmtpReceiver:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.inbox = _Inbox()
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    @property
    def messages(self) -> list[Message]:
        return self.inbox.messages

    def stop(self) -> None:
        self._controller.stop()


def _self_signed_pem(host: str) -> bytes:
    """A throwaway key and self-signed certificate for `host`, as one PEM."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM))
