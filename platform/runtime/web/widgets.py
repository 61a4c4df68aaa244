"""Input widgets for record forms: one ``Widget`` per field, rendered by the ``widget`` macro.

The kind comes from the field type's ``widget``; labels, help and placeholders from the
field and the form definition; choices for selects from the options and for links from
QueryService.options (through the ``link_choices`` callback the view passes in).
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Any, Callable

from ..fields.choice import option_color
from ..fields.text import _TextBase
from ..meta.catalog import Catalog
from ..meta.model import EntityDef, FieldDef, FormDef, FormField, Label
from .display import Cell
from .forms import editable, new_row_key

LINK_CHOICES = 50


@dataclass
class Widget:
    name: str  # input name
    field: str
    kind: str
    label: str
    value: Any
    required: bool = False
    read_only: bool = False
    help: str = ""
    placeholder: str = ""
    span: int = 1
    errors: list = dc_field(default_factory=list)
    choices: list = dc_field(default_factory=list)  # (value, label, colour)
    attrs: dict = dc_field(default_factory=dict)
    shown: Cell | None = None  # read-only rendering
    columns: list = dc_field(default_factory=list)  # child table: column widgets' labels
    rows: list = dc_field(default_factory=list)  # child table: (key, [Widget])
    link_target: str = ""
    hidden: bool = False  # visible_if is not true (web/rules_ui.py)
    ruled: bool = False  # has visible_if/required_if: re-rendered live, its input kept as typed (hx-preserve)


@dataclass
class Section:
    id: str
    label: str
    columns: int
    tab: str | None
    widgets: list


def _number_attrs(f: FieldDef) -> dict:
    attrs = {"step": "1" if f.type == "integer" else "any", "inputmode": "numeric" if f.type == "integer" else "decimal"}
    if f.opt("min") is not None:
        attrs["min"] = f.opt("min")
    if f.opt("max") is not None:
        attrs["max"] = f.opt("max")
    return attrs


def build_widget(catalog: Catalog, f: FieldDef, name: str, value: Any, locale: str, *, writable: tuple[str, ...],
                 errors: dict, link_choices: Callable, shown: Cell | None = None, ff: FormField | None = None,
                 creating: bool = False) -> Widget:
    ft = catalog.type_of(f)
    help_label = (ff.help if ff and ff.help else f.help)
    ph_label = (ff.placeholder if ff and ff.placeholder else f.placeholder)
    w = Widget(name=name, field=f.name, kind=ft.widget, label=f.label.get(locale), value=value,
               required=f.required and not f.read_only, help=help_label.get(locale), placeholder=ph_label.get(locale),
               span=ff.span if ff else 1, errors=errors.get(name, []))
    if not editable(f, writable):
        w.read_only = True
        w.kind = "assigned" if (f.type == "sequence" and creating) else "readonly"
        w.shown = shown
        return w
    if f.type in ("single_select", "multi_select"):
        w.choices = [(o["value"], Label.of(o["label"], o["value"]).get(locale), option_color(f, o["value"])) for o in f.opt("options", ())]
    elif f.type == "link":
        current = [int(value)] if str(value or "").isdigit() else []
        w.choices = [(str(i), label, None) for i, label in link_choices(f.opt("target"), current)]
        w.link_target = f.opt("target")
    elif f.type in ("user", "org_unit"):
        w.kind = "id"
        w.attrs = {"min": 1, "step": 1, "inputmode": "numeric"}
    elif ft.widget == "number":
        w.attrs = _number_attrs(f)
    elif f.type == "tags":
        w.choices = [(s, s, None) for s in f.opt("suggestions", ())]
    elif f.type == "attachment":
        accept = f.opt("accept")
        if accept:
            w.attrs["accept"] = ",".join(accept)
        if f.opt("max_files", 1) != 1:
            w.attrs["multiple"] = True
    elif f.type in ("text", "long_text", "email", "url", "phone") and isinstance(ft, _TextBase) and ft.max_length(f):
        w.attrs["maxlength"] = ft.max_length(f)
    return w


def child_row_widgets(catalog: Catalog, child: EntityDef, table: str, key: str, values: dict, locale: str, *, writable: tuple[str, ...],
                      errors: dict, link_choices: Callable) -> list[Widget]:
    out = []
    for cf in child.fields:
        if cf.type == "child_table" or not editable(cf, writable):
            continue
        out.append(build_widget(catalog, cf, f"{table}-{key}-{cf.name}", values.get(cf.name, ""), locale, writable=writable,
                                errors=errors, link_choices=link_choices))
    return out


def child_columns(catalog: Catalog, child: EntityDef, writable: tuple[str, ...], locale: str) -> list[tuple[str, bool]]:
    return [(cf.label.get(locale), cf.required) for cf in child.fields if cf.type != "child_table" and editable(cf, writable)]


def build_sections(catalog: Catalog, entity: EntityDef, form: FormDef, values: dict, locale: str, *, writable: tuple[str, ...],
                   child_writable: Callable, errors: dict, link_choices: Callable, shown: dict, creating: bool,
                   readable: tuple[str, ...] | None = None) -> list[Section]:
    """``readable``: the fields the actor may see; the others are left off the form entirely (absent, not blank)."""
    sections = []
    for s in form.sections:
        widgets = []
        for ff in s.fields:
            f = entity.field_map.get(ff.field)
            if f is None or (readable is not None and f.name not in readable):
                continue
            if f.type == "child_table":
                widgets.append(_child_table_widget(catalog, f, ff, values.get(f.name) or [], locale, writable, child_writable, errors, link_choices))
                continue
            widgets.append(build_widget(catalog, f, f.name, values.get(f.name, ""), locale, writable=writable, errors=errors,
                                        link_choices=link_choices, shown=shown.get(f.name), ff=ff, creating=creating))
        sections.append(Section(s.id, s.label.get(locale), s.columns, s.tab, widgets))
    return sections


def _child_table_widget(catalog, f, ff, rows, locale, writable, child_writable, errors, link_choices) -> Widget:
    child = catalog.entities[f.opt("entity")]
    cw = child_writable(child)
    w = Widget(name=f.name, field=f.name, kind="child_table", label=f.label.get(locale), value=None, required=f.required,
               help=(ff.help or f.help).get(locale), span=99, errors=errors.get(f.name, []))
    w.read_only = not editable(f, writable)
    w.columns = child_columns(catalog, child, cw, locale)
    w.link_target = child.key
    for key, row in rows:
        w.rows.append((key, row.get("id", ""), child_row_widgets(catalog, child, f.name, key, row, locale, writable=cw, errors=errors, link_choices=link_choices)))
    return w


def blank_row(catalog: Catalog, child: EntityDef, table: str, locale: str, writable: tuple[str, ...], link_choices: Callable):
    key = new_row_key()
    return key, "", child_row_widgets(catalog, child, table, key, {}, locale, writable=writable, errors={}, link_choices=link_choices)
