"""Every setting of every service, read from environment variables (the only configuration source).

This module is the one place the environment is documented: each field's description is the
documentation, and `iot env` prints them all. Secrets (URLs with passwords, tokens) are SecretStr so
they never appear in logs or reprs.
"""

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: SecretStr = Field(
        SecretStr("postgresql://iot:iot@localhost:5432/iot"),
        description="PostgreSQL URL (postgresql://user:password@host:port/db).",
    )
    redis_url: SecretStr = Field(
        SecretStr("redis://localhost:6379/0"), description="Redis URL (redis:// or rediss://)."
    )
    app_host: str = Field("0.0.0.0", description="Address the HTTP server listens on.")
    app_port: int = Field(8000, description="Port the HTTP server listens on.")
    log_level: str = Field("info", description="debug, info, warning or error.")
    domain: str = Field("localhost", description="Base domain; tenants live at <slug>.<domain>.")
    monitor_names: str = Field(
        "frankfurt,amsterdam",
        description="Comma-separated monitor (region) names; reserved as hostnames, never tenant slugs.",
    )

    def monitor_name_set(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.monitor_names.split(",") if n.strip())


class TrackerSettings(CommonSettings):
    admin_token: SecretStr | None = Field(
        None, description="Bearer token that may create tenants (POST /v1/tenants). Unset: disabled."
    )
    max_devices_per_request: int = Field(10_000, description="Upper bound of one bulk device create.")
    max_points_per_request: int = Field(10_000, description="Upper bound of one metrics batch.")


class WorkerSettings(CommonSettings):
    tick_seconds: float = Field(1.0, gt=0, description="Scheduler tick: how often due checks are planned.")
    lock_ttl_seconds: float = Field(
        10.0, gt=0, description="Leader lock expiry: a standby worker takes over this long after the leader dies."
    )
    batch_size: int = Field(500, ge=1, le=10_000, description="Checks per stream message sent to a region.")
    region_alive_seconds: float = Field(
        15.0, gt=0, description="A region is live while one of its monitors heartbeated within this window."
    )
    quorum_min: int = Field(2, ge=1, description="Minimum failing healthy regions to call a device down.")
    failures_to_down: int = Field(
        2, ge=1, description="Consecutive failed checks in a region before that region counts as failing."
    )
    instance_id: str | None = Field(
        None, description="Name of this worker/monitor process in locks and consumer groups (default: <hostname>-<pid>)."
    )
    max_catchup_seconds: int = Field(
        30, ge=0, description="After a failover or stall, schedule seconds missed up to this far back (then skip)."
    )
    results_read_count: int = Field(50, ge=1, description="Result batches the evaluator reads per XREADGROUP.")
    anomaly_factor: float = Field(
        4.0, description="Default: a check is slow when latency > EWMA mean + factor * stddev ..."
    )
    anomaly_min_ms: float = Field(100.0, description="... and at least this many ms above the mean.")
    anomaly_checks: int = Field(3, ge=1, description="Default slow checks in a row before a device is degraded.")
    anomaly_warmup: int = Field(10, description="Samples a baseline needs before anomalies are flagged.")
    ewma_alpha: float = Field(0.1, gt=0, le=1, description="Weight of the newest latency in the EWMA baseline.")
    region_failure_rate: float = Field(
        0.5,
        description="A region failing at least this share of its checks while the other regions fail "
        "under half of it is unhealthy (its own network is the problem, not the devices).",
    )
    region_min_checks: int = Field(20, description="Checks a region needs in the window before its rate counts.")
    region_window_seconds: float = Field(30.0, description="Sliding window of the region failure rate.")
    webhook_timeout_seconds: float = Field(10.0, description="Timeout of one webhook POST.")
    webhook_max_attempts: int = Field(20, description="Webhook attempts before an event is marked failed.")
    webhook_backoff_seconds: float = Field(
        5.0, description="First webhook retry delay; doubles per attempt up to WEBHOOK_BACKOFF_CAP_SECONDS."
    )
    webhook_backoff_cap_seconds: float = Field(
        3600.0, gt=0, description="Longest wait between two webhook attempts."
    )


class MonitorSettings(CommonSettings):
    region: str = Field(
        "local", pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
        description="This monitor's region name, e.g. frankfurt (one DNS label: it is also its hostname).",
    )
    monitor_source_address: str | None = Field(
        None, description="Local address probes bind to (optional; tests give each region its own 127.x)."
    )
    concurrency: int = Field(1000, ge=1, description="Probes in flight at once.")
    batch_read_count: int = Field(4, ge=1, description="Stream messages (batches) read per XREADGROUP.")
    heartbeat_seconds: float = Field(5.0, gt=0, description="How often this monitor heartbeats its region.")
    reclaim_idle_seconds: float = Field(
        30.0, description="Batches pending this long on a dead consumer are reclaimed (XAUTOCLAIM)."
    )
    canaries: str = Field(
        "", description="Comma-separated canary targets (http URL, tcp host:port, icmp host) that must always answer."
    )
    instance_id: str | None = Field(
        None, description="Consumer name of this monitor in its region's group (default: <hostname>-<pid>)."
    )
    http_keepalive: bool = Field(
        False, description="Reuse HTTP connections between checks (false: a new connection per check)."
    )
    inflight_batches: int = Field(8, ge=1, description="Check batches probed at once by one monitor process.")
    canary_seconds: float = Field(5.0, gt=0, description="How often the canaries are probed.")

    # --- what the monitor exposes (issue 10): only /health may be public; /metrics gets its own listener ---
    metrics_port: int = Field(
        0, ge=0, le=65535,
        description="Serve /metrics on this port only, on its own listener (monitor nodes never publish it); "
        "0: /metrics beside /health on APP_PORT (playground).",
    )


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIM_", case_sensitive=False, extra="ignore")

    host: str = Field("127.0.0.1", description="Address the simulated devices listen on (SIM_HOST).")
    control_port: int = Field(9000, description="Control API port (SIM_CONTROL_PORT).")


class DashboardSettings(CommonSettings):
    session_secret: SecretStr = Field(
        SecretStr("change-me-dashboard-session-secret"),
        description="Key that signs dashboard session cookies; set a long random value in production.",
    )
    cookie_secure: bool = Field(False, description="Mark the session cookie Secure (true behind HTTPS).")
    tracker_public_url: str = Field(
        "http://tracker.localhost", description="Public URL of the tracker API, linked from the dashboard."
    )


class SeedSettings(CommonSettings):
    demo_tenant: str = Field("demo", description="Slug of the demo tenant (http://<slug>.DOMAIN).")
    demo_api_key: SecretStr = Field(
        SecretStr("iotk_demo-local-playground-key-change-me"),
        description="API key the demo tenant signs in with (a fixed, known value: the playground only).",
    )
    seed_devices: int = Field(300, description="HTTP devices of the simulator to register (ports base..base+N-1).")
    seed_tcp_devices: int = Field(0, description="TCP devices of the simulator, on the ports after the HTTP ones.")
    seed_failing: int = Field(15, description="Extra devices pointing at closed ports: they go down.")
    seed_interval_s: int = Field(15, description="Check interval of the demo devices (short, for a lively demo).")
    seed_simulator_host: str = Field("simulator", description="Hostname of the simulator, as monitors reach it.")
    seed_simulator_base_port: int = Field(20000, description="The simulator's --base-port.")


ALL_SETTINGS: tuple[type[BaseSettings], ...] = (
    CommonSettings,
    TrackerSettings,
    WorkerSettings,
    MonitorSettings,
    SimulatorSettings,
    DashboardSettings,
    SeedSettings,
)


def describe_environment() -> str:
    """Every environment variable with its default and description (for `iot env`)."""
    seen: set[str] = set()
    lines: list[str] = []
    for cls in ALL_SETTINGS:
        prefix = cls.model_config.get("env_prefix", "")
        lines.append(f"# {cls.__name__}")
        for name, field in cls.model_fields.items():
            env = (prefix + name).upper()
            if env in seen:
                continue
            seen.add(env)
            default = field.default
            if isinstance(default, SecretStr):
                default = "(secret)"
            lines.append(f"{env}={default if default is not None else ''}  # {field.description}")
    return "\n".join(lines)
