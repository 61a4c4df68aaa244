"""Reference types: link (many-to-one), child table (one-to-many), user and org unit."""
from __future__ import annotations

from marshmallow import ValidationError, fields as mf
from sqlalchemy import BigInteger, Integer

from ..i18n_text import text
from ..meta.model import FieldDef, Label
from .base import FieldType
from .messages import LIST_MESSAGES, LocalizedRaw
from .numeric import StrictInteger

REF_OPERATORS = ("eq", "ne", "in", "not_in", "is_empty", "is_not_empty")


MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1


class RefInteger(StrictInteger):
    """A referenced id: a positive integer that fits the key column, or an object carrying ``id``."""

    def __init__(self, max_id: int = MAX_BIGINT, **kw):
        super().__init__(**kw)
        self.max_id = max_id

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, dict):
            value = value.get("id")
        v = super()._deserialize(value, attr, data, **kwargs)
        if v is not None and not 0 < v <= self.max_id:
            raise ValidationError(text("Not a valid record id.", "记录编号无效，请重新选择。"))
        return v


class _RefType(FieldType):
    operators = REF_OPERATORS
    widget = "reference"

    def marshmallow_field(self, f):
        return RefInteger(allow_none=True)

    def json_schema(self, f):
        return {"type": ["integer", "null"], "minimum": 1, "description": f"id of {self.target_table(f)}"}

    def target_table(self, f: FieldDef) -> str:
        raise NotImplementedError

    def foreign_key(self, f):
        return f"{self.target_table(f)}.id"


class LinkType(_RefType):
    name = "link"
    label = Label("关联", "Link")
    config_properties = {"target": {"type": "string", "pattern": "^[a-z][a-z0-9_]*\\.[a-z][a-z0-9_]*$"}}
    config_required = ("target",)

    def sql_type(self, f):
        return BigInteger()

    def target_table(self, f):
        return f.opt("target").replace(".", "_", 1)

    def check_definition(self, f, entity, entities):
        target = entities.get(f.opt("target"))
        if target is None:
            return [f"links to unknown entity '{f.opt('target')}'"]
        if target.is_child:
            return [f"links to '{f.opt('target')}', which is a child table; link to its parent instead"]
        return []


class UserType(_RefType):
    name = "user"
    label = Label("用户", "User")

    def marshmallow_field(self, f):
        return RefInteger(max_id=MAX_INT, allow_none=True)  # FAB's ab_user.id is a 32-bit INTEGER

    def sql_type(self, f):
        return Integer()

    def target_table(self, f):
        return "ab_user"


class OrgUnitType(_RefType):
    name = "org_unit"
    label = Label("组织", "Org unit")

    def sql_type(self, f):
        return BigInteger()

    def target_table(self, f):
        return "crmkit_org_unit"


class ChildRows(mf.List):
    default_error_messages = LIST_MESSAGES

    def _deserialize(self, value, attr, data, **kwargs):
        if value is None:
            return []
        return super()._deserialize(value, attr, data, **kwargs)


class ChildTableType(FieldType):
    """Rows of a child entity (a sub-form). No column: the child table holds ``parent_id``."""

    name = "child_table"
    label = Label("子表", "Child table")
    widget = "child_table"
    stored = False
    sortable = False
    operators = ()
    config_properties = {"entity": {"type": "string", "pattern": "^[a-z][a-z0-9_]*\\.[a-z][a-z0-9_]*$"}, "max_rows": {"type": "integer", "minimum": 1, "maximum": 1000}}
    config_required = ("entity",)

    def sql_type(self, f):
        return None

    def marshmallow_field(self, f):
        return ChildRows(LocalizedRaw(), allow_none=True)  # rows are checked one by one, each against the child entity

    def json_schema(self, f):
        return {"type": "array", "items": {"$ref": f"#/components/schemas/{f.opt('entity').replace('.', '_')}_input"}}

    def display(self, f, value, locale):
        n = len(value or [])
        return f"{n} 行" if (locale or "").startswith("zh") else f"{n} rows"

    def check_definition(self, f, entity, entities):
        child = entities.get(f.opt("entity"))
        if child is None:
            return [f"child table names unknown entity '{f.opt('entity')}'"]
        if not child.is_child or child.parent != entity:
            return [f"entity '{f.opt('entity')}' must declare \"is_child\": true and \"parent\": \"{entity}\""]
        return []
