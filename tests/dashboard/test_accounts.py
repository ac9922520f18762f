"""Accounts and roles in a real `iot dashboard` process: the first sign-in with the API key creates the
owner, email + password sign-in with throttling, TOTP, invitations and password resets by e-mail to a local
aiosmtpd, roles on every route (the list generated from the app's routes), the audit log, tenant isolation."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pyotp
import pytest
from channel_receivers import SmtpReceiver

from dashboard.harness import (
    Dashboard,
    TenantKey,
    create_devices,
    csrf_of,
    new_tenant,
    run,
    setup_tenants,
    sql,
    start_dashboard,
)
from iot.dashboard.app import create_app
from iot.db import connect
from iot.repo import users
from iot.repo.devices import DeviceSpec
from iot.settings import DashboardSettings
from iot.tokens import token_hash

_tenants = itertools.count()
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="module")
def dashboard(postgres_server, redis_server, tmp_path_factory, smtp) -> Iterator[Dashboard]:
    database_url = postgres_server.create_database(f"accounts_{next(_tenants)}")
    acme, beta = run(setup_tenants(database_url, ("acme", "beta")))
    log = tmp_path_factory.mktemp("dashboard") / "dashboard.log"
    proc, port = start_dashboard(database_url, redis_server.url, log, SMTP_HOST="127.0.0.1",
                                 SMTP_PORT=str(smtp.port), SMTP_SECURITY="none")
    try:
        yield Dashboard(f"http://127.0.0.1:{port}", port, database_url, redis_server.url, acme, beta)
    finally:
        proc.stop()


def fresh(dashboard: Dashboard) -> TenantKey:
    return new_tenant(dashboard.database_url, f"acc{next(_tenants)}")


def add_user(dashboard: Dashboard, tenant: TenantKey, email: str, role: str) -> int:
    async def create() -> int:
        conn = await connect(dashboard.database_url)
        try:
            if role == "owner":
                user = await users.create_first_owner(conn, tenant.id, email, PASSWORD)
                assert user is not None
                return user.id
            return (await users.create_user(conn, tenant.id, email, PASSWORD, role)).id
        finally:
            await conn.close()

    return run(create())


def sign_in(dashboard: Dashboard, tenant: TenantKey, email: str, password: str = PASSWORD, **extra: str) -> httpx.Client:
    client = dashboard.client(tenant)
    response = client.post("/signin", data={"email": email, "password": password, "next": "/", **extra})
    assert response.status_code == 303, response.text
    return client


def write_routes() -> list[str]:
    """Every state-changing dashboard route that needs a role, read from the app itself (not hand-written)."""
    schema = create_app(DashboardSettings()).openapi()
    out = [path for path, ops in schema["paths"].items() for method, op in ops.items()
           if method.upper() not in ("GET", "HEAD") and not {"public", "self-service"} & set(op.get("tags", []))]
    assert len(out) >= 20, out
    return out


def last_mail_link(smtp: SmtpReceiver, to: str) -> str:
    message = [m for m in smtp.messages if m["To"] == to][-1]
    body = message.get_payload(decode=True).decode() if not message.is_multipart() else \
        message.get_payload(0).get_payload(decode=True).decode()
    return re.search(r"https?://\S+", body).group(0)


def test_first_sign_in_with_the_key_creates_the_owner_then_the_key_no_longer_opens_the_dashboard(dashboard) -> None:
    tenant = fresh(dashboard)
    key_client = dashboard.signed_in(tenant)
    assert "Create the owner account" in key_client.get("/").text
    page = key_client.get("/account/owner")
    created = key_client.post("/account/owner", data={"csrf": csrf_of(page.text), "email": "Boss@Example.com",
                                                       "password": PASSWORD})
    assert created.status_code == 303 and created.headers["location"] == "/account"
    account = key_client.get("/account")
    assert "boss@example.com" in account.text and "owner" in account.text
    rows = sql(dashboard.database_url, "SELECT email, role, password_hash FROM users WHERE tenant_id = $1", tenant.id)
    assert [(r["email"], r["role"]) for r in rows] == [("boss@example.com", "owner")]
    assert rows[0]["password_hash"].startswith("$argon2id$") and PASSWORD not in rows[0]["password_hash"]
    again = dashboard.client(tenant).post("/signin", data={"api_key": tenant.api_key})
    assert again.status_code == 401 and "email and password" in again.text
    assert dashboard.client(tenant).post("/signin", data={"email": "boss@example.com",
                                                          "password": "wrong password!"}).status_code == 401
    owner = sign_in(dashboard, tenant, "BOSS@example.com")
    assert owner.get("/users").status_code == 200
    audit = owner.get("/audit").text
    assert "dashboard: create owner" in audit and "dashboard: sign in" in audit


def test_a_viewer_gets_403_on_every_write_route_and_still_reads(dashboard) -> None:
    tenant = fresh(dashboard)
    (device,) = create_devices(dashboard.database_url, tenant, [DeviceSpec("pump", "http", "http://127.0.0.1:9/")])
    add_user(dashboard, tenant, "owner@example.com", "owner")
    add_user(dashboard, tenant, "viewer@example.com", "viewer")
    viewer = sign_in(dashboard, tenant, "viewer@example.com")
    assert viewer.get("/devices").status_code == 200 and "pump" in viewer.get("/devices").text
    assert viewer.get(f"/devices/{device}").status_code == 200
    csrf = csrf_of(viewer.get("/devices").text)
    for path in write_routes():
        url = re.sub(r"\{[^}]+\}", str(device), path)
        response = viewer.post(url, data={"csrf": csrf, "name": "pwned", "kind": "http", "role": "admin",
                                          "email": "x@example.com", "target": "http://127.0.0.1:9/"})
        assert response.status_code == 403, (path, response.status_code)
    assert [r["name"] for r in sql(dashboard.database_url, "SELECT name FROM devices WHERE tenant_id = $1",
                                   tenant.id)] == ["pump"]
    assert sql(dashboard.database_url, "SELECT count(*) FROM users WHERE tenant_id = $1", tenant.id)[0][0] == 2
    # Their own account is theirs to change, and signing out works for every role.
    copy = viewer.cookies["iot_session"]
    changed = viewer.post("/account/password", data={"csrf": csrf, "current": PASSWORD, "password": "a new passphrase"})
    assert changed.status_code == 303 and viewer.get("/account").status_code == 200
    # The change ended the user's other sessions (a copy of the old cookie here).
    with httpx.Client(base_url=dashboard.url, headers={"Host": tenant.host, "Cookie": f"iot_session={copy}"}) as old:
        assert old.get("/devices").status_code == 303
    csrf = csrf_of(viewer.get("/account").text)
    assert viewer.post("/signout", data={"csrf": csrf}).status_code == 303


def test_members_manage_devices_but_not_admin_pages_and_admins_cannot_touch_the_owner(dashboard) -> None:
    tenant = fresh(dashboard)
    (device,) = create_devices(dashboard.database_url, tenant, [DeviceSpec("gw", "http", "http://127.0.0.1:9/")])
    owner_id = add_user(dashboard, tenant, "owner@example.com", "owner")
    add_user(dashboard, tenant, "member@example.com", "member")
    add_user(dashboard, tenant, "admin@example.com", "admin")
    member = sign_in(dashboard, tenant, "member@example.com")
    csrf = csrf_of(member.get("/devices").text)
    for path in ("/settings", "/users", "/audit"):
        assert member.get(path).status_code == 403, path
    assert member.get("/notifications").status_code == 200  # channels: everyone may look
    assert member.post("/notifications", data={"csrf": csrf}).status_code == 403
    assert member.get("/status-pages").status_code == 200  # status pages: everyone may look, admins publish
    assert member.post("/status-pages", data={"csrf": csrf, "slug": "public", "title": "t"}).status_code == 403
    deleted = member.post(f"/devices/{device}/delete", data={"csrf": csrf}, headers={"X-Forwarded-For": "198.51.100.7"})
    assert deleted.status_code == 303
    admin = sign_in(dashboard, tenant, "admin@example.com")
    csrf = csrf_of(admin.get("/users").text)
    assert admin.post(f"/users/{owner_id}/role", data={"csrf": csrf, "role": "viewer"}).status_code == 404
    assert admin.post(f"/users/{owner_id}/delete", data={"csrf": csrf}).status_code == 404
    bad = admin.post("/users/invite", data={"csrf": csrf, "email": "new@example.com", "role": "owner"})
    assert bad.status_code == 422 and "role: must be one of admin, member, viewer" in bad.text
    entries = sql(dashboard.database_url, "SELECT actor_kind, actor_name, action, target, ip FROM audit_log "
                                          "WHERE tenant_id = $1 AND action LIKE '%delete%'", tenant.id)
    assert [tuple(e) for e in entries] == [("user", "member@example.com", "dashboard: POST /devices/{device_id}/delete",
                                            f"device_id={device}", "198.51.100.7")]
    assert "member@example.com" in admin.get("/audit").text


def test_totp_is_required_once_enabled(dashboard) -> None:
    tenant = fresh(dashboard)
    add_user(dashboard, tenant, "owner@example.com", "owner")
    owner = sign_in(dashboard, tenant, "owner@example.com")
    csrf = csrf_of(owner.get("/account").text)
    started = owner.post("/account/totp", data={"csrf": csrf})
    assert started.status_code == 200 and 'src="data:image/svg+xml;base64,' in started.text
    seed = re.search(r'id="totp-seed">([A-Z2-7]+)<', started.text).group(1)
    stored = sql(dashboard.database_url, "SELECT totp_sealed, totp_enabled FROM users WHERE tenant_id = $1", tenant.id)
    assert seed not in stored[0]["totp_sealed"] and stored[0]["totp_enabled"] is False
    wrong = owner.post("/account/totp/confirm", data={"csrf": csrf, "code": "000000" if pyotp.TOTP(seed).now() != "000000"
                                                      else "111111"})
    assert wrong.status_code == 422
    confirmed = owner.post("/account/totp/confirm", data={"csrf": csrf, "code": pyotp.TOTP(seed).now()})
    assert confirmed.status_code == 303
    no_code = dashboard.client(tenant).post("/signin", data={"email": "owner@example.com", "password": PASSWORD})
    assert no_code.status_code == 401 and "6-digit code" in no_code.text
    # the confirmation used the current code: the sign-in takes the next one (still in the +-1 step window)
    second = sign_in(dashboard, tenant, "owner@example.com", code=pyotp.TOTP(seed).at(time.time(), counter_offset=1))
    csrf = csrf_of(second.get("/account").text)
    assert second.post("/account/totp/disable", data={"csrf": csrf, "current": "not my password"}).status_code == 422
    assert second.post("/account/totp/disable", data={"csrf": csrf, "current": PASSWORD}).status_code == 303
    sign_in(dashboard, tenant, "owner@example.com")  # no code needed any more
    stored = sql(dashboard.database_url, "SELECT totp_sealed, totp_enabled FROM users WHERE tenant_id = $1", tenant.id)
    assert (stored[0]["totp_sealed"], stored[0]["totp_enabled"]) == (None, False)


def _enable_totp(dashboard: Dashboard, tenant: TenantKey, user_id: int) -> str:
    """Give the user a second factor directly in the database (the enrolment pages are tested above)."""
    seed = pyotp.random_base32()

    async def enable() -> None:
        conn = await connect(dashboard.database_url)
        try:
            await users.set_totp(conn, tenant.id, user_id, DashboardSettings().secret_box().seal(seed), True)
        finally:
            await conn.close()
    run(enable())
    return seed


def test_a_totp_code_opens_one_sign_in_only_even_when_requests_race(dashboard) -> None:
    """RFC 6238 5.2: a code seen over a shoulder or through a phishing proxy must not open a second session,
    although it stays valid for up to 90 s (one step of clock drift either way)."""
    tenant = fresh(dashboard)
    seed = _enable_totp(dashboard, tenant, add_user(dashboard, tenant, "owner@example.com", "owner"))

    def attempt(email: str, code: str) -> httpx.Response:
        with dashboard.client(tenant) as client:
            return client.post("/signin", data={"email": email, "password": PASSWORD, "code": code})
    code = pyotp.TOTP(seed).now()
    assert attempt("owner@example.com", code).status_code == 303
    replayed = attempt("owner@example.com", code)
    assert replayed.status_code == 401 and "used already" in replayed.text
    # once a newer code of the window was used, the older one is refused too
    assert attempt("owner@example.com", pyotp.TOTP(seed).at(time.time(), counter_offset=1)).status_code == 303
    older = attempt("owner@example.com", code)
    assert older.status_code == 401 and "used already" in older.text

    # five sign-ins racing with one code (another user: the throttle allows five attempts per email)
    seed = _enable_totp(dashboard, tenant, add_user(dashboard, tenant, "racer@example.com", "member"))
    code = pyotp.TOTP(seed).now()
    with ThreadPoolExecutor(5) as pool:
        statuses = sorted(pool.map(lambda _: attempt("racer@example.com", code).status_code, range(5)))
    assert statuses == [303, 401, 401, 401, 401], statuses


def test_invitation_mail_link_works_once_and_expired_ones_are_refused(dashboard, smtp) -> None:
    tenant = fresh(dashboard)
    add_user(dashboard, tenant, "owner@example.com", "owner")
    owner = sign_in(dashboard, tenant, "owner@example.com")
    csrf = csrf_of(owner.get("/users").text)
    sent = owner.post("/users/invite", data={"csrf": csrf, "email": "Ops@Example.com", "role": "viewer"})
    assert sent.status_code == 200 and "Invitation sent to ops@example.com" in sent.text
    link = last_mail_link(smtp, "ops@example.com")
    assert link.startswith(f"http://{tenant.host}/invite/ioti_")
    path = httpx.URL(link).path
    invited = dashboard.client(tenant)
    assert invited.get(path).status_code == 200
    short = invited.post(path, data={"password": "short"})
    assert short.status_code == 422 and "password" in short.text
    accepted = invited.post(path, data={"password": PASSWORD})
    assert accepted.status_code == 303
    assert "ops@example.com" in invited.get("/account").text and "viewer" in invited.get("/account").text
    assert dashboard.client(tenant).get(path).status_code == 404
    assert dashboard.client(tenant).post(path, data={"password": PASSWORD}).status_code == 404
    # Another tenant's host does not know this tenant's invitation.
    assert dashboard.client(dashboard.beta).get(path).status_code == 404
    owner.post("/users/invite", data={"csrf": csrf, "email": "late@example.com", "role": "member"})
    late = httpx.URL(last_mail_link(smtp, "late@example.com")).path
    sql(dashboard.database_url, "UPDATE invitations SET expires_at = now() - interval '1 second' "
                                "WHERE tenant_id = $1 AND email = 'late@example.com'", tenant.id)
    assert dashboard.client(tenant).post(late, data={"password": PASSWORD}).status_code == 404
    assert sql(dashboard.database_url, "SELECT count(*) FROM users WHERE email = 'late@example.com'")[0][0] == 0


def test_password_reset_by_mail_works_once_and_expires(dashboard, smtp) -> None:
    tenant = fresh(dashboard)
    add_user(dashboard, tenant, "owner@example.com", "owner")
    before_reset = sign_in(dashboard, tenant, "owner@example.com")
    anonymous = dashboard.client(tenant)
    unknown = anonymous.post("/reset", data={"email": "nobody@example.com"})
    assert unknown.status_code == 200 and "If nobody@example.com has an account" in unknown.text
    assert not [m for m in smtp.messages if m["To"] == "nobody@example.com"]
    assert anonymous.post("/reset", data={"email": "owner@example.com"}).status_code == 200
    path = httpx.URL(last_mail_link(smtp, "owner@example.com")).path
    assert path.startswith("/reset/iotr_") and anonymous.get(path).status_code == 200
    assert anonymous.post(path, data={"password": "brand new passphrase"}).status_code == 303
    assert before_reset.get("/account").status_code == 303  # the reset ended the sessions opened before it
    assert anonymous.post(path, data={"password": "another passphrase"}).status_code == 404
    sign_in(dashboard, tenant, "owner@example.com", "brand new passphrase")
    assert dashboard.client(tenant).post("/signin", data={"email": "owner@example.com",
                                                          "password": PASSWORD}).status_code == 401
    anonymous.post("/reset", data={"email": "owner@example.com"})
    expired = httpx.URL(last_mail_link(smtp, "owner@example.com")).path
    sql(dashboard.database_url, "UPDATE password_resets SET expires_at = now() - interval '1 second' "
                                "WHERE tenant_id = $1 AND used_at IS NULL", tenant.id)
    assert anonymous.get(expired).status_code == 404
    assert anonymous.post(expired, data={"password": "third passphrase!"}).status_code == 404


def test_sign_in_is_throttled_after_repeated_failures(dashboard) -> None:
    tenant = fresh(dashboard)
    add_user(dashboard, tenant, "owner@example.com", "owner")
    client = dashboard.client(tenant)
    for _ in range(5):
        assert client.post("/signin", data={"email": "owner@example.com", "password": "guess guess"}).status_code == 401
    blocked = client.post("/signin", data={"email": "owner@example.com", "password": PASSWORD})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert "Too many sign-in attempts" in blocked.text


def test_a_user_of_one_tenant_cannot_sign_in_or_use_a_session_on_another(dashboard) -> None:
    acme, beta = fresh(dashboard), fresh(dashboard)
    add_user(dashboard, acme, "owner@example.com", "owner")
    add_user(dashboard, beta, "other@example.com", "owner")
    wrong_host = dashboard.client(beta).post("/signin", data={"email": "owner@example.com", "password": PASSWORD})
    assert wrong_host.status_code == 401
    acme_client = sign_in(dashboard, acme, "owner@example.com")
    cookie = acme_client.cookies["iot_session"]
    with httpx.Client(base_url=dashboard.url, headers={"Host": beta.host, "Cookie": f"iot_session={cookie}"}) as c:
        assert c.get("/users").status_code == 403
        assert c.get("/audit").status_code == 403


def test_admins_create_and_revoke_api_keys_shown_once_and_rotation_keeps_their_session(dashboard) -> None:
    tenant = fresh(dashboard)
    add_user(dashboard, tenant, "admin@example.com", "owner")
    admin = sign_in(dashboard, tenant, "admin@example.com")
    csrf = csrf_of(admin.get("/settings").text)
    created = admin.post("/settings/api-keys", data={"csrf": csrf, "name": "grafana", "scope_read": "1"})
    assert created.status_code == 200
    secret = re.search(r'id="created-api-key">(iotk_[^<]+)<', created.text).group(1)
    rows = sql(dashboard.database_url, "SELECT id, key_hash, scopes FROM api_keys WHERE tenant_id = $1 AND name = "
                                       "'grafana'", tenant.id)
    assert rows[0]["key_hash"] == token_hash(secret) and rows[0]["scopes"] == ["read"]
    assert secret not in admin.get("/settings").text  # shown once
    none = admin.post("/settings/api-keys", data={"csrf": csrf, "name": "empty"})
    assert none.status_code == 422 and "scopes" in none.text
    revoked = admin.post(f"/settings/api-keys/{rows[0]['id']}/revoke", data={"csrf": csrf})
    assert revoked.status_code == 200 and "revoked" in revoked.text
    assert sql(dashboard.database_url, "SELECT revoked_at FROM api_keys WHERE id = $1", rows[0]["id"])[0][0] is not None
    other = fresh(dashboard)
    other_key = sql(dashboard.database_url, "SELECT id FROM api_keys WHERE tenant_id = $1", other.id)[0][0]
    assert admin.post(f"/settings/api-keys/{other_key}/revoke", data={"csrf": csrf}).status_code == 404
    assert sql(dashboard.database_url, "SELECT revoked_at FROM api_keys WHERE id = $1", other_key)[0][0] is None
    rotated = admin.post("/settings/api-key", data={"csrf": csrf})
    assert rotated.status_code == 200 and 'id="new-api-key"' in rotated.text
    assert admin.get("/settings").status_code == 200  # still signed in as the user
    audit = admin.get("/audit").text
    assert "dashboard: POST /settings/api-keys" in audit and "admin@example.com" in audit


def test_an_invitation_for_an_email_that_got_an_account_meanwhile_is_refused_not_a_crash(dashboard, smtp) -> None:
    tenant = fresh(dashboard)
    add_user(dashboard, tenant, "owner@example.com", "owner")
    owner = sign_in(dashboard, tenant, "owner@example.com")
    csrf = csrf_of(owner.get("/users").text)
    assert owner.post("/users/invite", data={"csrf": csrf, "email": "twice@example.com", "role": "member"}).status_code == 200
    path = httpx.URL(last_mail_link(smtp, "twice@example.com")).path
    add_user(dashboard, tenant, "twice@example.com", "viewer")
    refused = dashboard.client(tenant).post(path, data={"password": PASSWORD})
    assert refused.status_code == 404 and "has an account here already" in refused.text
    roles = sql(dashboard.database_url, "SELECT role FROM users WHERE tenant_id = $1 AND email = 'twice@example.com'",
                tenant.id)
    assert [r["role"] for r in roles] == ["viewer"]
    again = owner.post("/users/invite", data={"csrf": csrf, "email": "twice@example.com", "role": "member"})
    assert again.status_code == 409 and "already has an account" in again.text


def test_revoking_the_original_key_ends_its_dashboard_sign_in(dashboard) -> None:
    tenant = fresh(dashboard)
    key_client = dashboard.signed_in(tenant)
    assert key_client.get("/devices").status_code == 200
    sql(dashboard.database_url, "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1", tenant.id)
    assert key_client.get("/devices").status_code == 303  # its session ended
    refused = dashboard.client(tenant).post("/signin", data={"api_key": tenant.api_key})
    assert refused.status_code == 401


def test_reset_and_invitation_links_name_the_tenant_host_not_the_requests_host_header(dashboard, smtp) -> None:
    """Host-header poisoning: `acme.<domain>:x@evil.example` still routes to acme (the part after the last
    ':' reads as a port), but a link built from it sends the victim's token to evil.example."""
    tenant = fresh(dashboard)
    add_user(dashboard, tenant, "victim@example.com", "owner")
    poisoned = dashboard.client(f"{tenant.host}:x@evil.example")
    assert poisoned.post("/reset", data={"email": "victim@example.com"}).status_code == 200
    link = httpx.URL(last_mail_link(smtp, "victim@example.com"))
    assert link.host == tenant.host.split(":")[0] and not link.userinfo, str(link)
    assert "evil" not in str(link)
