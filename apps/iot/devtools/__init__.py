"""Running the whole system from source on one machine: `iot demo`, and the servers the tests start.

Nothing here is used by the services themselves; it needs the OS packages `redis-server` and `postgresql`.
"""
