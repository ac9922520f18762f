"""Tracker: the HTTP API for tenants (devices, incidents, webhooks) and device ingest (metrics, heartbeats)."""
