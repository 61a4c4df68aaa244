"""Email threading for tickets: which ticket a message belongs to, and the headers that keep a reply in the thread."""
from __future__ import annotations

import re

from crmkit.runtime.actor import SYSTEM

TICKET, MESSAGE = "crm_service.ticket", "crm_service.ticket_message"
MSG_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")
MAX_REFERENCES = 20  # RFC 5322 allows trimming; keep the first and the most recent ones


def clean_ids(header: str) -> list[str]:
    """The ``<id@host>`` tokens of a Message-ID / In-Reply-To / References header (anything else is dropped, so a
    stored id can never smuggle a line break into an outgoing header)."""
    return MSG_ID.findall(header or "")[:200]


def ticket_by_message_ids(services, ids: list[str]) -> dict | None:
    """The ticket that already holds one of these messages (the most recent id wins)."""
    ids = [i for i in dict.fromkeys(reversed(ids)) if len(i) <= 300][:50]
    if not ids:
        return None
    rows = services.queries.list(MESSAGE, SYSTEM, filter={"field": "message_id", "op": "in", "value": ids},
                                 limit=50, count="none", labels=False).rows
    by_id = {r["message_id"]: r["ticket"] for r in rows}
    for i in ids:
        if i in by_id:
            return services.queries.get(TICKET, by_id[i], SYSTEM)
    return None


def ticket_by_number(services, digits: str) -> dict | None:
    number = f"T{int(digits):07d}"
    rows = services.queries.list(TICKET, SYSTEM, filter={"field": "number", "op": "eq", "value": number}, limit=1, count="none", labels=False).rows
    return services.queries.get(TICKET, rows[0]["id"], SYSTEM) if rows else None


def thread_of(services, ticket_id: int) -> list[dict]:
    """The ticket's emailed messages (customer mail and replies; never notes), oldest first."""
    flt = {"and": [{"field": "ticket", "op": "eq", "value": ticket_id}, {"field": "kind", "op": "in", "value": ["customer", "reply"]},
                   {"field": "message_id", "op": "is_not_empty"}]}
    return services.queries.list(MESSAGE, SYSTEM, filter=flt, sort=["id"], limit=200, count="none", labels=False).rows


def reply_headers(services, ticket_id: int, message_id: str) -> dict:
    """Message-ID, In-Reply-To (the customer's latest mail, else our latest) and References for a reply."""
    thread = [m for m in thread_of(services, ticket_id) if m["message_id"] != message_id]  # not the reply itself
    refs: list[str] = []
    for m in thread:
        for i in [*clean_ids(m.get("references") or ""), *clean_ids(m["message_id"])]:
            if i not in refs:
                refs.append(i)
    if len(refs) > MAX_REFERENCES:
        refs = refs[:1] + refs[-(MAX_REFERENCES - 1):]
    customer = [m for m in thread if m["kind"] == "customer"]
    parent = (customer or thread)[-1]["message_id"] if thread else None
    headers = {"Message-ID": message_id}
    if parent:
        headers["In-Reply-To"] = parent
    if refs:
        headers["References"] = " ".join(refs)
    return headers
