"""Quote → contract → order: workflow actions that copy a document and its lines into the next one.

``quote_to_contract`` runs when a quote is accepted, ``contract_to_order`` when a contract is signed; each
creates the next document in the transition's transaction (through the record service, so sequences, totals,
audit and events apply), linked to its source. The lines are copied field by field, so amounts cannot drift.
"""
from __future__ import annotations

from sqlalchemy import select

LINE_FIELDS = ("product", "description", "quantity", "unit_price", "discount")


def _lines(ctx, line_entity: str) -> list[dict]:
    t = ctx.records.table_cache.tables(ctx.catalog)[line_entity]
    rows = ctx.conn.execute(select(t).where(t.c.parent_id == ctx.record["id"]).order_by(t.c.sort_order, t.c.id)).mappings()
    return [{f: (str(r[f]) if f in ("quantity", "unit_price", "discount") and r[f] is not None else r[f]) for f in LINE_FIELDS} for r in rows]


def _follow(ctx, target: str, data: dict, source_field: str) -> int:
    """Create ``target`` with its read-only ``source_field`` pointing back at the source (trusted app code, as the
    system: the workflow definition authorizes it)."""
    return ctx.records.create_within(ctx.conn, target, data, ctx.as_system(), request_id=ctx.request_id,
                                     assigned={source_field: ctx.record["id"]})


def quote_to_contract(ctx) -> None:
    q = ctx.record
    _follow(ctx, "crm_sales.contract", {"title": q["title"], "account": q.get("account"), "opportunity": q.get("opportunity"),
                                        "lines": _lines(ctx, "crm_sales.quote_line")}, "quote")


def contract_to_order(ctx) -> None:
    c = ctx.record
    _follow(ctx, "crm_sales.order", {"title": c["title"], "account": c.get("account"), "opportunity": c.get("opportunity"),
                                     "ordered_on": c.get("signed_on"), "lines": _lines(ctx, "crm_sales.contract_line")}, "contract")
