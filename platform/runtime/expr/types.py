"""Static types of the expression language and how entity field types map onto them."""
from __future__ import annotations

from dataclasses import dataclass

from ..i18n_text import Text


@dataclass(frozen=True)
class XType:
    kind: str  # number | text | boolean | date | datetime | null
    integral: bool = False  # a number known to be whole (integer fields, whole literals, COUNT)

    def __str__(self) -> str:
        return self.kind

    @property
    def label(self) -> Text:
        return Text(self.kind, KIND_ZH[self.kind])


KIND_ZH = {"number": "数字", "text": "文本", "boolean": "是/否", "date": "日期", "datetime": "日期时间", "null": "空值"}

NUMBER = XType("number")
INTEGER = XType("number", True)
TEXT = XType("text")
BOOLEAN = XType("boolean")
DATE = XType("date")
DATETIME = XType("datetime")
NULL = XType("null")

RESULT_TYPES = {"number": NUMBER, "integer": INTEGER, "text": TEXT, "boolean": BOOLEAN, "date": DATE, "datetime": DATETIME}

# Entity field type name → expression type. Types missing here (multi select, tags, attachments,
# child tables) hold several values and cannot be used in an expression.
FIELD_TYPES: dict[str, XType] = {
    "integer": INTEGER, "decimal": NUMBER, "money": NUMBER, "percent": NUMBER,
    "text": TEXT, "long_text": TEXT, "email": TEXT, "phone": TEXT, "url": TEXT, "id_number": TEXT,
    "sequence": TEXT, "single_select": TEXT, "boolean": BOOLEAN, "date": DATE, "datetime": DATETIME,
    "link": INTEGER, "user": INTEGER, "org_unit": INTEGER,
}


def unify(a: XType, b: XType) -> XType | None:
    """The common type of two branches (IF, CASE, MIN/MAX), or None when they do not mix."""
    if a.kind == "null":
        return b
    if b.kind == "null":
        return a
    if a.kind != b.kind:
        return None
    return XType(a.kind, a.integral and b.integral)
