"""The worker's in-memory copy of the devices it schedules and evaluates, reloaded on version bumps."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from iot.log import log_fields
from iot.repo import check_secrets
from iot.sealed import SecretBox

logger = logging.getLogger(__name__)

SELECT_SCHEDULED_DEVICES = """
SELECT id, tenant_id, name, kind, target, interval_s, timeout_ms, parent_id,
       anomaly_factor, anomaly_min_ms, anomaly_checks, state, options, retries
FROM devices
WHERE enabled AND kind <> 'push'
ORDER BY id
"""


@dataclass(slots=True)
class Device:
    id: int
    tenant_id: int
    name: str
    kind: str
    target: str
    interval_s: int
    timeout_ms: int
    parent_id: int | None = None
    anomaly_factor: float | None = None
    anomaly_min_ms: float | None = None
    anomaly_checks: int | None = None
    state: str = "unknown"
    options: dict[str, Any] = field(default_factory=dict)  # the kind's options (validated on save)
    retries: int | None = None  # failed checks in a row before a region counts as failing (None: default)

    def check_fragment(self) -> str:
        """This device's entry in a check batch, encoded once per reload.

        `[device_id, kind, target, timeout_ms, tenant_id, interval_s, options]`: the monitor shares its work
        fairly by tenant and drops a check that could not start before the next one is due (interval).
        `options` only when the device has some, so plain entries stay as short as before. Elements are
        only ever appended; readers ignore those they do not know.
        """
        # Only the target needs JSON escaping; formatting the rest directly is 3x faster for 100k devices.
        options = f",{json.dumps(self.options, separators=(',', ':'))}" if self.options else ""
        return (f'[{self.id},"{self.kind}",{json.dumps(self.target)},{self.timeout_ms},{self.tenant_id},'
                f'{self.interval_s}{options}]')


async def load_devices(pool: asyncpg.Pool, box: SecretBox | None = None) -> dict[int, Device]:
    """Enabled probed devices; secret option values (http headers) opened with `box` (SECRETS_KEY). A device
    whose values do not open is left out (logged): checking it without its headers would report a lie."""
    devices: dict[int, Device] = {}
    for row in await pool.fetch(SELECT_SCHEDULED_DEVICES):
        values = dict(row)
        options = check_secrets.opened(values["options"], box)
        if options is None:
            log_fields(logger, logging.ERROR, "device not scheduled: its sealed header values do not open "
                       "with SECRETS_KEY (set the key they were sealed with, or set the headers again)", device=row["id"])
            continue
        values["options"] = options
        devices[row["id"]] = Device(**values)
    return devices
