"""The report aggregation (QueryService.aggregate) against values computed independently in Python."""
from __future__ import annotations

import collections
import decimal

import pytest

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import BadQuery
from crmkit.runtime.query.aggregate import GroupSpec, MeasureSpec, Period
from crmkit.runtime.reports.buckets import bucket_of, bucket_range

from core_support import fresh_services
from reports_support import seed


@pytest.fixture(scope="module")
def shop(databases, tmp_path_factory):
    services = fresh_services(databases, tmp_path_factory)
    stores, regions, sales = seed(services)
    yield services, stores, regions, sales
    services.engine.dispose()


def agg(services, groups, measures, **kw):
    return services.queries.aggregate("shop.sale", SYSTEM, groups=groups, measures=measures, **kw)


def as_map(result, measure):
    return {r["keys"] if len(r["keys"]) > 1 else r["keys"][0]: r["values"][measure] for r in result.rows}


@pytest.mark.parametrize("bucket", ["day", "week", "month", "quarter", "year"])
def test_date_buckets_match_python(shop, bucket):
    services, _, _, sales = shop
    res = agg(services, [GroupSpec("day", bucket)], [MeasureSpec("n", "count"), MeasureSpec("amt", "sum", "amount")])
    counts = collections.Counter(bucket_of(bucket, s["day"]) for s in sales)
    sums = collections.defaultdict(decimal.Decimal)
    for s in sales:
        sums[bucket_of(bucket, s["day"])] += s["amount"]
    assert as_map(res, "n") == dict(counts)
    assert {k: decimal.Decimal(v).quantize(decimal.Decimal("0.01")) for k, v in as_map(res, "amt").items()} == dict(sums)
    keys = [r["keys"][0] for r in res.rows]
    assert keys == sorted(keys)  # chronological
    for k in keys:  # every key maps back to the range that holds its dates
        lo, hi = bucket_range(bucket, k)
        assert all(lo <= s["day"] < hi for s in sales if bucket_of(bucket, s["day"]) == k)


@pytest.mark.parametrize("bucket", ["day", "month", "year"])
def test_datetime_buckets_use_the_configured_timezone(shop, bucket):
    services, _, _, sales = shop
    res = agg(services, [GroupSpec("at", bucket)], [MeasureSpec("n", "count")])
    expected = collections.Counter(bucket_of(bucket, s["local_day"]) for s in sales)
    utc = collections.Counter(bucket_of(bucket, s["at"].date()) for s in sales)
    assert as_map(res, "n") == dict(expected)
    if bucket == "day":
        assert expected != utc  # the seed really crosses local midnight


def test_every_measure(shop):
    services, _, _, sales = shop
    res = agg(services, [GroupSpec("channel")], [
        MeasureSpec("n", "count"), MeasureSpec("nq", "count", "qty"), MeasureSpec("stores", "count_distinct", "store"),
        MeasureSpec("amt", "sum", "amount"), MeasureSpec("avg", "avg", "amount"),
        MeasureSpec("lo", "min", "qty"), MeasureSpec("hi", "max", "qty"), MeasureSpec("first", "min", "day")])
    by = collections.defaultdict(list)
    for s in sales:
        by[s["channel"]].append(s)
    got = {r["keys"][0]: r["values"] for r in res.rows}
    assert set(got) == set(by)
    for ch, rows in by.items():
        v = got[ch]
        qtys = [r["qty"] for r in rows if r["qty"] is not None]
        assert v["n"] == len(rows)
        assert v["nq"] == len(qtys)
        assert v["stores"] == len({r["store_id"] for r in rows if r["store_id"] is not None})
        total = sum(r["amount"] for r in rows)
        assert decimal.Decimal(v["amt"]).quantize(decimal.Decimal("0.01")) == total
        assert abs(decimal.Decimal(v["avg"]) - total / len(rows)) < decimal.Decimal("0.001")
        assert v["lo"] == (min(qtys) if qtys else None) and v["hi"] == (max(qtys) if qtys else None)
        assert str(v["first"])[:10] == min(r["day"] for r in rows).isoformat()
    assert res.totals["n"] == len(sales)
    assert decimal.Decimal(res.totals["amt"]).quantize(decimal.Decimal("0.01")) == sum(s["amount"] for s in sales)
    assert res.totals["stores"] is None  # a distinct count does not add up across groups


def test_join_path_and_multi_level_grouping(shop):
    services, _, _, sales = shop
    res = agg(services, [GroupSpec("store.region.name"), GroupSpec("channel")], [MeasureSpec("n", "count")])
    expected = collections.Counter((s["region_name"], s["channel"]) for s in sales)
    assert as_map(res, "n") == dict(expected)
    assert sum(r["values"]["n"] for r in res.rows) == len(sales)  # rows without a store or region still count (LEFT JOIN)


def test_sort_top_n_keeps_the_grand_total(shop):
    services, _, _, sales = shop
    res = agg(services, [GroupSpec("day", "month")], [MeasureSpec("amt", "sum", "amount")], sort=[("amt", True)], limit=3)
    sums = collections.defaultdict(decimal.Decimal)
    for s in sales:
        sums[bucket_of("month", s["day"])] += s["amount"]
    top = sorted(sums.values(), reverse=True)[:3]
    assert [decimal.Decimal(r["values"]["amt"]).quantize(decimal.Decimal("0.01")) for r in res.rows] == top
    assert decimal.Decimal(res.totals["amt"]).quantize(decimal.Decimal("0.01")) == sum(sums.values())
    assert res.truncated


def test_keys_equal_is_the_drill_down(shop):
    services, _, _, sales = shop
    month = bucket_of("month", sales[5]["day"])
    res = agg(services, [GroupSpec("store")], [MeasureSpec("n", "count")], keys_equal=[(GroupSpec("day", "month"), month)])
    expected = collections.Counter(s["store_id"] for s in sales if bucket_of("month", s["day"]) == month)
    assert as_map(res, "n") == dict(expected)
    none = agg(services, [GroupSpec("channel")], [MeasureSpec("n", "count")], keys_equal=[(GroupSpec("store.region.name"), None)])
    assert sum(r["values"]["n"] for r in none.rows) == sum(1 for s in sales if s["region_name"] is None)


def test_periods_are_conditional_aggregates(shop):
    services, _, _, sales = shop
    cur = {"and": [{"field": "day", "op": "gte", "value": "2025-03-01"}, {"field": "day", "op": "lt", "value": "2025-06-01"}]}
    prev = {"and": [{"field": "day", "op": "gte", "value": "2024-12-01"}, {"field": "day", "op": "lt", "value": "2025-03-01"}]}
    res = agg(services, [], [MeasureSpec("n", "count")], periods=[Period("current", cur), Period("previous", prev)])
    import datetime as dt

    in_cur = sum(1 for s in sales if dt.date(2025, 3, 1) <= s["day"] < dt.date(2025, 6, 1))
    in_prev = sum(1 for s in sales if dt.date(2024, 12, 1) <= s["day"] < dt.date(2025, 3, 1))
    assert res.totals == {"n@current": in_cur, "n@previous": in_prev}


@pytest.mark.parametrize("groups, measures, message", [
    ([GroupSpec("nope")], [MeasureSpec("n", "count")], "nope"),
    ([GroupSpec("channel", "month")], [MeasureSpec("n", "count")], "bucket"),
    ([GroupSpec("channel")], [MeasureSpec("n", "sum", "channel")], "number"),
    ([GroupSpec("ref.name")], [MeasureSpec("n", "count")], "link"),
    ([GroupSpec("channel")], [MeasureSpec("n", "median", "qty")], "median"),
])
def test_bad_requests_are_refused_clearly(shop, groups, measures, message):
    services = shop[0]
    with pytest.raises(BadQuery) as exc:
        agg(services, groups, measures)
    assert message in str(exc.value)
