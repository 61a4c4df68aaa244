"""crmkit's Flask-AppBuilder security manager: the FAB hooks that the hardening needs.

- ``auth_user_db``: refuses a locked account before checking its password, and marks failed
  attempts for the login rate limit (``limits``);
- ``update_user_auth_stat``: remembers when a login failed (for the lockout window);
- ``add_user`` / ``reset_password``: the password policy, for the CLI and any code path
  (FAB's forms check it through ``FAB_PASSWORD_COMPLEXITY_VALIDATOR``); a reset also
  unlocks the account;
- ``load_user``: loads the session version in the same statement as the user, so the
  per-request session check (``sessions``) costs no extra SQL;
- JWTs carry the session fingerprint and stop working when it changes.

Login audit events come from the audit part's ``LoginAuditMixin``, composed in front of this
class in ``web/app.py`` so refused attempts (a locked account) are audited too.
"""
from __future__ import annotations

import logging

from flask import current_app, flash, g
from flask_appbuilder.security.sqla.manager import SecurityManager
from sqlalchemy import func, select, update
from werkzeug.security import generate_password_hash

from ..i18n_text import text
from . import lockout
from .passwords import check_password
from .sessions import fingerprint, stamp
from .tables import user_auth
from .user_state import session_version

log = logging.getLogger(__name__)

MSG_LOCKED = text("This account is locked for {minutes} minutes after too many failed logins. "
                  "Wait, or ask an administrator to reset the password.",
                  "登录失败次数过多，该账户已锁定 {minutes} 分钟。请稍后再试，或请管理员重置密码。")
JWT_CLAIM = "crmkit_fp"


class HardenedSecurityManager(SecurityManager):

    # -- settings ---------------------------------------------------------------------
    @property
    def crmkit_settings(self):
        return current_app.extensions["crmkit"].settings

    # -- login --------------------------------------------------------------------------
    def auth_user_db(self, username, password):
        settings = self.crmkit_settings
        user = self.find_user(username=username) if username else None
        if user is None and username:
            user = self.find_user(email=username)
        if user is not None and user.is_active and lockout.is_locked(
                self.session, user, threshold=settings.login_lockout_threshold, lock_seconds=settings.login_lockout_seconds):
            g.crmkit_login_failed = True
            g.crmkit_login_locked = True
            log.info("login refused: account %s is locked", user.id)
            self.on_user_login_failed(user)
            from ..web.i18n import current_locale

            flash(MSG_LOCKED.format(minutes=max(1, settings.login_lockout_seconds // 60)).get(current_locale()), "danger")
            return None
        result = super().auth_user_db(username, password)
        if result is None:
            g.crmkit_login_failed = True
        return result

    def update_user_auth_stat(self, user, success=True):
        if success:
            return super().update_user_auth_stat(user, success)
        # A failure: count it in one atomic UPDATE (FAB's read-modify-write loses counts under
        # concurrent guesses) and remember when it happened, in one transaction.
        model = self.user_model
        self.session.execute(update(model).where(model.id == user.id)
                             .values(fail_login_count=func.coalesce(model.fail_login_count, 0) + 1))
        lockout.note_failure(self.session, user.id)
        self.session.commit()
        self.on_user_login_failed(user)

    # -- passwords ----------------------------------------------------------------------
    def add_user(self, username, first_name, last_name, email, role, password="", hashed_password="", groups=None):
        if password and not hashed_password:
            check_password(password, username)  # WeakPassword says what to do
        return super().add_user(username, first_name, last_name, email, role, password=password,
                                hashed_password=hashed_password, groups=groups)

    def reset_password(self, userid, password):
        user = self.get_user_by_id(userid)
        check_password(password, user.username if user else None)
        user.password = generate_password_hash(
            password=password,
            method=current_app.config.get("FAB_PASSWORD_HASH_METHOD", "scrypt"),
            salt_length=current_app.config.get("FAB_PASSWORD_HASH_SALT_LENGTH", 16),
        )
        user.fail_login_count = 0
        lockout.clear(self.session, user.id)
        self.update_user(user)
        from flask_login import current_user

        if getattr(current_user, "is_authenticated", False) and current_user.id == user.id:
            stamp(user)  # changing my own password ends my other sessions, not this one

    # -- per-request user loading -----------------------------------------------------
    def load_user(self, pk):
        row = self.session.execute(
            select(self.user_model, user_auth.c.session_version)
            .outerjoin(user_auth, user_auth.c.user_id == self.user_model.id)
            .where(self.user_model.id == int(pk))
        ).first()
        if row is None or not row[0].is_active:
            return None
        g.crmkit_session_version = (row[0].id, row[1] or 0)
        return row[0]

    # -- JWT ----------------------------------------------------------------------------
    def create_jwt_manager(self, app):
        jwt_manager = super().create_jwt_manager(app)
        jwt_manager.additional_claims_loader(self._jwt_claims)
        return jwt_manager

    def _jwt_claims(self, identity):
        user = self.get_user_by_id(int(identity))
        if user is None:
            return {}
        return {JWT_CLAIM: fingerprint(user, session_version(self.session, user.id))}

    def load_user_jwt(self, _jwt_header, jwt_data):
        user = super().load_user_jwt(_jwt_header, jwt_data)
        if user is None:
            return None
        version = g.crmkit_session_version[1] if g.get("crmkit_session_version") else session_version(self.session, user.id)
        if jwt_data.get(JWT_CLAIM) != fingerprint(user, version):
            return None  # the password changed or the user signed out everywhere
        return user
