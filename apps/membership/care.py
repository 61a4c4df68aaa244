"""Member care (会员关怀): a message to every member of a segment, now or at a set time, through the platform's
messaging channels, with a send log row per member.

A campaign runs as the ``membership.care_send`` job (progress on the jobs page). For each member of the segment,
selected as the user who started it (their row scope applies), the job:

1. skips the member if the log already has ``care:<campaign>:<member>`` — so a retried or re-run job sends nothing
   twice (the key is a unique field; the row is written *before* the message is queued, so a crash in between
   leaves at most one unsent message, never a duplicate);
2. logs ``no_address`` when the member has no mobile / email for the channel;
3. logs ``no_consent`` when the member has no open consent for the channel (platform consent records, the same
   check the messaging service makes) — skipped and counted, never queued;
4. otherwise logs ``queued`` and hands the message to ``services.messaging.send`` (which checks consent again,
   rate-limits and delivers), keeping the delivery id on the log row.

Campaigns with a future ``send_at`` wait as ``scheduled``; the ``membership.care_due`` job (every five minutes)
starts those that are due.
"""
from __future__ import annotations

import datetime as dt

from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.db import read_transaction
from crmkit.runtime.errors import CrmkitError, ValidationFailed
from crmkit.runtime.i18n_text import text
from crmkit.runtime.privacy.consent import has_consent

from .assign import set_fields
from . import segments

CARE = "membership.care"
LOG = "membership.care_log"
MEMBER = "membership.member"
SEND_JOB = "membership.care_send"
DUE_JOB = "membership.care_due"
ADDRESS = {"sms": "mobile", "wechat": "mobile", "email": "email"}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _aware(value) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def start(services, care_id: int, actor: Actor, *, now: dt.datetime | None = None) -> dict:
    """Start a campaign: scheduled when ``send_at`` is still ahead, else submitted as the send job (one job per
    campaign: a second start returns the same job)."""
    services.policy.check(actor, services.store.catalog().entity(CARE), "update")
    care = services.queries.get(CARE, care_id, actor)
    if care["status"] == "done":
        raise ValidationFailed({"status": [text("This campaign has already been sent.", "该关怀已发送完毕。")]})
    now = now or utcnow()
    send_at = _aware(care.get("send_at"))
    if send_at is not None and send_at > now:
        set_fields(services, CARE, care_id, actor, assigned={"status": "scheduled"})
        return {"status": "scheduled", "send_at": send_at.isoformat()}
    job = services.jobs.submit(SEND_JOB, {"care": care_id, "actor_id": actor.id}, actor=actor, dedupe_key=f"care:{care_id}")
    set_fields(services, CARE, care_id, actor, assigned={"status": "running", "job_id": job})
    return {"status": "running", "job": job}


def _logged(services, key: str) -> bool:
    rows = services.queries.list(LOG, SYSTEM, filter={"field": "send_key", "op": "eq", "value": key}, fields=["id"], limit=1, labels=False,
                                 count="none").rows
    return bool(rows)


def _log(services, care_id: int, member_id: int, channel: str, status: str, key: str) -> int | None:
    """Claim the member's send key; None when another run claimed it first (a unique-value refusal)."""
    try:
        return services.records.create(LOG, {"care": care_id, "member": member_id, "channel": channel, "status": status, "send_key": key,
                                             "logged_at": utcnow().isoformat()}, SYSTEM)
    except ValidationFailed as exc:
        if "send_key" in exc.field_errors:
            return None
        raise


def send_to_members(services, care: dict, member_ids: list[int], actor: Actor, *, progress=None, cancelled=None) -> dict:
    """Send ``care`` to each member once; returns the counts of this run."""
    channel = care["channel"]
    counts = {"queued": 0, "no_consent": 0, "no_address": 0, "already": 0, "members": len(member_ids)}
    for n, member_id in enumerate(member_ids, 1):
        if cancelled is not None and cancelled():
            break
        key = f"care:{care['id']}:{member_id}"
        if _logged(services, key):
            counts["already"] += 1
        else:
            member = services.queries.get(MEMBER, member_id, SYSTEM)
            address = member.get(ADDRESS[channel])
            with read_transaction(services.engine) as conn:
                consented = bool(address) and has_consent(conn, MEMBER, member_id, channel)
            status = "queued" if consented else ("no_address" if not address else "no_consent")
            log_id = _log(services, care["id"], member_id, channel, status, key)
            if log_id is None:
                counts["already"] += 1
            else:
                counts[status] += 1
                if status == "queued":
                    _deliver(services, care, member, address, log_id, actor)
        if progress is not None and (n % 50 == 0 or n == len(member_ids)):
            progress(n, len(member_ids), None)
    return counts


def _deliver(services, care: dict, member: dict, address: str, log_id: int, actor: Actor) -> None:
    context = {"name": member.get("name") or "", "card_no": member.get("card_no") or "", "level": (member.get("_labels") or {}).get("level", "")}
    delivery = services.messaging.send(care["channel"], to=address, actor=actor, subject_ref=(MEMBER, member["id"]), subject=care.get("subject"),
                                       body=care["body"], context=context, purpose=None)
    values = {"delivery_id": delivery["id"]}
    if delivery["status"] == "refused":  # consent withdrawn between our check and the send
        values["status"] = "refused"
    set_fields(services, LOG, log_id, SYSTEM, data=values)


def send_job(ctx, payload: dict) -> dict:
    """The send job: members are selected again as the user who started it, under their row scope."""
    from crmkit.runtime.imports.actor import actor_by_id

    services = ctx.services
    actor = actor_by_id(services.engine, payload["actor_id"]) if payload.get("actor_id") else SYSTEM
    care = services.queries.get(CARE, int(payload["care"]), SYSTEM)
    ids = segments.member_ids(services, int(care["segment"]), actor)
    counts = send_to_members(services, care, ids, actor, progress=ctx.progress, cancelled=ctx.cancel_requested)
    set_fields(services, CARE, care["id"], SYSTEM, assigned={"status": "done", "finished_at": utcnow()})
    return counts


def due_job(ctx, payload: dict) -> dict:
    """Every five minutes: start the scheduled campaigns whose time has come, as the user who scheduled them."""
    from crmkit.runtime.imports.actor import actor_by_id

    services = ctx.services
    now = _aware(payload.get("now")) or utcnow()
    due = {"and": [{"field": "status", "op": "eq", "value": "scheduled"}, {"field": "send_at", "op": "lte", "value": now.isoformat()}]}
    started = []
    for row in services.queries.list(CARE, SYSTEM, filter=due, fields=["id", "updated_by"], sort=["id"], limit=100, labels=False,
                                     count="none").rows:
        try:
            actor = actor_by_id(services.engine, row["updated_by"]) if row.get("updated_by") else SYSTEM
        except CrmkitError:
            actor = SYSTEM
        start(services, row["id"], actor, now=now)
        started.append(row["id"])
    return {"started": started}
