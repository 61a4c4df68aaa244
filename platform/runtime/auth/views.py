"""The ``crmkit_auth`` blueprint: "My API keys" (create, list, revoke) and "sign out everywhere"."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from ..audit.service import record_event
from ..db import read_transaction, write_transaction
from ..i18n_text import text
from ..web.i18n import current_locale
from . import api_keys
from .sessions import stamp
from .user_state import bump_session_version, session_version, utcnow

auth_blueprint = Blueprint("crmkit_auth", __name__, url_prefix="/account")

MSG_REVOKED = text("The key was revoked; programs using it can no longer call the API.", "密钥已吊销，使用它的程序将无法再调用 API。")
MSG_NOT_YOURS = text("There is no such active key among yours; it may already be revoked.", "您的密钥中没有这个有效密钥，它可能已被吊销。")
MSG_NO_SUCH_KEY = text("There is no such active key; it may already be revoked.", "没有这个有效密钥，它可能已被吊销。")
MSG_SIGNED_OUT = text("All your other sessions and access tokens have ended; this one continues.",
                      "您在其他地方的会话和访问令牌已全部失效，当前会话继续有效。")


def _engine():
    return current_app.extensions["crmkit"].engine


def _settings():
    return current_app.extensions["crmkit"].settings


def _audit(conn, action: str, details: dict) -> None:
    """Credential changes go into the audit chain in the same transaction (the key itself never does)."""
    record_event(conn, category="auth", action=action, actor_id=current_user.id, subject=current_user.username,
                 changes=details, ip=request.remote_addr)


@auth_blueprint.before_request
def login_required():
    if not current_user.is_authenticated:
        sm = current_app.appbuilder.sm
        return redirect(url_for(sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
    return None


def _page(new_key=None, error=None, form=None, status=200):
    with read_transaction(_engine()) as conn:
        keys = api_keys.list_keys(conn, current_user.id)
    max_days = _settings().api_key_max_days
    choices = [d for d in api_keys.EXPIRY_CHOICES_DAYS if d <= max_days] or [max_days]
    return render_template("crmkit/auth/api_keys.html", keys=keys, new_key=new_key, error=error, form=form or {},
                           now=utcnow(), expiry_choices=choices, default_days=90 if 90 in choices else choices[-1],
                           locale=current_locale()), status


@auth_blueprint.get("/api-keys")
def api_keys_page():
    return _page()


@auth_blueprint.post("/api-keys")
def api_keys_create():
    name, days = request.form.get("name", ""), request.form.get("days", "")
    try:
        with write_transaction(_engine()) as conn:
            new_key = api_keys.create_key(conn, current_user.id, name, days, max_days=_settings().api_key_max_days)
            _audit(conn, "api_key_created", {"key_id": new_key.id, "name": new_key.name, "expires_at": new_key.expires_at.isoformat()})
    except api_keys.ApiKeyError as exc:
        return _page(error=exc.message.get(current_locale()), form={"name": name, "days": days}, status=422)
    # Rendered, not redirected: the key is shown this once and never again.
    return _page(new_key=new_key, status=201)


@auth_blueprint.post("/api-keys/<int:key_id>/revoke")
def api_keys_revoke(key_id: int):
    with write_transaction(_engine()) as conn:
        revoked = api_keys.revoke_key(conn, current_user.id, key_id)
        if revoked:
            _audit(conn, "api_key_revoked", {"key_id": key_id})
    if not revoked:
        return _page(error=MSG_NOT_YOURS.get(current_locale()), status=404)
    flash(MSG_REVOKED.get(current_locale()), "success")
    return redirect(url_for("crmkit_auth.api_keys_page"), 303)


def _require_admin() -> None:
    from ..errors import PermissionDenied
    from ..web.actors import current_actor

    actor = current_actor()
    if actor is None or not actor.is_admin:
        raise PermissionDenied(text("Only administrators can see and revoke other users' API keys.",
                                    "只有管理员可以查看和吊销其他用户的 API 密钥。"))


def _all_keys_page(error=None, status=200):
    from flask_appbuilder.security.sqla.models import User

    show_all = request.args.get("show") == "all"
    with read_transaction(_engine()) as conn:
        keys = api_keys.list_all_keys(conn, User.__table__, include_inactive=show_all)
    return render_template("crmkit/auth/api_keys_all.html", keys=keys, show_all=show_all, error=error, now=utcnow(),
                           locale=current_locale()), status


@auth_blueprint.get("/api-keys/all")
def api_keys_all():
    """Administrators' overview: every user's keys (active ones by default), with owner, expiry and last use."""
    _require_admin()
    return _all_keys_page()


@auth_blueprint.post("/api-keys/all/<int:key_id>/revoke")
def api_keys_admin_revoke(key_id: int):
    _require_admin()
    with write_transaction(_engine()) as conn:
        owner = api_keys.key_owner(conn, key_id)
        revoked = api_keys.revoke_key(conn, None, key_id)
        if revoked:
            _audit(conn, "api_key_revoked", {"key_id": key_id, "owner_id": owner, "by_admin": True})
    if not revoked:
        return _all_keys_page(error=MSG_NO_SUCH_KEY.get(current_locale()), status=404)
    flash(MSG_REVOKED.get(current_locale()), "success")
    return redirect(url_for("crmkit_auth.api_keys_all"), 303)


@auth_blueprint.post("/sign-out-everywhere")
def sign_out_everywhere():
    with write_transaction(_engine()) as conn:
        bump_session_version(conn, current_user.id)
        _audit(conn, "signed_out_everywhere", {})
        version = session_version(conn, current_user.id)
    g.crmkit_session_version = (current_user.id, version)
    stamp(current_user)
    flash(MSG_SIGNED_OUT.get(current_locale()), "success")
    return redirect(url_for("crmkit_auth.api_keys_page"), 303)
