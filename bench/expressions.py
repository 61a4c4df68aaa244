"""The expression language and computed fields, measured:

    python -m bench.expressions [--orders 5000] [--samples 100]

- compile: parse + type-check a typical formula (what a definition load pays per expression);
- evaluate: one Python evaluation over a record dict (rules run this per write);
- a list page of orders with two SQL formulas, a lookup and a Python-only formula, against the same page
  with stored columns only (what computed columns cost a list);
- an order create that updates three rollups on its customer, against a create on an entity without.
Runs on SQLite under var/bench/expr/ (or CRMKIT_DATABASE_URL when it names PostgreSQL).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
from decimal import Decimal
from pathlib import Path

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.config import Settings
from crmkit.runtime.expr import compile_expression
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.services import Services
from crmkit.runtime.storage.migrate import upgrade_platform
from crmkit.runtime.storage.plan import Planner, apply_plan

from .timing import compare_latency, sample

L = lambda zh, en: {"zh": zh, "en": en}  # noqa: E731
FORMULA = "IF(amount * qty >= 1000, ROUND(amount * qty * 0.95, 2), amount * qty)"


def _docs(with_computed: bool) -> list[RawDocument]:
    app = "bx" if with_computed else "bp"
    customer_fields = [{"id": f"fld_{app}_cn", "name": "name", "type": "text", "label": L("名称", "Name")}]
    order_fields = [
        {"id": f"fld_{app}_t", "name": "title", "type": "text", "label": L("标题", "Title")},
        {"id": f"fld_{app}_c", "name": "customer", "type": "link", "label": L("客户", "Customer"), "target": f"{app}.customer"},
        {"id": f"fld_{app}_a", "name": "amount", "type": "money", "label": L("金额", "Amount")},
        {"id": f"fld_{app}_q", "name": "qty", "type": "integer", "label": L("数量", "Qty")},
        {"id": f"fld_{app}_d", "name": "day", "type": "date", "label": L("日期", "Day")},
    ]
    if with_computed:
        customer_fields += [
            {"id": "fld_bx_n", "name": "orders", "type": "rollup", "label": L("订单数", "Orders"), "source": "bx.order", "link": "customer", "function": "count"},
            {"id": "fld_bx_s", "name": "spent", "type": "rollup", "label": L("金额", "Spent"), "source": "bx.order", "link": "customer", "function": "sum", "field": "amount"},
            {"id": "fld_bx_m", "name": "biggest", "type": "rollup", "label": L("最大", "Biggest"), "source": "bx.order", "link": "customer", "function": "max", "field": "amount", "filter": "qty > 1"},
        ]
        order_fields += [
            {"id": "fld_bx_total", "name": "total", "type": "formula", "label": L("合计", "Total"), "expression": FORMULA, "result": "number"},
            {"id": "fld_bx_big", "name": "big", "type": "formula", "label": L("大单", "Big"), "expression": "amount * qty >= 1000", "result": "boolean"},
            {"id": "fld_bx_who", "name": "who", "type": "lookup", "label": L("客户", "Who"), "link": "customer", "field": "name"},
            {"id": "fld_bx_next", "name": "renewal", "type": "formula", "label": L("续期", "Renewal"), "expression": "ADD_MONTHS(day, 1)", "result": "date"},
        ]
    return [
        RawDocument("app", app, {"id": app, "version": "1.0.0", "title": L(app, app)}, f"{app}/app.json"),
        RawDocument("entity", app, {"id": f"ent_{app}_customer", "name": "customer", "label": L("客户", "Customer"), "title_field": "name",
                                    "fields": customer_fields}, f"{app}/entities/customer.json"),
        RawDocument("entity", app, {"id": f"ent_{app}_order", "name": "order", "label": L("订单", "Order"), "title_field": "title",
                                    "fields": order_fields}, f"{app}/entities/order.json"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    var = Path("var/bench/expr")
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    url = os.environ.get("CRMKIT_DATABASE_URL") or f"sqlite:///{var.resolve()}/bench.db"
    s = Services.build(Settings(database_url=url, secret_key="bench-expressions", var_dir=var))
    upgrade_platform(s.engine)
    docs = _docs(True) + _docs(False)
    s.store.save(docs)
    apply_plan(s.engine, Planner(s.engine, s.store.catalog()).plan(), confirm=True)

    catalog = s.store.catalog()
    order = catalog.entity("bx.order")
    results = [
        compare_latency("compile a formula", sample(lambda: compile_expression(FORMULA, order, catalog), args.samples),
                        sample(lambda: compile_expression("amount", order, catalog), args.samples), "baseline: a bare field"),
    ]
    compiled = compile_expression(FORMULA, order, catalog)
    record = {"amount": Decimal("120.50"), "qty": 9}
    results.append(compare_latency("evaluate in Python", sample(lambda: compiled.evaluate(record), args.samples * 10),
                                   sample(lambda: compile_expression("amount", order, catalog).evaluate(record), args.samples * 10),
                                   "baseline includes compiling a bare field"))
    customers = {app: [s.records.create(f"{app}.customer", {"name": f"C{i}"}, SYSTEM) for i in range(50)] for app in ("bx", "bp")}
    day = dt.date(2024, 1, 31)
    for i in range(args.orders):
        for app in ("bx", "bp"):
            s.records.create(f"{app}.order", {"title": f"o{i}", "customer": customers[app][i % 50], "amount": str(10 + i % 300),
                                              "qty": 1 + i % 5, "day": day.isoformat()}, SYSTEM)
    results.append(compare_latency(
        "list page, 25 rows, sorted by a formula",
        sample(lambda: s.queries.list("bx.order", SYSTEM, sort=["-total"], limit=25), args.samples),
        sample(lambda: s.queries.list("bp.order", SYSTEM, sort=["-amount"], limit=25), args.samples),
        "baseline: stored columns only, sorted by a stored column"))
    n = [0]

    def create(app):
        n[0] += 1
        s.records.create(f"{app}.order", {"title": f"x{n[0]}", "customer": customers[app][n[0] % 50], "amount": "5", "qty": 2}, SYSTEM)
    results.append(compare_latency("create an order", sample(lambda: create("bx"), args.samples), sample(lambda: create("bp"), args.samples),
                                   "product keeps three rollups on the customer; baseline has none"))
    for r in results:
        print(r.line())
    s.engine.dispose()


if __name__ == "__main__":
    main()
