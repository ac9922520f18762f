"""Repositories, one per aggregate (tenants, devices, the device list, incidents, webhooks, regions).

Shared by the tracker API and the dashboard. Every tenant-owned query filters on the tenant id.
"""

from iot.repo._db import MAX_PAGE

__all__ = ["MAX_PAGE"]
