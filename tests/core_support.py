"""Shared building blocks for the metadata-core tests: a throwaway "lab" app whose entities
cover every field type, and a cheap way to get runtime services on a fresh database.

The services are built without Flask (the core does not need it), on a copy of the
``base`` template database that conftest prepares once per session.
"""
from __future__ import annotations

import copy
from pathlib import Path

from crmkit.runtime.config import Settings
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.services import Services
from crmkit.runtime.storage.plan import Planner, apply_plan

L = lambda zh, en=None: {"zh": zh, "en": en or zh}  # noqa: E731

LAB_APP = {"id": "lab", "version": "1.0.0", "title": L("实验", "Lab")}

CATEGORY = {
    "id": "ent_lab_category", "name": "category", "label": L("类别", "Category"), "title_field": "name",
    "search_fields": ["name"],
    "fields": [
        {"id": "fld_cat_name", "name": "name", "type": "text", "label": L("名称", "Name"), "required": True, "max_length": 40},
        {"id": "fld_cat_code", "name": "code", "type": "text", "label": L("代码", "Code"), "unique": True, "max_length": 10},
        {"id": "fld_cat_checked", "name": "checked_by", "type": "text", "label": L("审核人", "Checked by"), "read_only": True},
    ],
}

SAMPLE_LINE = {
    "id": "ent_lab_sample_line", "name": "sample_line", "label": L("明细", "Line"), "title_field": "item",
    "is_child": True, "parent": "lab.sample",
    "fields": [
        {"id": "fld_line_item", "name": "item", "type": "text", "label": L("项目", "Item"), "required": True, "max_length": 30},
        {"id": "fld_line_qty", "name": "qty", "type": "integer", "label": L("数量", "Qty"), "min": 1},
    ],
}

OPTIONS = [
    {"value": "red", "label": L("红色", "Red")},
    {"value": "green", "label": L("绿色", "Green")},
    {"value": "blue", "label": L("蓝色", "Blue")},
]

# One field of every registered type (plus gender/birthday, which the id number fills in).
SAMPLE = {
    "id": "ent_lab_sample", "name": "sample", "label": L("样本", "Sample"), "title_field": "title",
    "search_fields": ["title", "note"],
    "fields": [
        {"id": "fld_s_title", "name": "title", "type": "text", "label": L("标题", "Title"), "max_length": 20},
        {"id": "fld_s_note", "name": "note", "type": "long_text", "label": L("说明", "Note"), "max_length": 500},
        {"id": "fld_s_count", "name": "count", "type": "integer", "label": L("数量", "Count"), "min": 0, "max": 1000},
        {"id": "fld_s_ratio", "name": "ratio", "type": "decimal", "label": L("比率", "Ratio"), "precision": 8, "scale": 3},
        {"id": "fld_s_price", "name": "price", "type": "money", "label": L("价格", "Price")},
        {"id": "fld_s_share", "name": "share", "type": "percent", "label": L("占比", "Share"), "min": 0, "max": 100},
        {"id": "fld_s_active", "name": "active", "type": "boolean", "label": L("启用", "Active")},
        {"id": "fld_s_day", "name": "day", "type": "date", "label": L("日期", "Day")},
        {"id": "fld_s_at", "name": "at", "type": "datetime", "label": L("时间", "At")},
        {"id": "fld_s_color", "name": "color", "type": "single_select", "label": L("颜色", "Colour"), "options": OPTIONS},
        {"id": "fld_s_colors", "name": "colors", "type": "multi_select", "label": L("多色", "Colours"), "options": OPTIONS, "max_items": 2},
        {"id": "fld_s_email", "name": "email", "type": "email", "label": L("邮箱", "Email")},
        {"id": "fld_s_phone", "name": "phone", "type": "phone", "label": L("电话", "Phone")},
        {"id": "fld_s_site", "name": "site", "type": "url", "label": L("网址", "Site")},
        {"id": "fld_s_idno", "name": "idno", "type": "id_number", "label": L("身份证", "ID number"),
         "derive_gender": "gender", "derive_birthday": "birthday"},
        {"id": "fld_s_gender", "name": "gender", "type": "single_select", "label": L("性别", "Gender"),
         "options": [{"value": "male", "label": L("男", "Male")}, {"value": "female", "label": L("女", "Female")}]},
        {"id": "fld_s_birthday", "name": "birthday", "type": "date", "label": L("生日", "Birthday")},
        {"id": "fld_s_serial", "name": "serial", "type": "sequence", "label": L("编号", "Serial"), "prefix": "S-", "digits": 5},
        {"id": "fld_s_category", "name": "category", "type": "link", "label": L("类别", "Category"), "target": "lab.category"},
        {"id": "fld_s_lines", "name": "lines", "type": "child_table", "label": L("明细", "Lines"), "entity": "lab.sample_line", "max_rows": 5},
        {"id": "fld_s_tags", "name": "tags", "type": "tags", "label": L("标签", "Tags"), "max_items": 3},
        {"id": "fld_s_files", "name": "files", "type": "attachment", "label": L("附件", "Files"), "accept": [".txt", ".pdf"], "max_files": 2},
        {"id": "fld_s_user", "name": "handler", "type": "user", "label": L("经办人", "Handler")},
        {"id": "fld_s_org", "name": "org", "type": "org_unit", "label": L("部门", "Department")},
    ],
}


def lab_documents(*entities: dict) -> list[RawDocument]:
    entities = entities or (CATEGORY, SAMPLE, SAMPLE_LINE)
    docs = [RawDocument("app", "lab", copy.deepcopy(LAB_APP), "lab/app.json")]
    docs += [RawDocument("entity", "lab", copy.deepcopy(e), f"lab/entities/{e['name']}.json") for e in entities]
    return docs


def entity_doc(body: dict) -> RawDocument:
    return RawDocument("entity", "lab", copy.deepcopy(body), f"lab/entities/{body['name']}.json")


def publish(services: Services, docs, *, confirm: bool = False):
    """Store definitions and bring the tables in line: the same validate → plan → apply as an install."""
    services.store.save(docs)
    plan = Planner(services.engine, services.store.catalog()).plan()
    apply_plan(services.engine, plan, confirm=confirm)
    return plan


def build_services(url: str, var_dir: Path) -> Services:
    return Services.build(Settings(database_url=url, secret_key="core-tests", var_dir=var_dir))


def fresh_services(databases, tmp_path_factory, kind: str = "base") -> Services:
    """Services on a new copy of a conftest template database (``base``: platform tables + admin user)."""
    url = databases.fresh(kind)
    return build_services(url, tmp_path_factory.mktemp("var"))


def add_org_unit(services: Services, name: str, code: str) -> int:
    """Org units are platform data (maintained by the org-tree screens), not entity records."""
    from crmkit.runtime.db import write_transaction
    from crmkit.runtime.storage import platform_tables as pt

    with write_transaction(services.engine) as conn:
        return conn.execute(pt.org_unit.insert().values(name=name, code=code, kind="department", path="/")).inserted_primary_key[0]


def admin_id(services: Services) -> int:
    from sqlalchemy import select

    from crmkit.runtime.storage import fab_tables

    with services.engine.connect() as conn:
        return conn.execute(select(fab_tables.ab_user.c.id).where(fab_tables.ab_user.c.username == "admin")).scalar_one()
