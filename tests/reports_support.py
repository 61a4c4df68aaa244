"""A small sales lab for the report tests: region ← store ← sale, with dates and date-times that cross
local midnight, and the expected aggregates computed in plain Python from the same seed list."""
from __future__ import annotations

import datetime as dt
import decimal
from zoneinfo import ZoneInfo

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.meta.compile import RawDocument

from core_support import L, publish

TZ = ZoneInfo("Asia/Shanghai")
APP = {"id": "shop", "version": "1.0.0", "title": L("门店", "Shop")}
REGION = {"id": "ent_shop_region", "name": "region", "label": L("大区", "Region"), "title_field": "name",
          "fields": [{"id": "fld_rg_name", "name": "name", "type": "text", "label": L("名称", "Name"), "required": True, "max_length": 40}]}
STORE = {"id": "ent_shop_store", "name": "store", "label": L("门店", "Store"), "title_field": "name",
         "fields": [{"id": "fld_st_name", "name": "name", "type": "text", "label": L("名称", "Name"), "required": True, "max_length": 40},
                    {"id": "fld_st_region", "name": "region", "type": "link", "label": L("大区", "Region"), "target": "shop.region"},
                    {"id": "fld_st_secret", "name": "secret", "type": "text", "label": L("内部代码", "Secret"), "max_length": 40}]}
SALE = {"id": "ent_shop_sale", "name": "sale", "label": L("销售", "Sale"), "title_field": "ref",
        "fields": [{"id": "fld_sa_ref", "name": "ref", "type": "text", "label": L("单号", "Ref"), "max_length": 40},
                   {"id": "fld_sa_store", "name": "store", "type": "link", "label": L("门店", "Store"), "target": "shop.store"},
                   {"id": "fld_sa_amount", "name": "amount", "type": "money", "label": L("金额", "Amount")},
                   {"id": "fld_sa_qty", "name": "qty", "type": "integer", "label": L("数量", "Qty")},
                   {"id": "fld_sa_day", "name": "day", "type": "date", "label": L("日期", "Day")},
                   {"id": "fld_sa_at", "name": "at", "type": "datetime", "label": L("时间", "At")},
                   {"id": "fld_sa_channel", "name": "channel", "type": "single_select", "label": L("渠道", "Channel"),
                    "options": [{"value": "web", "label": L("线上", "Web")}, {"value": "shop", "label": L("门店", "Shop")}]},
                   {"id": "fld_sa_note", "name": "note", "type": "text", "label": L("备注", "Note"), "max_length": 200}]}

REGIONS = ["华东", "华北"]
STORES = [("上海店", 0), ("杭州店", 0), ("北京店", 1), ("无区店", None)]


def documents(extra=()) -> list[RawDocument]:
    docs = [RawDocument("app", "shop", dict(APP), "shop/app.json")]
    docs += [RawDocument("entity", "shop", e, f"shop/entities/{e['name']}.json") for e in (REGION, STORE, SALE)]
    return docs + list(extra)


def sale_rows(n: int = 48) -> list[dict]:
    """Deterministic sales: dates over 14 months; date-times near local midnight so UTC and local buckets differ."""
    rows = []
    base = dt.date(2025, 1, 1)
    for i in range(n):
        day = base + dt.timedelta(days=(i * 37) % 420)
        # 16:30 UTC is 00:30 the next day in Shanghai: local bucket ≠ UTC bucket at month/year ends.
        at = dt.datetime.combine(day, dt.time(16, 30), dt.timezone.utc) if i % 3 == 0 else dt.datetime.combine(day, dt.time(3, 15), dt.timezone.utc)
        rows.append({"ref": f"S{i:03d}", "store": i % 5, "amount": decimal.Decimal(f"{(i * 17) % 500}.{i % 100:02d}"),
                     "qty": (i * 7) % 11 if i % 9 else None, "day": day, "at": at, "channel": "web" if i % 4 else ("shop" if i % 8 else None)})
    return rows


def seed(services, n: int = 48):
    """Publish the shop app and create its records; returns (store ids by index, region ids, seeded sales with ids)."""
    publish(services, documents())
    regions = [services.records.create("shop.region", {"name": r}, SYSTEM) for r in REGIONS]
    stores = [services.records.create("shop.store", {"name": s, "region": regions[r] if r is not None else None, "secret": f"x{s}"}, SYSTEM)
              for s, r in STORES]
    sales = []
    for r in sale_rows(n):
        store_idx = r["store"]
        body = {"ref": r["ref"], "store": stores[store_idx] if store_idx < len(stores) else None, "amount": str(r["amount"]),
                "qty": r["qty"], "day": r["day"].isoformat(), "at": r["at"].isoformat(), "channel": r["channel"]}
        r["id"] = services.records.create("shop.sale", body, SYSTEM)
        r["store_id"] = body["store"]
        r["region_name"] = REGIONS[STORES[store_idx][1]] if store_idx < len(stores) and STORES[store_idx][1] is not None else None
        r["local_day"] = r["at"].astimezone(TZ).date()
        sales.append(r)
    return stores, regions, sales
