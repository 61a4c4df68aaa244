"""The function library's signatures: how many arguments, of which types, giving which type.

Implementations live with the two back ends (``evaluate.py`` for Python, ``sql.py`` for SQL) so each
file reads as one idea; this table is what the type checker and the documentation agree on.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..i18n_text import Text, text

# Parameter kinds: number, text, boolean, temporal (date or datetime), date, any (one value of any type).
ANY_COUNT = 10_000


@dataclass(frozen=True)
class Signature:
    params: tuple[str, ...]      # kinds of the fixed parameters
    rest: str | None = None      # kind of any further parameters
    min_args: int | None = None  # defaults to len(params)
    result: str = "same"         # a type kind, or "same" (the first argument's), or "unify" (all arguments')
    en: str = ""
    zh: str = ""

    @property
    def minimum(self) -> int:
        return len(self.params) if self.min_args is None else self.min_args

    @property
    def maximum(self) -> int:
        return ANY_COUNT if self.rest else len(self.params)

    def describe(self) -> Text:
        return text(self.en, self.zh)


FUNCTIONS: dict[str, Signature] = {
    "IF": Signature(("boolean", "any", "any"), min_args=2, result="special",
                    en="IF(condition, then, else): else may be left out (NULL)", zh="IF(条件, 成立时, 否则)：可省略“否则”（为空）"),
    "CASE": Signature(("boolean", "any"), rest="any", result="special",
                      en="CASE(cond1, value1, cond2, value2, ..., else)", zh="CASE(条件1, 值1, 条件2, 值2, ..., 否则)"),
    "AND": Signature(("boolean",), rest="boolean", result="boolean", en="AND(a, b, ...)", zh="AND(a, b, ...)"),
    "OR": Signature(("boolean",), rest="boolean", result="boolean", en="OR(a, b, ...)", zh="OR(a, b, ...)"),
    "NOT": Signature(("boolean",), result="boolean", en="NOT(a)", zh="NOT(a)"),
    "ISBLANK": Signature(("any",), result="boolean", en="ISBLANK(value)", zh="ISBLANK(值)"),
    "ROUND": Signature(("number", "number"), min_args=1, result="number", en="ROUND(number, places)", zh="ROUND(数字, 小数位数)"),
    "ABS": Signature(("number",), en="ABS(number)", zh="ABS(数字)"),
    "MIN": Signature(("comparable",), rest="comparable", result="unify", en="MIN(a, b, ...)", zh="MIN(a, b, ...)"),
    "MAX": Signature(("comparable",), rest="comparable", result="unify", en="MAX(a, b, ...)", zh="MAX(a, b, ...)"),
    "CONCAT": Signature(("any",), rest="any", result="text", en="CONCAT(a, b, ...)", zh="CONCAT(a, b, ...)"),
    "LEN": Signature(("text",), result="integer", en="LEN(text)", zh="LEN(文本)"),
    "UPPER": Signature(("text",), result="text", en="UPPER(text)", zh="UPPER(文本)"),
    "LOWER": Signature(("text",), result="text", en="LOWER(text)", zh="LOWER(文本)"),
    "TRIM": Signature(("text",), result="text", en="TRIM(text)", zh="TRIM(文本)"),
    "LEFT": Signature(("text", "number"), result="text", en="LEFT(text, count)", zh="LEFT(文本, 字符数)"),
    "RIGHT": Signature(("text", "number"), result="text", en="RIGHT(text, count)", zh="RIGHT(文本, 字符数)"),
    "CONTAINS": Signature(("text", "text"), result="boolean", en="CONTAINS(text, part)", zh="CONTAINS(文本, 片段)"),
    "TODAY": Signature((), result="date", en="TODAY()", zh="TODAY()"),
    "NOW": Signature((), result="datetime", en="NOW()", zh="NOW()"),
    "DATE": Signature(("number", "number", "number"), result="date", en="DATE(year, month, day)", zh="DATE(年, 月, 日)"),
    "YEAR": Signature(("temporal",), result="integer", en="YEAR(date)", zh="YEAR(日期)"),
    "MONTH": Signature(("temporal",), result="integer", en="MONTH(date)", zh="MONTH(日期)"),
    "DAY": Signature(("temporal",), result="integer", en="DAY(date)", zh="DAY(日期)"),
    "DAYS_BETWEEN": Signature(("temporal", "temporal"), result="integer",
                              en="DAYS_BETWEEN(start, end): whole days from start to end", zh="DAYS_BETWEEN(开始, 结束)：相差的天数"),
    "ADD_DAYS": Signature(("temporal", "number"), en="ADD_DAYS(date, days)", zh="ADD_DAYS(日期, 天数)"),
    "ADD_MONTHS": Signature(("temporal", "number"), en="ADD_MONTHS(date, months)", zh="ADD_MONTHS(日期, 月数)"),
}
