"""Every field type: good input is accepted and normalised, bad input is refused with a clear
message, spreadsheet text parses, and values round-trip through RecordService → QueryService."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from core_support import SAMPLE, add_org_unit, admin_id, fresh_services, lab_documents, publish
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.fields import default_registry

ALL_TYPES = {
    "text", "long_text", "integer", "decimal", "money", "percent", "boolean", "date", "datetime", "single_select",
    "multi_select", "email", "phone", "url", "id_number", "sequence", "link", "child_table", "tags", "attachment", "user", "org_unit",
}
UTC = dt.timezone.utc
ID_FEMALE = "11010519491231002X"   # born 1949-12-31, 17th digit even → female
ID_MALE = "440524198001010013"     # born 1980-01-01, 17th digit odd → male


@pytest.fixture(scope="module")
def lab(databases, tmp_path_factory):
    services = fresh_services(databases, tmp_path_factory)
    publish(services, lab_documents())
    ctx = {"services": services}
    ctx["category"] = services.records.create("lab.category", {"name": "水果", "code": "FRUIT"}, SYSTEM)
    ctx["org"] = add_org_unit(services, "华东区", "east")
    ctx["admin"] = admin_id(services)
    upload = services.settings.upload_dir
    ctx["txt"] = services.records.store_file(upload, "notes.txt", "text/plain", b"hello", SYSTEM)
    ctx["pdf"] = services.records.store_file(upload, "scan.pdf", "application/pdf", b"%PDF-1.4", SYSTEM)
    ctx["exe"] = services.records.store_file(upload, "tool.exe", "application/octet-stream", b"MZ", SYSTEM)
    yield ctx
    services.engine.dispose()


def sample_field(name):
    return next(f for f in compiled_sample().fields if f.name == name)


_CATALOG = {}


def compiled_sample():
    if "c" not in _CATALOG:
        from crmkit.runtime.meta.compile import compile_documents

        _CATALOG["c"] = compile_documents(lab_documents(), default_registry())
    return _CATALOG["c"].entity("lab.sample")


def create_and_read(lab, data) -> dict:
    s = lab["services"]
    rid = s.records.create("lab.sample", data, SYSTEM)
    return s.queries.get("lab.sample", rid, SYSTEM)


def count_samples(lab) -> int:
    return lab["services"].queries.list("lab.sample", SYSTEM, count="exact", limit=1).total


def test_the_registry_has_the_22_types_and_the_test_entity_uses_every_one():
    # plus the three computed kinds, covered by tests/test_computed.py
    assert set(default_registry().names()) == ALL_TYPES | {"formula", "lookup", "rollup"}
    assert {f["type"] for f in SAMPLE["fields"]} == ALL_TYPES


# (field, input, value read back) — special values "@category", "@org", "@admin" are filled in from the fixture.
GOOD = [
    ("title", "  你好 world  ", "你好 world"),
    ("title", 123, "123"),
    ("title", "   ", None),
    ("note", "第一行\n第二行", "第一行\n第二行"),
    ("count", 7, 7),
    ("count", "1,000", 1000),
    ("count", 12.0, 12),
    ("ratio", "1234.5", Decimal("1234.500")),
    ("ratio", 0.125, Decimal("0.125")),
    ("ratio", "-99999.999", Decimal("-99999.999")),
    ("price", "¥1,234.50", Decimal("1234.50")),
    ("price", "9999999999999.99", Decimal("9999999999999.99")),
    ("share", "12.5%", Decimal("12.50")),
    ("active", True, True),
    ("active", "是", True),
    ("active", "否", False),
    ("active", "no", False),
    ("active", 1, True),
    ("day", "2024-03-05", dt.date(2024, 3, 5)),
    ("day", "2024年3月5日", dt.date(2024, 3, 5)),
    ("day", "2024/3/5", dt.date(2024, 3, 5)),
    ("at", "2024-03-05 10:00", dt.datetime(2024, 3, 5, 2, 0, tzinfo=UTC)),          # naive = Asia/Shanghai
    ("at", "2024-03-05T10:00:00Z", dt.datetime(2024, 3, 5, 10, 0, tzinfo=UTC)),
    ("at", "2024-03-05T10:00:00-05:00", dt.datetime(2024, 3, 5, 15, 0, tzinfo=UTC)),
    ("at", "2024年3月5日 08:30", dt.datetime(2024, 3, 5, 0, 30, tzinfo=UTC)),
    ("color", "red", "red"),
    ("color", "绿色", "green"),
    ("color", "Blue", "blue"),
    ("colors", ["red", "蓝色"], ["red", "blue"]),
    ("colors", "red、red", ["red"]),
    ("colors", [], []),
    ("email", " Ann@Example.COM ", "ann@example.com"),
    ("phone", "138 0013 8000", "13800138000"),
    ("phone", "+86 139-1234-5678", "13912345678"),
    ("phone", "+44 20 7946 0958", "+442079460958"),
    ("site", "https://example.com/a?b=1", "https://example.com/a?b=1"),
    ("site", "http://localhost:8000", "http://localhost:8000"),
    ("idno", ID_FEMALE.lower(), ID_FEMALE),
    ("category", "@category", "@category"),
    ("category", {"id": "@category"}, "@category"),
    ("tags", "vip, 新客；高价值", ["vip", "新客", "高价值"]),
    ("tags", ["a", "a", "b"], ["a", "b"]),
    ("handler", "@admin", "@admin"),
    ("org", "@org", "@org"),
]


def fill(lab, value):
    if isinstance(value, str) and value.startswith("@"):
        return lab[value[1:]]
    if isinstance(value, dict):
        return {k: fill(lab, v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("name, raw, expected", GOOD, ids=[f"{g[0]}-{i}" for i, g in enumerate(GOOD)])
def test_good_value_is_stored_and_read_back(lab, name, raw, expected):
    row = create_and_read(lab, {name: fill(lab, raw)})
    assert row[name] == fill(lab, expected)
    assert type(row[name]) is type(fill(lab, expected))


# (field, input, words the field's error must contain)
BAD = [
    ("title", "x" * 21, "Longer than maximum length 20"),
    ("title", ["a"], "Not a valid string"),
    ("note", "y" * 501, "Longer than maximum length 500"),
    ("count", "abc", "Not a valid integer"),
    ("count", 12.5, "fractional part"),
    ("count", True, "Not a valid integer"),
    ("count", 1001, "less than or equal to 1000"),
    ("count", -1, "greater than or equal to 0"),
    ("ratio", "1.2345", "at most 3 decimal places"),
    ("ratio", "100000", "at most 5 digits before the decimal point"),
    ("ratio", "NaN", "not permitted"),
    ("ratio", "many", "Not a valid number"),
    ("price", "1.005", "at most 2 decimal places"),
    ("price", "99999999999999", "at most 13 digits before the decimal point"),
    ("share", "101", "less than or equal to 100"),
    ("active", "maybe", "Not a valid yes/no value"),
    ("active", 2, "Not a valid yes/no value"),
    ("day", "2024-02-30", "Not a valid date"),
    ("day", "yesterday", "Not a valid date"),
    ("at", "2024-13-01 10:00", "Not a valid date and time"),
    ("at", 5, "Not a valid date and time"),
    ("color", "purple", "'purple' is not one of the options (red, green, blue)"),
    ("colors", ["red", "purple"], "item 2: 'purple' is not one of the options"),
    ("colors", ["red", "green", "blue"], "Choose at most 2"),
    ("email", "not-an-email", "Not a valid email address"),
    ("phone", "12345", "Not a valid phone number"),
    ("phone", "+86 12800138000", "mainland China mobile"),
    ("phone", "1380013800", "Not a valid phone number"),
    ("site", "ftp://example.com", "start it with http:// or https://"),
    ("site", "javascript:alert(1)", "start it with http:// or https://"),
    ("idno", "110105194912310021", "check digit is wrong"),
    ("idno", "12345", "17 digits followed by a digit or X"),
    ("idno", "110105194902301234", "impossible birth date"),
    ("serial", "S-99999", "assigned automatically"),
    ("category", 999999, "There is no Category with id 999999"),
    ("category", -1, "Not a valid record id"),
    ("category", "abc", "Not a valid integer"),
    ("category", 10**30, "Not a valid record id"),          # beyond BIGINT: refused before any SQL
    ("category", 12.5, "fractional part"),
    ("handler", 2**31, "Not a valid record id"),           # FAB user ids are 32-bit
    ("org", 2**63, "Not a valid record id"),
    ("at", "0001-01-01 00:00", "out of range"),
    ("title", "a\x00b", "NUL character"),
    ("note", "line\x00", "NUL character"),
    ("tags", ["ok", "b\x00d"], "NUL character"),
    ("tags", ["a", "b", "c", "d"], "Choose at most 3"),
    ("tags", ["x" * 33], "at most 32 characters"),
    ("files", "not-a-file-id", "Not a valid file reference"),
    ("files", ["0" * 32], "A file is missing"),
    ("files", ["@exe"], "'tool.exe' is not an accepted file type"),
    ("files", ["@txt", "@pdf", "@txt2"], "At most 2 files"),
    ("handler", 99999, "There is no user with id 99999"),
    ("org", 99999, "There is no org unit with id 99999"),
    ("lines", "rows", "Not a valid list"),
]


@pytest.mark.parametrize("name, raw, words", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_value_is_refused_with_a_clear_message_and_nothing_is_saved(lab, name, raw, words):
    if name == "files":
        raw = raw if not isinstance(raw, list) else [lab["txt"]["id"] if v == "@txt2" else (lab[v[1:]]["id"] if v.startswith("@") else v) for v in raw]
    before = count_samples(lab)
    with pytest.raises(ValidationFailed) as info:
        lab["services"].records.create("lab.sample", {"title": "bad", name: raw}, SYSTEM)
    messages = info.value.field_errors.get(name)
    assert messages and any(words in m for m in messages), info.value.field_errors
    assert info.value.status == 422 and info.value.to_dict()["details"]["fields"][name] == messages
    assert count_samples(lab) == before


def test_child_rows_are_validated_row_by_row(lab):
    before = count_samples(lab)
    with pytest.raises(ValidationFailed) as info:
        lab["services"].records.create("lab.sample", {"title": "rows", "lines": [{"item": "ok", "qty": 1}, {"qty": 0}, "x"]}, SYSTEM)
    errors = info.value.field_errors
    assert errors["lines.1.item"] == ["This field is required."]
    assert any("greater than or equal to 1" in m for m in errors["lines.1.qty"])
    assert errors["lines.2"] == ["Each row must be an object of field values."]
    with pytest.raises(ValidationFailed) as info:
        lab["services"].records.create("lab.sample", {"lines": [{"item": str(i)} for i in range(6)]}, SYSTEM)
    assert info.value.field_errors == {"lines": ["At most 5 rows."]}
    assert count_samples(lab) == before


def test_id_number_derives_gender_and_birthday_without_overriding_given_values(lab):
    row = create_and_read(lab, {"idno": ID_FEMALE})
    assert (row["gender"], row["birthday"]) == ("female", dt.date(1949, 12, 31))
    row = create_and_read(lab, {"idno": ID_MALE})
    assert (row["gender"], row["birthday"]) == ("male", dt.date(1980, 1, 1))
    row = create_and_read(lab, {"idno": ID_MALE, "gender": "female", "birthday": "2000-01-01"})
    assert (row["gender"], row["birthday"]) == ("female", dt.date(2000, 1, 1))


def test_sequence_is_prefixed_and_zero_padded(lab):
    first = create_and_read(lab, {"title": "seq a"})["serial"]
    second = create_and_read(lab, {"title": "seq b"})["serial"]
    assert first.startswith("S-") and len(first) == len("S-00000")
    assert int(second[2:]) == int(first[2:]) + 1


def test_attachment_keeps_file_descriptors(lab):
    row = create_and_read(lab, {"files": [lab["txt"]["id"], lab["pdf"]]})
    assert row["files"] == [
        {"id": lab["txt"]["id"], "name": "notes.txt", "size": 5, "content_type": "text/plain"},
        {"id": lab["pdf"]["id"], "name": "scan.pdf", "size": 8, "content_type": "application/pdf"},
    ]


def test_a_record_with_every_field_round_trips_through_get_and_list(lab):
    s = lab["services"]
    data = {
        "title": "全字段", "note": "多行\n文本", "count": 42, "ratio": "3.142", "price": "88.80", "share": "7.5", "active": True,
        "day": "2024-02-29", "at": "2024-02-29T23:30:00+08:00", "color": "green", "colors": ["blue", "red"],
        "email": "li@example.cn", "phone": "13600001111", "site": "https://crm.example.cn", "idno": ID_FEMALE,
        "category": lab["category"], "lines": [{"item": "苹果", "qty": 3}, {"item": "梨", "qty": 1}], "tags": ["批发"],
        "files": [lab["txt"]["id"]], "handler": lab["admin"], "org": lab["org"],
    }
    rid = s.records.create("lab.sample", data, SYSTEM)
    got = s.queries.get("lab.sample", rid, SYSTEM)
    expected = {
        "title": "全字段", "note": "多行\n文本", "count": 42, "ratio": Decimal("3.142"), "price": Decimal("88.80"), "share": Decimal("7.50"),
        "active": True, "day": dt.date(2024, 2, 29), "at": dt.datetime(2024, 2, 29, 15, 30, tzinfo=UTC), "color": "green",
        "colors": ["blue", "red"], "email": "li@example.cn", "phone": "13600001111", "site": "https://crm.example.cn", "idno": ID_FEMALE,
        "gender": "female", "birthday": dt.date(1949, 12, 31), "category": lab["category"], "tags": ["批发"], "handler": lab["admin"],
        "org": lab["org"],
    }
    assert {k: got[k] for k in expected} == expected
    assert got["serial"].startswith("S-")
    assert [(r["item"], r["qty"]) for r in got["lines"]] == [("苹果", 3), ("梨", 1)]
    assert got["files"][0]["name"] == "notes.txt"
    assert got["_labels"] == {"category": "水果", "handler": "admin", "org": "华东区"}
    listed = s.queries.list("lab.sample", SYSTEM, filter={"field": "id", "op": "eq", "value": rid}).rows
    assert len(listed) == 1 and {k: listed[0][k] for k in expected} == expected


# --- CSV / Excel text ------------------------------------------------------------------------------------------------
PARSE = [
    ("title", "  名字 ", "名字"),
    ("title", "", None),
    ("count", "999", 999),
    ("ratio", "12,345.5", Decimal("12345.5")),
    ("price", "¥1,234,567.80", Decimal("1234567.80")),
    ("share", "12.5%", Decimal("12.5")),
    ("active", "是", True), ("active", "否", False), ("active", "yes", True), ("active", "No", False), ("active", "TRUE", True),
    ("day", "2024年3月5日", dt.date(2024, 3, 5)), ("day", "2024/3/5", dt.date(2024, 3, 5)),
    ("day", "2024-03-05", dt.date(2024, 3, 5)), ("day", "2024.3.5", dt.date(2024, 3, 5)), ("day", "20240305", dt.date(2024, 3, 5)),
    ("at", "2024/3/5 9:30", dt.datetime(2024, 3, 5, 1, 30, tzinfo=UTC)),
    ("at", "2024年3月5日 09:30", dt.datetime(2024, 3, 5, 1, 30, tzinfo=UTC)),
    ("at", "2024-03-05T09:30:00+08:00", dt.datetime(2024, 3, 5, 1, 30, tzinfo=UTC)),
    ("color", "红色", "red"), ("color", "Red", "red"), ("color", "red", "red"),
    ("colors", "红色;绿色", ["red", "green"]), ("colors", "Red, blue", ["red", "blue"]), ("colors", "红色、Green", ["red", "green"]),
    ("tags", "新客；高价值", ["新客", "高价值"]),
    ("phone", "138-0013-8000", "13800138000"), ("phone", "0086 13800138000", "13800138000"),
    ("idno", "11010519491231002x", ID_FEMALE),
    ("category", "12", 12),
    ("email", " A@B.CN ", "a@b.cn"),
]


@pytest.mark.parametrize("name, text, expected", PARSE, ids=[f"{p[0]}:{p[1]}" for p in PARSE])
def test_parse_text_reads_spreadsheet_cells(name, text, expected):
    f = sample_field(name)
    assert default_registry().get(f.type).parse_text(f, text) == expected


PARSE_BAD = [
    ("count", "1,234", "less than or equal to 1000"),
    ("count", "1.5", "Not a valid integer"),
    ("day", "3/5/2024", "Not a valid date"),
    ("at", "下午三点", "Not a valid date and time"),
    ("color", "紫色", "'紫色' is not one of the options"),
    ("colors", "红色;紫色", "item 2: '紫色' is not one of the options"),
    ("active", "也许", "Not a valid yes/no value"),
    ("phone", "110", "Not a valid phone number"),
]


@pytest.mark.parametrize("name, text, words", PARSE_BAD, ids=[f"{p[0]}:{p[1]}" for p in PARSE_BAD])
def test_parse_text_refuses_unreadable_cells_with_a_message(name, text, words):
    f = sample_field(name)
    with pytest.raises(ValueError) as info:
        default_registry().get(f.type).parse_text(f, text)
    assert words in str(info.value)


DISPLAY = [
    ("price", Decimal("1234.5"), "zh", "¥1,234.50"),
    ("share", Decimal("7.5"), "en", "7.50%"),
    ("ratio", Decimal("1234.5"), "en", "1,234.500"),
    ("active", True, "zh", "是"), ("active", False, "en", "No"),
    ("color", "green", "zh", "绿色"), ("color", "green", "en", "Green"),
    ("colors", ["red", "blue"], "zh", "红色、蓝色"), ("colors", ["red", "blue"], "en", "Red, Blue"),
    ("at", dt.datetime(2024, 3, 5, 2, 0, tzinfo=UTC), "zh", "2024-03-05 10:00"),
    ("lines", [{}, {}], "zh", "2 行"),
    ("title", None, "zh", ""),
]


@pytest.mark.parametrize("name, value, locale, text", DISPLAY, ids=[f"{d[0]}-{d[2]}-{i}" for i, d in enumerate(DISPLAY)])
def test_display_text(name, value, locale, text):
    f = sample_field(name)
    assert default_registry().get(f.type).display(f, value, locale) == text


@pytest.mark.parametrize("name", ["count", "ratio", "price", "share"])
def test_an_empty_number_from_a_form_is_stored_as_empty_even_with_a_range(lab, name):
    # A blank form input arrives as ""; with min/max set this used to crash the range check (a 500).
    assert create_and_read(lab, {name: ""})[name] is None
    assert create_and_read(lab, {name: "  "})[name] is None


def _outcome(field, value):
    """What a marshmallow field makes of ``value``: ("ok", result) or ("error", messages) — for comparing a fast path with the full one."""
    from marshmallow import ValidationError

    try:
        return "ok", field.deserialize(value)
    except ValidationError as exc:
        return "error", exc.messages


@pytest.mark.parametrize("required", [False, True])
def test_plain_text_fast_path_gives_what_the_full_path_gives(required):
    """TrimmedString skips marshmallow's machinery for a plain in-range string; every input must come out the same as
    through the full path (forced here by clearing the cached bounds)."""
    from crmkit.runtime.fields.messages import Length
    from crmkit.runtime.fields.text import TrimmedString

    fast = TrimmedString(allow_none=True, required=required, validate=[Length(min=2, max=5)])
    full = TrimmedString(allow_none=True, required=required, validate=[Length(min=2, max=5)])
    full.__dict__["_plain_bounds"] = None  # the cached property, forced to "take the full path"
    assert fast._plain_bounds == (2, 5)

    for value in ["  abc ", "a", "abcdef", "", "   ", None, 12, "ab\n", "中文字", "ab", "abcde", b"abc"]:
        assert _outcome(fast, value) == _outcome(full, value), value


@pytest.mark.parametrize("required", [False, True])
def test_phone_and_email_fast_paths_give_what_the_full_paths_give(required):
    """PhoneString and LowercaseString (e-mail) take a shortcut for a value that is already canonical and valid; every
    input must come out the same as through the full path (forced here by a ``_plain`` that always declines)."""
    from marshmallow import validate

    from crmkit.runtime.fields.messages import Length
    from crmkit.runtime.fields.text import LowercaseString, PhoneString

    class FullPhone(PhoneString):
        def _plain(self, value):
            return None

    class FullEmail(LowercaseString):
        def _plain(self, value):
            return None

    for international in (True, False):
        fast, full = PhoneString(allow_international=international, allow_none=True, required=required), \
            FullPhone(allow_international=international, allow_none=True, required=required)
        for value in ["13800138000", " 13800138000 ", "138 0013 8000", "+8613800138000", "008613800138000", "12800138000", "1380013800",
                      "138001380001", "+14155550123", "13800138000\n", "", "  ", None, 13800138000, "１３８００１３８０００", "abc"]:
            assert _outcome(fast, value) == _outcome(full, value), (international, value)
        assert _outcome(fast, "13800138000") == ("ok", "13800138000")

    checks = [Length(max=20), validate.Email(error="bad email")]
    fast_mail, full_mail = LowercaseString(allow_none=True, required=required, validate=checks), \
        FullEmail(allow_none=True, required=required, validate=checks)
    for value in ["a@example.com", " A@Example.COM ", "not-an-email", "averyveryverylongname@example.com", "x@y", "", "  ", None, 5,
                  "名字@例子.中国", "a@b.co\n"]:
        assert _outcome(fast_mail, value) == _outcome(full_mail, value), value
    assert _outcome(fast_mail, " A@Example.COM ") == ("ok", "a@example.com")


def test_id_number_fast_path_gives_what_the_full_path_gives():
    from crmkit.runtime.fields.identity import IdNumberString

    class Full(IdNumberString):
        def _plain(self, value):
            return None

    for required in (False, True):
        fast, full = IdNumberString(allow_none=True, required=required), Full(allow_none=True, required=required)
        for value in ["11010519491231002X", "11010519491231002x", " 1101 0519 4912 3100 2X ", "110105194912310021", "11010519491331002X",
                      "1101051949123100", "", "  ", None, 110105194912310020, "abc", "11010520991231002X"]:
            assert _outcome(fast, value) == _outcome(full, value), value
        assert _outcome(fast, " 11010519491231002x") == ("ok", "11010519491231002X")


def test_the_option_index_resolves_every_input_as_the_option_list_does():
    """OptionString resolves cells through an index built once; it must pick the same option as walking the list."""
    from marshmallow import ValidationError

    from crmkit.runtime.fields.choice import OptionIndex, resolve_option
    from crmkit.runtime.meta.model import FieldDef, Label

    options = [{"value": "a", "label": {"zh": "甲", "en": "Alpha"}},
               {"value": "Alpha", "label": {"zh": "乙", "en": "Beta"}},  # a value equal to an earlier option's English label
               {"value": "c", "label": {"zh": "a", "en": "alpha two"}},  # a Chinese label equal to an earlier value
               {"value": "d", "label": "丁"},  # one label for both languages
               {"value": "e", "label": {"zh": "戊", "en": "BETA"}}]  # an English label equal to an earlier one but for case
    f = FieldDef(id="fld_x", name="x", type="single_select", label=Label("x", "x"), config={"options": options})
    index = OptionIndex(f)

    def outcome(resolve, s):
        try:
            return "ok", resolve(s)
        except ValidationError as exc:
            return "error", exc.messages

    inputs = ["a", "A", "甲", "alpha", "ALPHA", "Alpha", "乙", "beta", "Beta", "BETA", "c", "alpha two", "d", "丁", "e", "戊", "z", "Α", "a "]
    for s in inputs:
        assert outcome(index.resolve, s) == outcome(lambda v: resolve_option(f, v), s), s
    assert [index.resolve(s) for s in ("Alpha", "alpha", "BETA", "a")] == ["a", "a", "Alpha", "a"]  # first matching option wins

