"""The tracker's HTTP routes, one module per resource; `ROUTERS` is the order app.py includes them in."""

from iot.tracker.routes import (
    accounts,
    channels,
    devices,
    fleet,
    history,
    incidents,
    ingest,
    maintenance,
    metrics,
    status_pages,
    tenants,
)

ROUTERS = (tenants.router, devices.router, fleet.router, ingest.router, channels.router, maintenance.router,
           incidents.router, history.router, metrics.router,
           status_pages.router, accounts.router)
