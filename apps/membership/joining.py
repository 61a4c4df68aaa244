"""入会 checks: duplicate applications and missing key fields, kept on the application itself.

``check_application`` is a record listener (``AppHooks.on_record_written``): it runs in the same transaction as
every write of an application — created at the front desk, online, from a purchase, by import, or moved by a
workflow transition — and stores what it finds in read-only flag fields:

- ``is_duplicate`` / ``duplicate_of``: the same mobile, the same ID number, or the same name and birthday as
  another *open* application (submitted / under review) or an existing member;
- ``missing_fields``: key fields left blank (``KEY_FIELDS``).

The flags are derived values (like computed fields): written straight to the row, without a new row version or a
second audit entry. The ``approve`` transition's guard refuses a flagged duplicate until a Membership Manager
runs ``override_duplicate`` with a reason (see workflows/application.json).
"""
from __future__ import annotations

from sqlalchemy import Connection, and_, select

APPLICATION = "membership.application"
MEMBER = "membership.member"
OPEN_STATES = ("submitted", "under_review")
# Key fields an application should carry besides the required name and mobile (birthday comes from the ID number).
KEY_FIELDS = ("id_number", "birthday")


def find_duplicates(conn: Connection, tables: dict, app: dict) -> list[str]:
    """Human-readable hits such as ``member #12 (mobile)`` or ``application #5 (name + birthday)``."""
    hits: list[str] = []
    rules = []
    if app.get("mobile"):
        rules.append(("mobile", lambda t: t.c.mobile == app["mobile"]))
    if app.get("id_number"):
        rules.append(("id_number", lambda t: t.c.id_number == app["id_number"]))
    if app.get("name") and app.get("birthday"):
        rules.append(("name + birthday", lambda t: and_(t.c.name == app["name"], t.c.birthday == app["birthday"])))
    if not rules:
        return hits
    a, m = tables[APPLICATION], tables[MEMBER]
    for label, clause in rules:
        q = select(m.c.id).where(m.c.deleted_at.is_(None), clause(m)).order_by(m.c.id).limit(5)
        hits += [f"member #{i} ({label})" for i in conn.execute(q).scalars()]
        q = (select(a.c.id).where(a.c.deleted_at.is_(None), a.c.id != app["id"], a.c.workflow_state.in_(OPEN_STATES), clause(a))
             .order_by(a.c.id).limit(5))
        hits += [f"application #{i} ({label})" for i in conn.execute(q).scalars()]
    return hits


def missing_key_fields(app: dict) -> list[str]:
    return [f for f in KEY_FIELDS if app.get(f) in (None, "")]


def check_application(conn: Connection, written) -> None:
    """Refresh the flag fields of the written application (a record listener, same transaction)."""
    if written.verb not in ("created", "updated", "restored"):
        return
    t = written.table
    app = conn.execute(select(t).where(t.c.id == written.record_id)).mappings().first()
    if app is None:
        return
    app = dict(app)
    # A decided application keeps the flags it was decided with; the member it became is not its duplicate.
    if app.get("workflow_state") not in OPEN_STATES and written.verb != "created":
        return
    hits = find_duplicates(conn, written.tables, app)
    missing = missing_key_fields(app)
    flags = {"is_duplicate": bool(hits), "duplicate_of": "; ".join(hits)[:2000] or None, "missing_fields": ", ".join(missing) or None}
    if any(app.get(k) != v for k, v in flags.items()):
        conn.execute(t.update().where(t.c.id == app["id"]).values(**flags))

