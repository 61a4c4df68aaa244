"""Attachments: files stored on local disk under ``var/files``; the field keeps their descriptors."""
from __future__ import annotations

import re

from marshmallow import ValidationError, fields as mf

from ..i18n_text import text
from ..meta.model import FieldDef, Label
from .base import FieldType
from .choice import json_list_type
from .messages import LIST_MESSAGES, LocalizedRaw

FILE_ID = re.compile(r"^[0-9a-f]{32}$")


class FileList(mf.List):
    default_error_messages = LIST_MESSAGES

    def _deserialize(self, value, attr, data, **kwargs):
        if value is None or value == "":
            return []
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise self.make_error("invalid")  # a number or an object is not a list of files (and must not become a 500)
        out = []
        for item in value:
            fid = item.get("id") if isinstance(item, dict) else item
            if not isinstance(fid, str) or not FILE_ID.match(fid.strip()):
                raise ValidationError(text("Not a valid file reference; upload the file first.", "文件引用无效，请先上传文件。"))
            out.append(fid.strip())
        return out


class AttachmentType(FieldType):
    """The value is a list of uploaded file ids; the record service checks that they exist
    and fit this field's limits, and stores their descriptors (id, name, size, type)."""

    name = "attachment"
    label = Label("附件", "Attachment")
    widget = "file"
    sortable = False
    operators = ("is_empty", "is_not_empty")
    config_properties = {
        "max_size_mb": {"type": "number", "exclusiveMinimum": 0, "maximum": 1024},
        "accept": {"type": "array", "items": {"type": "string", "pattern": "^\\.[a-z0-9]{1,10}$"}},
        "max_files": {"type": "integer", "minimum": 1, "maximum": 50},
    }

    def sql_type(self, f):
        return json_list_type()

    def marshmallow_field(self, f):
        return FileList(LocalizedRaw(), allow_none=True)

    def json_schema(self, f):
        return {"type": ["array", "null"], "items": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "size": {"type": "integer"}, "content_type": {"type": "string"}}}}

    def from_db(self, f, value):
        return list(value) if value else []

    def display(self, f, value, locale):
        return ", ".join(v.get("name", "") for v in (value or []))

    def filter_clause(self, f, col, op, value, ctx):
        from .choice import _ListType

        return _ListType.filter_clause(self, f, col, op, value, ctx)

    def max_bytes(self, f: FieldDef, default: int) -> int:
        mb = f.opt("max_size_mb")
        return int(mb * 1024 * 1024) if mb else default

    def accepts(self, f: FieldDef, filename: str) -> bool:
        accept = f.opt("accept")
        if not accept:
            return True
        return any(filename.lower().endswith(ext) for ext in accept)
