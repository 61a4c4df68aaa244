"""Text-like types: text, long text, email, phone, url."""
from __future__ import annotations

import re
from functools import cached_property
from typing import ClassVar

from marshmallow import ValidationError, fields as mf, validate
from sqlalchemy import String, Text

from ..i18n_text import text
from ..meta.model import FieldDef, Label
from .base import FieldType, field_name, op_name
from .messages import Length, LocalizedString, literal

TEXT_OPERATORS = ("eq", "ne", "contains", "not_contains", "starts_with", "in", "not_in", "is_empty", "is_not_empty")


class TrimmedString(LocalizedString):
    """A string with surrounding whitespace removed; empty becomes None."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        s = super()._deserialize(value, attr, data, **kwargs)
        s = s.strip()
        return s or None

    def _validate(self, value):
        if value is not None:  # blank input became None: length/pattern checks do not apply
            super()._validate(value)

    def deserialize(self, value, attr=None, data=None, **kwargs):
        if type(value) is str:
            # Most cells of an import are plain strings that are already fine: ``_plain`` gives the same result as the
            # full path below without marshmallow's per-call machinery, or None to send the value down that path
            # (blank, too long, not valid: the full path says what is wrong).
            plain = self._plain(value)
            if plain is not None:
                return plain
        out = super().deserialize(value, attr, data, **kwargs)
        if out is None and self.required:
            raise ValidationError(self.error_messages["required"])
        return out

    def _plain(self, value: str) -> str | None:
        if self._plain_bounds is None:
            return None
        lo, hi = self._plain_bounds
        s = value.strip()
        return s if s and lo <= len(s) <= hi else None

    def _passes_validators(self, value: str) -> bool:
        """Whether every validator accepts ``value`` (the full path reports each one that does not)."""
        try:
            return all(v(value) is not False for v in self.validators)
        except ValidationError:
            return False

    @cached_property
    def _plain_bounds(self) -> tuple[int, float] | None:
        """(min, max) length when this is a plain trimmed string whose only checks are lengths; None otherwise."""
        lengths = [v for v in self.validators if isinstance(v, Length)]
        if type(self) is not TrimmedString or len(lengths) != len(self.validators) or any(type(v) is not Length or v.equal is not None for v in lengths):
            return None
        return (max([v.min for v in lengths if v.min is not None], default=0), min([v.max for v in lengths if v.max is not None], default=float("inf")))


class _TextBase(FieldType):
    operators: ClassVar[tuple[str, ...]] = TEXT_OPERATORS
    default_max = 255

    def max_length(self, f: FieldDef) -> int:
        return int(f.opt("max_length", self.default_max))

    def sql_type(self, f: FieldDef):
        return String(self.max_length(f))

    def validators(self, f: FieldDef) -> list:
        return [Length(min=f.opt("min_length"), max=self.max_length(f))]

    def marshmallow_field(self, f: FieldDef) -> mf.Field:
        return TrimmedString(allow_none=True, validate=self.validators(f))

    def check_definition(self, f, entity_key, catalog_entities):
        lo = f.opt("min_length")
        if lo is not None and lo > self.max_length(f):
            return [f"min_length ({lo}) is greater than max_length ({self.max_length(f)})"]
        return []

    def json_schema(self, f: FieldDef) -> dict:
        s = {"type": ["string", "null"], "maxLength": self.max_length(f)}
        if f.opt("min_length"):
            s["minLength"] = f.opt("min_length")
        return s

    def coerce_filter_value(self, f, value):
        """Normalise like stored input (trimmed, lower-case email, canonical phone); a value no record
        could hold (too long, not an email) is not an error, it simply matches nothing."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            from ..errors import BadQuery

            raise BadQuery(text("Filter value {value!r} is not valid for field '{field}': use text.",
                                "“{field}”的筛选值 {value!r} 无效：请输入文本。", value=value, field=field_name(f)))
        cleaned = str(value).strip()
        try:
            return self._deserialize(f, cleaned)
        except ValueError:
            return cleaned

    def filter_clause(self, f, col, op, value, ctx):
        if op in ("contains", "not_contains", "starts_with"):
            if not isinstance(value, str) or value == "":
                from ..errors import BadQuery

                raise BadQuery(text("'{op}' on '{field}' needs a non-empty text value.", "“{field}”的“{op}”条件需要填写非空文本。",
                                    op=op_name(op), field=field_name(f)))
            if op == "starts_with":
                return _like(col, value, ctx.dialect, prefix=True)
            clause = _like(col, value, ctx.dialect)
            from sqlalchemy import not_, or_

            return clause if op == "contains" else or_(not_(clause), col.is_(None))
        return super().filter_clause(f, col, op, value, ctx)


def _like(col, value: str, dialect: str, prefix: bool = False):
    from .base import escape_like

    pattern = escape_like(value) + "%"
    if not prefix:
        pattern = "%" + pattern
    return col.ilike(pattern, escape="\\") if dialect == "postgresql" else col.like(pattern, escape="\\")


class TextType(_TextBase):
    name = "text"
    label = Label("单行文本", "Text")
    config_properties = {
        "max_length": {"type": "integer", "minimum": 1, "maximum": 4000},
        "min_length": {"type": "integer", "minimum": 0},
        "pattern": {"type": "string", "format": "regex"},
        "pattern_message": {"$ref": "#/$defs/label"},
    }

    def validators(self, f):
        vs = super().validators(f)
        if f.opt("pattern"):
            msg = Label.of(f.opt("pattern_message")) if f.opt("pattern_message") else None
            error = text(msg.en, msg.zh) if msg else text("Does not match the required format ({pattern}).", "格式不符合要求（{pattern}）。",
                                                             pattern=f.opt("pattern"))
            vs.append(validate.Regexp(f.opt("pattern"), error=literal(error)))
        return vs

    def json_schema(self, f):
        s = super().json_schema(f)
        if f.opt("pattern"):
            s["pattern"] = f.opt("pattern")
        return s


class LongTextType(_TextBase):
    name = "long_text"
    label = Label("多行文本", "Long text")
    widget = "textarea"
    sortable = False
    default_max = 20000
    operators = ("contains", "not_contains", "is_empty", "is_not_empty")
    config_properties = {"max_length": {"type": "integer", "minimum": 1, "maximum": 1000000}, "min_length": {"type": "integer", "minimum": 0}}

    def sql_type(self, f):
        return Text()


class EmailType(_TextBase):
    name = "email"
    label = Label("邮箱", "Email")
    widget = "email"
    default_max = 254

    def validators(self, f):
        return super().validators(f) + [validate.Email(error=text("Not a valid email address, e.g. name@example.com.", "请输入有效的邮箱地址，如 name@example.com。"))]

    def marshmallow_field(self, f):
        return LowercaseString(allow_none=True, validate=self.validators(f))

    def json_schema(self, f):
        return {**super().json_schema(f), "format": "email"}


class LowercaseString(TrimmedString):
    def _deserialize(self, value, attr, data, **kwargs):
        s = super()._deserialize(value, attr, data, **kwargs)
        return s.lower() if s else s

    def _plain(self, value: str) -> str | None:
        s = value.strip().lower()
        return s if s and self._passes_validators(s) else None


MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")
INTERNATIONAL = re.compile(r"^\+[1-9]\d{6,14}$")
NOT_MAINLAND_MOBILE = text("Not a valid mainland China mobile number (11 digits starting with 13–19).",
                           "请输入有效的大陆手机号（以 13–19 开头的 11 位数字）。")
NOT_A_PHONE = text("Not a valid phone number: use an 11-digit mainland mobile or +country code and number.",
                   "请输入 11 位大陆手机号，或以 + 开头的国际号码（+国家代码 号码）。")


def normalize_phone(raw: str, allow_international: bool = True) -> str:
    """Return the canonical form: 11 digits for mainland mobiles, E.164 otherwise."""
    s = re.sub(r"[\s\-()]", "", raw)
    if s.startswith("0086"):
        s = "+86" + s[4:]
    if s.startswith("+86"):
        local = s[3:]
        if MAINLAND_MOBILE.match(local):
            return local
        raise ValueError(NOT_MAINLAND_MOBILE)
    if MAINLAND_MOBILE.match(s):
        return s
    if allow_international and INTERNATIONAL.match(s):
        return s
    if allow_international:
        raise ValueError(NOT_A_PHONE)
    raise ValueError(NOT_MAINLAND_MOBILE)


class PhoneString(TrimmedString):
    def __init__(self, allow_international: bool = True, **kw):
        super().__init__(**kw)
        self.allow_international = allow_international

    def _deserialize(self, value, attr, data, **kwargs):
        s = super()._deserialize(value, attr, data, **kwargs)
        if s is None:
            return None
        try:
            return normalize_phone(s, self.allow_international)
        except ValueError as exc:
            raise ValidationError(exc.args[0]) from None

    def _plain(self, value: str) -> str | None:
        s = value.strip()  # an 11-digit mainland mobile is already in its canonical form
        return s if len(s) == 11 and MAINLAND_MOBILE.match(s) and self._passes_validators(s) else None


class PhoneType(_TextBase):
    name = "phone"
    label = Label("手机号", "Phone")
    widget = "tel"
    default_max = 20
    config_properties = {"allow_international": {"type": "boolean"}}

    def validators(self, f):
        return []

    def marshmallow_field(self, f):
        return PhoneString(allow_international=bool(f.opt("allow_international", True)), allow_none=True)

    def json_schema(self, f):
        return {"type": ["string", "null"], "pattern": r"^(1[3-9]\d{9}|\+[1-9]\d{6,14})$", "maxLength": 20}


class UrlType(_TextBase):
    name = "url"
    label = Label("网址", "URL")
    widget = "url"
    default_max = 2048

    def validators(self, f):
        return super().validators(f) + [
            validate.URL(schemes={"http", "https"}, require_tld=False,
                         error=text("Not a valid web address; start it with http:// or https://.", "请输入有效的网址，以 http:// 或 https:// 开头。"))
        ]

    def json_schema(self, f):
        return {**super().json_schema(f), "format": "uri"}
