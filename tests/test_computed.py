"""Computed fields (formula, lookup, rollup) and entity rules, on real databases through the services."""
from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal

import pytest

from computed_support import CUSTOMER, ORDER, shop_documents
from core_support import fresh_services, publish
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import BadQuery, DefinitionError, ValidationFailed


@pytest.fixture
def shop(databases, tmp_path_factory):
    s = fresh_services(databases, tmp_path_factory)
    publish(s, shop_documents())
    yield s
    s.engine.dispose()


def order(**kw) -> dict:
    data = {"title": "o", "status": "paid", "start_date": "2024-01-31", "end_date": "2024-02-10"}
    data.update(kw)
    return data


def get(s, key, rid) -> dict:
    return s.queries.get(key, rid, SYSTEM)


def test_formula_and_lookup_values_on_read(shop):
    gold = shop.records.create("shop.level", {"name": "Gold", "discount": "0.85"}, SYSTEM)
    c = shop.records.create("shop.customer", {"name": "Ann", "level": gold}, SYSTEM)
    o = shop.records.create("shop.order", order(customer=c, amount="120.50", qty=3), SYSTEM)
    rec = get(shop, "shop.order", o)
    assert rec["total"] == Decimal("361.50")
    assert rec["big"] is False
    assert rec["renewal"] == dt.date(2024, 2, 29)  # Python-only formula, computed per row
    assert rec["who"] == "Ann"
    assert get(shop, "shop.customer", c)["level_discount"] == Decimal("0.85")
    page = shop.queries.list("shop.order", SYSTEM)
    assert page.rows[0]["total"] == Decimal("361.50") and page.rows[0]["renewal"] == dt.date(2024, 2, 29)
    # a Python-only formula reading a lookup and a field, with only itself asked for
    assert rec["tag"] == "Ann#3"
    assert shop.queries.list("shop.order", SYSTEM, fields=["tag"]).rows[0]["tag"] == "Ann#3"


def test_filter_and_sort_on_formula_and_lookup(shop):
    a = shop.records.create("shop.customer", {"name": "Ann"}, SYSTEM)
    b = shop.records.create("shop.customer", {"name": "Bob"}, SYSTEM)
    for title, amount, qty, cust in (("x", "10", 5, a), ("y", "300", 4, b), ("z", "99", 1, a), ("w", None, 2, b)):
        shop.records.create("shop.order", order(title=title, amount=amount, qty=qty, customer=cust), SYSTEM)
    titles = lambda **kw: [r["title"] for r in shop.queries.list("shop.order", SYSTEM, **kw).rows]  # noqa: E731
    valued = lambda got: [t for t in got if t != "w"]  # noqa: E731 - "w" has no total; where empties sort is the list's rule
    assert valued(titles(sort=["total"])) == ["x", "z", "y"] and "w" in titles(sort=["total"])  # 50, 99, 1200
    assert valued(titles(sort=["-total"])) == ["y", "z", "x"]
    assert titles(filter={"field": "total", "op": "gt", "value": "60"}, sort=["title"]) == ["y", "z"]
    assert titles(filter={"field": "big", "op": "eq", "value": True}) == ["y"]
    assert titles(filter={"field": "who", "op": "eq", "value": "Ann"}, sort=["title"]) == ["x", "z"]
    assert titles(sort=["who", "title"]) == ["x", "z", "w", "y"]
    # keyset paging over a formula sort
    for sort in (["total"], ["-total"]):
        first = shop.queries.list("shop.order", SYSTEM, sort=sort, limit=2)
        second = shop.queries.list("shop.order", SYSTEM, sort=sort, limit=2, cursor=first.next_cursor)
        assert [r["title"] for r in first.rows + second.rows] == titles(sort=sort) and second.next_cursor is None
    with pytest.raises(BadQuery):
        shop.queries.list("shop.order", SYSTEM, filter={"field": "renewal", "op": "eq", "value": "2024-02-29"})


def test_computed_fields_are_refused_as_input(shop):
    with pytest.raises(ValidationFailed) as info:
        shop.records.create("shop.order", order(total="5", big=True, who="x", line_sum="3"), SYSTEM)
    errors = info.value.field_errors
    assert set(errors) == {"total", "big", "who", "line_sum"}
    assert "computed" in str(errors["total"][0])
    assert shop.queries.list("shop.order", SYSTEM).rows == []


def test_rollups_follow_every_write(shop):
    a = shop.records.create("shop.customer", {"name": "Ann"}, SYSTEM)
    b = shop.records.create("shop.customer", {"name": "Bob"}, SYSTEM)
    roll = lambda c: (lambda r: (r["order_count"], r["paid_total"], r["largest"]))(get(shop, "shop.customer", c))  # noqa: E731
    assert roll(a) == (0, Decimal("0"), None)
    o1 = shop.records.create("shop.order", order(customer=a, amount="100"), SYSTEM)
    o2 = shop.records.create("shop.order", order(customer=a, amount="50", status="open", coupon="C1"), SYSTEM)
    assert roll(a) == (2, Decimal("100"), Decimal("100"))
    assert get(shop, "shop.customer", a)["open_count"] == 1  # a rollup filtered by a filter tree
    # update the amount, then the status (the filter), then move o1 to Bob
    v = shop.records.update("shop.order", o2, {"amount": "250"}, SYSTEM, expected_version=1)
    assert roll(a) == (2, Decimal("100"), Decimal("250"))
    shop.records.update("shop.order", o2, {"status": "paid"}, SYSTEM, expected_version=v)
    assert roll(a) == (2, Decimal("350"), Decimal("250"))
    assert get(shop, "shop.customer", a)["open_count"] == 0
    shop.records.update("shop.order", o1, {"customer": b}, SYSTEM, expected_version=1)
    assert roll(a) == (1, Decimal("250"), Decimal("250"))
    assert roll(b) == (1, Decimal("100"), Decimal("100"))
    # delete and restore
    shop.records.delete("shop.order", o2, SYSTEM)
    assert roll(a) == (0, Decimal("0"), None)
    shop.records.restore("shop.order", o2, SYSTEM)
    assert roll(a) == (1, Decimal("250"), Decimal("250"))
    # bulk edit and bulk delete
    shop.records.bulk_update("shop.order", [o1, o2], {"amount": "10"}, SYSTEM)
    assert roll(a) == (1, Decimal("10"), Decimal("10")) and roll(b) == (1, Decimal("10"), Decimal("10"))
    shop.records.bulk_update("shop.order", [o1, o2], {"customer": a}, SYSTEM)
    assert roll(a) == (2, Decimal("20"), Decimal("10")) and roll(b) == (0, Decimal("0"), None)
    shop.records.bulk_delete("shop.order", [o1], SYSTEM)
    assert roll(a) == (1, Decimal("10"), Decimal("10"))


def test_rollup_over_child_rows(shop):
    o = shop.records.create("shop.order", order(lines=[{"item": "a", "price": "1.50"}, {"item": "b", "price": "2.25"}]), SYSTEM)
    rec = get(shop, "shop.order", o)
    assert (rec["line_sum"], rec["line_count"]) == (Decimal("3.75"), 2)
    first = rec["lines"][0]["id"]
    shop.records.update("shop.order", o, {"lines": [{"id": first, "item": "a", "price": "10"}]}, SYSTEM, expected_version=rec["row_version"])
    rec = get(shop, "shop.order", o)
    assert (rec["line_sum"], rec["line_count"]) == (Decimal("10.00"), 1)
    # a child entity's rules are checked per row, and the error names the row
    with pytest.raises(ValidationFailed) as info:
        shop.records.update("shop.order", o, {"lines": [{"id": first, "item": "a", "price": "10"}, {"item": "b", "price": "-1"}]}, SYSTEM,
                            expected_version=rec["row_version"])
    assert list(info.value.field_errors) == ["lines.1.price"]
    assert get(shop, "shop.order", o)["line_count"] == 1


def test_a_failed_write_leaves_rollups_alone(shop):
    a = shop.records.create("shop.customer", {"name": "Ann"}, SYSTEM)
    with pytest.raises(ValidationFailed):
        shop.records.create("shop.order", order(customer=a, amount="100", end_date="2024-01-01"), SYSTEM)
    assert get(shop, "shop.customer", a)["order_count"] == 0


def test_validation_rule_blocks_and_names_the_field(shop):
    with pytest.raises(ValidationFailed) as info:
        shop.records.create("shop.order", order(start_date="2024-03-01", end_date="2024-02-01"), SYSTEM)
    assert list(info.value.field_errors) == ["end_date"]
    msg = info.value.field_errors["end_date"][0]
    assert msg == "The end date must be after the start date." and msg.zh == "结束日期必须晚于开始日期。"
    o = shop.records.create("shop.order", order(end_date=None), SYSTEM)  # unknown (NULL) does not fail
    with pytest.raises(ValidationFailed) as info:
        shop.records.update("shop.order", o, {"end_date": "2020-01-01"}, SYSTEM, expected_version=1)
    assert "end_date" in info.value.field_errors
    assert get(shop, "shop.order", o)["end_date"] is None
    with pytest.raises(ValidationFailed):
        shop.records.bulk_update("shop.order", [o], {"end_date": "2020-01-01"}, SYSTEM)
    assert get(shop, "shop.order", o)["end_date"] is None


def test_rules_read_linked_records(shop):
    ok = shop.records.create("shop.customer", {"name": "Ann"}, SYSTEM)
    blocked = shop.records.create("shop.customer", {"name": "Blocked"}, SYSTEM)
    o = shop.records.create("shop.order", order(customer=ok), SYSTEM)
    with pytest.raises(ValidationFailed) as info:
        shop.records.update("shop.order", o, {"customer": blocked}, SYSTEM, expected_version=1)
    assert info.value.field_errors == {"customer": ["This customer is blocked."]}
    assert get(shop, "shop.order", o)["customer"] == ok


def test_required_if_and_visible_if(shop):
    with pytest.raises(ValidationFailed) as info:
        shop.records.create("shop.order", order(amount="5000"), SYSTEM)
    assert list(info.value.field_errors) == ["reason"]
    assert shop.records.create("shop.order", order(amount="5000", reason="bulk buy"), SYSTEM)
    # coupon is required but only shown while the order is open
    assert shop.records.create("shop.order", order(status="paid"), SYSTEM)
    with pytest.raises(ValidationFailed) as info:
        shop.records.create("shop.order", order(status="open"), SYSTEM)
    assert list(info.value.field_errors) == ["coupon"]
    o = shop.records.create("shop.order", order(status="open", coupon="X"), SYSTEM)
    with pytest.raises(ValidationFailed) as info:
        shop.records.update("shop.order", o, {"coupon": None}, SYSTEM, expected_version=1)
    assert list(info.value.field_errors) == ["coupon"]


def _bad(s, *, order_doc=None, customer_doc=None):
    with pytest.raises(DefinitionError) as info:
        publish(s, shop_documents(order=order_doc, customer=customer_doc))
    return info.value


def test_bad_definitions_name_file_pointer_and_position(databases, tmp_path_factory):
    s = fresh_services(databases, tmp_path_factory)
    bad = copy.deepcopy(ORDER)
    bad["fields"][9]["expression"] = "amount * titl"
    bad["fields"][7]["required_if"] = "amount"
    bad["validations"][0]["rule"] = "end_date > "
    bad["fields"][15]["filter"] = "x"
    err = _bad(s, order_doc=bad)
    found = {(f, p): m for f, p, m in err.problems}
    assert "no field 'titl'" in found[("shop/entities/order.json", "/fields/9/expression")]
    assert "(at character 9)" in found[("shop/entities/order.json", "/fields/9/expression")]
    assert "boolean is needed" in found[("shop/entities/order.json", "/fields/7/required_if")]
    assert "ends too early" in found[("shop/entities/order.json", "/validations/0/rule")]
    assert ("shop/entities/order.json", "/fields/15/filter") in found
    bad_c = copy.deepcopy(CUSTOMER)
    bad_c["fields"][2]["field"] = "nope"
    bad_c["fields"][3]["link"] = "title"
    bad_c["fields"][4]["filter"] = "ADD_MONTHS(start_date, 1) > start_date"
    bad_c["fields"][5]["field"] = "title"
    bad_c["fields"][6]["filter"] = {"field": "colour", "op": "eq", "value": "x"}
    bad_c["fields"][5]["filter"] = {"field": "big", "op": "contains", "value": "x"}  # a boolean formula: no "contains"
    bad_c["fields"].append({"id": "fld_cu_lines", "name": "line_rollup", "type": "rollup", "label": {"zh": "x", "en": "x"}, "source": "shop.order_line",
                            "link": "item", "function": "count"})
    err = _bad(s, customer_doc=bad_c)
    pointers = {p for _, p, _ in err.problems}
    assert {"/fields/2/field", "/fields/3/link", "/fields/4/filter", "/fields/5/field", "/fields/6/filter/field", "/fields/7/source",
            "/fields/5/filter/op"} <= pointers


def test_schema_plan_formula_has_no_column_and_a_new_rollup_is_filled(databases, tmp_path_factory):
    from sqlalchemy import inspect

    s = fresh_services(databases, tmp_path_factory)
    slim = copy.deepcopy(CUSTOMER)
    slim["fields"] = [f for f in slim["fields"] if f["name"] != "paid_total"]
    publish(s, shop_documents(customer=slim))
    cols = {c["name"] for c in inspect(s.engine).get_columns("shop_order")}
    assert {"amount", "line_sum", "line_count"} <= cols and not {"total", "big", "renewal", "who"} & cols
    a = s.records.create("shop.customer", {"name": "Ann"}, SYSTEM)
    s.records.create("shop.order", order(customer=a, amount="70"), SYSTEM)
    s.records.create("shop.order", order(customer=a, amount="5", status="open", coupon="c"), SYSTEM)
    plan = publish(s, shop_documents())
    assert [st.op for st in plan.steps] == ["add_column", "fill_rollup"]
    assert get(s, "shop.customer", a)["paid_total"] == Decimal("70")
    s.engine.dispose()


@pytest.mark.postgres_only
def test_concurrent_writes_keep_a_rollup_exact(shop):
    """Each writer locks the parent row before recomputing, so no writer counts from a stale snapshot."""
    from test_sequences import run_concurrently

    a = shop.records.create("shop.customer", {"name": "Ann"}, SYSTEM)
    workers, each = 8, 3

    def job(n):
        for i in range(each):
            shop.records.create("shop.order", order(title=f"{n}-{i}", customer=a, amount="1"), SYSTEM)

    assert run_concurrently(workers, job) == []
    rec = get(shop, "shop.customer", a)
    assert (rec["order_count"], rec["paid_total"]) == (workers * each, Decimal(workers * each))
