"""Dashboard routes, one module per page group; `ROUTERS` is the order app.py includes them in."""

from iot.dashboard.routes import auth, devices, metrics, overview, settings

ROUTERS = (auth.router, overview.router, devices.router, metrics.router, settings.router)
