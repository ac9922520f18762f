"""The audit log: who (a user's email or an API key's name) changed what, when, from which address."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from iot.repo._db import Executor, check_ids, check_page_limit

MAX_TEXT = 500  # actions and targets are route paths and ids; bound what a hostile path can store

INSERT_ENTRY = """
INSERT INTO audit_log (tenant_id, actor_kind, actor_id, actor_name, action, target, details, ip)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
"""
SELECT_ENTRIES = """
SELECT id, actor_kind, actor_id, actor_name, action, target, details, ip, at FROM audit_log
WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3
"""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    actor_kind: str
    actor_id: int | None
    actor_name: str
    action: str
    target: str
    details: dict[str, Any]
    ip: str | None
    at: datetime

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> AuditEntry:
        return cls(row["id"], row["actor_kind"], row["actor_id"], row["actor_name"], row["action"], row["target"],
                   json.loads(row["details"]), row["ip"], row["at"])


async def record(db: Executor, tenant_id: int, *, actor_kind: str, actor_id: int | None, actor_name: str,
                 action: str, target: str = "", details: dict[str, Any] | None = None, ip: str | None = None) -> None:
    await db.execute(INSERT_ENTRY, tenant_id, actor_kind, actor_id, actor_name[:MAX_TEXT], action[:MAX_TEXT],
                     target[:MAX_TEXT], json.dumps(details or {}), ip)


async def list_entries(db: Executor, tenant_id: int, *, before_id: int | None = None, limit: int = 50) -> list[AuditEntry]:
    """This tenant's entries, newest first; page with `before_id` (the last id of the previous page)."""
    check_page_limit(limit)
    check_ids(before=before_id)
    return [AuditEntry.from_record(r) for r in await db.fetch(SELECT_ENTRIES, tenant_id, before_id, limit)]
