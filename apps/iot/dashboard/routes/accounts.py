"""Accounts: the first owner, one's own account (password, TOTP), users and invitations (admin), password
reset by e-mail, and the audit log page (admin).

Invitation and reset links carry a single-use token (only its sha256 is stored) on the tenant's own host.
"""

from __future__ import annotations

import base64

import pyotp
import segno
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from iot.dashboard.context import (
    Admin,
    AnyRole,
    Form,
    NotFound,
    OwnAccountForm,
    TenantAnonymous,
    TenantRequest,
)
from iot.dashboard.routes.auth import check_totp, client_address, set_session_cookie
from iot.errors import Conflict, InputError
from iot.inputs import Id, ascii_int
from iot.mailer import Mail, MailError, send_mail
from iot.repo import account_tokens, audit, users

router = APIRouter()

AUDIT_PAGE = 50


def _link(request: Request, ctx: TenantRequest, path: str) -> str:
    """A link for a mail, on the tenant's own host. Never the Host header as sent: `acme.<domain>:x@evil`
    routes to acme, and a link built from it would carry the token to `evil`."""
    settings = ctx.services.settings
    scheme = "https" if settings.cookie_secure else request.url.scheme
    port = (request.headers.get("host") or "").rpartition(":")[2]
    shown_port = f":{port}" if ascii_int(port, 5) else ""  # the playground's :8000; none behind Traefik
    return f"{scheme}://{ctx.tenant.slug}.{settings.domain.strip('.')}{shown_port}{path}"


async def _signed_in_as(ctx: TenantRequest, user: users.User, target: str) -> Response:
    session, cookie = ctx.services.sessions.for_user(ctx.tenant.id, ctx.tenant.slug, user.id, user.session_epoch)
    await ctx.services.session_store.open(session)
    if ctx.session is not None:
        await ctx.services.session_store.close(ctx.session)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, cookie, secure=ctx.services.settings.cookie_secure)
    return response


# --- the first owner -------------------------------------------------------------------------------------


@router.get("/account/owner")
async def owner_page(request: Request, ctx: Admin) -> Response:
    if ctx.user is not None:
        return RedirectResponse("/account", status_code=303)
    return ctx.render(request, "owner.html", page="account", error=None, email="")


@router.post("/account/owner")
async def create_owner(request: Request, ctx: Admin, form: Form) -> Response:
    """Only the API-key session of a tenant without users gets here (a user session is one already)."""
    if ctx.user is not None:
        return RedirectResponse("/account", status_code=303)
    email = str(form.get("email") or "")
    try:
        owner = await users.create_first_owner(ctx.db, ctx.tenant.id, email, str(form.get("password") or ""))
    except InputError as exc:
        return ctx.render(request, "owner.html", status_code=422, page="account", email=email,
                          error=f"{exc.field}: {exc.reason}")
    if owner is None:
        return ctx.render(request, "owner.html", status_code=409, page="account", email=email,
                          error="Someone created the owner account a moment ago: sign in with email and password.")
    await _record(request, ctx.tenant.id, ctx, actor_kind="user", actor_id=owner.id, actor_name=owner.email,
                       action="dashboard: create owner", target=owner.email, ip=client_address(request))
    return await _signed_in_as(ctx, owner, "/account")


# --- one's own account ------------------------------------------------------------------------------------


def _qr_data_uri(uri: str) -> str:
    svg = segno.make(uri, error="m").svg_inline(scale=4)
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


async def _account_page(request: Request, ctx: TenantRequest, status_code: int = 200, **values) -> Response:
    values = {"error": None, "notice": None, "totp_uri": None, "totp_seed": None, "qr": None, **values}
    return ctx.render(request, "account.html", status_code=status_code, page="account", **values)


@router.get("/account", tags=["self-service"])
async def account_page(request: Request, ctx: AnyRole) -> Response:
    if ctx.user is None:
        return RedirectResponse("/account/owner", status_code=303)
    return await _account_page(request, ctx)


@router.post("/account/totp", tags=["self-service"])
async def start_totp(request: Request, ctx: AnyRole, form: OwnAccountForm) -> Response:
    """A new seed, sealed, not yet enabled: it is shown (QR and text) until a code from it is confirmed."""
    if ctx.user is None:
        return RedirectResponse("/account/owner", status_code=303)
    seed = pyotp.random_base32()
    await users.set_totp(ctx.db, ctx.tenant.id, ctx.user.id, ctx.services.settings.secret_box().seal(seed), False)
    uri = pyotp.TOTP(seed).provisioning_uri(name=ctx.user.email, issuer_name=f"my-iot-app {ctx.tenant.slug}")
    return await _account_page(request, ctx, totp_uri=uri, totp_seed=seed, qr=_qr_data_uri(uri))


@router.post("/account/totp/confirm", tags=["self-service"])
async def confirm_totp(request: Request, ctx: AnyRole, form: OwnAccountForm) -> Response:
    if ctx.user is None:
        return RedirectResponse("/account/owner", status_code=303)
    user = await users.user_by_id(ctx.db, ctx.tenant.id, ctx.user.id)
    if user is None or await check_totp(ctx, user, str(form.get("code") or "")):
        return await _account_page(request, ctx, status_code=422,
                                   error="code: not the current code of that seed; start again and scan the new QR")
    await users.set_totp(ctx.db, ctx.tenant.id, user.id, user.totp_sealed, True)
    await _audit(request, ctx, "dashboard: enable two-factor", user.email)
    return RedirectResponse("/account", status_code=303)


@router.post("/account/totp/disable", tags=["self-service"])
async def disable_totp(request: Request, ctx: AnyRole, form: OwnAccountForm) -> Response:
    """Turning the second factor off needs the password: a left-open session alone cannot do it."""
    if ctx.user is None:
        return RedirectResponse("/account/owner", status_code=303)
    if not users.password_matches(ctx.user, str(form.get("current") or "")):
        return await _account_page(request, ctx, status_code=422, error="current: that is not your password")
    await users.set_totp(ctx.db, ctx.tenant.id, ctx.user.id, None, False)
    await _audit(request, ctx, "dashboard: disable two-factor", ctx.user.email)
    return RedirectResponse("/account", status_code=303)


@router.post("/account/password", tags=["self-service"])
async def change_password(request: Request, ctx: AnyRole, form: OwnAccountForm) -> Response:
    if ctx.user is None:
        return RedirectResponse("/account/owner", status_code=303)
    if not users.password_matches(ctx.user, str(form.get("current") or "")):
        return await _account_page(request, ctx, status_code=422, error="current: that is not your password")
    try:
        await users.set_password(ctx.db, ctx.tenant.id, ctx.user.id, str(form.get("password") or ""))
    except InputError as exc:
        return await _account_page(request, ctx, status_code=422, error=f"{exc.field}: {exc.reason}")
    await _audit(request, ctx, "dashboard: change password", ctx.user.email)
    # The change ended every session of the user (a thief's too); this browser gets a fresh one.
    user = await users.user_by_id(ctx.db, ctx.tenant.id, ctx.user.id)
    if user is None:
        raise NotFound("This account no longer exists.", home="/signin")
    return await _signed_in_as(ctx, user, "/account")


# --- users and invitations (admin) --------------------------------------------------------------------------


async def _users_page(request: Request, ctx: TenantRequest, status_code: int = 200, **values) -> Response:
    values = {"error": None, "notice": None, **values}
    return ctx.render(request, "users.html", status_code=status_code, page="users",
                      users=await users.list_users(ctx.db, ctx.tenant.id),
                      invitations=await account_tokens.pending_invitations(ctx.db, ctx.tenant.id),
                      roles=users.ROLES[1:], **values)


@router.get("/users")
async def users_page(request: Request, ctx: Admin) -> Response:
    return await _users_page(request, ctx)


@router.post("/users/invite")
async def invite(request: Request, ctx: Admin, form: Form) -> Response:
    role = str(form.get("role") or "")
    try:
        email = users.normal_email(str(form.get("email") or ""))
        if users.role_problem(role):
            raise InputError("role", users.role_problem(role) or "")
    except InputError as exc:
        return await _users_page(request, ctx, status_code=422, error=f"{exc.field}: {exc.reason}")
    if await users.user_by_email(ctx.db, ctx.tenant.id, email):
        return await _users_page(request, ctx, status_code=409, error=f"email: {email} already has an account here")
    token = await account_tokens.create_invitation(ctx.db, ctx.tenant.id, email, role,
                                                   ctx.user.id if ctx.user else None)
    link = _link(request, ctx, f"/invite/{token}")
    mail = Mail(to=(email,), subject=f"You are invited to {ctx.tenant.name or ctx.tenant.slug} on my-iot-app",
                text=f"{ctx.actor_name} invited you as {role} of {ctx.tenant.slug}.\n\nSet your password here "
                     f"(the link works once, for 7 days):\n{link}\n")
    try:
        await send_mail(ctx.services.settings, mail)
    except MailError as exc:
        return await _users_page(request, ctx, status_code=502, error=f"The invitation was not sent: {exc}.")
    await _audit(request, ctx, "dashboard: invite user", email, {"role": role})
    return await _users_page(request, ctx, notice=f"Invitation sent to {email}.")


@router.post("/users/{user_id}/role")
async def change_role(request: Request, user_id: Id, ctx: Admin, form: Form) -> Response:
    try:
        changed = await users.set_role(ctx.db, ctx.tenant.id, user_id, str(form.get("role") or ""))
    except InputError as exc:
        return await _users_page(request, ctx, status_code=422, error=f"{exc.field}: {exc.reason}")
    if changed is None:
        raise NotFound("There is no such user here (the owner's role cannot be changed).")
    await _audit(request, ctx, "dashboard: change role", changed.email, {"role": changed.role})
    return RedirectResponse("/users", status_code=303)


@router.post("/users/{user_id}/delete")
async def remove_user(request: Request, user_id: Id, ctx: Admin, form: Form) -> Response:
    user = await users.user_by_id(ctx.db, ctx.tenant.id, user_id)
    if user is None or not await users.delete_user(ctx.db, ctx.tenant.id, user_id):
        raise NotFound("There is no such user here (the owner cannot be removed).")
    await _audit(request, ctx, "dashboard: remove user", user.email)
    return RedirectResponse("/users", status_code=303)


# --- accepting an invitation, resetting a password (no session) ----------------------------------------------


@router.get("/invite/{invite_token}", tags=["public"])
async def invitation_page(request: Request, invite_token: str, ctx: TenantAnonymous) -> Response:
    invitation = await account_tokens.find_invitation(ctx.db, ctx.tenant.id, invite_token[:200])
    if invitation is None:
        raise NotFound("This invitation link was used already, has expired, or is not of this tenant. "
                       "Ask an admin for a new one.", home="/signin")
    return ctx.render(request, "set_password.html", action=f"/invite/{invite_token}", email=invitation.email, error=None,
                      title="Accept the invitation")


@router.post("/invite/{invite_token}", tags=["public"])
async def accept_invitation(request: Request, invite_token: str, ctx: TenantAnonymous) -> Response:
    form = await request.form()
    password = str(form.get("password") or "")
    invitation = await account_tokens.find_invitation(ctx.db, ctx.tenant.id, invite_token[:200])
    if invitation is None:
        raise NotFound("This invitation link was used already, has expired, or is not of this tenant.", home="/signin")
    try:
        users.hash_password(password)  # refuse a bad password before spending the invitation
    except InputError as exc:
        return ctx.render(request, "set_password.html", status_code=422, action=f"/invite/{invite_token}",
                          email=invitation.email, error=f"{exc.field}: {exc.reason}", title="Accept the invitation")
    accepted = await account_tokens.accept_invitation(ctx.db, ctx.tenant.id, invite_token[:200])
    if accepted is None:
        raise NotFound("This invitation link was used already.", home="/signin")
    try:
        user = await users.create_user(ctx.db, ctx.tenant.id, accepted.email, password, accepted.role)
    except Conflict:
        raise NotFound(f"{accepted.email} has an account here already: sign in, or reset the password.",
                       home="/signin") from None
    await _record(request, ctx.tenant.id, ctx, actor_kind="user", actor_id=user.id, actor_name=user.email,
                       action="dashboard: accept invitation", target=user.email, details={"role": user.role},
                       ip=client_address(request))
    return await _signed_in_as(ctx, user, "/")


@router.get("/reset", tags=["public"])
async def reset_request_page(request: Request, ctx: TenantAnonymous) -> Response:
    return ctx.render(request, "reset.html", notice=None, error=None)


@router.post("/reset", tags=["public"])
async def request_reset(request: Request, ctx: TenantAnonymous) -> Response:
    """The same answer whether the email has an account or not: the page does not tell who is a user."""
    form = await request.form()
    email = str(form.get("email") or "").strip().lower()[:users.MAX_EMAIL]
    user = await users.user_by_email(ctx.db, ctx.tenant.id, email)
    if user is not None:
        token = await account_tokens.create_reset(ctx.db, ctx.tenant.id, user.id)
        mail = Mail(to=(user.email,), subject=f"Reset your my-iot-app password ({ctx.tenant.slug})",
                    text=f"Set a new password here (the link works once, for one hour):\n"
                         f"{_link(request, ctx, f'/reset/{token}')}\n\nIf you did not ask for this, ignore it.")
        try:
            await send_mail(ctx.services.settings, mail)
        except MailError:
            return ctx.render(request, "reset.html", status_code=502, notice=None,
                              error="The mail could not be sent right now. Try again in a few minutes.")
    return ctx.render(request, "reset.html", error=None,
                      notice=f"If {email} has an account here, a link to set a new password is on its way.")


@router.get("/reset/{reset_token}", tags=["public"])
async def reset_page(request: Request, reset_token: str, ctx: TenantAnonymous) -> Response:
    if not await account_tokens.reset_is_valid(ctx.db, ctx.tenant.id, reset_token[:200]):
        raise NotFound("This reset link was used already or has expired. Ask for a new one.", home="/reset")
    return ctx.render(request, "set_password.html", action=f"/reset/{reset_token}", email=None, error=None,
                      title="Set a new password")


@router.post("/reset/{reset_token}", tags=["public"])
async def reset_password(request: Request, reset_token: str, ctx: TenantAnonymous) -> Response:
    form = await request.form()
    password = str(form.get("password") or "")
    try:
        users.hash_password(password)
    except InputError as exc:
        return ctx.render(request, "set_password.html", status_code=422, action=f"/reset/{reset_token}", email=None,
                          error=f"{exc.field}: {exc.reason}", title="Set a new password")
    user_id = await account_tokens.use_reset(ctx.db, ctx.tenant.id, reset_token[:200])
    if user_id is None:
        raise NotFound("This reset link was used already or has expired. Ask for a new one.", home="/reset")
    await users.set_password(ctx.db, ctx.tenant.id, user_id, password)
    user = await users.user_by_id(ctx.db, ctx.tenant.id, user_id)
    if user is None:
        raise NotFound("This account no longer exists.", home="/signin")
    await _record(request, ctx.tenant.id, ctx, actor_kind="user", actor_id=user.id, actor_name=user.email,
                       action="dashboard: reset password", target=user.email, ip=client_address(request))
    return RedirectResponse("/signin", status_code=303)


# --- the audit log (admin) -----------------------------------------------------------------------------------


@router.get("/audit")
async def audit_page(request: Request, ctx: Admin, before: Id | None = None) -> Response:
    entries = await audit.list_entries(ctx.db, ctx.tenant.id, before_id=before, limit=AUDIT_PAGE)
    return ctx.render(request, "audit.html", page="audit", entries=entries,
                      next_before=entries[-1].id if len(entries) == AUDIT_PAGE else None)


async def _record(request: Request, tenant_id: int, ctx: TenantRequest, **entry) -> None:
    """An audit row with the details of this change; the app's generic row for the request is then skipped."""
    request.state.audited = True
    await audit.record(ctx.db, tenant_id, **entry)


async def _audit(request: Request, ctx: TenantRequest, action: str, target: str = "", details=None) -> None:
    await _record(request, ctx.tenant.id, ctx, actor_kind="user", actor_id=ctx.user.id if ctx.user else None,
                       actor_name=ctx.actor_name, action=action, target=target, details=details,
                       ip=client_address(request))
