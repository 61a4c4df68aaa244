"""Lead lifecycle: follow-up stamps, the lead pool (公海) and conversion into account + contact + opportunity."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.i18n_text import text

from .calendar import app_settings

LEAD = "crm_sales.lead"
CLOSED = ("converted", "disqualified")
ACTIVITY_TYPES = {"crm_sales.lead"}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def lead_validator(write) -> dict:
    """A converted lead stays converted; a status change or a new owner counts as a follow-up."""
    if not write.creating and write.current.get("status") == "converted" and write.values.get("status", "converted") != "converted":
        return {"status": [text("A converted lead cannot change status.", "已转化的线索不能再更改状态。")]}
    if write.creating and write.get("owner") and not write.get("last_followed_at"):
        write.values["last_followed_at"] = utcnow()
    if not write.creating and "owner" in write.values and write.values["owner"] and write.values["owner"] != write.current.get("owner"):
        write.values.setdefault("last_followed_at", utcnow())  # a new owner gets the full period
        write.values["pooled_at"] = None
    return {}


def return_to_pool(services, now: dt.datetime | None = None, *, days: int | None = None, actor=SYSTEM) -> int:
    """Leads with an owner and no follow-up for ``days`` (settings ``lead_pool_days``) lose their owner and go back
    to the pool. Running it again changes nothing until more leads go stale."""
    now = now or utcnow()
    if LEAD not in services.store.catalog().entities:
        return 0
    days = int(days if days is not None else app_settings().get("lead_pool_days", 30))
    cutoff = (now - dt.timedelta(days=days)).isoformat()
    flt = {"and": [{"field": "owner", "op": "is_not_empty"}, {"field": "status", "op": "not_in", "value": list(CLOSED)},
                   {"or": [{"field": "last_followed_at", "op": "lt", "value": cutoff},
                           {"and": [{"field": "last_followed_at", "op": "is_empty"}, {"field": "created_at", "op": "lt", "value": cutoff}]}]}]}
    returned = 0
    while True:
        page = services.queries.list(LEAD, actor, filter=flt, sort=["id"], limit=200, count="none", labels=False)
        if not page.rows:
            return returned
        for row in page.rows:
            services.records.update(LEAD, row["id"], {"owner": None, "pooled_at": now.isoformat()}, actor, expected_version=row["row_version"])
            returned += 1


def claim_lead(services, lead_id: int, actor) -> None:
    """A rep takes a lead from the pool (refused if someone else owns it)."""
    lead = services.queries.get(LEAD, lead_id, actor)
    if lead.get("owner") not in (None, actor.id):
        raise ValidationFailed({"owner": [text("Someone else already owns this lead.", "这条线索已有其他负责人。")]})
    services.records.update(LEAD, lead_id, {"owner": actor.id}, actor, expected_version=lead["row_version"])


def pool_job(ctx, payload: dict) -> dict:
    return {"returned": return_to_pool(ctx.services, days=payload.get("days"))}


# Where each lead field goes on conversion ("entity.field"); LIFECYCLE fields describe the lead itself and stay on it.
FIELD_MAP = {
    "name": ("crm.contact.name",), "company": ("crm.account.name",), "title": ("crm.contact.title",),
    "mobile": ("crm.contact.mobile",), "email": ("crm.contact.email",), "source": ("crm_sales.opportunity.source",),
    "owner": ("crm.account.owner", "crm.contact.owner", "crm_sales.opportunity.owner"),
    "team": ("crm.account.team", "crm_sales.opportunity.team"), "region": ("crm.account.region",),
    "province": ("crm.account.province",), "city": ("crm.account.city",), "industry": ("crm.account.industry",),
    "budget": ("crm_sales.opportunity.amount",), "description": ("crm_sales.opportunity.description",),
}
LIFECYCLE = frozenset({"status", "last_followed_at", "pooled_at", "converted_at", "converted_account", "converted_contact"})


@dataclass(frozen=True)
class Conversion:
    account: int
    contact: int
    opportunity: int | None
    activities: int


def mapped(lead: dict, entity_key: str) -> dict:
    """The lead's values for ``entity_key`` according to FIELD_MAP."""
    out = {}
    for source, targets in FIELD_MAP.items():
        for target in targets:
            key, _, field = target.rpartition(".")
            if key == entity_key and lead.get(source) not in (None, ""):
                out[field] = lead[source]
    return out


def convert_lead(services, lead_id: int, actor, *, account_id: int | None = None, opportunity: dict | None = None,
                 create_opportunity: bool = True) -> Conversion:
    """Turn a lead into an account (or use ``account_id``), a contact and an opportunity, move its activities
    to them, and mark it converted — all in one transaction through the record service."""
    lead = services.queries.get(LEAD, lead_id, actor)
    if lead["status"] == "converted":
        raise ValidationFailed({"status": [text("This lead is already converted.", "这条线索已经转化过了。")]})
    if lead["status"] == "disqualified":
        raise ValidationFailed({"status": [text("A disqualified lead cannot be converted.", "无效线索不能转化。")]})
    if not account_id and not (lead.get("company") or "").strip():
        raise ValidationFailed({"company": [text("Enter the company name before converting.", "转化前请填写公司名称。")]})
    activities = services.queries.list("crm.activity", actor, filter={"and": [{"field": "regarding_type", "op": "eq", "value": "lead"},
                                       {"field": "regarding_id", "op": "eq", "value": lead_id}]}, limit=200, count="none", labels=False).rows
    owner = lead.get("owner") or actor.id
    now = utcnow().isoformat()
    with services.records.transaction() as tx:
        if not account_id:
            account_id = tx.create("crm.account", {
                **mapped(lead, "crm.account"), "owner": owner,
                "notes": text("Converted from lead #{id} ({source}).", "由线索 #{id}（{source}）转化。", id=lead_id, source=lead.get("source") or "-").get("zh")}, actor)
        contact_id = tx.create("crm.contact", {**mapped(lead, "crm.contact"), "account": account_id, "is_primary": True, "owner": owner}, actor)
        opp_id = None
        if create_opportunity:
            opp = {**mapped(lead, "crm_sales.opportunity"), "name": f"{lead.get('company') or lead['name']} - {lead['name']}", "account": account_id,
                   "contact": contact_id, "owner": owner, "lead": lead_id}
            opp.update(opportunity or {})
            opp_id = tx.create("crm_sales.opportunity", opp, actor)
        for a in activities:
            relink = {"account": account_id, "contact": contact_id}
            if opp_id:
                relink.update(regarding_type="opportunity", regarding_id=opp_id)
            tx.update("crm.activity", a["id"], relink, actor, expected_version=a["row_version"])
        tx.update(LEAD, lead_id, {"status": "converted", "converted_at": now, "converted_account": account_id, "converted_contact": contact_id},
                  actor, expected_version=lead["row_version"])
    return Conversion(account_id, contact_id, opp_id, len(activities))
