"""Core messages in both languages: every field type's errors, record and query errors, shown in the user's language."""
from __future__ import annotations

import datetime as dt
import decimal
import html as html_lib
from types import MappingProxyType

import pytest
from marshmallow import ValidationError, fields as mf, validate

from api_support import MEMBERS as API_MEMBERS, assert_error, member, row_count, token_client
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import BadQuery, PermissionDenied, RecordNotFound, StaleRecord, ValidationFailed
from crmkit.runtime.fields import default_registry
from crmkit.runtime.fields.base import flatten_messages
from crmkit.runtime.i18n_text import Text, join, localize, text
from crmkit.runtime.meta.model import FieldDef, Label

MEMBERS = "/e/membership.member/"
LEVELS = "/e/membership.level/"


# --- the Text value ----------------------------------------------------------------------------

def test_text_is_the_english_string_and_carries_chinese():
    t = text("There is no {entity} with id {id}.", "编号为 {id} 的{entity}不存在。", entity=Label("会员", "Member"), id=7)
    assert t == "There is no Member with id 7." and isinstance(t, str)
    assert t.zh == "编号为 7 的会员不存在。" and t.en == "There is no Member with id 7."
    assert t.get("zh") == t.zh and t.get("en") == t.en and t.get(None) == t.en
    nested = text("item {n}: {message}", "第 {n} 项：{message}", n=2, message=t)
    assert nested.zh == "第 2 项：编号为 7 的会员不存在。" and nested == "item 2: There is no Member with id 7."
    assert join([t, "plain"]).zh == "编号为 7 的会员不存在。；plain"
    assert localize({"a": [t], "b": "plain", "c": 3}, "zh") == {"a": ["编号为 7 的会员不存在。"], "b": "plain", "c": 3}


def test_marshmallow_keeps_the_text_objects_it_is_given():
    msg = Text("Not a valid integer.", "请输入整数。")
    field = mf.Integer(error_messages={"invalid": msg})
    with pytest.raises(ValidationError) as info:
        field.deserialize("abc")
    assert isinstance(info.value.messages[0], Text) and info.value.messages[0].zh == "请输入整数。"
    with pytest.raises(ValidationError) as info:
        validate.Length(max=2, error=Text("At most {max}.", "最多 {max} 个。"))("abcd")
    assert info.value.messages[0].zh == "最多 2 个。"


# --- every field type's marshmallow field -------------------------------------------------------

OPTIONS = [{"value": "red", "label": {"zh": "红色", "en": "Red"}}, {"value": "blue", "label": {"zh": "蓝色", "en": "Blue"}}]
CONFIG = {
    "text": {"max_length": 5, "min_length": 2, "pattern": "^[a-z]{2,3}$"}, "long_text": {"max_length": 10},
    "integer": {"min": 0, "max": 10}, "decimal": {"min": 0, "max": 10, "precision": 6, "scale": 2}, "money": {"min": 1},
    "percent": {"max": 100}, "date": {"min": "2000-01-01", "max": "2030-01-01"}, "single_select": {"options": OPTIONS},
    "multi_select": {"options": OPTIONS, "max_items": 1}, "tags": {"max_items": 2}, "sequence": {"digits": 3},
    "link": {"target": "a.b"}, "child_table": {"entity": "a.c"},
}
BAD_INPUT = [
    "abc", 12.5, True, -5, 10**30, 2**63, "NaN", "Infinity", "1.234", "99999999", "2024-13-01", "1899-01-01", "2099-01-01",
    "0001-01-01 00:00", "12345", "+86 12800138000", "ftp://x", "no-email", "110105194912310021", "12345678901234567X",
    "110105194902301234", "x" * 40, ["a"], ["a", None], [1, 2, 3], ["x" * 40], {"a": 1}, {"id": -1}, [None], 5,
    dt.date(1800, 1, 1), decimal.Decimal("1.5"), object(), "紫色", ["purple"], ["red", "blue"], "maybe", 2,
]
TYPES = default_registry().names()


def sample(type_name: str) -> FieldDef:
    return FieldDef(id="f", name="f", type=type_name, label=Label("字段", "Field"), config=MappingProxyType(CONFIG.get(type_name, {})))


def bilingual(message) -> bool:
    return isinstance(message, Text) and bool(message.zh.strip()) and message.zh != message.en


@pytest.mark.parametrize("type_name", TYPES)
def test_every_message_of_a_field_type_is_translated(type_name):
    ft = default_registry().get(type_name)
    field = ft.marshmallow_field(sample(type_name))
    produced = []
    for raw in BAD_INPUT:
        try:
            field.deserialize(raw)
        except ValidationError as exc:
            produced += flatten_messages(exc.messages)
    assert produced, f"{type_name}: no bad input was refused"
    untranslated = sorted({str(m) for m in produced if not bilingual(m)})
    assert not untranslated, untranslated


def _fields_within(field):
    yield field
    inner = getattr(field, "inner", None)
    if inner is not None:
        yield from _fields_within(inner)


@pytest.mark.parametrize("type_name", TYPES)
def test_no_english_only_marshmallow_default_is_left(type_name):
    """Every message a field (and its list items) could raise, and every validator's, is a Text."""
    field = default_registry().get(type_name).marshmallow_field(sample(type_name))
    for f in _fields_within(field):
        plain = {k: v for k, v in f.error_messages.items() if not bilingual(v)}
        assert not plain, (type(f).__name__, plain)
        for v in f.validators:
            templates = [getattr(v, a, None) for a in ("error", "message_min", "message_max", "message_all", "message_equal")]
            for t in templates:
                if t is not None:
                    assert bilingual(t), (type(v).__name__, t)


def test_parse_text_errors_stay_bilingual():
    ft = default_registry().get("multi_select")
    with pytest.raises(ValueError) as info:
        ft.parse_text(sample("multi_select"), "红色;紫色")
    problem = info.value.args[0]
    assert problem == "item 2: '紫色' is not one of the options (red, blue)."
    assert problem.zh == "第 2 项：“紫色”不是可选项，请从以下选项中选择：红色、蓝色。"


def test_error_types_have_bilingual_defaults():
    for cls in (StaleRecord, RecordNotFound, PermissionDenied, BadQuery):
        assert bilingual(cls().message), cls
    assert bilingual(ValidationFailed({}).message)


# --- record and query service messages -----------------------------------------------------------

def test_record_and_query_errors_name_the_entity_in_each_language(services):
    services.records.create("membership.member", {"name": "甲", "mobile": "13800000001", "joined_on": "2024-01-01"}, SYSTEM)
    with pytest.raises(ValidationFailed) as info:
        services.records.create("membership.member", {"name": "乙", "mobile": "13800000001", "joined_on": "2024-01-01"}, SYSTEM)
    [dup] = info.value.field_errors["mobile"]
    assert dup == "This value is already used by another Member." and dup.zh == "该值已被其他会员使用。"
    with pytest.raises(RecordNotFound) as info:
        services.queries.get("membership.member", 999, SYSTEM)
    assert info.value.message.zh == "会员 #999 不存在或已被删除。"
    with pytest.raises(BadQuery) as info:
        services.queries.list("membership.member", SYSTEM, filter={"field": "mobile", "op": "gt", "value": "1"})
    assert info.value.message.startswith("Operator 'gt' is not available for field 'mobile'")
    assert "手机号" in info.value.message.zh and "大于" in info.value.message.zh and "等于" in info.value.message.zh
    with pytest.raises(BadQuery) as info:
        services.queries.list("membership.member", SYSTEM, filter={"field": "total_spent", "op": "eq", "value": "many"})
    assert bilingual(info.value.message) and "请输入数字" in info.value.message.zh
    with pytest.raises(BadQuery) as info:
        services.queries.list("membership.member", SYSTEM, filter={"field": "name", "op": "eq", "value": {"a": 1}})
    assert info.value.message.zh == "“姓名”的筛选值 {'a': 1} 无效：请输入文本。"
    with pytest.raises(BadQuery) as info:
        services.queries.list("membership.member", SYSTEM, filter={"field": "name", "op": "contains", "value": ""})
    assert info.value.message.zh == "“姓名”的“包含”条件需要填写非空文本。"
    with pytest.raises(ValidationFailed) as info:
        services.records.create("membership.member", {"name": "丙", "mobile": "13800000009", "joined_on": "2024-01-01", "nope": 1}, SYSTEM)
    assert info.value.field_errors["nope"] == ["Unknown field."] and info.value.field_errors["nope"][0].zh == "没有这个字段。"
    assert row_count(services, "membership.member") == 1


# --- the web UI shows the user's language --------------------------------------------------------

def member_form(csrf_token, **values):
    base = {"csrf_token": csrf_token, "name": "测试会员", "mobile": "", "joined_on": "2024-05-01", "gender": "", "status": "active",
            "consent_sms": "", "tags": "", "total_spent": "", "level": "", "email": "", "notes": ""}
    base.update(values)
    return base


def field_html(page: str, name: str) -> str:
    return html_lib.unescape(page.split(f'id="f-{name}"', 1)[1].split("</div>", 1)[0])


ZH = {
    "phone": "请输入 11 位大陆手机号，或以 + 开头的国际号码",
    "email": "请输入有效的邮箱地址，如 name@example.com。",
    "duplicate": "该值已被其他会员使用。",
    "integer": "请输入整数。",
}
EN = {
    "phone": "Not a valid phone number: use an 11-digit mainland mobile or +country code and number.",
    "email": "Not a valid email address, e.g. name@example.com.",
    "duplicate": "This value is already used by another Member.",
    "integer": "Not a valid integer.",
}


@pytest.mark.parametrize("locale, want, other", [("zh", ZH, EN), ("en", EN, ZH)])
def test_form_errors_are_shown_in_the_chosen_language(client, services, csrf_token, locale, want, other):
    services.records.create("membership.member", {"name": "已有会员", "mobile": "13800000001", "joined_on": "2024-01-01"}, SYSTEM)
    client.get(f"/locale/{locale}")

    resp = client.post(MEMBERS + "new", data=member_form(csrf_token, mobile="12345", email="not-an-email"))
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    assert want["phone"] in field_html(page, "mobile") and other["phone"] not in page
    assert want["email"] in field_html(page, "email") and other["email"] not in page

    resp = client.post(MEMBERS + "new", data=member_form(csrf_token, mobile="13800000001"))
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    assert want["duplicate"] in field_html(page, "mobile") and other["duplicate"] not in page

    resp = client.post(LEVELS + "new", data={"csrf_token": csrf_token, "name": "金卡", "code": "GOLD", "level_value": "abc",
                                             "upgrade_points": "1.5", "discount": "", "color": "", "benefits": ""})
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    assert want["integer"] in field_html(page, "level_value") and want["integer"] in field_html(page, "upgrade_points")
    assert other["integer"] not in page

    assert row_count(services, "membership.member") == 1 and row_count(services, "membership.level") == 0


def test_stale_edit_and_stale_delete_speak_the_users_language(client, services, csrf_token):
    rid = services.records.create("membership.member", {"name": "原名", "mobile": "13800000002", "joined_on": "2024-01-01"}, SYSTEM)
    services.records.update("membership.member", rid, {"name": "别人改的"}, SYSTEM, expected_version=1)
    client.get("/locale/zh")
    resp = client.post(f"{MEMBERS}{rid}/edit", data=member_form(csrf_token, name="我的修改", mobile="13800000002", row_version="1"))
    assert resp.status_code == 409
    page = resp.get_data(as_text=True)
    assert "其他人已修改了这条记录（你编辑的是第 1 版，现在是第 2 版）" in page and "Someone else changed" not in page
    resp = client.post(f"{MEMBERS}{rid}/delete", data={"csrf_token": csrf_token, "row_version": "1"})
    assert resp.status_code == 409
    page = resp.get_data(as_text=True)
    assert "你打开这条记录后，其他人已修改了它。请重新加载后再删除。" in page and "Reload it before deleting" not in page

    client.get("/locale/en")
    resp = client.post(f"{MEMBERS}{rid}/delete", data={"csrf_token": csrf_token, "row_version": "1"})
    assert resp.status_code == 409
    page = resp.get_data(as_text=True)
    assert "Someone else changed this record after you opened it. Reload it before deleting." in page and "请重新加载后再删除" not in page
    record = services.queries.get("membership.member", rid, SYSTEM)
    assert record["name"] == "别人改的" and record["row_version"] == 2


def test_list_filter_errors_speak_the_users_language(client, services):
    services.records.create("membership.member", {"name": "筛选会员", "mobile": "13800000003", "joined_on": "2024-01-01"}, SYSTEM)
    query = {"ff": "total_spent", "fo": "eq", "fv": "many"}
    client.get("/locale/zh")
    resp = client.get(MEMBERS, query_string=query)
    page = html_lib.unescape(resp.get_data(as_text=True))
    assert resp.status_code == 422
    assert "“累计消费”的筛选值 'many' 无效：请输入数字。" in page and "is not valid for field" not in page
    client.get("/locale/en")
    resp = client.get(MEMBERS, query_string=query)
    page = html_lib.unescape(resp.get_data(as_text=True))
    assert resp.status_code == 422
    assert "Filter value 'many' is not valid for field 'total_spent': Not a valid number." in page and "请输入数字" not in page


def test_not_found_page_speaks_the_users_language(client):
    client.get("/locale/zh")
    resp = client.get(f"{MEMBERS}424242")
    assert resp.status_code == 404
    assert "会员 #424242 不存在或已被删除。" in resp.get_data(as_text=True)


# --- the API: English, or Chinese when Accept-Language prefers it --------------------------------

def test_api_errors_are_english_unless_chinese_is_preferred(app, api_token, services):
    api = token_client(app, api_token)
    body = assert_error(api.post(API_MEMBERS, json=member(mobile="12345")), 422, "validation_failed")
    assert body["message"] == "Some fields are not valid; fix them and submit again."
    assert body["details"]["fields"]["mobile"] == [EN["phone"]]

    resp = api.post(API_MEMBERS, json=member(mobile="12345"), headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    body = assert_error(resp, 422, "validation_failed")
    assert body["message"] == "有字段未通过校验，请修改后重新提交。"
    assert body["details"]["fields"]["mobile"] == ["请输入 11 位大陆手机号，或以 + 开头的国际号码（+国家代码 号码）。"]

    resp = api.get(API_MEMBERS + "/999", headers={"Accept-Language": "en-US,en;q=0.9,zh;q=0.5"})
    assert assert_error(resp, 404, "not_found")["message"] == "Member #999 does not exist or was deleted."
    assert row_count(services, "membership.member") == 0
