"""Tenant dashboard: `<tenant>.<domain>` pages over the tenants/devices repositories, live via htmx."""
