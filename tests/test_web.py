"""The server-rendered entity pages: list, filters, paging, htmx fragments, forms, child tables, delete/restore, bulk, history."""
from __future__ import annotations

import re
from urllib.parse import unquote, urlencode

import pytest

from conftest import csrf_from, login
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.storage.plan import Planner, apply_plan

MEMBERS = "/e/membership.member/"


def add_member(services, name, mobile, **extra):
    data = {"name": name, "mobile": mobile, "joined_on": "2024-03-01", **extra}
    return services.records.create("membership.member", data, SYSTEM)


def add_level(services, name, code, value):
    return services.records.create("membership.level", {"name": name, "code": code, "level_value": value}, SYSTEM)


def member_form(csrf_token, **values):
    base = {"csrf_token": csrf_token, "name": "", "mobile": "", "joined_on": "2024-05-01", "gender": "", "status": "active",
            "consent_sms": "", "tags": "", "total_spent": "", "level": "", "email": "", "notes": ""}
    base.update(values)
    return base


def names_in(html: str, candidates) -> list[str]:
    """Which of ``candidates`` appear in the table body, in page order."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    found = [(body.find(c), c) for c in candidates if c in body]
    return [c for _, c in sorted(found)]


# --- access ---------------------------------------------------------------------------------

def test_anonymous_user_is_sent_to_login(app):
    resp = app.test_client().get(MEMBERS)
    assert resp.status_code == 302
    assert "/login/" in resp.headers["Location"]


def test_home_shows_app_cards_with_counts(client, services):
    add_member(services, "卡片甲", "13800000001")
    html = client.get("/home").get_data(as_text=True)
    assert "会员管理" in html
    assert 'href="/e/membership.member/"' in html
    assert "1 条记录" in html


# --- list --------------------------------------------------------------------------------------

def test_list_renders_rows_with_labels_badges_and_money(client, services):
    gold = add_level(services, "金卡会员", "GOLD", 2)
    add_member(services, "王小明", "13800000002", level=gold, gender="female", total_spent="1234.5", tags=["高价值"])
    html = client.get(MEMBERS).get_data(as_text=True)
    assert "王小明" in html
    assert "金卡会员" in html  # link shown by its title, not the id
    assert 'style="--badge: #ec4899">女</span>' in html  # coloured zh option label
    assert "¥1,234.50" in html
    assert '<span class="tag">高价值</span>' in html
    assert "VIP00000001" in html


def test_search_narrows_rows(client, services):
    add_member(services, "李雷", "13800000003")
    add_member(services, "韩梅梅", "13800000004")
    html = client.get(MEMBERS + "?q=韩梅").get_data(as_text=True)
    assert names_in(html, ["李雷", "韩梅梅"]) == ["韩梅梅"]
    html = client.get(MEMBERS + "?q=13800000003").get_data(as_text=True)
    assert names_in(html, ["李雷", "韩梅梅"]) == ["李雷"]


def test_filter_builder_query_narrows_rows(client, services):
    add_member(services, "正常会员", "13800000005", status="active")
    add_member(services, "挂失会员", "13800000006", status="lost")
    html = client.get(MEMBERS + "?" + urlencode({"ff": "status", "fo": "eq", "fv": "lost"})).get_data(as_text=True)
    assert names_in(html, ["正常会员", "挂失会员"]) == ["挂失会员"]
    # two conditions, any of them
    q = urlencode([("ff", "name"), ("fo", "contains"), ("fv", "正常"), ("ff", "status"), ("fo", "eq"), ("fv", "lost"), ("match", "any")])
    assert set(names_in(client.get(MEMBERS + "?" + q).get_data(as_text=True), ["正常会员", "挂失会员"])) == {"正常会员", "挂失会员"}
    # saved filter from the view definition
    html = client.get(MEMBERS + "?saved=lost_cards").get_data(as_text=True)
    assert names_in(html, ["正常会员", "挂失会员"]) == ["挂失会员"]


def test_sort_header_changes_order(client, services):
    add_member(services, "Alice", "13800000007")
    add_member(services, "Bob", "13800000008")
    html = client.get(MEMBERS + "?sort=name").get_data(as_text=True)
    assert names_in(html, ["Alice", "Bob"]) == ["Alice", "Bob"]
    assert 'class="sort asc"' in html and "sort=-name" in html  # the header now toggles to descending
    html = client.get(MEMBERS + "?sort=-name").get_data(as_text=True)
    assert names_in(html, ["Alice", "Bob"]) == ["Bob", "Alice"]


def test_paging_with_cursors_has_no_duplicates(client, services):
    names = [f"会员{i:02d}" for i in range(7)]
    for i, n in enumerate(names):
        add_member(services, n, f"1380000{i:04d}")
    seen = []
    url = MEMBERS + "?sort=name&per_page=3"
    for _ in range(3):
        html = client.get(url).get_data(as_text=True)
        seen += names_in(html, names)
        nxt = re.search(r'<a class="btn btn-sm" rel="next" href="([^"]+)"', html)
        if not nxt:
            break
        url = nxt.group(1).replace("&amp;", "&")
    assert seen == names
    assert "共 7 条" in html
    # and back again
    prev = re.search(r'<a class="btn btn-sm" rel="prev" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert names_in(client.get(prev).get_data(as_text=True), names) == names[3:6]


def test_htmx_request_returns_only_the_table_region(client, services):
    add_member(services, "片段会员", "13800000009")
    html = client.get(MEMBERS + "?q=片段", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert html.lstrip().startswith('<div id="list-region"')
    assert "<html" not in html and "sidebar" not in html
    assert "片段会员" in html
    full = client.get(MEMBERS + "?q=片段", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}).get_data(as_text=True)
    assert "<html" in full


@pytest.mark.parametrize("query", [
    {"q": "'; DROP TABLE membership_member; --"},
    {"q": "%_\\"},
    {"sort": "name; DROP TABLE membership_member"},
    {"sort": "-(select 1)"},
    {"ff": "name) OR 1=1 --", "fo": "eq", "fv": "x"},
    {"ff": "name", "fo": "eq OR 1=1", "fv": "x"},
    {"ff": "level", "fo": "eq", "fv": "1 OR 1=1"},
    {"cursor": "' OR '1'='1"},
    {"saved": "nope'--"},
    {"per_page": "1;--"},
])
def test_sql_metacharacters_give_4xx_or_empty_never_500(client, services, query):
    add_member(services, "安全会员", "13800000010")
    resp = client.get(MEMBERS + "?" + urlencode(query))
    html = resp.get_data(as_text=True)
    if "q" in query:  # search text is a bound LIKE pattern: nothing matches, nothing breaks
        assert resp.status_code == 200
        assert "安全会员" not in html and "没有符合条件的记录" in html
    else:  # anything else names a field, operator or cursor that does not exist: refused with the reason
        assert resp.status_code == 422
        assert "筛选条件有误" in html and "安全会员" not in html
    assert services.queries.list("membership.member", SYSTEM).total == 1  # the table is intact


# --- create / edit ------------------------------------------------------------------------------

def test_create_via_form_stores_and_redirects_to_detail(client, services, csrf_token):
    gold = add_level(services, "金卡会员", "GOLD", 2)
    resp = client.post(MEMBERS + "new", data=member_form(csrf_token, name="表单会员", mobile="138 0000 0011", level=str(gold),
                                                           consent_sms="true", tags="新客, 团购", total_spent="88.5", gender="male"))
    assert resp.status_code == 303
    record_id = int(re.search(r"/e/membership.member/(\d+)$", resp.headers["Location"]).group(1))
    rec = services.queries.get("membership.member", record_id, SYSTEM)
    assert rec["name"] == "表单会员" and rec["mobile"] == "13800000011" and rec["level"] == gold
    assert rec["consent_sms"] is True and rec["tags"] == ["新客", "团购"] and str(rec["total_spent"]) == "88.50"
    assert rec["card_no"] == "VIP00000001"
    detail = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "表单会员" in detail and "已创建" in detail


def test_form_shows_read_only_sequence_as_assigned_on_save(client):
    html = client.get(MEMBERS + "new").get_data(as_text=True)
    assert "保存时自动生成" in html
    assert 'name="card_no"' not in html
    assert 'name="csrf_token"' in html
    assert '<span class="required"' in html and "如：张伟" in html and "填写后自动带出性别与生日" in html


def test_invalid_create_returns_422_with_field_messages_and_stores_nothing(client, services, csrf_token):
    resp = client.post(MEMBERS + "new", data=member_form(csrf_token, name="", mobile="12345", email="not-an-email", notes="保留的备注"))
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "有字段未通过校验" in html
    name_field = html.split('id="f-name"', 1)[1].split("</div>", 1)[0]
    assert "此项必填" in name_field
    mobile_field = html.split('id="f-mobile"', 1)[1].split("</div>", 1)[0]
    assert "请输入 11 位大陆手机号" in mobile_field and "Not a valid phone number" not in mobile_field
    assert 'value="12345"' in html and "保留的备注" in html  # values are kept
    assert services.queries.list("membership.member", SYSTEM).total == 0


def test_post_without_csrf_is_refused(client, services):
    resp = client.post(MEMBERS + "new", data={"name": "无令牌", "mobile": "13800000012", "joined_on": "2024-01-01"})
    assert resp.status_code == 400
    assert "CSRF" in resp.get_data(as_text=True)
    assert services.queries.list("membership.member", SYSTEM).total == 0


def test_edit_updates_and_stale_row_version_is_refused(client, services, csrf_token):
    rid = add_member(services, "原名", "13800000013")
    form_html = client.get(f"{MEMBERS}{rid}/edit").get_data(as_text=True)
    assert 'name="row_version" value="1"' in form_html and 'value="原名"' in form_html
    resp = client.post(f"{MEMBERS}{rid}/edit", data=member_form(csrf_token, name="新名字", mobile="13800000013", row_version="1"))
    assert resp.status_code == 303
    assert services.queries.get("membership.member", rid, SYSTEM)["name"] == "新名字"
    # someone else edits meanwhile: posting version 1 again is stale
    resp = client.post(f"{MEMBERS}{rid}/edit", data=member_form(csrf_token, name="覆盖", mobile="13800000013", row_version="1"))
    assert resp.status_code == 409
    html = resp.get_data(as_text=True)
    assert "其他人已修改了这条记录" in html and "重新加载最新内容" in html
    rec = services.queries.get("membership.member", rid, SYSTEM)
    assert rec["name"] == "新名字" and rec["row_version"] == 2


def test_htmx_form_success_uses_hx_redirect(client, services, csrf_token):
    resp = client.post(MEMBERS + "new", data=member_form(csrf_token, name="htmx会员", mobile="13800000014"), headers={"HX-Request": "true"})
    assert resp.status_code == 200
    assert re.match(r"/e/membership.member/\d+$", resp.headers["HX-Redirect"])


# --- detail, history ------------------------------------------------------------------------------

def test_detail_shows_sections_and_history_with_old_and_new_values(client, services, csrf_token):
    gold = add_level(services, "金卡会员", "GOLD", 2)
    silver = add_level(services, "普卡会员", "SILVER", 1)
    rid = add_member(services, "历史会员", "13800000015", level=silver, status="active")
    services.records.update("membership.member", rid, {"status": "lost", "level": gold}, SYSTEM, expected_version=1)
    html = client.get(f"{MEMBERS}{rid}").get_data(as_text=True)
    assert "身份信息" in html and "会籍" in html  # form sections
    assert "基本资料" in html and "会籍与偏好" in html  # tabs
    timeline = html.split('class="timeline"', 1)[1]
    assert "修改了" in timeline and "创建了记录" in timeline
    status_change = timeline.split("卡状态", 1)[1].split("</div>", 1)[0]
    assert "正常" in status_change.split('class="arrow"')[0] and "挂失" in status_change.split('class="arrow"')[1]
    level_change = timeline.split("会员等级", 1)[1].split("</div>", 1)[0]
    assert "普卡会员" in level_change.split('class="arrow"')[0] and "金卡会员" in level_change.split('class="arrow"')[1]


def test_locale_switch_shows_english_labels(client, services):
    add_member(services, "Lang", "13800000016", gender="male")
    assert "卡状态" in client.get(MEMBERS).get_data(as_text=True)
    client.get("/locale/en")
    html = client.get(MEMBERS).get_data(as_text=True)
    assert "Card status" in html and "Members" in html and ">Male</span>" in html
    assert "卡状态" not in html
    assert "Card number" in client.get(MEMBERS + "new").get_data(as_text=True)


# --- delete, recycle bin, restore -------------------------------------------------------------------

def test_delete_goes_to_recycle_bin_and_restores(client, services, csrf_token):
    rid = add_member(services, "回收会员", "13800000017")
    confirm = client.get(f"{MEMBERS}{rid}/delete").get_data(as_text=True)
    assert "确定删除这条会员记录吗" in confirm
    assert services.queries.get("membership.member", rid, SYSTEM)["name"] == "回收会员"  # GET deletes nothing
    resp = client.post(f"{MEMBERS}{rid}/delete", data={"csrf_token": csrf_token, "row_version": "1"})
    assert resp.status_code == 303
    assert "回收会员" not in client.get(MEMBERS).get_data(as_text=True)
    bin_html = client.get(MEMBERS + "bin").get_data(as_text=True)
    assert "回收会员" in bin_html and f"/e/membership.member/{rid}/restore" in bin_html
    resp = client.post(f"{MEMBERS}{rid}/restore", data={"csrf_token": csrf_token})
    assert resp.status_code == 303
    assert services.queries.get("membership.member", rid, SYSTEM)["deleted_at"] is None
    assert "回收会员" not in client.get(MEMBERS + "bin").get_data(as_text=True)


def test_delete_without_csrf_deletes_nothing(client, services):
    rid = add_member(services, "保留会员", "13800000018")
    assert client.post(f"{MEMBERS}{rid}/delete", data={}).status_code == 400
    assert services.queries.get("membership.member", rid, SYSTEM)["deleted_at"] is None


# --- bulk -------------------------------------------------------------------------------------------

def test_bulk_delete_asks_then_deletes(client, services, csrf_token):
    a = add_member(services, "批量甲", "13800000019")
    b = add_member(services, "批量乙", "13800000020")
    c = add_member(services, "批量丙", "13800000021")
    form = {"csrf_token": csrf_token, "action": "delete", "ids": [str(a), str(b)], "next": MEMBERS}
    confirm = client.post(MEMBERS + "bulk", data=form)
    assert confirm.status_code == 200 and "确定删除选中的 2 条记录吗" in confirm.get_data(as_text=True)
    assert services.queries.list("membership.member", SYSTEM).total == 3
    resp = client.post(MEMBERS + "bulk", data={**form, "confirmed": "1"})
    assert resp.status_code == 303
    left = services.queries.list("membership.member", SYSTEM).rows
    assert [r["id"] for r in left] == [c]
    assert {r["id"] for r in services.queries.list("membership.member", SYSTEM, deleted=True).rows} == {a, b}


def test_bulk_update_sets_a_field_on_selected_records(client, services, csrf_token):
    a = add_member(services, "批改甲", "13800000022")
    b = add_member(services, "批改乙", "13800000023")
    c = add_member(services, "批改丙", "13800000024")
    resp = client.post(MEMBERS + "bulk", data={"csrf_token": csrf_token, "action": "update", "ids": [str(a), str(c)],
                                               "bulk_field": "status", "bulk_value": "lost", "next": MEMBERS + "?q=批改"})
    assert resp.status_code == 303 and unquote(resp.headers["Location"]).endswith("?q=批改")
    got = {r["id"]: r["status"] for r in services.queries.list("membership.member", SYSTEM).rows}
    assert got == {a: "lost", b: "active", c: "lost"}
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "已修改 2 条记录" in page


def test_bulk_update_with_invalid_value_changes_nothing(client, services, csrf_token):
    a = add_member(services, "批改丁", "13800000025")
    resp = client.post(MEMBERS + "bulk", data={"csrf_token": csrf_token, "action": "update", "ids": [str(a)],
                                               "bulk_field": "status", "bulk_value": "nonsense", "next": "https://evil.example/"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith(MEMBERS)  # foreign next is ignored
    assert services.queries.get("membership.member", a, SYSTEM)["status"] == "active"
    assert "没有任何记录被修改" in client.get(MEMBERS).get_data(as_text=True)
    resp = client.post(MEMBERS + "bulk", data={"csrf_token": csrf_token, "action": "update", "ids": [str(a)],
                                               "bulk_field": "card_no", "bulk_value": "X1"})
    assert resp.status_code == 303
    assert services.queries.get("membership.member", a, SYSTEM)["card_no"] == "VIP00000001"


# --- child tables (a small test app with an order and its lines) --------------------------------------

SHOP_DOCS = [
    RawDocument("app", "shop", {"id": "shop", "version": "0.1.0", "title": {"zh": "商店", "en": "Shop"}, "menu": [{"entity": "shop.order"}]}, "test"),
    RawDocument("entity", "shop", {
        "id": "ent_shop_order", "name": "order", "label": {"zh": "订单", "en": "Order"}, "plural_label": {"zh": "订单", "en": "Orders"},
        "title_field": "title", "search_fields": ["title"],
        "fields": [
            {"id": "fld_ord_title", "name": "title", "type": "text", "label": {"zh": "标题", "en": "Title"}, "required": True},
            {"id": "fld_ord_lines", "name": "lines", "type": "child_table", "label": {"zh": "明细", "en": "Lines"}, "entity": "shop.order_line"},
        ]}, "test"),
    RawDocument("entity", "shop", {
        "id": "ent_shop_line", "name": "order_line", "label": {"zh": "订单明细", "en": "Order line"}, "is_child": True, "parent": "shop.order",
        "title_field": "product",
        "fields": [
            {"id": "fld_line_product", "name": "product", "type": "text", "label": {"zh": "商品", "en": "Product"}, "required": True},
            {"id": "fld_line_qty", "name": "qty", "type": "integer", "label": {"zh": "数量", "en": "Quantity"}, "min": 1},
        ]}, "test"),
]


@pytest.fixture
def shop(make_app):
    app = make_app("base")
    svc = app.extensions["crmkit"]
    svc.store.save(SHOP_DOCS, comment="test shop")
    apply_plan(svc.engine, Planner(svc.engine, svc.store.catalog()).plan(), confirm=True)
    c = app.test_client()
    login(c)
    return c, svc, csrf_from(c.get("/e/shop.order/new").get_data(as_text=True))


def test_child_rows_are_added_and_removed_through_the_form(shop):
    client, svc, token = shop
    form_html = client.get("/e/shop.order/new").get_data(as_text=True)
    assert 'name="lines.present"' in form_html and "添加一行" in form_html
    row_html = client.get("/e/shop.order/child-row/lines").get_data(as_text=True)
    key = re.search(r'name="lines.row" value="(\w+)"', row_html).group(1)
    assert f'name="lines-{key}-product"' in row_html and f'name="lines-{key}-qty"' in row_html
    resp = client.post("/e/shop.order/new", data={
        "csrf_token": token, "title": "第一单", "lines.present": "1",
        "lines.row": ["a1", "b2"], "lines-a1-id": "", "lines-a1-product": "苹果", "lines-a1-qty": "3",
        "lines-b2-id": "", "lines-b2-product": "香蕉", "lines-b2-qty": "5"})
    assert resp.status_code == 303, resp.get_data(as_text=True)[:2000]
    oid = int(resp.headers["Location"].rsplit("/", 1)[1])
    lines = svc.queries.get("shop.order", oid, SYSTEM)["lines"]
    assert [(r["product"], r["qty"]) for r in lines] == [("苹果", 3), ("香蕉", 5)]
    detail = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "苹果" in detail and "香蕉" in detail and "新增 2 行" in detail
    # edit: keep the banana line (changed), drop the apple line, add a pear
    edit = client.get(f"/e/shop.order/{oid}/edit").get_data(as_text=True)
    banana = next(r for r in lines if r["product"] == "香蕉")["id"]
    assert f'name="lines-r{banana}-id" value="{banana}"' in edit
    resp = client.post(f"/e/shop.order/{oid}/edit", data={
        "csrf_token": token, "row_version": "1", "title": "第一单", "lines.present": "1",
        "lines.row": [f"r{banana}", "n3"], f"lines-r{banana}-id": str(banana), f"lines-r{banana}-product": "香蕉", f"lines-r{banana}-qty": "6",
        "lines-n3-id": "", "lines-n3-product": "梨", "lines-n3-qty": "1"})
    assert resp.status_code == 303
    lines = svc.queries.get("shop.order", oid, SYSTEM)["lines"]
    assert [(r["product"], r["qty"]) for r in lines] == [("香蕉", 6), ("梨", 1)]


def test_child_row_errors_show_on_the_row_and_nothing_is_stored(shop):
    client, svc, token = shop
    resp = client.post("/e/shop.order/new", data={
        "csrf_token": token, "title": "坏单", "lines.present": "1", "lines.row": ["x1"],
        "lines-x1-id": "", "lines-x1-product": "", "lines-x1-qty": "0"})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    row = html.split('name="lines-x1-product"', 1)[1].split("</tr>", 1)[0]
    assert "此项必填" in row and "不能小于 1" in row and "greater than or equal to" not in row
    assert svc.queries.list("shop.order", SYSTEM).total == 0


def test_add_row_without_javascript_rerenders_form_with_a_blank_row(shop):
    client, svc, token = shop
    resp = client.post("/e/shop.order/new", data={"csrf_token": token, "title": "无脚本", "lines.present": "1", "_add_row": "lines"})
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert len(re.findall(r'name="lines.row"', html)) == 1 and 'value="无脚本"' in html
    assert svc.queries.list("shop.order", SYSTEM).total == 0
