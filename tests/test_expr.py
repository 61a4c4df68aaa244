"""The expression language: parse errors with positions, hostile input, evaluation, and SQL that
gives the same answers as Python on a real table (SQLite and PostgreSQL)."""
from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from sqlalchemy import inspect, select

from core_support import fresh_services, lab_documents, publish
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.expr import ExpressionError, NotSqlCompilable, compile_expression
from crmkit.runtime.expr.compiled import _now
from crmkit.runtime.expr.evaluate import Evaluator
from crmkit.runtime.expr.parser import parse
from crmkit.runtime.expr.check import Checker
from crmkit.runtime.meta.model import EntityDef, FieldDef, Label

L = Label("x", "x")
OPTS = ({"value": "red", "label": {"zh": "红", "en": "Red"}}, {"value": "blue", "label": {"zh": "蓝", "en": "Blue"}})
ENTITY = EntityDef(id="e", app="t", name="deal", label=Label("交易", "Deal"), plural_label=L, title_field="name", fields=(
    FieldDef("f1", "name", "text", L), FieldDef("f2", "amount", "money", L), FieldDef("f3", "qty", "integer", L),
    FieldDef("f4", "start", "date", L), FieldDef("f5", "end", "date", L), FieldDef("f6", "active", "boolean", L),
    FieldDef("f7", "color", "single_select", L, config={"options": OPTS}), FieldDef("f8", "tags", "tags", L),
    FieldDef("f9", "at", "datetime", L),
))
NOW = dt.datetime(2024, 5, 31, 20, 0, tzinfo=dt.timezone.utc)  # 2024-06-01 04:00 in Shanghai


def ev(source, record=None, **kw):
    return compile_expression(source, ENTITY, {}, **kw).evaluate(record or {}, now=NOW)


# ---- compile errors carry the position ----------------------------------------------------------------
BAD = [
    ("", 0, "empty"),
    ("1 +", 3, "ends too early"),
    ("amount +* 2", 8, "Unexpected '*'"),
    ("(amount + 1", 11, "')'"),
    ("amount + 1)", 10, "Unexpected ')'"),
    ('"abc', 0, "never closed"),
    ("'a\\q'", 2, "Unknown escape"),
    ("amount # 2", 7, "Unexpected character"),
    ("12abc", 2, "run into letters"),
    ("nope + 1", 0, "no field 'nope'"),
    ("qty + missing", 6, "no field 'missing'"),
    ("name + 1", 0, "join text with '&'"),
    ("IF(qty, 1, 2)", 3, "needs boolean"),
    ("IF(qty > 1, 1, 'x')", 15, "same type"),
    ("amount = NULL", 9, "ISBLANK"),
    ("1 < qty < 3", 8, "cannot be chained"),
    ("FOO(1)", 0, "Unknown function 'FOO'"),
    ("ROUND()", 0, "takes 1-2"),
    ("LEN(qty)", 4, "needs text"),
    ("start + 1", 0, "ADD_DAYS"),
    ("name = qty", 5, "Cannot compare"),
    ("active > TRUE", 7, "only be compared with = or !="),
    ("color = 'green'", 8, "not an option"),
    ("tags = 'a'", 0, "several values"),
    ("name.first", 0, "not a link"),
    ("a.b.c", 0, "more than one link"),
    ("qty AND", 7, "ends too early"),
    ("CONCAT(name,", 12, "ends too early"),
]


@pytest.mark.parametrize("source,position,fragment", BAD, ids=[b[0] or "empty" for b in BAD])
def test_bad_expression_reports_position_and_both_languages(source, position, fragment):
    with pytest.raises(ExpressionError) as info:
        compile_expression(source, ENTITY, {})
    err = info.value
    assert fragment in str(err)
    assert err.position == position
    assert err.message.zh and err.message.zh != err.message.en


def test_result_type_is_enforced():
    with pytest.raises(ExpressionError, match="boolean is needed"):
        compile_expression("qty + 1", ENTITY, {}, result="boolean")
    assert compile_expression("qty > 1", ENTITY, {}, result="boolean").result_kind == "boolean"


# ---- hostile input -----------------------------------------------------------------------------------
def test_deep_nesting_is_refused():
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression("(" * 200 + "1" + ")" * 200, ENTITY, {})
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression("-" * 200 + "1", ENTITY, {})
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression("ABS(" * 100 + "1" + ")" * 100, ENTITY, {})


def test_too_long_and_too_large_are_refused():
    with pytest.raises(ExpressionError, match="too long") as info:
        compile_expression("1+" * 3000 + "1", ENTITY, {})
    assert info.value.position == 4000
    with pytest.raises(ExpressionError, match="too large"):
        compile_expression("+".join(["qty"] * 450), ENTITY, {})
    with pytest.raises(ExpressionError, match="too long"):
        compile_expression("1" + "0" * 40, ENTITY, {})


def test_numbers_cannot_grow_without_bound():
    with pytest.raises(ExpressionError, match="too large"):
        ev("999999999999999999 * 999999999999999999")
    with pytest.raises(ExpressionError, match="too large"):
        ev("amount * amount * amount", {"amount": Decimal("10000000")})


def test_produced_strings_are_bounded():
    with pytest.raises(ExpressionError, match="longer than"):
        ev("name & name", {"name": "x" * 6000})
    with pytest.raises(ExpressionError, match="longer than"):
        ev("UPPER(name & name)", {"name": "y" * 5001})


def test_no_python_attribute_access():
    for src in ("__class__", "name.__class__", "__import__('os')", "name.__dict__", "qty.real"):
        with pytest.raises(ExpressionError):
            compile_expression(src, ENTITY, {})


def test_step_budget_stops_evaluation():
    tree = Checker(ENTITY, {}).check(parse("1 + 2 + 3 + 4"))
    evaluator = Evaluator({}, NOW, __import__("zoneinfo").ZoneInfo("UTC"))
    evaluator.steps = 5_000 - 2
    with pytest.raises(ExpressionError, match="too many steps"):
        evaluator.eval(tree)


# ---- evaluation ---------------------------------------------------------------------------------------
REC = {"name": "  Alice ", "amount": Decimal("150.50"), "qty": 3, "start": dt.date(2024, 1, 31), "end": dt.date(2024, 3, 1),
       "active": False, "color": "red", "at": dt.datetime(2024, 5, 31, 17, 0, tzinfo=dt.timezone.utc)}
EVAL = [
    ("amount * qty + 1", Decimal("452.50")),
    ("amount / 4", Decimal("37.625")),
    ("qty % 2", Decimal(1)),
    ("-qty + 10 * 2", Decimal(17)),
    ("(1 + 2) * 3", Decimal(9)),
    ("qty / 0", None),
    ("IF(amount > 100, 'big', 'small')", "big"),
    ("IF(active, 1)", None),
    ("CASE(qty > 5, 'many', qty > 2, 'some', 'few')", "some"),
    ("CASE(qty > 5, 'many')", None),
    ("AND(qty > 1, NOT active)", True),
    ("OR(active, qty < 0)", False),
    ("active OR missing_is_null", None),
    ("TRIM(name) & '!'", "Alice!"),
    ("CONCAT('n=', qty, ' ', TRUE)", "n=3 TRUE"),
    ("LEN(TRIM(name))", Decimal(5)),
    ("UPPER(TRIM(name))", "ALICE"),
    ("LOWER('ABC')", "abc"),
    ("LEFT(TRIM(name), 2) & RIGHT(TRIM(name), 2)", "Alce"),
    ("CONTAINS(name, 'lic')", True),
    ("ISBLANK(name)", False),
    ("ISBLANK('   ')", True),
    ("ROUND(amount / 3, 2)", Decimal("50.17")),
    ("ROUND(2.5)", Decimal(3)),
    ("ROUND(-2.5)", Decimal(-3)),
    ("ABS(-qty)", Decimal(3)),
    ("MIN(qty, 2, 7)", Decimal(2)),
    ("MAX(start, end)", dt.date(2024, 3, 1)),
    ("DAYS_BETWEEN(start, end)", Decimal(30)),
    ("ADD_DAYS(start, 1)", dt.date(2024, 2, 1)),
    ("ADD_MONTHS(start, 1)", dt.date(2024, 2, 29)),
    ("ADD_MONTHS(start, -2)", dt.date(2023, 11, 30)),
    ("DATE(2024, 2, 30)", None),
    ("YEAR(start) * 100 + MONTH(start)", Decimal(202401)),
    ("DAY(at)", Decimal(1)),  # 01:00 on 1 June in Shanghai
    ("TODAY()", dt.date(2024, 6, 1)),
    ("NOW() > at", True),
    ("end > start", True),
    ("color = 'red'", True),
    ("'it''s'", None),
]
EVAL = [e for e in EVAL if e[0] != "'it''s'"] + [("'it\\'s' & \"\\\"q\\\"\"", "it's\"q\"")]


@pytest.mark.parametrize("source,expected", EVAL, ids=[e[0] for e in EVAL])
def test_evaluation(source, expected):
    src = source.replace("missing_is_null", "ISBLANK(NULL) AND NULL")
    if source == "active OR missing_is_null":
        assert ev("active OR IF(qty > 100, TRUE)", REC) is None
        return
    assert ev(src, REC) == expected


def test_null_propagation():
    assert ev("qty + 1", {}) is None
    assert ev("qty > 1", {}) is None
    assert ev("NOT (qty > 1)", {}) is None
    assert ev("qty > 1 AND FALSE", {}) is False
    assert ev("qty > 1 OR TRUE", {}) is True
    assert ev("name & 'x'", {}) == "x"
    assert ev("IF(qty > 1, 'y', 'n')", {}) == "n"
    assert ev("ISBLANK(qty)", {}) is True
    assert ev("MAX(qty, 1)", {}) is None


def test_lookup_values_come_from_the_record():
    cat = EntityDef(id="c", app="t", name="cat", label=L, plural_label=L, title_field="label", fields=(
        FieldDef("c1", "label", "text", L), FieldDef("c2", "rate", "decimal", L)))
    deal = EntityDef(id="d", app="t", name="deal", label=L, plural_label=L, title_field="qty", fields=(
        FieldDef("d1", "qty", "integer", L), FieldDef("d2", "cat", "link", L, config={"target": "t.cat"})))
    c = compile_expression("qty * cat.rate", deal, {"t.cat": cat})
    assert c.lookups == {("cat", "rate")}
    assert c.evaluate({"qty": 2, "cat.rate": Decimal("1.5")}) == Decimal("3.0")
    assert c.evaluate({"qty": 2, "cat": {"rate": "2"}}) == Decimal(4)
    with pytest.raises(ExpressionError, match="no field 'nope'"):
        compile_expression("cat.nope", deal, {"t.cat": cat})


def test_formula_fields_inline_and_cycles_are_refused():
    ent = EntityDef(id="e", app="t", name="x", label=L, plural_label=L, title_field="a", fields=(
        FieldDef("a", "a", "integer", L),
        FieldDef("b", "double", "formula", L, config={"expression": "a * 2", "result": "number"}),
        FieldDef("c", "loop1", "formula", L, config={"expression": "loop2 + 1", "result": "number"}),
        FieldDef("d", "loop2", "formula", L, config={"expression": "loop1 + 1", "result": "number"}),
    ))
    assert compile_expression("double + 1", ent, {}).evaluate({"a": 5}) == Decimal(11)
    with pytest.raises(ExpressionError, match="refers to itself"):
        compile_expression("loop1", ent, {})


# ---- SQL gives the same answers as Python -------------------------------------------------------------
SQL_SAME = [
    "count * 2 + 1", "price * count", "ratio / 4", "count / 3", "count % 3", "-price", "price - ratio",
    "count > 3", "title = 'alpha'", "title != 'alpha'", "day < DATE(2024, 3, 1)", "active", "NOT active",
    "active AND count > 1", "active OR count > 100", "IF(count > 3, 'many', 'few')", "IF(active, price)",
    "CASE(count > 8, 'a', count > 3, 'b', 'c')", "title & '-' & color", "CONCAT(title, note)", "LEN(title)",
    "UPPER(title)", "LOWER(title)", "TRIM(note)", "LEFT(title, 3)", "RIGHT(title, 2)", "RIGHT(title, 50)", "LEFT(title, -1)",
    "CONTAINS(title, 'ph')", "ISBLANK(note)", "ISBLANK(count)", "ROUND(ratio, 1)", "ROUND(price / 3, 2)", "ABS(ratio)",
    "MIN(count, 5)", "MAX(count, 5, ratio)", "YEAR(day)", "MONTH(day)", "DAY(day)", "DAYS_BETWEEN(day, TODAY())",
    "ADD_DAYS(day, 10)", "ADD_DAYS(day, -40) < day", "day = TODAY()", "at < NOW()", "color = 'red'", "category.name",
    "category.name & ':' & title", "IF(ISBLANK(category), 'none', category.name)",
    "'O''Brien'", "\"'; DROP TABLE lab_sample; --\"", "title = \"x' OR '1'='1\"",
    "id * 10", "created_at <= NOW()", "IF(updated_at >= created_at, 'ok', 'bad')",
]
SQL_SAME = [s for s in SQL_SAME if s != "'O''Brien'"] + ["'O\\'Brien'"]
ROWS = [
    {"title": "alpha", "note": "  pad  ", "count": 5, "ratio": "1.250", "price": "10.00", "active": True, "day": "2024-01-31",
     "color": "red", "at": "2024-05-01T10:00:00+00:00"},
    {"title": "beta", "note": None, "count": 9, "ratio": "-2.500", "price": "0.10", "active": False, "day": "2024-02-29", "color": "blue"},
    {"title": "gamma", "note": "", "count": 0, "ratio": None, "price": None, "active": None, "day": None, "color": None},
    {"title": "delta", "note": "x", "count": None, "ratio": "3.000", "price": "99999.99", "active": True, "day": "2023-12-31"},
]


@pytest.fixture(scope="module")
def lab(databases, tmp_path_factory):
    s = fresh_services(databases, tmp_path_factory)
    publish(s, lab_documents())
    cat = s.records.create("lab.category", {"name": "Fruit"}, SYSTEM)
    for i, row in enumerate(ROWS):
        s.records.create("lab.sample", {**row, "category": cat if i % 2 == 0 else None}, SYSTEM)
    yield s
    s.engine.dispose()


def _same(a, b) -> bool:
    if isinstance(a, (Decimal, int, float)) and isinstance(b, (Decimal, int, float)) and not isinstance(a, bool):
        return abs(Decimal(str(a)) - Decimal(str(b))) < Decimal("0.000001")
    return a == b


@pytest.mark.parametrize("source", SQL_SAME)
def test_sql_equals_python(lab, source):
    catalog = lab.store.catalog()
    entity = catalog.entity("lab.sample")
    tables = lab.records.table_cache.tables(catalog)
    table = tables["lab.sample"]
    compiled = compile_expression(source, entity, catalog)
    now = _now(None)
    expr = compiled.to_sql(table, tables=tables, now=now).label("v")
    cat_table = tables["lab.category"]
    with lab.engine.connect() as conn:
        rows = conn.execute(select(table, expr, cat_table.c.name.label("cat_name")).outerjoin(cat_table, cat_table.c.id == table.c.category)
                            .order_by(table.c.id)).mappings().all()
    assert len(rows) == len(ROWS)
    for r in rows:
        record = dict(r)
        record["category.name"] = r["cat_name"]
        expected = compiled.evaluate(record, now=now)
        assert _same(r["v"], expected), (source, dict(r), r["v"], expected)


def test_dialect_specific_sql_is_cached_and_never_reuses_another_statements_values(lab):
    """Functions spelled per dialect (ROUND, CONTAINS, ADD_DAYS) stay in SQLAlchemy's compiled cache: the second
    statement of the same shape is a cache hit, and each statement still gets its own literals."""
    from sqlalchemy import event
    from sqlalchemy.engine.interfaces import CacheStats

    catalog = lab.store.catalog()
    entity = catalog.entity("lab.sample")
    tables = lab.records.table_cache.tables(catalog)
    table = tables["lab.sample"]
    hits: list[bool] = []
    me = threading.get_ident()

    def note(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and threading.get_ident() == me:  # not SQLite's BEGIN, nor the audit sealer's
            hits.append(context.cache_hit == CacheStats.CACHE_HIT)

    def run(source):
        expr = compile_expression(source, entity, catalog).to_sql(table, tables=tables, now=_now(None)).label("v")
        with lab.engine.connect() as conn:
            return conn.execute(select(expr).select_from(table).where(table.c.title == "alpha")).scalar_one()

    event.listen(lab.engine, "before_cursor_execute", note)
    try:
        results = [run(s) for s in ("ROUND(ratio, 1) + 0", "ROUND(ratio, 2) + 0", "CONTAINS(title, 'ph')", "CONTAINS(title, 'zz')",
                                    "ADD_DAYS(day, 1)", "ADD_DAYS(day, 30)")]
    finally:
        event.remove(lab.engine, "before_cursor_execute", note)
    assert [_same(results[0], Decimal("1.3")), _same(results[1], Decimal("1.25"))] == [True, True]
    assert [bool(results[2]), bool(results[3])] == [True, False]
    assert [str(results[4])[:10], str(results[5])[:10]] == ["2024-02-01", "2024-03-01"]
    assert hits[1::2] == [True, True, True]  # each second statement of a shape came from the cache


def test_strings_are_bound_parameters_never_sql(lab):
    catalog = lab.store.catalog()
    entity = catalog.entity("lab.sample")
    table = lab.records.table_cache.tables(catalog)["lab.sample"]
    hostile = "x'); DROP TABLE lab_sample; --"
    compiled = compile_expression('title & "x\'); DROP TABLE lab_sample; --"', entity, catalog)
    sql = compiled.to_sql(table)
    assert "DROP" not in str(sql.compile(lab.engine))
    with lab.engine.connect() as conn:
        values = conn.execute(select(sql).select_from(table).order_by(table.c.id)).scalars().all()
    assert values[0] == "alpha" + hostile
    assert "lab_sample" in inspect(lab.engine).get_table_names()


def test_python_only_functions_raise_not_sql_compilable(lab):
    catalog = lab.store.catalog()
    entity = catalog.entity("lab.sample")
    table = lab.records.table_cache.tables(catalog)["lab.sample"]
    for src in ("ADD_MONTHS(day, 1)", "YEAR(at)", "CONCAT(title, count)", "ROUND(price, count)", "ratio % 2", "DATE(count, 1, 1)"):
        c = compile_expression(src, entity, catalog)
        assert not c.sql_compilable
        with pytest.raises(NotSqlCompilable):
            c.to_sql(table)
    assert compile_expression("category.name", entity, catalog).sql_compilable
    with pytest.raises(NotSqlCompilable):
        compile_expression("category.name", entity, catalog).to_sql(table)
