"""E-mail through the deployment's SMTP relay (SMTP_* settings): e-mail notifications, invitations, resets.

One message per call, sent by the standard library's `smtplib` in a thread (a relay answers in milliseconds;
the callers are background senders and rare account e-mails). Messages are built with `email.message`, so a
subject or address carrying CR/LF cannot add headers; addresses are checked with `email-validator` first.
Errors are fixed texts (`MailError`): what the relay answered goes to the log, never to a tenant.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, make_msgid, parseaddr

from email_validator import EmailNotValidError, validate_email

from iot.log import log_fields
from iot.settings import SmtpSettings

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 50
MAX_SUBJECT = 200
MAX_BODY = 64 * 1024


class MailError(Exception):
    """Why a message was not handed to the relay, as a fixed text a tenant may read."""


@dataclass(frozen=True, slots=True)
class Mail:
    to: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None


def address_problem(address: str) -> str | None:
    """Why `address` is not an e-mail address we send to, or None (syntax only: no DNS lookup)."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"{address!r} is not an e-mail address ({exc}); e.g. ops@example.com"
    return None


def build_message(settings: SmtpSettings, mail: Mail) -> EmailMessage:
    if not mail.to or len(mail.to) > MAX_RECIPIENTS:
        raise MailError(f"a message needs 1 to {MAX_RECIPIENTS} recipients")
    for address in mail.to:
        if address_problem(address):
            raise MailError("invalid recipient address")
    message = EmailMessage()
    name, sender = parseaddr(settings.smtp_from)
    message["From"] = formataddr((name, sender)) if name else sender
    message["To"] = ", ".join(str(Address(addr_spec=a)) for a in mail.to)
    # Header folding would accept CR/LF as a new header; a subject is one line of bounded length.
    message["Subject"] = " ".join(mail.subject.split())[:MAX_SUBJECT]
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(mail.text[:MAX_BODY])
    if mail.html is not None:
        message.add_alternative(mail.html[:MAX_BODY], subtype="html")
    return message


def _send_blocking(settings: SmtpSettings, message: EmailMessage) -> None:
    timeout = settings.smtp_timeout_seconds
    context = ssl.create_default_context()
    if settings.smtp_security == "tls":
        client: smtplib.SMTP = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=timeout,
                                                context=context)
    else:
        client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
    with client:
        if settings.smtp_security == "starttls":
            client.starttls(context=context)
        if settings.smtp_username:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            client.login(settings.smtp_username, password)
        client.send_message(message)


async def send_mail(settings: SmtpSettings, mail: Mail) -> None:
    """Hand one message to the relay; MailError (a fixed text) when it was not accepted."""
    if not settings.smtp_host:
        raise MailError("e-mail is not configured on this server (SMTP_HOST is empty)")
    message = build_message(settings, mail)
    try:
        await asyncio.to_thread(_send_blocking, settings, message)
    except smtplib.SMTPRecipientsRefused as exc:
        log_fields(logger, logging.WARNING, "smtp relay refused recipients", error=str(exc))
        raise MailError("the mail server refused the recipient") from exc
    except smtplib.SMTPAuthenticationError as exc:
        log_fields(logger, logging.ERROR, "smtp login failed: check SMTP_USERNAME and SMTP_PASSWORD", error=str(exc))
        raise MailError("the mail server refused our login") from exc
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        log_fields(logger, logging.WARNING, "smtp send failed", error=f"{type(exc).__name__}: {exc}")
        raise MailError("the mail server could not be reached or refused the message") from exc
