"""Consent per data subject and channel: purpose, version, time, and withdrawal.

A grant is a row; withdrawing closes it (``withdrawn_at``) and a new grant for the same channel and
purpose supersedes the open one, so the history of what was agreed stays on record. Each change is
an audit entry. Access follows the subject record: reading needs read access to it, changes need update.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, select

from ..actor import Actor
from ..audit import record_event
from ..db import inserted_id, read_transaction, write_transaction
from ..errors import RecordNotFound, ValidationFailed
from ..i18n_text import text
from .tables import consent

CHANNELS = ("sms", "email", "wechat", "phone", "in_app", "post")
ANY_PURPOSE = "*"  # a consent to the channel as such, for every purpose (see has_consent)


def list_consents(services, entity_key: str, record_id: Any, actor: Actor) -> list[dict]:
    services.queries.get(entity_key, record_id, actor)  # the subject must exist and be readable by the actor
    with read_transaction(services.engine) as conn:
        rows = conn.execute(select(consent).where(consent.c.entity == entity_key, consent.c.record_id == int(record_id))
                            .order_by(consent.c.granted_at.desc(), consent.c.id.desc())).mappings().all()
    return [_public(r) for r in rows]


def grant_consent(services, entity_key: str, record_id: Any, data: Any, actor: Actor) -> dict:
    channel, purpose, version = _clean(data)
    _require_update(services, entity_key, record_id, actor)
    with write_transaction(services.engine) as conn:
        cid = grant_within(conn, entity_key, int(record_id), channel, purpose, version, actor)
        row = conn.execute(select(consent).where(consent.c.id == cid)).mappings().one()
    return _public(row)


def grant_within(conn: Connection, entity_key: str, record_id: int, channel: str, purpose: str, version: str, actor: Actor) -> int:
    """Record a grant in ``conn``'s transaction (superseding an open one for the same channel and purpose); returns its id.
    The caller has checked the input and the actor's right to change the subject."""
    now = dt.datetime.now(dt.timezone.utc)
    open_rows = (consent.c.entity == entity_key, consent.c.record_id == record_id, consent.c.channel == channel,
                 consent.c.purpose == purpose, consent.c.withdrawn_at.is_(None))
    conn.execute(consent.update().where(*open_rows).values(withdrawn_at=now, withdrawn_by=actor.id))
    cid = inserted_id(conn.execute(consent.insert().values(entity=entity_key, record_id=record_id, channel=channel, purpose=purpose, version=version,
                                                           granted_at=now, granted_by=actor.id)))
    record_event(conn, category="privacy", action="consent_grant", actor_id=actor.id, entity=entity_key, record_id=record_id,
                 changes={"consent_id": cid, "channel": channel, "purpose": purpose, "version": version})
    return cid


def withdraw_channel_within(conn: Connection, entity_key: str, record_id: int, channel: str, actor: Actor) -> list[int]:
    """Withdraw every open consent of the subject for ``channel`` (whatever its purpose) in ``conn``'s transaction: the
    subject said no to the channel. Returns the withdrawn consents' ids; each withdrawal is audited."""
    rows = conn.execute(select(consent).where(consent.c.entity == entity_key, consent.c.record_id == record_id, consent.c.channel == channel,
                                              consent.c.withdrawn_at.is_(None))).mappings().all()
    for r in rows:
        _close(conn, r, actor)
    return [r["id"] for r in rows]


def _close(conn: Connection, row, actor: Actor) -> None:
    """Withdraw one open consent row and audit it."""
    conn.execute(consent.update().where(consent.c.id == row["id"]).values(withdrawn_at=dt.datetime.now(dt.timezone.utc), withdrawn_by=actor.id))
    record_event(conn, category="privacy", action="consent_withdraw", actor_id=actor.id, entity=row["entity"], record_id=row["record_id"],
                 changes={"consent_id": row["id"], "channel": row["channel"], "purpose": row["purpose"], "version": row["version"]})


def withdraw_consent(services, entity_key: str, record_id: Any, consent_id: Any, actor: Actor) -> dict:
    _require_update(services, entity_key, record_id, actor)
    rid = int(record_id)
    cid = consent_id if isinstance(consent_id, int) else (int(consent_id) if str(consent_id).isdigit() else None)
    with write_transaction(services.engine) as conn:
        row = None if cid is None else conn.execute(select(consent).where(consent.c.id == cid, consent.c.entity == entity_key,
                                                                            consent.c.record_id == rid)).mappings().first()
        if row is None:
            raise RecordNotFound(text("This consent record does not exist for this subject.", "该数据主体没有这条同意记录。"))
        if row["withdrawn_at"] is not None:
            raise ValidationFailed({"consent": [text("This consent was already withdrawn.", "这条同意已经撤回。")]})
        _close(conn, row, actor)
        row = conn.execute(select(consent).where(consent.c.id == cid)).mappings().one()
    return _public(row)


def _require_update(services, entity_key, record_id, actor) -> None:
    entity = services.store.catalog().entity(entity_key)
    services.policy.check(actor, entity, "update")
    services.queries.get(entity_key, record_id, actor)


def _clean(data: Any) -> tuple[str, str, str]:
    if not isinstance(data, dict):
        raise ValidationFailed({"_schema": [text("Send an object with channel, purpose and version.", "请提交包含 channel、purpose 和 version 的对象。")]})
    errors: dict[str, list] = {}
    channel = data.get("channel")
    if channel not in CHANNELS:
        errors["channel"] = [text("Choose a channel: {channels}.", "请选择渠道：{channels}。", channels=", ".join(CHANNELS))]
    purpose = data.get("purpose")
    if not isinstance(purpose, str) or not purpose.strip() or len(purpose.strip()) > 200 or "\x00" in purpose:
        errors["purpose"] = [text("Describe the purpose in 1-200 characters.", "请用 1-200 个字符说明用途。")]
    version = data.get("version")
    if not isinstance(version, str) or not version.strip() or len(version.strip()) > 32 or "\x00" in version:
        errors["version"] = [text("Give the version of the consent text (1-32 characters), e.g. 2024-01.", "请填写同意书版本（1-32 个字符），例如 2024-01。")]
    if errors:
        raise ValidationFailed(errors)
    return str(channel), str(purpose).strip(), str(version).strip()


def _public(r) -> dict:
    return {"id": r["id"], "channel": r["channel"], "purpose": r["purpose"], "version": r["version"],
            "granted_at": r["granted_at"].isoformat(), "granted_by": r["granted_by"],
            "withdrawn_at": r["withdrawn_at"].isoformat() if r["withdrawn_at"] else None, "withdrawn_by": r["withdrawn_by"],
            "active": r["withdrawn_at"] is None}


def has_consent(conn, entity_key: str, record_id: int, channel: str, purpose: str | None = None) -> bool:
    """Whether the subject has an open (not withdrawn) consent for the channel (and purpose, when given).

    A consent for ``ANY_PURPOSE`` covers every purpose: "may send me SMS", as a tick box on a form records it."""
    where = [consent.c.entity == entity_key, consent.c.record_id == int(record_id), consent.c.channel == channel,
             consent.c.withdrawn_at.is_(None)]
    if purpose is not None:
        where.append(consent.c.purpose.in_((purpose, ANY_PURPOSE)))
    return conn.execute(select(consent.c.id).where(*where).limit(1)).first() is not None
