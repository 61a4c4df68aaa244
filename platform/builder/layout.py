"""Form layout edits on a draft: tabs, sections (1–3 columns), field order and width.

The layout designer sends either one small move (keyboard buttons) or the whole arrangement after a
drag and drop; both end up as the ``sections`` list of the form document the runtime renders.
"""
from __future__ import annotations

from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.i18n_text import text

from .edits import check_name, label

FORM = "default"


def form_of(docs: dict, name: str = FORM) -> dict:
    """The draft's form, created from the entity's fields (one two-column section) when it has none."""
    forms = docs.setdefault("forms", {})
    if name not in forms:
        e = docs["entity"]
        fields = [f["name"] for f in e["fields"] if not f.get("retired")]
        forms[name] = {"entity": f"{docs['app']['id']}.{e['name']}", "name": name,
                       "sections": [{"id": "main", "label": e["label"], "columns": 2, "fields": fields}]}
    return forms[name]


def item_name(item) -> str:
    return item if isinstance(item, str) else item["field"]


def placed_fields(form: dict) -> set[str]:
    return {item_name(i) for s in form["sections"] for i in s["fields"]}


def unplaced_fields(docs: dict, form: dict) -> list[str]:
    placed = placed_fields(form)
    return [f["name"] for f in docs["entity"]["fields"] if f["name"] not in placed and not f.get("retired")]


def section_of(form: dict, section_id: str) -> dict:
    for s in form["sections"]:
        if s["id"] == section_id:
            return s
    raise ValidationFailed({"section": [text("There is no section '{id}'.", "没有分组“{id}”。", id=section_id)]})


def add_section(docs: dict, section_id: str, zh: str, en: str, columns: int = 2, tab: str | None = None,
                fields: list[str] | None = None) -> dict:
    form = form_of(docs)
    section_id = check_name(section_id, "section")
    if any(s["id"] == section_id for s in form["sections"]):
        raise ValidationFailed({"section": [text("A section '{id}' already exists.", "分组“{id}”已存在。", id=section_id)]})
    fields = list(fields or [])
    for name in fields:
        _take_out(form, name)
    section = {"id": section_id, "label": label(zh, en), "columns": _columns(columns), "fields": fields}
    if tab:
        section["tab"] = tab
    form["sections"].append(section)
    return section


def update_section(docs: dict, section_id: str, zh: str, en: str, columns: int, tab: str | None) -> None:
    s = section_of(form_of(docs), section_id)
    s["label"] = label(zh, en)
    s["columns"] = _columns(columns)
    if tab:
        s["tab"] = tab
    else:
        s.pop("tab", None)


def remove_section(docs: dict, section_id: str) -> None:
    """The section goes; its fields go back to the palette (they stay on the entity)."""
    form = form_of(docs)
    if len(form["sections"]) == 1:
        raise ValidationFailed({"section": [text("A form needs at least one section.", "表单至少需要一个分组。")]})
    form["sections"] = [s for s in form["sections"] if s["id"] != section_id]


def add_tab(docs: dict, tab_id: str, zh: str, en: str) -> None:
    form = form_of(docs)
    tab_id = check_name(tab_id, "tab")
    tabs = form.setdefault("tabs", [])
    if any(t["id"] == tab_id for t in tabs):
        raise ValidationFailed({"tab": [text("A tab '{id}' already exists.", "标签页“{id}”已存在。", id=tab_id)]})
    tabs.append({"id": tab_id, "label": label(zh, en)})
    if len(tabs) == 1:  # the first tab collects the sections that had none
        for s in form["sections"]:
            s.setdefault("tab", tab_id)


def move_section(docs: dict, section_id: str, direction: str) -> None:
    sections = form_of(docs)["sections"]
    i = next(i for i, s in enumerate(sections) if s["id"] == section_id)
    j = i - 1 if direction == "up" else i + 1
    if 0 <= j < len(sections):
        sections[i], sections[j] = sections[j], sections[i]


def move_form_field(docs: dict, name: str, direction: str) -> None:
    """Up/down within the section; past either end it moves into the neighbouring section."""
    form = form_of(docs)
    sections = form["sections"]
    for si, s in enumerate(sections):
        names = [item_name(i) for i in s["fields"]]
        if name not in names:
            continue
        i = names.index(name)
        j = i - 1 if direction == "up" else i + 1
        if 0 <= j < len(names):
            s["fields"][i], s["fields"][j] = s["fields"][j], s["fields"][i]
        else:
            target = si - 1 if direction == "up" else si + 1
            if 0 <= target < len(sections):
                item = s["fields"].pop(i)
                if direction == "up":
                    sections[target]["fields"].append(item)
                else:
                    sections[target]["fields"].insert(0, item)
        return
    raise ValidationFailed({"field": [text("'{name}' is not on the form.", "“{name}”不在表单上。", name=name)]})


def place_field(docs: dict, name: str, section_id: str) -> None:
    form = form_of(docs)
    if not any(f["name"] == name for f in docs["entity"]["fields"]):
        raise ValidationFailed({"field": [text("There is no field '{name}'.", "没有字段“{name}”。", name=name)]})
    item = _take_out(form, name) or name
    section_of(form, section_id)["fields"].append(item)


def unplace_field(docs: dict, name: str) -> None:
    _take_out(form_of(docs), name)


def set_width(docs: dict, name: str, span: int) -> None:
    form = form_of(docs)
    for s in form["sections"]:
        for i, item in enumerate(s["fields"]):
            if item_name(item) == name:
                obj = {"field": name} if isinstance(item, str) else dict(item)
                span = max(1, min(int(span), 3))
                if span == 1:
                    obj.pop("span", None)
                else:
                    obj["span"] = span
                s["fields"][i] = obj["field"] if set(obj) == {"field"} else obj
                return
    raise ValidationFailed({"field": [text("'{name}' is not on the form.", "“{name}”不在表单上。", name=name)]})


def set_arrangement(docs: dict, arrangement: list[dict]) -> None:
    """The whole layout after a drag and drop: ``[{"id": section, "fields": [names]}]`` in order.

    Fields keep their width; a section or field the draft does not have is an error, and fields not
    listed leave the form (back to the palette)."""
    form = form_of(docs)
    by_id = {s["id"]: s for s in form["sections"]}
    items = {item_name(i): i for s in form["sections"] for i in s["fields"]}
    entity_fields = {f["name"] for f in docs["entity"]["fields"] if not f.get("retired")}
    sections, seen = [], set()
    for entry in arrangement:
        sid = entry.get("id")
        if sid not in by_id:
            raise ValidationFailed({"section": [text("There is no section '{id}'.", "没有分组“{id}”。", id=sid)]})
        s = dict(by_id[sid])
        fields = []
        for name in entry.get("fields", []):
            if name not in entity_fields or name in seen:
                raise ValidationFailed({"field": [text("'{name}' cannot be placed here.", "“{name}”不能放在这里。", name=name)]})
            seen.add(name)
            fields.append(items.get(name, name))
        s["fields"] = fields
        sections.append(s)
    if {s["id"] for s in sections} != set(by_id):
        raise ValidationFailed({"section": [text("The arrangement must list every section.", "布局须包含所有分组。")]})
    form["sections"] = sections


def _take_out(form: dict, name: str):
    for s in form["sections"]:
        for i, item in enumerate(s["fields"]):
            if item_name(item) == name:
                return s["fields"].pop(i)
    return None


def _columns(columns) -> int:
    try:
        return max(1, min(int(columns), 3))
    except (TypeError, ValueError):
        return 2
