"""QueryService, the one read path: filter trees per type family, limits, bound values, search,
keyset pagination in both directions, capped counts, and related labels loaded in batches."""
from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, inspect

from core_support import fresh_services, lab_documents, publish
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import BadQuery
from crmkit.runtime.query import service as query_service
from crmkit.runtime.query.cursor import encode_cursor

TZ = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime.now(dt.timezone.utc)
TODAY = NOW.astimezone(TZ).date()

# title, note, count, ratio, active, day (offset from today), color, colors, tags, email, category, at (hours ago)
ROWS = [
    ("苹果 Apple", "新鲜水果", 5, "1.5", True, 0, "red", ["red"], ["fruit", "vip"], "apple@x.com", "A", 1),
    ("香蕉 Banana", None, 5, None, False, -3, "green", ["green", "blue"], ["fruit"], None, "A", 30),
    ("Cherry 樱桃", "进口水果", 10, "2.25", None, -10, "red", [], [], "cherry@y.org", None, 24 * 9),
    ("100% juice", "has 100% juice", 0, "0", True, -40, None, ["blue"], ["drink"], None, "B", 24 * 40),
    ("under_score", "a_b", None, "-1", False, None, "blue", ["red", "blue"], ["vip"], "u@x.com", "B", None),
    ("Apricot 杏", "干果", 7, "1.5", True, 2, "green", ["red", "green"], ["fruit", "dry"], None, None, 2),
]


@pytest.fixture(scope="module")
def lab(databases, tmp_path_factory):
    s = fresh_services(databases, tmp_path_factory)
    s.queries.clock = lambda: NOW  # the expectations are computed from NOW: keep them true across midnight in China
    publish(s, lab_documents())
    cats = {"A": s.records.create("lab.category", {"name": "甲类"}, SYSTEM), "B": s.records.create("lab.category", {"name": "乙类"}, SYSTEM)}
    data = []
    for n, (title, note, count, ratio, active, day, color, colors, tags, email, cat, hours) in enumerate(ROWS):
        rec = {"title": title, "note": note, "count": count, "ratio": ratio, "active": active,
               "day": None if day is None else TODAY + dt.timedelta(days=day), "color": color, "colors": colors, "tags": tags,
               "email": email, "category": cats.get(cat), "at": None if hours is None else NOW - dt.timedelta(hours=hours)}
        rid = s.records.create("lab.sample", {k: (v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v) for k, v in rec.items()}, SYSTEM)
        data.append({**rec, "id": rid, "n": n, "cat": cat, "ratio": None if ratio is None else Decimal(ratio), "colors": colors or [], "tags": tags or []})
    yield {"s": s, "data": data, "cats": cats}
    s.engine.dispose()


def titles(lab, **kw) -> set[str]:
    return {r["title"] for r in lab["s"].queries.list("lab.sample", SYSTEM, limit=200, **kw).rows}


def expect(lab, pred) -> set[str]:
    return {r["title"] for r in lab["data"] if pred(r)}


def cond(field, op, value=None):
    return {"field": field, "op": op, "value": value}


def in_days(d, start, end):
    return d is not None and start <= d <= end


FIRST_OF_MONTH = TODAY.replace(day=1)
CASES = [
    # text family
    ("text_eq", cond("title", "eq", "苹果 Apple"), lambda r: r["title"] == "苹果 Apple"),
    ("text_ne_keeps_empty", cond("email", "ne", "apple@x.com"), lambda r: r["email"] != "apple@x.com"),
    ("text_eq_normalised_like_input", cond("email", "eq", " APPLE@X.COM "), lambda r: r["email"] == "apple@x.com"),
    ("text_eq_value_no_record_can_hold", cond("title", "eq", "x" * 30), lambda r: False),
    ("text_contains_cjk", cond("note", "contains", "水果"), lambda r: r["note"] and "水果" in r["note"]),
    ("text_contains_any_case", cond("title", "contains", "APPLE"), lambda r: "apple" in r["title"].lower()),
    ("text_contains_percent_literally", cond("title", "contains", "%"), lambda r: "%" in r["title"]),
    ("text_contains_underscore_literally", cond("title", "contains", "_"), lambda r: "_" in r["title"]),
    ("text_not_contains_keeps_empty", cond("note", "not_contains", "水果"), lambda r: not (r["note"] and "水果" in r["note"])),
    ("text_starts_with", cond("title", "starts_with", "Ap"), lambda r: r["title"].startswith("Ap")),
    ("text_in", cond("title", "in", ["香蕉 Banana", "under_score", "nope"]), lambda r: r["title"] in ("香蕉 Banana", "under_score")),
    ("text_not_in", cond("email", "not_in", ["apple@x.com"]), lambda r: r["email"] != "apple@x.com"),
    ("text_is_empty", cond("note", "is_empty"), lambda r: r["note"] is None),
    ("text_is_not_empty", cond("email", "is_not_empty"), lambda r: r["email"] is not None),
    # number family
    ("int_eq", cond("count", "eq", 5), lambda r: r["count"] == 5),
    ("int_eq_from_text", cond("count", "eq", "5"), lambda r: r["count"] == 5),
    ("int_ne_keeps_empty", cond("count", "ne", 5), lambda r: r["count"] != 5),
    ("int_lt", cond("count", "lt", 5), lambda r: r["count"] is not None and r["count"] < 5),
    ("int_lte", cond("count", "lte", 5), lambda r: r["count"] is not None and r["count"] <= 5),
    ("int_gt", cond("count", "gt", 5), lambda r: r["count"] is not None and r["count"] > 5),
    ("int_gte", cond("count", "gte", 7), lambda r: r["count"] is not None and r["count"] >= 7),
    ("int_between", cond("count", "between", [1, 7]), lambda r: r["count"] is not None and 1 <= r["count"] <= 7),
    ("int_between_open_end", cond("count", "between", [6, None]), lambda r: r["count"] is not None and r["count"] >= 6),
    ("int_in", cond("count", "in", [0, 10]), lambda r: r["count"] in (0, 10)),
    ("int_not_in_keeps_empty", cond("count", "not_in", [5]), lambda r: r["count"] != 5),
    ("int_is_empty", cond("count", "is_empty"), lambda r: r["count"] is None),
    ("decimal_gt", cond("ratio", "gt", "1.25"), lambda r: r["ratio"] is not None and r["ratio"] > Decimal("1.25")),
    ("decimal_eq", cond("ratio", "eq", 1.5), lambda r: r["ratio"] == Decimal("1.5")),
    ("decimal_between", cond("ratio", "between", ["-1", "0"]), lambda r: r["ratio"] is not None and -1 <= r["ratio"] <= 0),
    # boolean
    ("bool_eq_true", cond("active", "eq", True), lambda r: r["active"] is True),
    ("bool_eq_no", cond("active", "eq", "否"), lambda r: r["active"] is False),
    ("bool_ne_true", cond("active", "ne", True), lambda r: r["active"] is not True),
    ("bool_is_empty", cond("active", "is_empty"), lambda r: r["active"] is None),
    # dates
    ("date_eq", cond("day", "eq", TODAY.isoformat()), lambda r: r["day"] == TODAY),
    ("date_lt", cond("day", "lt", TODAY.isoformat()), lambda r: r["day"] is not None and r["day"] < TODAY),
    ("date_between_chinese", cond("day", "between", [f"{(TODAY - dt.timedelta(days=10)):%Y年%m月%d日}", TODAY.isoformat()]),
     lambda r: in_days(r["day"], TODAY - dt.timedelta(days=10), TODAY)),
    ("date_today", cond("day", "in_range", "today"), lambda r: r["day"] == TODAY),
    ("date_last_7_days", cond("day", "in_range", "last_7_days"), lambda r: in_days(r["day"], TODAY - dt.timedelta(days=6), TODAY)),
    ("date_last_30_days", cond("day", "in_range", "last_30_days"), lambda r: in_days(r["day"], TODAY - dt.timedelta(days=29), TODAY)),
    ("date_next_7_days", cond("day", "in_range", "next_7_days"), lambda r: in_days(r["day"], TODAY, TODAY + dt.timedelta(days=6))),
    ("date_this_month", cond("day", "in_range", "this_month"), lambda r: r["day"] is not None and (r["day"].year, r["day"].month) == (TODAY.year, TODAY.month)),
    ("date_last_month", cond("day", "in_range", "last_month"),
     lambda r: r["day"] is not None and (r["day"].year, r["day"].month) == ((FIRST_OF_MONTH - dt.timedelta(days=1)).year, (FIRST_OF_MONTH - dt.timedelta(days=1)).month)),
    ("date_this_year", cond("day", "in_range", "this_year"), lambda r: r["day"] is not None and r["day"].year == TODAY.year),
    ("date_is_empty", cond("day", "is_empty"), lambda r: r["day"] is None),
    ("datetime_today", cond("at", "in_range", "today"), lambda r: r["at"] is not None and r["at"].astimezone(TZ).date() == TODAY),
    ("datetime_last_7_days", cond("at", "in_range", "last_7_days"),
     lambda r: r["at"] is not None and TODAY - dt.timedelta(days=6) <= r["at"].astimezone(TZ).date() <= TODAY),
    ("datetime_gte", cond("at", "gte", (NOW - dt.timedelta(hours=48)).isoformat()), lambda r: r["at"] is not None and r["at"] >= NOW - dt.timedelta(hours=48)),
    ("datetime_is_not_empty", cond("at", "is_not_empty"), lambda r: r["at"] is not None),
    ("created_at_in_range", cond("created_at", "in_range", "today"), lambda r: True),
    # choices
    ("select_eq", cond("color", "eq", "red"), lambda r: r["color"] == "red"),
    ("select_eq_by_label", cond("color", "eq", "绿色"), lambda r: r["color"] == "green"),
    ("select_in", cond("color", "in", ["red", "blue"]), lambda r: r["color"] in ("red", "blue")),
    ("select_not_in_keeps_empty", cond("color", "not_in", ["red"]), lambda r: r["color"] != "red"),
    ("select_is_empty", cond("color", "is_empty"), lambda r: r["color"] is None),
    ("multi_contains_any", cond("colors", "contains_any", ["green", "blue"]), lambda r: {"green", "blue"} & set(r["colors"])),
    ("multi_contains_all", cond("colors", "contains_all", ["red", "green"]), lambda r: {"red", "green"} <= set(r["colors"])),
    ("multi_is_empty", cond("colors", "is_empty"), lambda r: not r["colors"]),
    ("multi_is_not_empty", cond("colors", "is_not_empty"), lambda r: bool(r["colors"])),
    ("tags_contains_any", cond("tags", "contains_any", "vip, drink"), lambda r: {"vip", "drink"} & set(r["tags"])),
    ("tags_contains_all", cond("tags", "contains_all", ["fruit", "vip"]), lambda r: {"fruit", "vip"} <= set(r["tags"])),
    ("tags_is_empty", cond("tags", "is_empty"), lambda r: not r["tags"]),
    # links and system columns
    ("link_eq", cond("category", "eq", "@A"), lambda r: r["cat"] == "A"),
    ("link_ne_keeps_empty", cond("category", "ne", "@A"), lambda r: r["cat"] != "A"),
    ("link_in", cond("category", "in", ["@A", "@B"]), lambda r: r["cat"] is not None),
    ("link_is_empty", cond("category", "is_empty"), lambda r: r["cat"] is None),
    ("id_gt", cond("id", "gt", "@first"), lambda r: r["n"] > 0),
]


def resolve(lab, value):
    if isinstance(value, list):
        return [resolve(lab, v) for v in value]
    if value == "@first":
        return lab["data"][0]["id"]
    if isinstance(value, str) and value.startswith("@"):
        return lab["cats"][value[1:]]
    return value


@pytest.mark.parametrize("tree, pred", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_operator(lab, tree, pred):
    tree = {**tree, "value": resolve(lab, tree["value"])}
    assert titles(lab, filter=tree) == expect(lab, pred)


def test_relative_dates_follow_the_query_services_clock(lab):
    """"Today" is the clock's day in the configured timezone, so a fixed clock gives the same answer on both sides of midnight."""
    queries = lab["s"].queries
    try:
        queries.clock = lambda: NOW + dt.timedelta(days=2)
        assert titles(lab, filter=cond("day", "in_range", "today")) == {"Apricot 杏"}  # the row dated two days ahead
    finally:
        queries.clock = lambda: NOW
    assert titles(lab, filter=cond("day", "in_range", "today")) == {"苹果 Apple"}


def test_and_or_nesting(lab):
    tree = {"or": [
        {"and": [cond("count", "gte", 5), cond("color", "eq", "red")]},
        {"and": [cond("active", "eq", False), {"or": [cond("note", "is_empty"), cond("note", "contains", "_")]}]},
    ]}
    wanted = expect(lab, lambda r: (r["count"] is not None and r["count"] >= 5 and r["color"] == "red")
                    or (r["active"] is False and (r["note"] is None or "_" in r["note"])))
    assert titles(lab, filter=tree) == wanted == {"苹果 Apple", "Cherry 樱桃", "香蕉 Banana", "under_score"}
    assert titles(lab, filter={"and": []}) == expect(lab, lambda r: True)


def nested(depth):
    tree = cond("count", "gt", 0)
    for _ in range(depth):
        tree = {"and": [tree]}
    return tree


BAD_FILTERS = [
    ("too_deep", nested(6), "nested more than 5 levels"),
    ("too_many_conditions", {"or": [cond("count", "eq", i) for i in range(51)]}, "at most 50 conditions"),
    ("unknown_field", cond("nope", "eq", 1), "Cannot filter on 'nope'"),
    ("child_table_field", cond("lines", "is_empty"), "Cannot filter on 'lines'"),
    ("field_name_injection", cond("title\" OR 1=1 --", "eq", 1), "Cannot filter on"),
    ("unknown_operator", cond("title", "like", "%a%"), "Operator 'like' is not available for field 'title'"),
    ("operator_of_other_family", cond("count", "contains", "1"), "Operator 'contains' is not available for field 'count'"),
    ("list_op_on_select", cond("color", "contains_any", ["red"]), "Operator 'contains_any' is not available"),
    ("bad_number", cond("count", "eq", "abc"), "Filter value 'abc' is not valid for field 'count'"),
    ("bad_date", cond("day", "eq", "someday"), "is not valid for field 'day'"),
    ("bad_option", cond("colors", "contains_any", ["purple"]), "'purple' is not one of the options"),
    ("unknown_period", cond("day", "in_range", "next_century"), "Unknown period 'next_century'"),
    ("between_not_a_pair", cond("count", "between", 5), "expects [low, high]"),
    ("between_no_bounds", cond("count", "between", [None, ""]), "needs at least one bound"),
    ("in_not_a_list", cond("count", "in", 5), "expects a list of values"),
    ("contains_empty", cond("title", "contains", ""), "needs a non-empty text value"),
    ("not_an_object", ["title", "eq", 1], "A filter is an object"),
    ("and_with_extra_keys", {"and": [], "or": []}, "takes a list of conditions and nothing else"),
    ("condition_extra_keys", {"field": "title", "op": "eq", "value": 1, "raw": "1=1"}, "Unknown keys in filter condition: raw"),
    ("missing_op", {"field": "title"}, "needs \"op\""),
    ("nul_character", cond("title", "eq", "a\x00b"), "NUL character"),
    ("nul_in_list", cond("tags", "contains_any", ["ok", "\x00"]), "NUL character"),
    ("link_id_beyond_bigint", cond("category", "eq", 10**30), "Not a valid record id"),
    ("id_beyond_bigint", cond("id", "in", [1, 2**64]), "Number is too large"),
]


@pytest.mark.parametrize("tree, words", [b[1:] for b in BAD_FILTERS], ids=[b[0] for b in BAD_FILTERS])
def test_bad_filter_is_refused_with_a_message(lab, tree, words):
    with pytest.raises(BadQuery) as info:
        lab["s"].queries.list("lab.sample", SYSTEM, filter=tree)
    assert words in info.value.message and info.value.status == 400


def test_limits_of_depth_and_conditions_are_inclusive(lab):
    assert titles(lab, filter=nested(5)) == expect(lab, lambda r: r["count"] is not None and r["count"] > 0)
    assert titles(lab, filter={"or": [cond("count", "eq", i) for i in range(50)]}) == expect(lab, lambda r: r["count"] is not None)


INJECTION = "x'; DROP TABLE lab_sample; --"


@pytest.mark.parametrize("tree", [
    cond("title", "eq", INJECTION), cond("title", "contains", INJECTION), cond("note", "starts_with", INJECTION),
    cond("title", "in", [INJECTION, "') OR ('1'='1"]), cond("email", "eq", "' OR '1'='1"),
], ids=["eq", "contains", "starts_with", "in", "or_1_eq_1"])
def test_sql_metacharacters_in_values_are_bound(lab, tree):
    assert titles(lab, filter=tree) == set()
    assert titles(lab, search=INJECTION) == set()
    assert "lab_sample" in inspect(lab["s"].engine).get_table_names()
    assert len(titles(lab)) == len(ROWS)


@pytest.mark.parametrize("sort", [["title; DROP TABLE lab_sample"], ["-"], ["lines"], ["note"], ["nope"], [5], "count,title\"--"])
def test_bad_sort_keys_are_refused(lab, sort):
    with pytest.raises(BadQuery):
        lab["s"].queries.list("lab.sample", SYSTEM, sort=sort)
    assert "lab_sample" in inspect(lab["s"].engine).get_table_names()


@pytest.mark.parametrize("kw, words", [
    ({"limit": 0}, "limit must be between 1 and 200"), ({"limit": 201}, "limit must be between 1 and 200"),
    ({"count": "all"}, "count must be"), ({"fields": ["title", "password"]}, "Unknown or unreadable fields: password"),
    ({"search": "x" * 101}, "at most 100 characters"),
    ({"search": "a\x00"}, "NUL character"),
])
def test_bad_list_arguments_are_refused(lab, kw, words):
    with pytest.raises(BadQuery) as info:
        lab["s"].queries.list("lab.sample", SYSTEM, **kw)
    assert words in info.value.message


@pytest.mark.parametrize("search, wanted", [
    ("苹果", {"苹果 Apple"}), ("水果", {"苹果 Apple", "Cherry 樱桃"}), ("apple", {"苹果 Apple"}),
    ("ap 杏", {"Apricot 杏"}), ("100%", {"100% juice"}), ("_", {"under_score"}), ("无此词", set()), ("   ", None),
], ids=["cjk_title", "cjk_note", "ascii_case", "two_terms_and", "percent", "underscore", "no_match", "blank"])
def test_search_over_search_fields(lab, search, wanted):
    if wanted is None:
        wanted = expect(lab, lambda r: True)
    assert titles(lab, search=search) == wanted


def test_search_combines_with_filters_and_options_use_the_same_path(lab):
    assert titles(lab, search="水果", filter=cond("count", "gt", 5)) == {"Cherry 樱桃"}
    options = lab["s"].queries.options("lab.category", SYSTEM, search="甲")
    assert options == [(lab["cats"]["A"], "甲类")]


def test_fields_selects_columns_and_get_returns_labels(lab):
    page = lab["s"].queries.list("lab.sample", SYSTEM, fields=["title", "category"], sort=["title"], limit=200)
    row = next(r for r in page.rows if r["title"] == "苹果 Apple")
    assert "count" not in row and row["_labels"] == {"category": "甲类"}
    assert {"id", "row_version", "created_at"} <= set(row)


# --- keyset pagination ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def many(lab):
    """30 more rows with duplicate counts and missing ratios, so sorts tie and hit NULLs."""
    s = lab["s"]
    for i in range(30):
        s.records.create("lab.sample", {"title": f"分页{i % 7}", "count": i % 4, "ratio": None if i % 3 == 0 else str(i % 5),
                                        "day": None if i % 5 == 0 else (TODAY - dt.timedelta(days=i % 6)).isoformat()}, SYSTEM)
    return len(ROWS) + 30


def walk(s, sort, limit, filter=None):
    pages, cursor = [], None
    while True:
        page = s.queries.list("lab.sample", SYSTEM, sort=sort, limit=limit, cursor=cursor, filter=filter, count="none")
        pages.append(page)
        assert len(pages) < 100, "pagination does not end"
        if not page.next_cursor:
            return pages
        cursor = page.next_cursor


def sort_key(row, sort):
    """The order the database should produce: NULLs sort as the smallest value (first ascending, last
    descending, as SOQL does by default), id breaks ties."""
    key = []
    for s in sort:
        desc, name = s.startswith("-"), s.lstrip("-")
        v = row[name]
        if desc:
            key.append((v is None, -v if isinstance(v, (int, Decimal)) and v is not None else v))
        else:
            key.append((v is not None, v))
    return key


SORTS = [["count"], ["-count"], ["ratio"], ["-ratio"], ["title", "-count"], ["day", "-ratio"], None]


@pytest.mark.parametrize("sort", SORTS, ids=lambda s: ",".join(s) if s else "default")
def test_keyset_pages_forward_and_back_cover_every_row_exactly_once(lab, many, sort):
    s = lab["s"]
    everything = s.queries.list("lab.sample", SYSTEM, sort=sort, limit=200, count="exact")
    assert everything.total == many and len(everything.rows) == many
    pages = walk(s, sort, limit=4)
    forward = [r["id"] for p in pages for r in p.rows]
    assert len(forward) == many and len(set(forward)) == many
    assert forward == [r["id"] for r in everything.rows]  # same order as one big page
    assert all(len(p.rows) == 4 for p in pages[:-1])
    assert pages[0].prev_cursor is None and pages[-1].next_cursor is None
    # backwards from the last page with prev cursors gives the same pages
    back, page = [], pages[-1]
    while page.prev_cursor:
        page = s.queries.list("lab.sample", SYSTEM, sort=sort, limit=4, cursor=page.prev_cursor, count="none")
        back.insert(0, [r["id"] for r in page.rows])
        assert len(back) < 100
    assert back == [[r["id"] for r in p.rows] for p in pages[:-1]]


def test_keyset_order_puts_nulls_first_ascending_and_last_descending(lab, many):
    s = lab["s"]
    for sort in (["ratio"], ["-ratio"], ["count", "ratio"], ["count", "-ratio"]):
        rows = [r for p in walk(s, sort, limit=7) for r in p.rows]
        keys = [sort_key(r, sort) for r in rows]
        assert keys == sorted(keys), sort
        ratios = [r["ratio"] for r in rows] if sort[0].lstrip("-") == "ratio" else None
        if ratios:
            nulls = ratios.count(None)
            assert nulls and set(ratios[:nulls] if sort[0] == "ratio" else ratios[-nulls:]) == {None}


def test_keyset_pagination_with_a_filter(lab, many):
    rows = [r for p in walk(lab["s"], ["-count"], 3, filter=cond("count", "in", [1, 2])) for r in p.rows]
    assert len(rows) == len({r["id"] for r in rows}) == sum(1 for i in range(30) if i % 4 in (1, 2))


@pytest.mark.parametrize("cursor", [
    "not-a-cursor", "eyJzIjoiY291bnQsaWQifQ", encode_cursor("-title,-id", ["a", 1]), encode_cursor("count,id", [1]),
    encode_cursor("count,id", ["many", 1]), encode_cursor("count,id", [1, 2], "sideways"), "!!!",
    encode_cursor("count,id", [1, 10**30]), encode_cursor("count,id", [1, "1; DROP TABLE lab_sample"]),
], ids=["garbage", "missing_values", "other_sort", "too_few_values", "wrong_value_type", "bad_direction", "not_base64",
        "id_beyond_bigint", "sql_in_cursor"])
def test_tampered_cursor_is_refused(lab, cursor):
    with pytest.raises(BadQuery) as info:
        lab["s"].queries.list("lab.sample", SYSTEM, sort=["count"], cursor=cursor)
    assert "cursor" in info.value.message and "first page" in info.value.message


def test_counts_are_capped_unless_exact_is_asked(lab, many, monkeypatch):
    s = lab["s"]
    page = s.queries.list("lab.sample", SYSTEM, limit=5)
    assert (page.total, page.total_exact, page.total_label) == (many, True, str(many))
    monkeypatch.setattr(query_service, "COUNT_CAP", 10)
    capped = s.queries.list("lab.sample", SYSTEM, limit=5)
    assert (capped.total, capped.total_exact, capped.total_label) == (10, False, "10+")
    exact = s.queries.list("lab.sample", SYSTEM, limit=5, count="exact")
    assert (exact.total, exact.total_exact) == (many, True)
    assert s.queries.list("lab.sample", SYSTEM, limit=5, count="none").total is None
    small = s.queries.list("lab.sample", SYSTEM, limit=5, filter=cond("count", "eq", 10))
    assert (small.total, small.total_exact) == (1, True)


# --- related labels load in batches ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def members(databases, tmp_path_factory):
    s = fresh_services(databases, tmp_path_factory, "membership")
    levels = [s.records.create("membership.level", {"name": f"等级{i}", "code": f"L{i}", "level_value": i}, SYSTEM) for i in range(4)]
    for i in range(60):
        s.records.create("membership.member", {"name": f"会员{i}", "mobile": f"139{i:08d}", "joined_on": "2024-01-01", "level": levels[i % 4]}, SYSTEM)
    yield s
    s.engine.dispose()


def count_statements(engine, fn):
    seen = []
    me = threading.get_ident()

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if threading.get_ident() == me:  # not the background audit sealer's
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        result = fn()
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    return result, seen


def test_related_labels_cost_one_query_per_related_table_whatever_the_page_size(members):
    s = members
    s.queries.list("membership.member", SYSTEM, limit=5)  # warm the catalog cache
    counts = {}
    for limit in (5, 20, 50):
        page, statements = count_statements(s.engine, lambda n=limit: s.queries.list("membership.member", SYSTEM, limit=n))
        assert len(page.rows) == limit
        assert all(r["_labels"]["level"] == f"等级{int(r['name'][2:]) % 4}" for r in page.rows)
        selects = [st for st in statements if st.lstrip().upper().startswith("SELECT")]
        counts[limit] = len(selects)
        assert sum("FROM membership_level" in st for st in selects) == 1
    # metadata stamp, the page, the capped count, the level labels — whatever the page size
    assert counts == {5: 4, 20: 4, 50: 4}


def test_pagination_works_when_the_sort_column_is_not_among_the_requested_fields(lab, many):
    s, seen, cursor = lab["s"], [], None
    while True:
        page = s.queries.list("lab.sample", SYSTEM, fields=["title"], sort=["-ratio", "count"], limit=4, cursor=cursor, count="none")
        seen += [r["id"] for r in page.rows]
        assert all("ratio" not in r for r in page.rows)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    everything = s.queries.list("lab.sample", SYSTEM, sort=["-ratio", "count"], limit=200, count="none").rows
    assert seen == [r["id"] for r in everything]


def test_a_cursor_stays_valid_when_input_rules_tighten_after_the_data_was_stored(lab, many):
    """Cursor values come from the column; a stricter pattern or range added later must not break paging."""
    import copy

    from core_support import CATEGORY, SAMPLE, SAMPLE_LINE, lab_documents

    s = lab["s"]
    page = s.queries.list("lab.sample", SYSTEM, sort=["title", "count"], limit=3, count="none")
    strict = copy.deepcopy(SAMPLE)
    for f in strict["fields"]:
        if f["name"] == "title":
            f["pattern"] = "^[0-9]+$"
        if f["name"] == "count":
            f["max"] = 1
    s.store.save(lab_documents(CATEGORY, strict, SAMPLE_LINE))
    try:
        second = s.queries.list("lab.sample", SYSTEM, sort=["title", "count"], limit=3, cursor=page.next_cursor, count="none")
        assert len(second.rows) == 3 and not {r["id"] for r in second.rows} & {r["id"] for r in page.rows}
    finally:
        s.store.save(lab_documents())


def test_link_labels_and_picker_titles_follow_the_readers_language(databases, tmp_path_factory):
    """A link whose target's title is a select shows the option label in the reader's language."""
    from dataclasses import replace

    from core_support import L, LAB_APP, fresh_services, publish
    from crmkit.runtime.meta.compile import RawDocument

    grade = {"id": "ent_lab_grade", "name": "grade", "label": L("等级", "Grade"), "title_field": "tier", "fields": [
        {"id": "fld_grade_tier", "name": "tier", "type": "single_select", "label": L("档位", "Tier"),
         "options": [{"value": "gold", "label": L("金牌", "Gold")}, {"value": "silver", "label": L("银牌", "Silver")}]}]}
    pupil = {"id": "ent_lab_pupil", "name": "pupil", "label": L("学员", "Pupil"), "title_field": "name", "fields": [
        {"id": "fld_pupil_name", "name": "name", "type": "text", "label": L("姓名", "Name")},
        {"id": "fld_pupil_grade", "name": "grade", "type": "link", "label": L("等级", "Grade"), "target": "lab.grade"}]}
    s = fresh_services(databases, tmp_path_factory)
    publish(s, [RawDocument("app", "lab", dict(LAB_APP), "lab/app.json"),
                RawDocument("entity", "lab", grade, "lab/entities/grade.json"), RawDocument("entity", "lab", pupil, "lab/entities/pupil.json")])
    gold = s.records.create("lab.grade", {"tier": "gold"}, SYSTEM)
    pid = s.records.create("lab.pupil", {"name": "小王", "grade": gold}, SYSTEM)
    zh, en = replace(SYSTEM, locale="zh"), replace(SYSTEM, locale="en")
    assert s.queries.get("lab.pupil", pid, zh)["_labels"]["grade"] == "金牌"
    assert s.queries.get("lab.pupil", pid, en)["_labels"]["grade"] == "Gold"
    assert s.queries.list("lab.pupil", en).rows[0]["_labels"]["grade"] == "Gold"
    assert s.queries.options("lab.grade", en) == [(gold, "Gold")]
    assert s.queries.options("lab.grade", zh) == [(gold, "金牌")]
    s.engine.dispose()
