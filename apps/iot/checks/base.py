"""What every check kind declares: its name, an example target, whether monitors probe it, how to judge a
target, and the model of its per-device options.

Validation only (tracker, dashboard, CSV import, worker): probing lives in `iot.monitor.probes`, keyed by
the same names, so the API never imports probe libraries.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from iot.inputs import ascii_int, target_text_problem

# Matched with `fullmatch` (`$` would let "host\n" through).
HOSTNAME_RE = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


class NoOptions(BaseModel):
    """Kinds without options accept only `{}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OptionsProblem(ValueError):
    """Options that do not fit the kind: `field` is the path under `options` ("expected_status[1]")."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(HOSTNAME_RE.fullmatch(host))


def split_host_port(target: str) -> tuple[str, str]:
    """'host:port' or '[v6]:port' -> (host, port text); the port text is '' when there is no ':'."""
    host, sep, port = target.rpartition(":")
    if not sep:
        return target, ""
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host, port


def host_port_problem(target: str, example: str) -> str | None:
    host, port = split_host_port(target)
    number = ascii_int(port, 5)
    if number is None or not 1 <= number <= 65535 or not is_host(host):
        return f"{target!r} is not host:port with a port 1-65535, e.g. {example!r} or '[2001:db8::5]:{example.rsplit(':', 1)[-1]}'"
    return None


class CheckKind:
    """One kind of check. Subclasses set the class attributes and override `_target_problem`/`host`."""

    name: ClassVar[str]
    example: ClassVar[str | None]  # a target that passes `target_problem` (None: the kind has no target)
    scheduled: ClassVar[bool] = True  # monitors probe it (push devices report themselves)
    description: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    options_example: ClassVar[dict[str, Any]] = {}

    def target_problem(self, target: str | None) -> str | None:
        """Why `target` does not fit a device of this kind, or None."""
        if self.example is None:
            return f"{self.name} devices have no target (they send to the tracker); omit it" if target else None
        if not target:
            return f"required for kind {self.name!r}, e.g. {self.example!r}"
        return target_text_problem(target) or self._target_problem(target)

    def _target_problem(self, target: str) -> str | None:
        return None

    def host(self, target: str) -> str:
        """The host a (shape-checked) target makes a monitor connect to ('' when it connects to none)."""
        return target

    def egress_hosts(self, target: str | None, options: dict[str, Any]) -> list[str]:
        """Every host a check of this device connects to, for the egress policy at registration."""
        return [self.host(target)] if target else []

    def options(self, raw: Any) -> dict[str, Any]:
        """`raw` checked by the kind's model and normalised (defaults left out, so `{}` stays `{}`);
        OptionsProblem naming the first bad field otherwise."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise OptionsProblem("options", "must be an object (JSON {...})")
        try:
            model = self.Options.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors(include_input=False)[0]
            loc = err.get("loc", ())
            field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "options"
            reason = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            if err.get("type") == "extra_forbidden":
                allowed = ", ".join(self.Options.model_fields) or "none (this kind has no options)"
                reason = f"unknown option; allowed: {allowed}"
            raise OptionsProblem(field, reason) from None
        return model.model_dump(mode="json", exclude_defaults=True)
