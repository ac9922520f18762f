"""The e-mail channel: messages through the deployment's SMTP relay (SMTP_* settings, `iot.mailer`).

Tenants choose recipients only, never a mail server: a tenant-supplied SMTP host would be one more way to
make us connect anywhere, and the relay's reputation is the operator's.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from iot.egress import EgressPolicy
from iot.mailer import MAX_RECIPIENTS, Mail, MailError, address_problem, send_mail
from iot.notify.base import Channel, Event, Outcome, SendContext


class EmailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: list[str] = Field(min_length=1, max_length=MAX_RECIPIENTS,
                          description=f"Recipient addresses (1 to {MAX_RECIPIENTS}), e.g. [\"ops@example.com\"].")

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if len(address) > 254 or address_problem(address):
                raise ValueError(f"{address[:254]!r} is not an e-mail address; e.g. ops@example.com")
        return value


class EmailChannel(Channel):
    kind: ClassVar[str] = "email"
    label: ClassVar[str] = "E-mail"
    example: ClassVar[dict[str, Any]] = {"to": ["ops@example.com"]}
    Config = EmailConfig

    async def problem(self, config: EmailConfig, egress: EgressPolicy) -> tuple[str, str] | None:
        return None

    def shown(self, config: EmailConfig) -> dict[str, Any]:
        return {"to": list(config.to)}

    async def send(self, config: EmailConfig, event: Event, ctx: SendContext) -> Outcome:
        if ctx.smtp is None:
            return None, "e-mail is not configured on this server"
        message = self.render(event)
        try:
            await send_mail(ctx.smtp, Mail(tuple(config.to), message.title, message.body))
        except MailError as exc:
            return None, str(exc)
        return None, None
