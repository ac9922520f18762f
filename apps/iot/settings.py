"""Every setting of every service, read from environment variables (the only configuration source).

This module is the one place the environment is documented: each field's description is the
documentation, and `iot env` prints them all. Secrets (URLs with passwords, tokens) are SecretStr so
they never appear in logs or reprs.
"""

import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from iot.egress import EgressPolicy
from iot.quotas import DEFAULT_QUOTAS, Quotas
from iot.sealed import SecretBox, key_problem


# --- Egress policy (issue 12: SSRF-safe probes and webhooks) -----------------------------------------
class EgressSettings(BaseSettings):
    """Where tenant-supplied targets may lead us: read by every service that registers or reaches them."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    egress_allow_cidrs: str = Field(
        "",
        description="Comma-separated CIDRs that device targets and webhook URLs may reach although they are "
        "not public internet addresses (loopback, private, link-local...); plain-http webhooks are allowed "
        "to them too. Empty in production; self-hosted installs list their own networks, the playground "
        "its compose network.",
    )

    @field_validator("egress_allow_cidrs")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        EgressPolicy.parse(value)  # ValueError names the bad entry
        return value

    def egress_policy(self) -> EgressPolicy:
        return EgressPolicy.parse(self.egress_allow_cidrs)


class CommonSettings(EgressSettings):
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

    # --- development mode (issue 16): published default secrets are refused unless this is set ---
    allow_default_secrets: bool = Field(
        False,
        description="Accept the published default secrets (SESSION_SECRET, ADMIN_TOKEN, the DATABASE_URL password "
        "of settings.py and .env.example): docker compose and `iot demo` only, never a reachable deployment.",
    )

    def monitor_name_set(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.monitor_names.split(",") if n.strip())


# --- bounded inputs and tenant quotas (issue 12): the HTTP apps that take bodies and create devices ---
class RequestLimitSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    max_request_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024,
        description="Largest request body read (413 above it, before parsing); Traefik's buffering "
        "middleware enforces the same value in front.",
    )
    request_body_timeout_seconds: float = Field(
        30.0, gt=0, description="A request body must arrive within this many seconds of the request (408 after)."
    )


class QuotaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    quota_devices: int = Field(
        DEFAULT_QUOTAS.devices, ge=0, description="Devices a tenant may have (per-tenant overrides: tenant_quotas)."
    )
    quota_checks_per_second: float = Field(
        DEFAULT_QUOTAS.checks_per_second, ge=0,
        description="Checks per second a tenant may schedule: sum of 1/interval_s over its enabled checked devices.",
    )
    quota_points_per_second: float = Field(
        DEFAULT_QUOTAS.points_per_second, ge=0,
        description="Metric points (heartbeats count 1) a tenant may send per second, bursts up to 2 s of it.",
    )

    def quotas(self) -> Quotas:
        return Quotas(self.quota_devices, self.quota_checks_per_second, self.quota_points_per_second)


# --- secrets at rest and e-mail (issues 14 and 15): channel URLs with tokens, TOTP seeds; SMTP relay ---
class SecretsKeySettings(BaseSettings):
    """The key that seals stored secrets (iot.sealed): read by every service that stores or uses them."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    secrets_key: SecretStr = Field(
        SecretStr("M3jwA7KSelsMKpT7GM126THJ3m2r5XnDsf6LsC9jR0o="),
        description="Comma-separated Fernet keys sealing stored secrets (notification channel URLs, TOTP seeds): "
        "the first seals, all open (rotate by putting a new key first). The default is published: development only. "
        "Generate one: python3 -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'",
    )

    @field_validator("secrets_key")
    @classmethod
    def _keys(cls, value: SecretStr) -> SecretStr:
        problem = key_problem(value.get_secret_value())
        if problem:
            raise ValueError(problem)
        return value

    def secret_box(self) -> SecretBox:
        return SecretBox.from_setting(self.secrets_key.get_secret_value())


class SmtpSettings(BaseSettings):
    """The deployment's SMTP relay (iot.mailer): e-mail notifications, invitations and password resets."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    smtp_host: str = Field("", description="SMTP relay host name; empty: this server sends no e-mail.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP relay port (587 starttls, 465 tls, 25 none).")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls (upgrade after connecting), tls (TLS from the start) or none (local relays only)."
    )
    smtp_username: str = Field("", description="SMTP login; empty: no login.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password (with SMTP_USERNAME).")
    smtp_from: str = Field("my-iot-app <alerts@localhost>", description="From: address of every e-mail we send.")
    smtp_timeout_seconds: float = Field(10.0, gt=0, le=120, description="Timeout of one SMTP conversation.")


class TrackerSettings(CommonSettings, RequestLimitSettings, QuotaSettings, SecretsKeySettings, SmtpSettings):
    admin_token: SecretStr | None = Field(
        None, description="Bearer token that may create tenants (POST /v1/tenants). Unset: disabled."
    )
    max_devices_per_request: int = Field(10_000, description="Upper bound of one bulk device create.")
    max_points_per_request: int = Field(10_000, description="Upper bound of one metrics batch.")
    metric_max_age_seconds: int = Field(
        7 * 24 * 3600, gt=0, description="Metric points stamped further back than this are refused (422)."
    )


class WorkerSettings(CommonSettings, SecretsKeySettings, SmtpSettings):
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
    # Issue 13 (monitors keep their speed and truth): check batches bounded by bytes, stream memory, and
    # region health that reacts within two check intervals.
    region_sample_checks: int = Field(
        60, ge=1,
        description="A region's failure rate covers only its newest results, this many checks (within "
        "REGION_WINDOW_SECONDS), so a cut or a heal shows within a check interval.",
    )
    batch_max_bytes: int = Field(
        256 * 1024, ge=4096, le=16 * 1024 * 1024,
        description="Largest check batch message in bytes (with BATCH_SIZE); a device whose entry alone is "
        "larger is not scheduled and is logged.",
    )
    stream_keep_seconds: float = Field(
        30.0, ge=0,
        description="Check batches and results their consumers finished are deleted from Redis once older "
        "than this (raise it to inspect the streams).",
    )
    checks_max_age_seconds: float = Field(
        600.0, gt=0, description="Check batches older than this are deleted even if never probed (stale)."
    )
    webhook_timeout_seconds: float = Field(10.0, description="Timeout of one webhook POST.")
    webhook_max_attempts: int = Field(20, description="Webhook attempts before an event is marked failed.")
    webhook_backoff_seconds: float = Field(
        5.0, description="First webhook retry delay; doubles per attempt up to WEBHOOK_BACKOFF_CAP_SECONDS."
    )
    webhook_backoff_cap_seconds: float = Field(
        3600.0, gt=0, description="Longest wait between two webhook attempts."
    )
    # --- Webhook hardening (issue 12) ---
    webhook_tenant_round_limit: int = Field(
        10, ge=1,
        description="At most this many of one tenant's webhook deliveries per sender round (50), so one "
        "tenant's backlog or slow receiver gets a share of a round, never the whole of it.",
    )
    # --- Metric rules (issue 15) ---
    metric_rules_period_seconds: float = Field(
        10.0, gt=0, le=3600, description="How often the leader evaluates the metric rules.")
    metric_rules_lookback_seconds: int = Field(
        900, ge=60, le=86400,
        description="Points a rule reads: its duration plus this much; a device silent longer gets no verdict.")


    # --- history and retention (issue 14): partitions of migration 0011, kept and dropped by the leader ---
    retention_raw_days: int = Field(
        7, ge=1, le=3650, description="Days raw metric points (device_metrics) are kept; older daily partitions are dropped."
    )
    retention_minute_days: int = Field(
        30, ge=1, le=3650, description="Days per-minute rollups are kept (the 24h charts and downsampling read them)."
    )
    retention_hourly_days: int = Field(
        400, ge=1, le=3650,
        description="Days hourly rollups and the device-state timeline are kept (7d/30d/90d charts and uptime).",
    )
    history_job_seconds: float = Field(
        300.0, gt=0, description="How often the leader creates partitions ahead, downsamples and applies retention."
    )
    partitions_ahead_days: int = Field(3, ge=1, le=60, description="Days of history partitions created in advance.")


class MonitorSettings(CommonSettings):
    region: str = Field(
        "local", pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
        description="This monitor's region name, e.g. frankfurt (one DNS label: it is also its hostname).",
    )
    monitor_source_address: str | None = Field(
        None, description="Local address probes bind to (optional; tests give each region its own 127.x)."
    )
    concurrency: int = Field(1000, ge=1, description="HTTP and TCP checks in flight at once (each holds a socket).")
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
    canary_seconds: float = Field(5.0, gt=0, description="How often the canaries are probed.")
    tls_ca_file: str | None = Field(
        None, description="PEM file of the CAs tls checks trust (default: the system trust store); for a "
        "self-hosted fleet behind a private CA.")

    # Monitor scheduling (issue 13): the check, not the batch, is the unit of concurrency; tenants share
    # the monitor fairly; memory is bounded by the caps below.
    icmp_concurrency: int = Field(
        10_000, ge=1, le=30_000,
        description="ICMP echoes in flight at once (one shared socket; below the 16-bit sequence space).",
    )
    tenant_share: float = Field(
        0.25, gt=0, le=1,
        description="Share of CONCURRENCY (and of ICMP_CONCURRENCY) one tenant may hold, so a tenant whose "
        "devices hang fills only its share; 1 for a single-tenant install.",
    )
    queue_checks: int = Field(
        5000, ge=1,
        description="Take more batches from the stream while fewer checks than this could start soon (those "
        "of a tenant holding its whole share do not count: its backlog must not stop everyone else's).",
    )
    queue_checks_max: int = Field(
        100_000, ge=1,
        description="Most checks waiting to start in all (~400 bytes each, so ~40 MB): beyond it the oldest "
        "of the tenant at its share with the longest queue are dropped, counted. A waiting check is dropped "
        "anyway once its device's next check is due.",
    )
    result_flush_seconds: float = Field(
        0.1, gt=0, le=5, description="Results are written in groups: at most this long after the first one ..."
    )
    result_flush_max: int = Field(500, ge=1, description="... or as soon as this many are ready.")
    result_buffer_max: int = Field(
        10_000, ge=1, description="Results waiting to be written; while full (Redis slow), no new check starts."
    )

    # --- what the monitor exposes (issue 10): only /health may be public; /metrics gets its own listener ---
    metrics_port: int = Field(
        0, ge=0, le=65535,
        description="Serve /metrics on this port only, on its own listener (monitor nodes never publish it); "
        "0: /metrics beside /health on APP_PORT (playground).",
    )

    # A field validator, not a model one: its error names the one variable and shows only its value (a
    # model validator's error carries every setting, URLs with passwords included).
    @field_validator("queue_checks_max")
    @classmethod
    def _at_least_the_watermark(cls, value: int, info: ValidationInfo) -> int:
        watermark = info.data.get("queue_checks")
        if watermark is not None and value < watermark:
            raise ValueError(f"is below QUEUE_CHECKS ({watermark}): the monitor would read batches it has no "
                             "room for; raise QUEUE_CHECKS_MAX or lower QUEUE_CHECKS")
        return value


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIM_", case_sensitive=False, extra="ignore")

    host: str = Field("127.0.0.1", description="Address the simulated devices listen on (SIM_HOST).")
    control_port: int = Field(9000, description="Control API port (SIM_CONTROL_PORT).")


class DashboardSettings(CommonSettings, RequestLimitSettings, QuotaSettings, SecretsKeySettings, SmtpSettings):
    session_secret: SecretStr = Field(
        SecretStr("change-me-dashboard-session-secret"),
        description="Key that signs dashboard session cookies; set a long random value in production.",
    )
    cookie_secure: bool = Field(False, description="Mark the session cookie Secure (true behind HTTPS).")
    tracker_public_url: str = Field(
        "http://tracker.localhost", description="Public URL of the tracker API, linked from the dashboard."
    )

    # --- where error pages lead (issue 16): the marketing site, never back to the page itself ---
    marketing_url: str = Field(
        "", description="URL of the marketing site (the apex), linked from pages of hosts that are not a tenant "
        "(default: //DOMAIN/, right behind Traefik on ports 80/443; `iot demo` serves it on its own port).",
    )

    def marketing_link(self) -> str:
        return self.marketing_url or f"//{self.domain}/"


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
    RequestLimitSettings,
    QuotaSettings,
    SecretsKeySettings,
    SmtpSettings,
    TrackerSettings,
    WorkerSettings,
    MonitorSettings,
    SimulatorSettings,
    DashboardSettings,
    SeedSettings,
)


def describe_environment(environ: Mapping[str, str] | None = None) -> str:
    """Every environment variable with the value a service started now would get, marked `default` (not set
    here: the built-in value) or `set`, and its description (for `iot env`). Passwords and secrets are hidden."""
    environ = os.environ if environ is None else environ
    given = {name.upper(): value for name, value in environ.items()}
    seen: set[str] = set()
    lines = ["# NAME=value  # default|set: description   (default: not set here, the built-in value applies)"]
    for cls in ALL_SETTINGS:
        prefix = cls.model_config.get("env_prefix", "")
        lines.append(f"# {cls.__name__}")
        for name, field in cls.model_fields.items():
            env = (prefix + name).upper()
            if env in seen:
                continue
            seen.add(env)
            is_set = env in given
            secret = field.annotation in (SecretStr, SecretStr | None)
            value = given[env] if is_set else field.default
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            shown = _shown(value, secret, is_set)
            lines.append(f"{env}={shown}  # {'set' if is_set else 'default'}: {field.description}")
    return "\n".join(lines)


def _shown(value: object, secret: bool, is_set: bool) -> str:
    if value is None:
        return ""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if not secret:
        return text
    if "://" in text:  # a URL: everything but the password
        try:
            parts = urlsplit(text)
        except ValueError:
            return "(secret URL)"
        if parts.password is None:
            return text
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return "(secret)" if is_set else "(published default: development only)"
