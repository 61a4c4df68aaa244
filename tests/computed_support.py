"""A small "shop" app exercising computed fields and rules: levels, customers, orders with lines."""
from __future__ import annotations

import copy

from crmkit.runtime.meta.compile import RawDocument

L = lambda zh, en=None: {"zh": zh, "en": en or zh}  # noqa: E731

APP = {"id": "shop", "version": "1.0.0", "title": L("商店", "Shop")}
LEVEL = {
    "id": "ent_shop_level", "name": "level", "label": L("等级", "Level"), "title_field": "name",
    "fields": [
        {"id": "fld_lv_name", "name": "name", "type": "text", "label": L("名称", "Name"), "required": True},
        {"id": "fld_lv_discount", "name": "discount", "type": "decimal", "label": L("折扣", "Discount"), "scale": 2},
    ],
}
CUSTOMER = {
    "id": "ent_shop_customer", "name": "customer", "label": L("客户", "Customer"), "title_field": "name",
    "fields": [
        {"id": "fld_cu_name", "name": "name", "type": "text", "label": L("名称", "Name"), "required": True},
        {"id": "fld_cu_level", "name": "level", "type": "link", "label": L("等级", "Level"), "target": "shop.level"},
        {"id": "fld_cu_discount", "name": "level_discount", "type": "lookup", "label": L("等级折扣", "Level discount"),
         "link": "level", "field": "discount"},
        {"id": "fld_cu_orders", "name": "order_count", "type": "rollup", "label": L("订单数", "Orders"),
         "source": "shop.order", "link": "customer", "function": "count"},
        {"id": "fld_cu_paid", "name": "paid_total", "type": "rollup", "label": L("已付金额", "Paid total"),
         "source": "shop.order", "link": "customer", "function": "sum", "field": "amount", "filter": "status = 'paid'", "scale": 2},
        {"id": "fld_cu_max", "name": "largest", "type": "rollup", "label": L("最大订单", "Largest order"),
         "source": "shop.order", "link": "customer", "function": "max", "field": "amount", "scale": 2},
        {"id": "fld_cu_open", "name": "open_count", "type": "rollup", "label": L("待付订单", "Open orders"),
         "source": "shop.order", "link": "customer", "function": "count", "filter": {"field": "status", "op": "eq", "value": "open"}},
    ],
}
ORDER_LINE = {
    "id": "ent_shop_order_line", "name": "order_line", "label": L("明细", "Line"), "title_field": "item",
    "is_child": True, "parent": "shop.order",
    "validations": [{"id": "no_negative", "rule": "price >= 0", "fields": ["price"], "message": L("价格不能为负。", "The price cannot be negative.")}],
    "fields": [
        {"id": "fld_ol_item", "name": "item", "type": "text", "label": L("项目", "Item"), "required": True},
        {"id": "fld_ol_price", "name": "price", "type": "money", "label": L("价格", "Price")},
    ],
}
ORDER = {
    "id": "ent_shop_order", "name": "order", "label": L("订单", "Order"), "title_field": "title",
    "validations": [
        {"id": "dates_in_order", "rule": "end_date > start_date", "fields": ["end_date"],
         "message": L("结束日期必须晚于开始日期。", "The end date must be after the start date.")},
        {"id": "not_blocked", "rule": "ISBLANK(customer) OR customer.name != 'Blocked'", "fields": ["customer"],
         "message": L("该客户已被停用。", "This customer is blocked.")},
    ],
    "fields": [
        {"id": "fld_or_title", "name": "title", "type": "text", "label": L("标题", "Title"), "required": True},
        {"id": "fld_or_customer", "name": "customer", "type": "link", "label": L("客户", "Customer"), "target": "shop.customer"},
        {"id": "fld_or_amount", "name": "amount", "type": "money", "label": L("金额", "Amount")},
        {"id": "fld_or_qty", "name": "qty", "type": "integer", "label": L("数量", "Qty")},
        {"id": "fld_or_status", "name": "status", "type": "single_select", "label": L("状态", "Status"),
         "options": [{"value": "open", "label": L("待付", "Open")}, {"value": "paid", "label": L("已付", "Paid")}]},
        {"id": "fld_or_start", "name": "start_date", "type": "date", "label": L("开始", "Start")},
        {"id": "fld_or_end", "name": "end_date", "type": "date", "label": L("结束", "End")},
        {"id": "fld_or_reason", "name": "reason", "type": "text", "label": L("原因", "Reason"), "required_if": "amount > 1000"},
        {"id": "fld_or_coupon", "name": "coupon", "type": "text", "label": L("优惠码", "Coupon"), "required": True,
         "visible_if": "status = 'open'"},
        {"id": "fld_or_total", "name": "total", "type": "formula", "label": L("合计", "Total"), "expression": "amount * qty",
         "result": "number", "scale": 2},
        {"id": "fld_or_big", "name": "big", "type": "formula", "label": L("大单", "Big"), "expression": "amount * qty >= 1000",
         "result": "boolean"},
        {"id": "fld_or_next", "name": "renewal", "type": "formula", "label": L("续期", "Renewal"),
         "expression": "ADD_MONTHS(start_date, 1)", "result": "date"},
        {"id": "fld_or_who", "name": "who", "type": "lookup", "label": L("客户名", "Customer name"), "link": "customer", "field": "name"},
        {"id": "fld_or_lines", "name": "lines", "type": "child_table", "label": L("明细", "Lines"), "entity": "shop.order_line"},
        {"id": "fld_or_line_sum", "name": "line_sum", "type": "rollup", "label": L("明细合计", "Lines total"),
         "source": "shop.order_line", "function": "sum", "field": "price", "scale": 2},
        {"id": "fld_or_line_n", "name": "line_count", "type": "rollup", "label": L("明细数", "Lines"),
         "source": "shop.order_line", "function": "count"},
        {"id": "fld_or_tag", "name": "tag", "type": "formula", "label": L("标记", "Tag"), "expression": "CONCAT(who, '#', qty)",
         "result": "text"},
    ],
}


def shop_documents(*, order: dict | None = None, customer: dict | None = None) -> list[RawDocument]:
    docs = [RawDocument("app", "shop", copy.deepcopy(APP), "shop/app.json")]
    for e in (LEVEL, customer or CUSTOMER, order or ORDER, ORDER_LINE):
        docs.append(RawDocument("entity", "shop", copy.deepcopy(e), f"shop/entities/{e['name']}.json"))
    docs.append(RawDocument("view", "shop", copy.deepcopy(ORDER_VIEW), "shop/views/order.json"))
    return docs


ORDER_VIEW = {"entity": "shop.order", "name": "default", "label": L("订单", "Orders"),
              "columns": ["title", "who", "total", "big", "renewal", "line_count"], "default_sort": [{"field": "total", "dir": "desc"}]}
