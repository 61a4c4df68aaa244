"""marshmallow's built-in messages, replaced by bilingual ``Text``: the field and validator classes
the field types use, so no English-only marshmallow text reaches a user.

marshmallow merges ``default_error_messages`` along the class hierarchy, so a field class
here (or a subclass of one) only lists the keys its marshmallow base adds.
"""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields as mf, validate

from ..i18n_text import Text

# marshmallow's type for a field's ``default_error_messages`` (a ``Text`` is a str).
Messages = dict[str, str | list[Any] | dict[Any, Any]]

FIELD_MESSAGES: Messages = {
    "required": Text("Missing data for required field.", "缺少必填数据。"),
    "null": Text("Field may not be null.", "此项不能为空值。"),
    "validator_failed": Text("Invalid value.", "值无效。"),
}
STRING_MESSAGES: Messages = {
    **FIELD_MESSAGES,
    "invalid": Text("Not a valid string.", "请输入文本。"),
    "invalid_utf8": Text("Not a valid utf-8 string.", "文本不是有效的 UTF-8 编码。"),
}
NUMBER_MESSAGES: Messages = {
    **FIELD_MESSAGES,
    "invalid": Text("Not a valid number.", "请输入数字。"),
    "too_large": Text("Number too large.", "数值过大。"),
    "special": Text("Special numeric values (nan or infinity) are not permitted.", "不能使用 NaN 或无穷大等特殊数值，请输入普通数字。"),
}
INTEGER_MESSAGES: Messages = {**NUMBER_MESSAGES, "invalid": Text("Not a valid integer.", "请输入整数。")}
LIST_MESSAGES: Messages = {**FIELD_MESSAGES, "invalid": Text("Not a valid list.", "请提供一组值（列表）。")}
BOOLEAN_MESSAGES: Messages = {**FIELD_MESSAGES, "invalid": Text("Not a valid boolean.", "请选择是或否。")}
DATE_MESSAGES: Messages = {
    **FIELD_MESSAGES,
    "invalid": Text("Not a valid date.", "请输入有效日期，格式为 YYYY-MM-DD。"),
    "invalid_awareness": Text("Not a valid date.", "请输入有效日期，格式为 YYYY-MM-DD。"),
    "format": Text('"{input}" cannot be formatted as a date.', "“{input}”无法格式化为日期。"),
}
DATETIME_MESSAGES: Messages = {
    **FIELD_MESSAGES,
    "invalid": Text("Not a valid datetime.", "请输入有效的日期时间，格式为 YYYY-MM-DD HH:MM。"),
    "invalid_awareness": Text("Not a valid datetime.", "请输入有效的日期时间，格式为 YYYY-MM-DD HH:MM。"),
    "format": Text('"{input}" cannot be formatted as a datetime.', "“{input}”无法格式化为日期时间。"),
}
SCHEMA_MESSAGES: dict[str, str] = {
    "unknown": Text("Unknown field.", "没有这个字段。"),
    "type": Text("Invalid input type.", "输入类型无效。"),
}


class LocalizedRaw(mf.Raw):
    default_error_messages = FIELD_MESSAGES


class LocalizedString(mf.String):
    default_error_messages = STRING_MESSAGES


class InputSchema(Schema):
    """Base of the generated input schemas: unknown keys are refused in both languages."""

    error_messages = SCHEMA_MESSAGES


class Length(validate.Length):
    message_min = Text("Shorter than minimum length {min}.", "至少需要 {min} 个字符。")
    message_max = Text("Longer than maximum length {max}.", "最多 {max} 个字符，请删减。")
    message_all = Text("Length must be between {min} and {max}.", "长度须在 {min} 到 {max} 个字符之间。")
    message_equal = Text("Length must be {equal}.", "长度须为 {equal} 个字符。")


class Range(validate.Range):
    """Inclusive bounds (the only kind field types use), with bilingual messages."""

    def __init__(self, min=None, max=None, *, error: str | None = None):  # noqa: A002
        super().__init__(min, max, error=error)
        self.message_min = Text("Must be greater than or equal to {min}.", "不能小于 {min}。")
        self.message_max = Text("Must be less than or equal to {max}.", "不能大于 {max}。")
        self.message_all = Text("Must be greater than or equal to {min} and less than or equal to {max}.", "须在 {min} 到 {max} 之间。")


def literal(message: str) -> str:
    """``message`` made safe for marshmallow's ``.format()`` of validator errors (braces kept as they are)."""
    if isinstance(message, Text):
        return Text(literal(message.en), literal(message.zh))
    return message.replace("{", "{{").replace("}", "}}")
