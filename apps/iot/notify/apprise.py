"""Channels delivered by the Apprise library, in-process (no `apprise` CLI per message): Slack, Microsoft
Teams (Power Automate workflows), Discord, Telegram, PagerDuty, Opsgenie, ntfy, Pushover, and any other
Apprise URL ("apprise" kind). Each kind takes an Apprise URL (or the service's own webhook URL, which
Apprise understands, e.g. https://hooks.slack.com/services/...) and refuses URLs of another service.

- Egress (DESIGN §5.1): Apprise opens its own sockets, so the host of every URL whose host the tenant
  chooses (`{host}` in the plugin's URL templates: json://, ntfy://host, workflows://...) is judged by the
  egress policy when the channel is saved (a 4xx) and again, resolved, just before each send. Fixed-host
  services (slack://, tgram://, pagerduty://...) go to their vendor's public API. During a send, every
  HTTP connection Apprise makes (through requests/urllib3) is resolved and judged at connect time and goes
  to the checked address (no DNS rebinding in between), redirects are not followed (a 3xx fails), and at
  most 64 KiB of an answer is read. Plugins that open raw sockets (mqtt, irc, smpp, xmpp, syslog...) are
  refused: the policy could not hold them at connect time.
- `notify()` only answers True/False: the WARNING lines Apprise logs in the sending thread become the error
  text, with every token of the URL scrubbed out and capped. Apprise's log never reaches ours.
- Apprise is synchronous (requests): one message runs in a thread with connect/read timeouts set.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import apprise
import requests
import urllib3.util.connection
from pydantic import BaseModel, ConfigDict, Field

from iot.egress import REFUSED, EgressPolicy, EgressRefused, is_localhost_name, parse_ip
from iot.inputs import Url, url_port_problem
from iot.notify.base import Channel, Event, Outcome, SendContext

# Apprise logs requests and answers (with URLs) at DEBUG, and urllib3 (under requests) logs every request
# line with its path, which holds tokens: neither reaches our log handlers. Apprise's records are taken by a
# logger filter (applied before any handler, whatever the process's logging setup) into the sending
# thread's buffer and dropped; urllib3 is used only by Apprise here.
_captured = threading.local()
MAX_ERROR = 300


def _capture(record: logging.LogRecord) -> bool:
    lines = getattr(_captured, "lines", None)
    if lines is not None and record.levelno >= logging.WARNING and len(lines) < 5:
        lines.append(record.getMessage())
    return False


_apprise_log = logging.getLogger("apprise")
_apprise_log.addFilter(_capture)
_apprise_log.propagate = False
for _name in ("urllib3", "requests"):
    logging.getLogger(_name).propagate = False

_create_connection = urllib3.util.connection.create_connection
_session_send = requests.Session.send
MAX_ANSWER = 64 * 1024  # of a receiver's answer body: Apprise reads it to log or parse it


def _guarded_create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
    """urllib3's connect, judged by the egress policy of the channel send running in this thread (if any):
    resolve once, refuse what the policy refuses, connect to the checked address (TLS still verifies the
    name, which urllib3 keeps for SNI and the certificate)."""
    egress: EgressPolicy | None = getattr(_captured, "egress", None)
    if egress is None:
        return _create_connection(address, *args, **kwargs)
    host, port = address
    host = host.strip("[]")
    if is_localhost_name(host):
        addresses = ["127.0.0.1"]
    elif parse_ip(host) is not None:
        addresses = [host]
    else:
        addresses = [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    for candidate in addresses:
        try:
            checked = egress.connect_address(candidate)
        except EgressRefused:
            continue
        return _create_connection((checked, port), *args, **kwargs)
    _captured.refused = True
    raise EgressRefused()


def _bounded_send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
    """requests' send, inside a channel send: no redirects (a receiver cannot point us elsewhere) and at most
    MAX_ANSWER bytes of the answer read (a receiver cannot grow our memory); the connection is then closed."""
    if getattr(_captured, "egress", None) is None:
        return _session_send(self, request, **kwargs)
    kwargs.update(stream=True, allow_redirects=False)
    response = _session_send(self, request, **kwargs)
    try:
        response._content = response.raw.read(MAX_ANSWER, decode_content=True) or b""
    except Exception:  # noqa: BLE001 - an answer cut short or undecodable is an empty one
        response._content = b""
    response._content_consumed = True
    response.close()
    return response


urllib3.util.connection.create_connection = _guarded_create_connection
requests.Session.send = _bounded_send  # type: ignore[method-assign]

# Plugins a tenant may not use through the generic kind: e-mail has its own kind on the deployment's relay
# (a tenant SMTP server is refused), desktop/system notifiers act on the server itself, and plugins with
# their own raw sockets escape the connect-time egress check above.
_DESKTOP = "desktop notifications act on the server"
_RAW = "it opens its own connections, which the egress policy cannot check; use an https service"
_REFUSED_PLUGINS = {
    "NotifyEmail": "use the e-mail channel kind (it sends through this server's mail relay)",
    "NotifyDeltaChat": "use the e-mail channel kind (it sends through this server's mail relay)",
    "NotifyDBus": _DESKTOP, "NotifyGnome": _DESKTOP, "NotifyGLib": _DESKTOP, "NotifyMacOSX": _DESKTOP,
    "NotifyWindows": _DESKTOP, "NotifyBlink1": "it drives a USB device of the server",
    "NotifySyslog": "it writes to the server's syslog", "NotifyRSyslog": _RAW, "NotifyMQTT": _RAW,
    "NotifyAMQP": _RAW, "NotifyIRC": _RAW, "NotifyXMPP": _RAW, "NotifySMPP": _RAW, "NotifyGrowl": _RAW,
    "NotifyAprs": _RAW, "NotifyNostr": _RAW,
}
_SEVERITY = {"info": apprise.NotifyType.INFO, "success": apprise.NotifyType.SUCCESS,
             "warning": apprise.NotifyType.WARNING, "failure": apprise.NotifyType.FAILURE}


class AppriseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url = Field(description="Apprise URL of the service (https://appriseit.com/services/), "
                                 "or the service's own webhook URL; it holds tokens: stored sealed, shown masked.")


def plugin_of(url: str) -> Any:
    """The Apprise plugin instance for `url`, or None when Apprise does not understand it."""
    try:
        return apprise.Apprise.instantiate(url, suppress_exceptions=True)
    except Exception:  # noqa: BLE001 - a plugin's parser raising on hostile input means "not a URL we use"
        return None


def hosts_of(plugin: Any) -> list[str]:
    """Hosts the tenant chose in the URL (to be judged by the egress policy); [] for fixed-host services."""
    templates = " ".join(getattr(type(plugin), "templates", ()))
    host = getattr(plugin, "host", None)
    return [str(host)] if "{host}" in templates and host else []


def secrets_of(url: str) -> list[str]:
    """Every piece of `url` that may be a token (path segments, user, password, query values), longest first."""
    parts = urlsplit(url)
    pieces = [parts.username or "", parts.password or "", parts.hostname or ""]
    pieces += [unquote(p) for p in parts.path.split("/")]
    pieces += [unquote(v) for item in parts.query.split("&") for v in item.split("=")[1:]]
    return sorted({p for p in pieces if len(p) >= 4}, key=len, reverse=True)


def scrub(lines: list[str], url: str) -> str:
    """The captured lines as one short error text with no token of `url` in it."""
    text = " ".join(" ".join(lines).split())
    for secret in [url, *secrets_of(url)]:
        text = text.replace(secret, "•••")
    text = re.sub(r"[\x00-\x1f\x7f-\x9f]", " ", text)
    return text[:MAX_ERROR] or "the service did not accept the notification"


class AppriseChannel(Channel):
    """One Apprise-backed kind; `plugins` lists the Apprise plugin classes it accepts (empty: any)."""

    Config = AppriseConfig

    def __init__(self, kind: str, label: str, example: str, plugins: tuple[str, ...] = (),
                 severities: dict[str, str] | None = None) -> None:
        self.kind = kind  # type: ignore[misc]
        self.label = label  # type: ignore[misc]
        self.example = {"url": example}  # type: ignore[misc]
        self.plugins = plugins
        self.severities = severities or {}  # message severity -> the one Apprise is given

    async def problem(self, config: AppriseConfig, egress: EgressPolicy) -> tuple[str, str] | None:
        plugin = plugin_of(config.url)
        if plugin is None:
            return "config.url", f"Apprise does not understand this URL; for {self.label} use e.g. {self.example['url']}"
        name = type(plugin).__name__
        if self.plugins and name not in self.plugins:
            return "config.url", (f"this is not a {self.label} URL (Apprise reads it as {plugin.service_name}); "
                                  f"use e.g. {self.example['url']}, or the kind 'apprise' for other services")
        if name in _REFUSED_PLUGINS:
            return "config.url", f"{plugin.service_name} is not offered: {_REFUSED_PLUGINS[name]}"
        hosts = hosts_of(plugin)
        if hosts and (port_problem := url_port_problem(config.url)):  # fixed-host URLs may hold "token:secret"
            return "config.url", port_problem
        if "{host}" in " ".join(getattr(type(plugin), "templates", ())):
            # the host as written too: Apprise may read an odd one (`ntfys://127.1/t`) as something else
            written = urlsplit(config.url).hostname
            hosts += [written] if written and written not in hosts else []
        problems = await egress.registration_problems(hosts)
        for host in hosts:
            if host in problems:
                return "config.url", f"{problems[host]}; notifications go to public internet addresses only"
        return None

    def shown(self, config: AppriseConfig) -> dict[str, Any]:
        plugin = plugin_of(config.url)
        if plugin is None:
            return {"url": "•••"}
        if hosts_of(plugin):
            parts = urlsplit(config.url)
            return {"url": f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/•••"}
        # Apprise's privacy form keeps only the first and last character of each token; the query may
        # carry more (headers, keys): dropped.
        return {"url": plugin.url(privacy=True).split("?", 1)[0]}

    def configure(self, plugin: Any, event: Event) -> None:
        """Per-event settings of the plugin before it sends (a kind that needs them overrides this)."""

    async def send(self, config: AppriseConfig, event: Event, ctx: SendContext) -> Outcome:
        plugin = plugin_of(config.url)
        if plugin is None:
            return None, "Apprise does not understand the channel URL any more"
        if type(plugin).__name__ in _REFUSED_PLUGINS:
            return None, f"{plugin.service_name} is not offered any more; choose another service"
        for host in hosts_of(plugin):
            try:
                await ctx.egress.resolve(host)
            except EgressRefused as exc:
                return None, str(exc)
            except (OSError, UnicodeError):
                return None, "the channel's host name does not resolve"
        self.configure(plugin, event)
        message = self.render(event)
        severity = self.severities.get(message.severity, message.severity)
        plugin.socket_connect_timeout = ctx.timeout_s
        plugin.socket_read_timeout = ctx.timeout_s
        ok, lines, refused = await asyncio.to_thread(notify_blocking, plugin, message.title, message.body,
                                                     _SEVERITY[severity], ctx.egress)
        if ok:
            return None, None
        return None, REFUSED if refused else scrub(lines, config.url)


def notify_blocking(plugin: Any, title: str, body: str, notify_type: Any,
                    egress: EgressPolicy) -> tuple[bool, list[str], bool]:
    """(delivered, Apprise's warnings, refused by the egress policy): one send, in the calling thread."""
    return guarded_blocking(lambda: bool(plugin.notify(body=body, title=title, notify_type=notify_type)), egress)


def guarded_blocking(send: Callable[[], bool], egress: EgressPolicy) -> tuple[bool, list[str], bool]:
    """Run `send` (HTTP through requests, in the calling thread) under the egress policy, the redirect and
    answer bounds and the log capture above: (its result, the warnings logged, refused by the policy)."""
    _captured.lines, _captured.egress, _captured.refused = [], egress, False
    try:
        ok = send()
    except Exception as exc:  # noqa: BLE001 - a plugin failing is a failed delivery, retried
        _captured.lines.append(f"{type(exc).__name__}")
        ok = False
    finally:
        lines, refused = _captured.lines, _captured.refused
        _captured.lines, _captured.egress = None, None
    return ok, lines, refused
