"""Notification channels: one registry of kinds, one module per transport.

`CHANNELS` maps a channel kind (the `kind` column of `channels`) to its implementation; the tracker validates
configs with it on save, the outbox (`iot.worker.outbox`) sends with it. Explicit, no import magic.
"""

from __future__ import annotations

from iot.notify.apprise import AppriseChannel
from iot.notify.base import EVENT_KINDS, Channel, Event, Message, SendContext, render, test_event
from iot.notify.email import EmailChannel
from iot.notify.opsgenie import OpsgenieChannel
from iot.notify.webhook import WebhookChannel

CHANNELS: dict[str, Channel] = {
    "webhook": WebhookChannel(),
    "email": EmailChannel(),
    "slack": AppriseChannel("slack", "Slack", "https://hooks.slack.com/services/T000/B000/XXXX", ("NotifySlack",)),
    "msteams": AppriseChannel("msteams", "Microsoft Teams", "workflows://prod.westeurope.logic.azure.com:443/WORKFLOW/SIGNATURE",
                              ("NotifyWorkflows", "NotifyMSTeams")),
    "discord": AppriseChannel("discord", "Discord", "https://discord.com/api/webhooks/ID/TOKEN", ("NotifyDiscord",)),
    "telegram": AppriseChannel("telegram", "Telegram", "tgram://BOT_TOKEN/CHAT_ID", ("NotifyTelegram",)),
    "pagerduty": AppriseChannel("pagerduty", "PagerDuty", "pagerduty://INTEGRATION_KEY@API_KEY", ("NotifyPagerDuty",)),
    "opsgenie": OpsgenieChannel(),  # Apprise opens the alerts; recoveries close them by alias
    "ntfy": AppriseChannel("ntfy", "ntfy", "ntfys://ntfy.sh/TOPIC", ("NotifyNtfy",)),
    "pushover": AppriseChannel("pushover", "Pushover", "pover://USER_KEY@APP_TOKEN", ("NotifyPushover",)),
    "apprise": AppriseChannel("apprise", "Apprise URL (any other service)", "jsons://example.com/hooks/iot"),
}

__all__ = ["CHANNELS", "EVENT_KINDS", "Channel", "Event", "Message", "SendContext", "render", "test_event"]
