"""Per-user API keys for integrations: ``Authorization: Bearer ck_…``.

A key is ``ck_`` + 43 random URL-safe characters (256 bits). Only its SHA-256 is stored (a
fast hash is right for a random secret of this size; a slow one would cost every API call),
and the key is shown once, when it is created. Every key has an expiry (at most
``CRMKIT_API_KEY_MAX_DAYS``) and can be revoked; a key of a deactivated user stops working.
A call made with a key acts as the key's owner, with exactly the owner's permissions.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select, update

from ..i18n_text import Text, text
from .tables import api_key
from .user_state import utcnow

KEY_PREFIX = "ck_"
EXPIRY_CHOICES_DAYS = (7, 30, 90, 180, 365)
MAX_ACTIVE_KEYS = 20
NAME_MAX = 100
LAST_USED_RESOLUTION = dt.timedelta(minutes=5)  # last_used_at is rewritten at most this often


class ApiKeyError(ValueError):
    def __init__(self, message: Text):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class NewKey:
    id: int
    name: str
    key: str  # the plaintext key: shown once, never stored
    expires_at: dt.datetime


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    prefix: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None

    def status(self, now: dt.datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "active"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def create_key(conn, user_id: int, name: str, days, *, max_days: int, now: dt.datetime | None = None) -> NewKey:
    now = now or utcnow()
    name = (name or "").strip()
    if not name:
        raise ApiKeyError(text("Give the key a name, e.g. the system that will use it.", "请为密钥命名，例如使用它的系统名称。"))
    if len(name) > NAME_MAX:
        raise ApiKeyError(text(f"The name may be at most {NAME_MAX} characters.", f"名称最多 {NAME_MAX} 个字符。"))
    try:
        days = int(days)
    except (TypeError, ValueError):
        days = 0
    if not 1 <= days <= max_days:
        raise ApiKeyError(text(f"Choose an expiry between 1 and {max_days} days.", f"请选择 1 到 {max_days} 天之间的有效期。"))
    active = conn.execute(select(func.count()).select_from(api_key).where(
        api_key.c.user_id == user_id, api_key.c.revoked_at.is_(None), api_key.c.expires_at > now)).scalar()
    if active >= MAX_ACTIVE_KEYS:
        raise ApiKeyError(text(f"You already have {MAX_ACTIVE_KEYS} active keys; revoke one you no longer use first.",
                               f"您已有 {MAX_ACTIVE_KEYS} 个有效密钥，请先吊销不再使用的密钥。"))
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + dt.timedelta(days=days)
    key_id = conn.execute(api_key.insert().values(
        user_id=user_id, name=name, prefix=key[:10], key_hash=hash_key(key), created_at=now, expires_at=expires_at,
    ).returning(api_key.c.id)).scalar_one()
    return NewKey(id=key_id, name=name, key=key, expires_at=expires_at)


def list_keys(conn, user_id: int) -> list[KeyInfo]:
    rows = conn.execute(select(api_key).where(api_key.c.user_id == user_id).order_by(api_key.c.id.desc())).mappings()
    return [KeyInfo(id=r["id"], name=r["name"], prefix=r["prefix"], created_at=r["created_at"], expires_at=r["expires_at"],
                    revoked_at=r["revoked_at"], last_used_at=r["last_used_at"]) for r in rows]


@dataclass(frozen=True)
class OwnedKey:
    """A key with its owner, for the administrators' overview."""

    key: KeyInfo
    user_id: int
    username: str
    user_active: bool


def list_all_keys(conn, user_model_table, *, include_inactive: bool = False) -> list[OwnedKey]:
    """Every user's keys, newest first; by default only the ones that still work (not revoked, not expired)."""
    users = user_model_table
    q = select(api_key, users.c.username, users.c.active).join(users, users.c.id == api_key.c.user_id).order_by(api_key.c.id.desc())
    if not include_inactive:
        q = q.where(api_key.c.revoked_at.is_(None), api_key.c.expires_at > utcnow())
    return [OwnedKey(KeyInfo(id=r["id"], name=r["name"], prefix=r["prefix"], created_at=r["created_at"], expires_at=r["expires_at"],
                             revoked_at=r["revoked_at"], last_used_at=r["last_used_at"]), r["user_id"], r["username"], bool(r["active"]))
            for r in conn.execute(q).mappings()]


def revoke_key(conn, user_id: int | None, key_id: int, now: dt.datetime | None = None) -> bool:
    """Revoke one of ``user_id``'s keys (any user's key when ``user_id`` is None: administrators);
    False when there is no such unrevoked key."""
    where = [api_key.c.id == key_id, api_key.c.revoked_at.is_(None)]
    if user_id is not None:
        where.append(api_key.c.user_id == user_id)
    result = conn.execute(update(api_key).where(*where).values(revoked_at=now or utcnow()))
    return result.rowcount == 1


def key_owner(conn, key_id: int) -> int | None:
    return conn.execute(select(api_key.c.user_id).where(api_key.c.id == key_id)).scalar()


def user_for_key(session, user_model, token: str, now: dt.datetime | None = None):
    """The active user owning a valid (known, unrevoked, unexpired) key, in one statement; else None."""
    now = now or utcnow()
    row = session.execute(
        select(user_model, api_key.c.id, api_key.c.last_used_at)
        .join(api_key, api_key.c.user_id == user_model.id)
        .where(api_key.c.key_hash == hash_key(token), api_key.c.revoked_at.is_(None), api_key.c.expires_at > now)
    ).first()
    if row is None or not row[0].is_active:
        return None
    user, key_id, last_used = row
    if last_used is None or now - last_used > LAST_USED_RESOLUTION:
        session.execute(update(api_key).where(api_key.c.id == key_id).values(last_used_at=now))
        session.commit()
    return user
