"""The tracker's HTTP routes, one module per resource; `ROUTERS` is the order app.py includes them in."""

from iot.tracker.routes import devices, incidents, ingest, maintenance, tenants

ROUTERS = (tenants.router, devices.router, ingest.router, maintenance.router, incidents.router)
