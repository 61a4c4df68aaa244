"""Edits to a draft's documents: plain functions on JSON, one per designer action.

Each takes the draft's document dict (``entity``, ``forms``, ``views``, ``app``) and changes it in
place. They keep the documents consistent with each other (a renamed field is renamed in forms and
views; a retired or deleted one leaves them), and leave checking values to the meta-schema, which
runs on every publish and preview.
"""
from __future__ import annotations

import re
import uuid

from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.fields import FieldTypeRegistry
from crmkit.runtime.i18n_text import text

NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
MENU_PLACEMENTS = ("end", "start", "hidden")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def check_name(name: str, what: str = "name") -> str:
    name = (name or "").strip()
    if not NAME.match(name):
        raise ValidationFailed({what: [text("Use lower-case letters, digits and _ , starting with a letter (at most 48).",
                                            "请使用小写字母、数字和下划线，以字母开头（最多 48 个字符）。")]})
    return name


def label(zh: str, en: str) -> dict:
    zh, en = (zh or "").strip(), (en or "").strip()
    return {"zh": zh or en, "en": en or zh}


# --- entities ----------------------------------------------------------------------------------

def new_entity_documents(app_doc: dict, name: str, zh: str, en: str, *, title_zh: str = "名称", title_en: str = "Name",
                         icon: str = "table", menu: str = "end") -> dict:
    """A new entity with one text field as its title, placed in the app's menu."""
    name = check_name(name)
    if not (zh or en).strip():
        raise ValidationFailed({"label": [text("Give the entity a name people will read.", "请填写实体的显示名称。")]})
    key = f"{app_doc['id']}.{name}"
    entity = {
        "id": new_id("ent"), "name": name, "label": label(zh, en), "icon": icon or "table", "title_field": "name",
        "search_fields": ["name"],
        "fields": [{"id": new_id("fld"), "name": "name", "type": "text", "label": label(title_zh, title_en), "required": True, "max_length": 200}],
    }
    app = dict(app_doc)
    set_menu(app, key, menu)
    return {"entity": entity, "forms": {}, "views": {}, "app": app}


def set_menu(app: dict, key: str, placement: str) -> None:
    menu = [m for m in app.get("menu", []) if m["entity"] != key]
    if placement == "start":
        menu.insert(0, {"entity": key})
    elif placement != "hidden":
        menu.append({"entity": key})
    if menu or "menu" in app:
        app["menu"] = menu


def menu_placement(app: dict, key: str) -> str:
    menu = [m["entity"] for m in app.get("menu", [])]
    if key not in menu:
        return "hidden" if menu else "end"
    return "start" if menu[0] == key and len(menu) > 1 else "end"


def update_entity(docs: dict, *, zh: str, en: str, plural_zh: str = "", plural_en: str = "", icon: str = "",
                  title_field: str = "", search_fields: list[str] | None = None, menu: str | None = None) -> None:
    e = docs["entity"]
    e["label"] = label(zh, en)
    if plural_zh or plural_en:
        e["plural_label"] = label(plural_zh, plural_en)
    else:
        e.pop("plural_label", None)
    if icon:
        e["icon"] = icon
    if title_field:
        e["title_field"] = title_field
    if search_fields is not None:
        e["search_fields"] = search_fields
        if not search_fields:
            e.pop("search_fields")
    if menu is not None:
        set_menu(docs["app"], f"{docs['app']['id']}.{e['name']}", menu)


# --- fields --------------------------------------------------------------------------------------

def field_of(docs: dict, name: str) -> dict:
    for f in docs["entity"]["fields"]:
        if f["name"] == name:
            return f
    raise ValidationFailed({"field": [text("There is no field '{name}' in this draft.", "草稿中没有字段“{name}”。", name=name)]})


def add_field(docs: dict, field_types: FieldTypeRegistry, ftype: str, name: str, props: dict) -> dict:
    name = check_name(name)
    if ftype not in field_types.names():
        raise ValidationFailed({"type": [text("Unknown field type '{type}'.", "未知的字段类型“{type}”。", type=ftype)]})
    if any(f["name"] == name for f in docs["entity"]["fields"]):
        raise ValidationFailed({"name": [text("A field named '{name}' already exists (perhaps retired).", "已有名为“{name}”的字段（可能已停用）。", name=name)]})
    f = {"id": new_id("fld"), "name": name, "type": ftype, **props}
    f.setdefault("label", label(name, name))
    docs["entity"]["fields"].append(f)
    return f


def update_field(docs: dict, field_types: FieldTypeRegistry, name: str, props: dict, cleared: list[str], *,
                 new_name: str | None = None, new_type: str | None = None) -> dict:
    """Set and clear properties; a new name renames (same id, so the column is renamed and data kept);
    a new type keeps only the properties the new type accepts."""
    f = field_of(docs, name)
    for k in cleared:
        f.pop(k, None)
    f.update(props)
    if new_type and new_type != f["type"]:
        if new_type not in field_types.names():
            raise ValidationFailed({"type": [text("Unknown field type '{type}'.", "未知的字段类型“{type}”。", type=new_type)]})
        old_props = set(field_types.get(f["type"]).config_properties)
        keep = set(field_types.get(new_type).config_properties)
        for k in old_props - keep:
            f.pop(k, None)
        f["type"] = new_type
    if new_name and new_name != name:
        new_name = check_name(new_name)
        if any(g["name"] == new_name for g in docs["entity"]["fields"]):
            raise ValidationFailed({"name": [text("A field named '{name}' already exists.", "已有名为“{name}”的字段。", name=new_name)]})
        f["name"] = new_name
        rename_references(docs, name, new_name)
    return f


def rename_references(docs: dict, old: str, new: str) -> None:
    e = docs["entity"]
    if e.get("title_field") == old:
        e["title_field"] = new
    if "search_fields" in e:
        e["search_fields"] = [new if s == old else s for s in e["search_fields"]]
    for ix in e.get("indexes", []):
        ix["fields"] = [new if s == old else s for s in ix["fields"]]
    for form in docs.get("forms", {}).values():
        for s in form["sections"]:
            s["fields"] = [(new if item == old else item) if isinstance(item, str) else
                           ({**item, "field": new} if item["field"] == old else item) for item in s["fields"]]
    for view in docs.get("views", {}).values():
        view["columns"] = [new if c == old else c for c in view["columns"]]
        for s in view.get("default_sort", []):
            if s["field"] == old:
                s["field"] = new
        for saved in view.get("filters", []):
            _rename_in_filter(saved["filter"], old, new)


def _rename_in_filter(node: dict, old: str, new: str) -> None:
    for key in ("and", "or"):
        for child in node.get(key, []):
            _rename_in_filter(child, old, new)
    if node.get("field") == old:
        node["field"] = new


def move_field(docs: dict, name: str, direction: str) -> None:
    fields = docs["entity"]["fields"]
    i = next(i for i, f in enumerate(fields) if f["name"] == name)
    j = i - 1 if direction == "up" else i + 1
    if 0 <= j < len(fields):
        fields[i], fields[j] = fields[j], fields[i]


def reorder_fields(docs: dict, names: list[str]) -> None:
    fields = docs["entity"]["fields"]
    by_name = {f["name"]: f for f in fields}
    if sorted(names) != sorted(by_name):
        raise ValidationFailed({"order": [text("The order must list every field once.", "排序须包含每个字段且仅一次。")]})
    docs["entity"]["fields"] = [by_name[n] for n in names]


def retire_field(docs: dict, name: str) -> None:
    """Hidden everywhere, column and data kept: out of forms, views, search and the title."""
    e = docs["entity"]
    if e["title_field"] == name:
        raise ValidationFailed({"field": [text("The title field cannot be retired; choose another title field first.",
                                               "标题字段不能停用，请先选择其他标题字段。")]})
    f = field_of(docs, name)
    f["retired"] = True
    f.pop("required", None)
    _remove_references(docs, name, keep_indexes=True)


def unretire_field(docs: dict, name: str) -> None:
    f = field_of(docs, name)
    f.pop("retired", None)
    for form in docs.get("forms", {}).values():
        if form["sections"]:
            form["sections"][-1]["fields"].append(name)


def delete_field(docs: dict, name: str) -> None:
    """Removes the field from the definition: publishing drops its column (needs a confirmation with the row count)."""
    e = docs["entity"]
    if e["title_field"] == name:
        raise ValidationFailed({"field": [text("The title field cannot be deleted; choose another title field first.",
                                               "标题字段不能删除，请先选择其他标题字段。")]})
    field_of(docs, name)
    e["fields"] = [f for f in e["fields"] if f["name"] != name]
    _remove_references(docs, name, keep_indexes=False)


def _remove_references(docs: dict, name: str, *, keep_indexes: bool) -> None:
    e = docs["entity"]
    if "search_fields" in e:
        e["search_fields"] = [s for s in e["search_fields"] if s != name]
        if not e["search_fields"]:
            e.pop("search_fields")
    if not keep_indexes and "indexes" in e:
        e["indexes"] = [ix for ix in e["indexes"] if name not in ix["fields"]]
    for form in docs.get("forms", {}).values():
        for s in form["sections"]:
            s["fields"] = [item for item in s["fields"] if (item if isinstance(item, str) else item["field"]) != name]
        form["sections"] = [s for s in form["sections"] if s["fields"]] or form["sections"][:0]
    for fname in [n for n, form in docs.get("forms", {}).items() if not form["sections"]]:
        del docs["forms"][fname]
    for view in docs.get("views", {}).values():
        view["columns"] = [c for c in view["columns"] if c != name] or ["id"]
        if "default_sort" in view:
            view["default_sort"] = [s for s in view["default_sort"] if s["field"] != name]
        if "filters" in view:
            view["filters"] = [f for f in view["filters"] if name not in _filter_fields(f["filter"])]


def _filter_fields(node: dict) -> set[str]:
    out = {node["field"]} if "field" in node else set()
    for key in ("and", "or"):
        for child in node.get(key, []):
            out |= _filter_fields(child)
    return out


# --- list columns ------------------------------------------------------------------------------------

def in_list(docs: dict, name: str) -> bool:
    view = docs.get("views", {}).get("default")
    return bool(view and name in view["columns"])


def show_in_list(docs: dict, name: str, shown: bool, field_types: FieldTypeRegistry) -> None:
    """Add the field to (or take it off) the default list view, which lists, exports and the API's list use."""
    views = docs.setdefault("views", {})
    view = views.get("default")
    if view is None:
        if not shown:
            return
        e = docs["entity"]
        stored = [f["name"] for f in e["fields"] if field_types.get(f["type"]).stored and not f.get("retired") and f["name"] != name]
        view = views["default"] = {"entity": f"{docs['app']['id']}.{e['name']}", "name": "default",
                                   "label": e.get("plural_label") or e["label"], "columns": stored[:6]}
    if shown and name not in view["columns"] and len(view["columns"]) < 40:
        view["columns"].append(name)
    elif not shown and name in view["columns"] and len(view["columns"]) > 1:
        view["columns"].remove(name)


def set_list_view(docs: dict, columns: list[str], sort_field: str = "", descending: bool = False, page_size: int | None = None,
                  name: str = "default") -> None:
    """The list view's columns (in order), default sort and page size."""
    e = docs["entity"]
    known = {f["name"] for f in e["fields"] if not f.get("retired")} | {"id", "created_at", "updated_at"}
    columns = [c for c in dict.fromkeys(columns) if c]
    bad = [c for c in columns if c not in known]
    if not columns or bad:
        raise ValidationFailed({"columns": [text("Choose at least one column, from this entity's fields.", "请至少选择一列，且须为本实体的字段。")]})
    view = docs.setdefault("views", {}).setdefault(name, {"entity": f"{docs['app']['id']}.{e['name']}", "name": name,
                                                          "label": e.get("plural_label") or e["label"], "columns": []})
    view["columns"] = columns
    if sort_field:
        view["default_sort"] = [{"field": sort_field, "dir": "desc" if descending else "asc"}]
    else:
        view.pop("default_sort", None)
    if page_size:
        view["page_size"] = max(5, min(int(page_size), 200))
