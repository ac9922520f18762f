"""push: the device sends metrics or heartbeats to the tracker itself; silence is judged, nothing probed."""

from __future__ import annotations

from iot.checks.base import CheckKind


class Push(CheckKind):
    name = "push"
    example = None
    scheduled = False
    description = "push: the device sends metrics/heartbeats itself"

    def egress_hosts(self, target, options):  # noqa: ANN001, ANN201 - nothing is connected to
        return []


KIND = Push()
