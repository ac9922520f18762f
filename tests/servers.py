"""The test servers: real Redis and PostgreSQL on free ports (the launcher is shared with `iot demo`)."""

from iot.devtools.servers import (  # noqa: F401 - re-exported for the tests and benchmarks
    PostgresServer,
    RedisServer,
    free_port,
    free_port_range,
    running,
    wait_port,
)
