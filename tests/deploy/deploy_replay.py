"""Recorded engine events and a stand-in for pulumi.automation.Stack that replays them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pulumi.automation import EngineEvent
from pulumi.automation._cmd import CommandResult
from pulumi.automation._output import OutputValue
from pulumi.automation.errors import create_command_error

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def raw_events(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def load_events(name: str) -> list[EngineEvent]:
    return [EngineEvent.from_json(e) for e in raw_events(name)]


class ReplayStack:
    """Plays recorded event logs through on_event/on_output like the real Stack; records every call.

    ``script`` maps a method name to (fixture name, error text or None): with an error text, the events
    are replayed and then the CommandError the automation API would raise for that CLI output.
    """

    def __init__(self, script: dict[str, tuple[str | None, str | None]], outputs: dict | None = None):
        self.script = script
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.config: dict[str, Any] = {}
        self._outputs = outputs or {}

    def _play(self, method: str, kwargs: dict[str, Any]) -> None:
        self.calls.append((method, kwargs))
        fixture, error = self.script[method]
        events = load_events(fixture) if fixture else []
        for event in events:
            if event.diagnostic_event and kwargs.get("on_output"):
                kwargs["on_output"](event.diagnostic_event.message.rstrip())
            kwargs.get("on_event", lambda e: None)(event)
        if error is not None:
            raise create_command_error(CommandResult(stdout="", stderr=error, code=255))

    def preview(self, **kwargs: Any) -> None:
        self._play("preview", kwargs)

    def up(self, **kwargs: Any) -> None:
        self._play("up", kwargs)

    def refresh(self, **kwargs: Any) -> None:
        self._play("refresh", kwargs)

    def destroy(self, **kwargs: Any) -> None:
        self._play("destroy", kwargs)

    def outputs(self) -> dict[str, OutputValue]:
        self.calls.append(("outputs", {}))
        return {k: OutputValue(value=v, secret=s) for k, (v, s) in self._outputs.items()}

    def set_config(self, key: str, value: Any, path: bool = False) -> None:
        self.calls.append(("set_config", {"key": key, "value": value.value, "secret": value.secret, "path": path}))
        self.config[key] = value

    def methods_called(self) -> list[str]:
        return [name for name, _ in self.calls]
