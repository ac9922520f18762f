"""Dashboard routes, one module per page group; `ROUTERS` is the order app.py includes them in."""

from iot.dashboard.routes import (
    accounts,
    auth,
    devices,
    fleet,
    history,
    incidents,
    maintenance,
    metrics,
    notifications,
    overview,
    settings,
    status_pages,
)

# fleet before devices: its /devices/bulk must not be taken for /devices/{device_id}.
ROUTERS = (auth.router, overview.router, fleet.router, devices.router, metrics.router, settings.router,
           notifications.router, incidents.router, maintenance.router, history.router,
           status_pages.router, accounts.router)
