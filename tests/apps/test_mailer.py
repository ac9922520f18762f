"""E-mail reaches a real SMTP server (aiosmtpd on loopback) through the deployment's SMTP settings."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email import policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from servers import free_port

from iot.mailer import Mail, MailError, address_problem, send_mail
from iot.settings import SmtpSettings


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's handler name
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


def _authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"alerts", b"s3cret")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=_authenticator,
                            auth_require_tls=False)
    controller.start()
    yield inbox, port
    controller.stop()


def _settings(port: int, **values: object) -> SmtpSettings:
    return SmtpSettings(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none",
                        smtp_from="my-iot-app <alerts@example.com>", **values)


async def test_a_message_arrives_with_sender_recipients_subject_and_both_bodies(smtp) -> None:
    inbox, port = smtp
    await send_mail(_settings(port, smtp_username="alerts", smtp_password="s3cret"),
                    Mail(to=("ops@example.com", "oncall@example.org"), subject="acme: pump-7 is DOWN",
                         text="pump-7 is down since 12:00", html="<p>pump-7 is down</p>"))
    (message,) = inbox.messages
    assert inbox.envelopes == [("alerts@example.com", ["ops@example.com", "oncall@example.org"])]
    assert message["Subject"] == "acme: pump-7 is DOWN" and message["From"] == "my-iot-app <alerts@example.com>"
    assert message.get_body(("plain",)).get_content().strip() == "pump-7 is down since 12:00"
    assert message.get_body(("html",)).get_content().strip() == "<p>pump-7 is down</p>"


async def test_a_subject_with_line_breaks_cannot_add_headers(smtp) -> None:
    inbox, port = smtp
    await send_mail(_settings(port), Mail(to=("ops@example.com",), subject="down\r\nBcc: victim@example.net",
                                          text="x"))
    (message,) = inbox.messages
    assert message["Bcc"] is None and inbox.envelopes[0][1] == ["ops@example.com"]
    assert message["Subject"] == "down Bcc: victim@example.net"


async def test_failures_are_fixed_texts_and_name_no_server_reply(smtp) -> None:
    inbox, port = smtp
    with pytest.raises(MailError, match="refused our login"):
        await send_mail(_settings(port, smtp_username="alerts", smtp_password="wrong"),
                        Mail(to=("ops@example.com",), subject="s", text="t"))
    with pytest.raises(MailError, match="could not be reached"):
        await send_mail(_settings(free_port()), Mail(to=("ops@example.com",), subject="s", text="t"))
    with pytest.raises(MailError, match="not configured"):
        await send_mail(SmtpSettings(), Mail(to=("ops@example.com",), subject="s", text="t"))
    with pytest.raises(MailError, match="invalid recipient"):
        await send_mail(_settings(port), Mail(to=("not an address",), subject="s", text="t"))
    assert inbox.messages == []


def test_address_problem_names_the_address_and_an_example() -> None:
    assert address_problem("ops@example.com") is None
    problem = address_problem("ops@@example")
    assert problem and "'ops@@example' is not an e-mail address" in problem and "e.g. ops@example.com" in problem
