"""The simulated devices' behaviour and probe counters (shared by the servers and the control API)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["ok", "fail", "hang"]
MODES: tuple[Mode, ...] = ("ok", "fail", "hang")


@dataclass
class SimDevice:
    index: int
    kind: Literal["http", "tcp"]
    host: str
    port: int
    mode: Mode = "ok"
    delay_ms: float = 0.0
    refuse_sources: frozenset[str] = frozenset()
    hits: int = 0
    hits_by_source: Counter[str] = field(default_factory=Counter)

    @property
    def target(self) -> str:
        return f"http://{self.host}:{self.port}/" if self.kind == "http" else f"{self.host}:{self.port}"

    def record_hit(self, source: str) -> None:
        self.hits += 1
        self.hits_by_source[source] += 1

    def reset_behaviour(self) -> None:
        self.mode, self.delay_ms, self.refuse_sources = "ok", 0.0, frozenset()

    def reset_hits(self) -> None:
        self.hits = 0
        self.hits_by_source.clear()

    def summary(self) -> dict[str, Any]:
        return {
            "index": self.index, "kind": self.kind, "port": self.port, "target": self.target,
            "mode": self.mode, "delay_ms": self.delay_ms, "refuse_sources": sorted(self.refuse_sources),
            "hits": self.hits,
        }


def parse_changes(body: Any) -> dict[str, Any]:
    """Validate a control-API change body; ValueError names the bad field."""
    if not isinstance(body, dict):
        raise ValueError('body: expected a JSON object like {"mode": "fail"}')
    changes: dict[str, Any] = {}
    unknown = set(body) - {"mode", "delay_ms", "refuse_sources", "devices"}
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: unknown field; use mode, delay_ms, refuse_sources")
    if "mode" in body:
        if body["mode"] not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)}")
        changes["mode"] = body["mode"]
    if "delay_ms" in body:
        delay = body["delay_ms"]
        if not isinstance(delay, int | float) or isinstance(delay, bool) or not 0 <= delay <= 600_000:
            raise ValueError("delay_ms: must be a number of milliseconds between 0 and 600000")
        changes["delay_ms"] = float(delay)
    if "refuse_sources" in body:
        sources = body["refuse_sources"]
        if not isinstance(sources, list) or not all(isinstance(s, str) and s for s in sources):
            raise ValueError('refuse_sources: must be a list of IP addresses, e.g. ["127.0.0.3"]')
        changes["refuse_sources"] = frozenset(sources)
    return changes
