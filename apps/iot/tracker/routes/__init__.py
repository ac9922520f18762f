"""The tracker's HTTP routes, one module per resource; `ROUTERS` is the order app.py includes them in."""

from iot.tracker.routes import channels, devices, fleet, ingest, tenants

ROUTERS = (tenants.router, devices.router, fleet.router, ingest.router, channels.router)
