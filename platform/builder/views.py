"""The builder's pages (``/builder``): entity designer, property editor, form layout, preview, publish, versions.

Views only translate HTTP into BuilderService calls; every rule lives in the service and the edit
modules. Every change posts the draft revision it was made against; a stale one gets a 409 page
that says who changed the draft, and nothing is overwritten.
"""
from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from crmkit.runtime.errors import CrmkitError, DefinitionError, PlanRefused, ValidationFailed
from crmkit.runtime.i18n_text import localize, text
from crmkit.runtime.meta.model import Label
from crmkit.runtime.web.actors import current_actor
from crmkit.runtime.web.entity_views import acting
from crmkit.runtime.web.i18n import current_locale

from . import edits, layout
from .drafts import Draft, DraftConflict
from .props import PropertyError, entity_extra_specs, field_prop_specs, form_value, parse_props
from .service import BuilderService

builder_blueprint = Blueprint("crmkit_builder", __name__, url_prefix="/builder", template_folder="templates",
                              static_folder=str(Path(__file__).parent / "static"), static_url_path="/static")

ICONS = ("table", "user", "users", "building", "contact", "calendar", "card", "gift", "award", "briefcase", "ticket",
         "box", "tag", "star", "heart", "target", "clipboard", "map-pin", "message", "dollar")


def builder() -> BuilderService:
    svc = current_app.extensions.get("crmkit_builder")
    if svc is None:
        svc = current_app.extensions["crmkit_builder"] = BuilderService(current_app.extensions["crmkit"])
    return svc


@builder_blueprint.before_request
def login_and_permission():
    from flask_login import current_user

    if request.endpoint == "crmkit_builder.static":
        return None
    if not current_user.is_authenticated:
        return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
    builder().require(acting(), (request.view_args or {}).get("entity_key"))
    return None


def revision() -> int:
    raw = request.form.get("revision", "")
    return int(raw) if raw.lstrip("-").isdigit() else -1


def loc(label) -> str:
    return label.get(current_locale()) if isinstance(label, Label) else Label.of(label).get(current_locale())


def type_choices():
    locale = current_locale()
    return [(t.name, t.label.get(locale)) for t in builder().services.field_types.all()]


def entity_choices():
    catalog = builder().services.store.catalog()
    return [(e.key, f"{loc(e.label)} ({e.key})") for e in catalog.entities.values()]


# --- home -------------------------------------------------------------------------------------------

@builder_blueprint.route("/")
def home():
    actor = acting()
    svc = builder()
    catalog = svc.services.store.catalog()
    rows = []
    for entity, draft in svc.entities(actor):
        key = entity.key if entity else draft.entity_key
        label = entity.label if entity else Label.of(draft.entity["label"])
        rows.append({"key": key, "label": loc(label), "icon": entity.icon if entity else draft.entity.get("icon", "table"),
                     "fields": len(entity.fields) if entity else len(draft.entity["fields"]), "draft": draft, "new": entity is None})
    apps = [(a.id, loc(a.title)) for a in catalog.apps.values()]
    return render_template("builder/home.html", rows=rows, apps=apps, icons=ICONS)


@builder_blueprint.route("/entities", methods=["POST"])
def create_entity():
    actor = acting()
    f = request.form
    try:
        draft = builder().create_entity(actor, f.get("app", ""), f.get("name", ""), f.get("label_zh", ""), f.get("label_en", ""),
                                        icon=f.get("icon") or "table", menu=f.get("menu") or "end",
                                        title_zh=f.get("title_zh") or "名称", title_en=f.get("title_en") or "Name")
    except CrmkitError as exc:
        flash(localize(exc.message, current_locale()) + _field_errors(exc), "error")
        return redirect(url_for("crmkit_builder.home")), 303
    flash(_t("Entity draft created. Add fields, then publish.", "已创建实体草稿。请添加字段后发布。"), "success")
    return redirect(url_for("crmkit_builder.fields", entity_key=draft.entity_key)), 303


# --- entity designer -------------------------------------------------------------------------------

def designer_context(entity_key: str) -> dict:
    svc = builder()
    draft = svc.open(acting(), entity_key)
    catalog = svc.services.store.catalog()
    live = catalog.entities.get(entity_key)
    live_fields = {f.id: f for f in live.fields} if live else {}
    fields = []
    for f in draft.entity["fields"]:
        ft = svc.services.field_types.get(f["type"]) if f["type"] in svc.services.field_types.names() else None
        fields.append({"name": f["name"], "label": loc(f["label"]), "type": f["type"], "type_label": loc(ft.label) if ft else f["type"],
                       "required": f.get("required", False), "unique": f.get("unique", False), "retired": f.get("retired", False),
                       "new": f["id"] not in live_fields, "title": f["name"] == draft.entity["title_field"]})
    extra = entity_extra_specs(svc.services.field_types)
    return {"draft": draft, "entity_key": entity_key, "entity_label": loc(draft.entity["label"]), "fields": fields,
            "entity_specs": extra, "entity_shown": {p.name: form_value(p, draft.entity.get(p.name)) for p in extra},
            "live": live is not None, "types": type_choices(), "icons": ICONS,
            "menu": edits.menu_placement(draft.documents["app"], entity_key)}


def render_designer(page: str, entity_key: str, status: int = 200, **extra):
    ctx = designer_context(entity_key)
    ctx.update(extra)
    if page == "layout":
        ctx.update(layout_context(ctx["draft"]))
    if page == "list_view":
        ctx.update(list_view_context(ctx["draft"]))
    return render_template(f"builder/{page}.html", active=page, **ctx), status


def apply_edit(entity_key: str, action: str, change, *, page: str = "fields", ok: str | None = None, redirect_to: str | None = None, **details):
    """Run one designer action; on a conflict or a bad value the page comes back with the message."""
    try:
        builder().edit(acting(), entity_key, revision(), action, change, **details)
    except DraftConflict as exc:
        return render_designer(page, entity_key, 409, error=exc.message)
    except (ValidationFailed, PropertyError) as exc:
        return render_designer(page, entity_key, 422, error=_error_text(exc))
    if request.headers.get("HX-Request") and page == "layout":
        return render_designer("layout", entity_key)
    if ok:
        flash(ok, "success")
    return redirect(redirect_to or url_for(f"crmkit_builder.{page}", entity_key=entity_key)), 303


@builder_blueprint.route("/e/<entity_key>/")
def fields(entity_key):
    return render_designer("fields", entity_key)


@builder_blueprint.route("/e/<entity_key>/entity", methods=["POST"])
def update_entity(entity_key):
    f = request.form
    search = [s for s in f.getlist("search_fields") if s]
    try:
        extra, cleared = parse_props(entity_extra_specs(builder().services.field_types), f)
    except PropertyError as exc:
        return render_designer("fields", entity_key, 422, error=_error_text(exc))

    def change(d):
        edits.update_entity(d, zh=f.get("label_zh", ""), en=f.get("label_en", ""), plural_zh=f.get("plural_zh", ""),
                            plural_en=f.get("plural_en", ""), icon=f.get("icon", ""), title_field=f.get("title_field", ""),
                            search_fields=search, menu=f.get("menu") or None)
        for k in cleared:
            d["entity"].pop(k, None)
        d["entity"].update(extra)

    return apply_edit(entity_key, "update_entity", change, ok=_t("Entity settings saved in the draft.", "实体设置已保存到草稿。"))


@builder_blueprint.route("/e/<entity_key>/fields/order", methods=["POST"])
def field_order(entity_key):
    name, direction = request.form.get("field", ""), request.form.get("direction", "down")
    if request.form.get("order"):
        order = [n for n in request.form.get("order", "").split(",") if n]
        return apply_edit(entity_key, "reorder_fields", lambda d: edits.reorder_fields(d, order))
    return apply_edit(entity_key, "move_field", lambda d: edits.move_field(d, name, direction), field=name, direction=direction)


@builder_blueprint.route("/e/<entity_key>/fields/<name>/retire", methods=["POST"])
def retire_field(entity_key, name):
    if request.form.get("undo"):
        return apply_edit(entity_key, "unretire_field", lambda d: edits.unretire_field(d, name), field=name,
                          ok=_t("Field back in use (placed at the end of the form).", "字段已恢复使用（放在表单末尾）。"))
    return apply_edit(entity_key, "retire_field", lambda d: edits.retire_field(d, name), field=name,
                      ok=_t("Field retired: hidden after publishing, its data is kept.", "字段已停用：发布后隐藏，数据保留。"))


@builder_blueprint.route("/e/<entity_key>/fields/<name>/delete", methods=["GET", "POST"])
def delete_field(entity_key, name):
    svc = builder()
    rows = svc.field_value_count(entity_key, name)
    if request.method == "GET":
        return render_designer("delete_field", entity_key, field_name=name, rows=rows)
    # The second confirmation: the number of rows whose values will be deleted, typed back.
    if rows and request.form.get("confirm_rows", "").strip() != str(rows):
        return render_designer("delete_field", entity_key, 422, field_name=name, rows=rows,
                               error=_t("Type the number of rows ({rows}) to confirm.", "请输入行数（{rows}）以确认。", rows=rows))
    return apply_edit(entity_key, "delete_field", lambda d: edits.delete_field(d, name), field=name, rows=rows,
                      ok=_t("Field deleted in the draft. Publishing will remove its column.", "字段已从草稿删除，发布时将删除其数据列。"))


# --- property editor -----------------------------------------------------------------------------

def field_editor(entity_key: str, name: str | None, ftype: str, status: int = 200, values: dict | None = None, errors: dict | None = None,
                 error: str | None = None):
    svc = builder()
    draft = svc.open(acting(), entity_key)
    current = edits.field_of(draft.documents, name) if name else {"type": ftype}
    specs = field_prop_specs(svc.services.field_types, svc.services.field_types.get(ftype), entity_choices())
    shown = {s.name: form_value(s, current.get(s.name)) for s in specs}
    if values:
        shown.update(values)
    ctx = designer_context(entity_key)
    ctx.update(field=current, field_name=name, ftype=ftype, listed=edits.in_list(draft.documents, name) if name else True, ftype_label=loc(svc.services.field_types.get(ftype).label),
               specs=specs, shown=shown, errors=errors or {}, error=error)
    return render_template("builder/field_edit.html", active="fields", **ctx), status


@builder_blueprint.route("/e/<entity_key>/fields/new", methods=["GET", "POST"])
def new_field(entity_key):
    svc = builder()
    ftype = request.values.get("type", "text")
    if ftype not in svc.services.field_types.names():
        ftype = "text"
    if request.method == "GET":
        return field_editor(entity_key, None, ftype)
    specs = field_prop_specs(svc.services.field_types, svc.services.field_types.get(ftype), entity_choices())
    name = request.form.get("name", "").strip()
    try:
        props, _ = parse_props(specs, request.form)
        listed = bool(request.form.get("in_list"))

        def change(d):
            edits.add_field(d, svc.services.field_types, ftype, name, props)
            if listed:
                edits.show_in_list(d, name, True, svc.services.field_types)

        svc.edit(acting(), entity_key, revision(), "add_field", change, field=name, type=ftype, in_list=listed)
    except PropertyError as exc:
        return field_editor(entity_key, None, ftype, 422, errors=exc.errors, error=_t("Fix the marked properties.", "请修改标出的属性。"))
    except DraftConflict as exc:
        return field_editor(entity_key, None, ftype, 409, error=exc.message)
    except ValidationFailed as exc:
        return field_editor(entity_key, None, ftype, 422, error=_error_text(exc))
    flash(_t("Field added to the draft.", "字段已添加到草稿。"), "success")
    return redirect(url_for("crmkit_builder.fields", entity_key=entity_key)), 303


@builder_blueprint.route("/e/<entity_key>/fields/<name>", methods=["GET", "POST"])
def edit_field(entity_key, name):
    svc = builder()
    draft = svc.open(acting(), entity_key)
    current = edits.field_of(draft.documents, name)
    ftype = request.values.get("type") or current["type"]
    if ftype not in svc.services.field_types.names():
        ftype = current["type"]
    if request.method == "GET":
        return field_editor(entity_key, name, ftype)
    specs = field_prop_specs(svc.services.field_types, svc.services.field_types.get(ftype), entity_choices())
    new_name = request.form.get("name", name).strip()
    try:
        props, cleared = parse_props(specs, request.form)
        listed = bool(request.form.get("in_list"))

        def change(d):
            f = edits.update_field(d, svc.services.field_types, name, props, cleared, new_name=new_name, new_type=ftype)
            edits.show_in_list(d, f["name"], listed, svc.services.field_types)

        svc.edit(acting(), entity_key, revision(), "update_field", change, field=name, new_name=new_name, type=ftype, in_list=listed)
    except PropertyError as exc:
        return field_editor(entity_key, name, ftype, 422, errors=exc.errors, error=_t("Fix the marked properties.", "请修改标出的属性。"))
    except DraftConflict as exc:
        return field_editor(entity_key, name, ftype, 409, error=exc.message)
    except ValidationFailed as exc:
        return field_editor(entity_key, name, ftype, 422, error=_error_text(exc))
    flash(_t("Field saved in the draft.", "字段已保存到草稿。"), "success")
    return redirect(url_for("crmkit_builder.fields", entity_key=entity_key)), 303


# --- form layout -------------------------------------------------------------------------------

def layout_context(draft: Draft) -> dict:
    import copy

    docs = copy.deepcopy(draft.documents)
    form = layout.form_of(docs)
    labels = {f["name"]: (loc(f["label"]), f["type"]) for f in docs["entity"]["fields"]}
    sections = []
    for s in form["sections"]:
        items = [{"name": layout.item_name(i), "label": labels.get(layout.item_name(i), ("?", ""))[0],
                  "type": labels.get(layout.item_name(i), ("", ""))[1], "span": i.get("span", 1) if isinstance(i, dict) else 1}
                 for i in s["fields"]]
        sections.append({"id": s["id"], "label": s["label"], "label_text": loc(s["label"]), "columns": s.get("columns", 2),
                         "tab": s.get("tab", ""), "items": items})
    tabs = [(t["id"], loc(t["label"])) for t in form.get("tabs", [])]
    palette = [{"name": n, "label": labels[n][0], "type": labels[n][1]} for n in layout.unplaced_fields(docs, form)]
    return {"sections": sections, "tabs": tabs, "palette": palette}


def layout_page(entity_key):
    return render_designer("layout", entity_key)


# ``layout`` is the name of the layout module, so the endpoint is ``crmkit_builder.layout``.
builder_blueprint.add_url_rule("/e/<entity_key>/layout", endpoint="layout", view_func=layout_page)


@builder_blueprint.route("/e/<entity_key>/layout/arrange", methods=["POST"])
def layout_arrange(entity_key):
    try:
        arrangement = json.loads(request.form.get("arrangement", "[]"))
        assert isinstance(arrangement, list)
    except (ValueError, AssertionError):
        return render_designer("layout", entity_key, 422, error=_t("The layout could not be read.", "无法读取布局。"))
    return apply_edit(entity_key, "arrange_form", lambda d: layout.set_arrangement(d, arrangement), page="layout")


@builder_blueprint.route("/e/<entity_key>/layout/move", methods=["POST"])
def layout_move(entity_key):
    kind, name, direction = request.form.get("kind", "field"), request.form.get("name", ""), request.form.get("direction", "down")
    if kind == "section":
        return apply_edit(entity_key, "move_section", lambda d: layout.move_section(d, name, direction), page="layout", section=name)
    return apply_edit(entity_key, "move_form_field", lambda d: layout.move_form_field(d, name, direction), page="layout", field=name)


@builder_blueprint.route("/e/<entity_key>/layout/sections", methods=["POST"])
def layout_add_section(entity_key):
    f = request.form
    chosen = [n for n in f.getlist("fields") if n]
    return apply_edit(entity_key, "add_section", lambda d: layout.add_section(
        d, f.get("id", ""), f.get("label_zh", ""), f.get("label_en", ""), f.get("columns", 2), f.get("tab") or None, chosen),
        page="layout", section=f.get("id", ""))


@builder_blueprint.route("/e/<entity_key>/layout/sections/<section_id>", methods=["POST"])
def layout_section(entity_key, section_id):
    f = request.form
    if f.get("remove"):
        return apply_edit(entity_key, "remove_section", lambda d: layout.remove_section(d, section_id), page="layout", section=section_id)
    return apply_edit(entity_key, "update_section", lambda d: layout.update_section(
        d, section_id, f.get("label_zh", ""), f.get("label_en", ""), f.get("columns", 2), f.get("tab") or None), page="layout", section=section_id)


@builder_blueprint.route("/e/<entity_key>/layout/tabs", methods=["POST"])
def layout_add_tab(entity_key):
    f = request.form
    return apply_edit(entity_key, "add_tab", lambda d: layout.add_tab(d, f.get("id", ""), f.get("label_zh", ""), f.get("label_en", "")),
                      page="layout", tab=f.get("id", ""))


@builder_blueprint.route("/e/<entity_key>/layout/fields", methods=["POST"])
def layout_field(entity_key):
    f = request.form
    name = f.get("name", "")
    if f.get("section"):
        return apply_edit(entity_key, "place_field", lambda d: layout.place_field(d, name, f["section"]), page="layout", field=name)
    if f.get("remove"):
        return apply_edit(entity_key, "unplace_field", lambda d: layout.unplace_field(d, name), page="layout", field=name)
    return apply_edit(entity_key, "set_width", lambda d: layout.set_width(d, name, int(f.get("span") or 1)), page="layout", field=name)


@builder_blueprint.route("/e/<entity_key>/preview")
def preview_form(entity_key):
    """The draft form rendered by the runtime's own form renderer (widgets.build_sections)."""
    from crmkit.runtime.web.forms import default_form_values
    from crmkit.runtime.web.widgets import build_sections

    svc = builder()
    draft = svc.open(acting(), entity_key)
    docs = svc.documents_to_publish(draft)
    try:
        catalog = svc.services.store.preview(docs)
    except DefinitionError as exc:
        return render_designer("preview", entity_key, 200, problems=exc.problems, preview_sections=[], preview_tabs=[])
    entity = catalog.entity(entity_key)
    form = catalog.form(entity)
    locale = current_locale()
    names = tuple(f.name for f in entity.fields if not f.opt("retired"))
    sections = build_sections(catalog, entity, form, default_form_values(catalog, entity, svc.services.settings.timezone), locale,
                              writable=names, child_writable=lambda child: tuple(f.name for f in child.fields), errors={},
                              link_choices=lambda target, current: [], shown={}, creating=True, readable=names)
    tabs = [(tid, label.get(locale)) for tid, label in form.tabs]
    return render_designer("preview", entity_key, preview_sections=sections, preview_tabs=tabs, problems=[],
                           active_tab=tabs[0][0] if tabs else None)


# --- list view -------------------------------------------------------------------------------------

@builder_blueprint.route("/e/<entity_key>/list", methods=["GET", "POST"])
def list_view(entity_key):
    """Columns (ticked, in order), default sort and page size of the default list view."""
    if request.method == "POST":
        f = request.form
        order = [n for n in f.get("order", "").split(",") if n] or f.getlist("columns")
        chosen = [n for n in order if n in f.getlist("columns")]
        size = f.get("page_size", "")
        return apply_edit(entity_key, "set_list_view", lambda d: edits.set_list_view(
            d, chosen, f.get("sort_field", ""), f.get("sort_dir") == "desc", int(size) if size.isdigit() else None),
            page="list_view", ok=_t("List view saved in the draft.", "列表视图已保存到草稿。"))
    return render_designer("list_view", entity_key)


def list_view_context(draft: Draft) -> dict:
    catalog = builder().services.store.catalog()
    view = draft.documents.get("views", {}).get("default")
    fields = [f for f in draft.entity["fields"] if not f.get("retired") and
              builder().services.field_types.get(f["type"]).stored]
    columns = view["columns"] if view else [f["name"] for f in fields][:6]
    labels = {f["name"]: loc(f["label"]) for f in fields}
    labels.update({"created_at": _t("Created", "创建时间"), "updated_at": _t("Updated", "更新时间")})
    ordered = [c for c in columns if c in labels] + [n for n in labels if n not in columns]
    sort = (view or {}).get("default_sort", [{}])[0] if (view or {}).get("default_sort") else {}
    del catalog
    return {"list_columns": [(n, labels[n], n in columns) for n in ordered], "sort_field": sort.get("field", ""),
            "sort_dir": sort.get("dir", "asc"), "page_size": (view or {}).get("page_size", 25)}


# --- publish, discard, versions -----------------------------------------------------------------

@builder_blueprint.route("/e/<entity_key>/publish", methods=["GET", "POST"])
def publish(entity_key):
    svc = builder()
    actor = acting()
    if request.method == "GET":
        return render_designer("publish", entity_key, result=svc.preview(actor, entity_key))
    confirmed = request.form.get("confirm_rows", "").strip()
    try:
        svc.publish(actor, entity_key, revision(), confirm=bool(request.form.get("confirm")),
                    confirmed_rows=int(confirmed) if confirmed.isdigit() else None, comment=request.form.get("comment", ""))
    except DraftConflict as exc:
        return render_designer("publish", entity_key, 409, result=svc.preview(actor, entity_key), error=exc.message)
    except (PlanRefused, DefinitionError) as exc:
        return render_designer("publish", entity_key, 409 if isinstance(exc, PlanRefused) else 422,
                               result=svc.preview(actor, entity_key), error=exc.message)
    from crmkit.runtime.web.permissions import sync_entity_permissions

    sync_entity_permissions(current_app, svc.services)  # a new entity gets its permissions
    flash(_t("Published. Everyone sees the change now.", "已发布，所有人现在都能看到这次修改。"), "success")
    return redirect(url_for("crmkit_builder.versions", entity_key=entity_key)), 303


@builder_blueprint.route("/e/<entity_key>/discard", methods=["POST"])
def discard(entity_key):
    try:
        builder().discard(acting(), entity_key, revision())
    except DraftConflict as exc:
        return render_designer("fields", entity_key, 409, error=exc.message)
    flash(_t("Draft discarded.", "草稿已丢弃。"), "success")
    target = "crmkit_builder.fields" if builder().services.store.catalog().entities.get(entity_key) else "crmkit_builder.home"
    return redirect(url_for(target, entity_key=entity_key) if target.endswith("fields") else url_for(target)), 303


@builder_blueprint.route("/e/<entity_key>/versions")
def versions(entity_key):
    from .diff import readable_diff

    svc = builder()
    rows = svc.versions(acting(), entity_key)
    history: dict = {}
    for r in reversed(rows):  # oldest first, to diff each version against the one before it
        prev = history.get((r["kind"], r["key"]))
        r["readable"] = readable_diff(prev, _body(r["id"])) if prev is not None else [{"path": "/", "op": "added", "old": None, "new": None}]
        history[(r["kind"], r["key"])] = _body(r["id"])
    return render_designer("versions", entity_key, versions=rows)


def _body(version_id: int):
    from sqlalchemy import select

    from crmkit.runtime.storage import platform_tables as pt

    with builder().services.engine.connect() as conn:
        return conn.execute(select(pt.document_version.c.body).where(pt.document_version.c.id == version_id)).scalar()


@builder_blueprint.route("/e/<entity_key>/versions/<int:version_id>/restore", methods=["GET", "POST"])
def restore(entity_key, version_id):
    svc = builder()
    actor = acting()
    if request.method == "GET":
        return render_designer("restore", entity_key, result=svc.restore(actor, entity_key, version_id, dry_run=True), version_id=version_id)
    confirmed = request.form.get("confirm_rows", "").strip()
    try:
        svc.restore(actor, entity_key, version_id, confirm=bool(request.form.get("confirm")),
                    confirmed_rows=int(confirmed) if confirmed.isdigit() else None)
    except (PlanRefused, DefinitionError) as exc:
        return render_designer("restore", entity_key, 409, result=svc.restore(actor, entity_key, version_id, dry_run=True),
                               version_id=version_id, error=exc.message)
    flash(_t("Version restored and published.", "已恢复该版本并发布。"), "success")
    return redirect(url_for("crmkit_builder.versions", entity_key=entity_key)), 303


# --- helpers ------------------------------------------------------------------------------------

def _t(en: str, zh: str, **params) -> str:
    return localize(text(en, zh, **params), current_locale())


def _field_errors(exc: CrmkitError) -> str:
    errs = getattr(exc, "field_errors", None) or {}
    parts = [localize(m, current_locale()) for msgs in errs.values() for m in (msgs if isinstance(msgs, list) else [msgs])]
    return (" " + " ".join(parts)) if parts else ""


def _error_text(exc) -> str:
    if isinstance(exc, PropertyError):
        return "; ".join(f"{k}: {localize(v, current_locale())}" for k, v in exc.errors.items())
    return localize(exc.message, current_locale()) + _field_errors(exc)


def register_builder(app) -> None:
    """Called from the app factory: the builder's pages and its nav entry."""
    app.register_blueprint(builder_blueprint)

    @app.template_filter("bjson")
    def readable_json(value):
        """JSON for people: Chinese stays Chinese (templates escape the result)."""
        return json.dumps(value, ensure_ascii=False, sort_keys=True)

    @app.context_processor
    def builder_nav():
        from flask_login import current_user

        if not request.path or not getattr(current_user, "is_authenticated", False):
            return {}
        actor = current_actor()
        if actor is None:
            return {}
        try:
            allowed = builder().can_build(actor)
        except Exception:  # platform tables missing: the page itself reports it
            return {}
        if not allowed:
            return {}
        from crmkit.runtime.web.i18n import translate

        return {"builder_nav": {"label": translate("builder", current_locale()), "url": url_for("crmkit_builder.home"),
                                "active": request.path.startswith("/builder"), "icon": "layers"}}


# --- configuration export / import ---------------------------------------------------------------

def _admin_only():
    from crmkit.runtime.errors import PermissionDenied

    if not acting().is_admin:
        raise PermissionDenied(text("Only administrators may export, import or upgrade the whole configuration.",
                                    "只有管理员可以导出、导入或升级整套配置。"))


@builder_blueprint.route("/config")
def config_page():
    _admin_only()
    return render_template("builder/config.html", result=None, error=None)


@builder_blueprint.route("/config/export.zip")
def config_export():
    from flask import Response

    from crmkit.runtime.audit import record_event_now

    from .config_io import export_zip

    _admin_only()
    data = export_zip(builder().services)
    record_event_now(builder().services.engine, category="builder", action="config_export", actor_id=acting().id, subject="config",
                     changes={"bytes": len(data)})
    return Response(data, mimetype="application/zip", headers={"Content-Disposition": "attachment; filename=crmkit-config.zip"})


@builder_blueprint.route("/config/import", methods=["POST"])
def config_import():
    import tempfile

    from .config_io import import_documents, read_zip

    _admin_only()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return render_template("builder/config.html", result=None, error=_t("Choose a zip file to import.", "请选择要导入的 zip 文件。")), 422
    apply = bool(request.form.get("apply"))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            docs = read_zip(upload.read(), Path(tmp))
        result = import_documents(builder().services, docs, confirm=bool(request.form.get("confirm")), actor=acting(), dry_run=not apply)
    except DefinitionError as exc:
        return render_template("builder/config.html", result=None, error=_t("The configuration is not valid.", "配置无效。"),
                               problems=exc.problems), 422
    except PlanRefused as exc:
        return render_template("builder/config.html", result=None, error=localize(exc.message, current_locale())), 409
    if apply:
        from crmkit.runtime.web.permissions import sync_entity_permissions

        sync_entity_permissions(current_app, builder().services)
        flash(_t("Configuration imported.", "配置已导入。"), "success")
        return redirect(url_for("crmkit_builder.config_page")), 303
    return render_template("builder/config.html", result=result, error=None)


# --- template upgrades -------------------------------------------------------------------------

@builder_blueprint.route("/upgrades", methods=["GET", "POST"])
def upgrades():
    from crmkit.runtime.installer import installed_apps
    from crmkit.runtime.packages import discover

    from .upgrade import UnresolvedConflicts, apply_upgrade, plan_upgrade

    _admin_only()
    services = builder().services
    packages = discover()
    apps = []
    for app_id, version in sorted(installed_apps(services).items()):
        pkg = packages.get(app_id)
        if pkg is None:
            continue
        available = json.loads((pkg.path / "app.json").read_text("utf-8")).get("version")
        apps.append({"id": app_id, "installed": version, "available": available, "path": pkg.path})
    chosen = request.values.get("app")
    plan, error, status = None, None, 200
    target = next((a for a in apps if a["id"] == chosen), None)
    if target is not None:
        decisions = {k[len("c:"):]: v for k, v in request.form.items() if k.startswith("c:")}
        if request.method == "POST":
            try:
                apply_upgrade(services, target["id"], target["path"], decisions=decisions, confirm=bool(request.form.get("confirm")), actor=acting())
                flash(_t("Template upgraded; your changes were kept.", "模板已升级，你的修改已保留。"), "success")
                return redirect(url_for("crmkit_builder.upgrades")), 303
            except (UnresolvedConflicts, PlanRefused, DefinitionError) as exc:
                error, status = localize(exc.message, current_locale()), 409
        plan = plan_upgrade(services, target["id"], target["path"])
        try:
            plan.plan = Planner(services.engine, services.store.preview(plan.documents)).plan()
        except DefinitionError as exc:
            error, status = localize(exc.message, current_locale()), 422
    return render_template("builder/upgrades.html", apps=apps, chosen=chosen, plan=plan, error=error), status


from crmkit.runtime.storage.plan import Planner  # noqa: E402
