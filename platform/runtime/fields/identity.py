"""Identity types: Chinese resident ID number (居民身份证号) and auto-number sequences."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import String

from ..i18n_text import Text, text
from ..meta.model import FieldDef, Label
from .base import FieldType
from .text import TEXT_OPERATORS, TrimmedString

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
ID_PATTERN = re.compile(r"^\d{17}[\dX]$")


IMPOSSIBLE_BIRTH_DATE = text("The ID number contains an impossible birth date.", "身份证号中的出生日期不存在，请核对。")


def id_number_problem(value: str) -> Text | None:
    """Why an 18-digit resident ID number is invalid, or None when it is valid."""
    if not ID_PATTERN.match(value):
        return text("An ID number has 17 digits followed by a digit or X.", "身份证号应为 17 位数字加 1 位数字或 X。")
    check = ID_CHECK[sum(int(c) * w for c, w in zip(value[:17], ID_WEIGHTS)) % 11]
    if value[17] != check:
        return text("The ID number's check digit is wrong; check it for a typo.", "身份证号校验位不对，请检查是否输错。")
    try:
        born = id_number_birthdate(value)
    except ValueError:
        return IMPOSSIBLE_BIRTH_DATE
    if born > dt.date.today() or born.year < 1900:
        return IMPOSSIBLE_BIRTH_DATE
    return None


def id_number_birthdate(value: str) -> dt.date:
    return dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))


def id_number_gender(value: str) -> str:
    """'male' or 'female', from the 17th digit (odd = male)."""
    return "male" if int(value[16]) % 2 == 1 else "female"


class IdNumberString(TrimmedString):
    def _deserialize(self, value, attr, data, **kwargs):
        s = super()._deserialize(value, attr, data, **kwargs)
        if s is None:
            return None
        s = s.upper().replace(" ", "")
        problem = id_number_problem(s)
        if problem:
            raise ValidationError(problem)
        return s

    def _plain(self, value: str) -> str | None:
        s = value.strip().upper().replace(" ", "")  # what the full path makes of it, then the same checks
        return s if s and id_number_problem(s) is None and self._passes_validators(s) else None


class IdNumberType(FieldType):
    name = "id_number"
    label = Label("身份证号", "Resident ID number")
    operators = TEXT_OPERATORS
    config_properties = {
        "derive_gender": {"type": "string", "description": "a single_select field filled with male/female when empty"},
        "derive_birthday": {"type": "string", "description": "a date field filled with the birth date when empty"},
    }

    def sql_type(self, f):
        return String(18)

    def marshmallow_field(self, f):
        return IdNumberString(allow_none=True)

    def json_schema(self, f):
        return {"type": ["string", "null"], "pattern": r"^\d{17}[\dX]$"}

    def derived_values(self, f: FieldDef, value: str | None) -> dict:
        if not value:
            return {}
        out: dict[str, Any] = {}
        if f.opt("derive_gender"):
            out[f.opt("derive_gender")] = id_number_gender(value)
        if f.opt("derive_birthday"):
            out[f.opt("derive_birthday")] = id_number_birthdate(value)
        return out

    def display(self, f, value, locale):
        return value or ""

    def check_definition(self, f, entity, entities):
        problems = []
        ent = entities.get(entity)
        for key, wanted in (("derive_gender", "single_select"), ("derive_birthday", "date")):
            target = f.opt(key)
            if target and ent is not None:
                other = next((x for x in ent.fields if x.name == target), None)
                if other is None or other.type != wanted:
                    problems.append(f"{key} names '{target}', which is not a {wanted} field of this entity")
        return problems


class SequenceType(FieldType):
    """Prefix + zero-padded serial, assigned by the record service inside the create transaction.

    The counter row is updated in the same transaction as the insert, so a rolled-back
    create also rolls back its number: the series has no gaps, even under concurrency.
    """

    name = "sequence"
    label = Label("自动编号", "Auto number")
    operators = ("eq", "ne", "contains", "starts_with", "in", "not_in", "is_empty", "is_not_empty")
    config_properties = {
        "prefix": {"type": "string", "maxLength": 20, "pattern": "^[A-Za-z0-9\\-_]*$"},
        "digits": {"type": "integer", "minimum": 1, "maximum": 18},
        "start": {"type": "integer", "minimum": 0},
    }
    config_required = ("digits",)

    def sql_type(self, f):
        return String(len(f.opt("prefix", "")) + int(f.opt("digits")) + 2)

    def marshmallow_field(self, f):
        return TrimmedString(allow_none=True)

    def json_schema(self, f):
        return {"type": ["string", "null"], "readOnly": True}

    def format(self, f: FieldDef, n: int) -> str:
        return f"{f.opt('prefix', '')}{n:0{int(f.opt('digits'))}d}"

    def filter_clause(self, f, col, op, value, ctx):
        from .text import _like

        if op in ("contains", "starts_with"):
            return _like(col, str(value), ctx.dialect, prefix=(op == "starts_with"))
        return super().filter_clause(f, col, op, value, ctx)
