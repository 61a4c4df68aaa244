"""Record pages: detail with audit timeline, create/edit forms, delete with confirmation, restore.

Forms post normally (and through htmx when JavaScript runs): a validation failure
re-renders the form with status 422 and the submitted values, a stale row_version
re-renders it with status 409 and a reload hint, success redirects to the detail page.
"""
from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app, flash, make_response, redirect, render_template, request, url_for

from ..errors import PermissionDenied, RecordNotFound, StaleRecord, ValidationFailed
from ..i18n_text import join, localize, text
from ..records.validation import REQUIRED
from ..meta.model import EntityDef
from ..privacy.personal import has_personal_data
from .display import EMPTY, field_label, json_cell, row_cell
from .entity_views import acting, entity_of, is_fragment_request, services
from .forms import default_form_values, new_row_key, parse_submission, record_form_values, split_errors
from .i18n import current_locale, translate
from .rules_ui import apply_states, rule_fields
from .widgets import LINK_CHOICES, blank_row, build_sections

ACTION_CLASS = {"create": "created", "update": "updated", "delete": "deleted", "restore": "created"}


def local_time(value) -> str:
    if not isinstance(value, dt.datetime):
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(ZoneInfo(services().settings.timezone)).strftime("%Y-%m-%d %H:%M")


def link_choices_for(actor):
    """(id, title) choices of a link field: the first page of QueryService.options plus the current values."""
    queries = services().queries

    def choices(target: str, current: list[int]) -> list[tuple[int, str]]:
        try:
            found = list(queries.options(target, actor, limit=LINK_CHOICES))
        except PermissionDenied:
            found = []
        missing = [i for i in current if i not in {x for x, _ in found}]
        if missing:
            found = sorted(resolve_titles(target, missing, actor).items() | set(found), key=lambda p: p[1])
        return list(found)

    return choices


def resolve_titles(target: str, ids, actor) -> dict[int, str]:
    """Titles of records of ``target`` by id, in one query (deleted or unreadable ones are left out)."""
    ids = sorted({int(i) for i in ids if str(i).isdigit()})
    if not ids:
        return {}
    catalog = services().store.catalog()
    te = catalog.entity(target)
    tf = te.field(te.title_field)
    try:
        page = services().queries.list(target, actor, filter={"field": "id", "op": "in", "value": ids}, fields=[te.title_field],
                                       limit=min(len(ids), 200), count="none", labels=False)
    except PermissionDenied:
        return {}
    return {r["id"]: catalog.type_of(tf).display_text(tf, r.get(te.title_field), current_locale()) or f"#{r['id']}" for r in page.rows}


def register_record_routes(bp):
    @bp.route("/e/<entity_key>/<int:record_id>")
    def entity_detail(entity_key, record_id):
        entity = entity_of(entity_key)
        return render_detail(entity, record_id)

    @bp.route("/e/<entity_key>/new", methods=["GET", "POST"])
    def entity_new(entity_key):
        entity = entity_of(entity_key)
        services().policy.check(acting(), entity, "create")
        return handle_form(entity, None)

    @bp.route("/e/<entity_key>/<int:record_id>/edit", methods=["GET", "POST"])
    def entity_edit(entity_key, record_id):
        entity = entity_of(entity_key)
        services().policy.check(acting(), entity, "update")
        return handle_form(entity, record_id)

    @bp.route("/e/<entity_key>/<int:record_id>/delete", methods=["GET", "POST"])
    def entity_delete(entity_key, record_id):
        entity = entity_of(entity_key)
        actor = acting()
        svc = services()
        record = svc.queries.get(entity.key, record_id, actor)
        if request.method == "GET":
            svc.policy.check(actor, entity, "delete")
            return render_template("crmkit/delete_confirm.html", entity=entity, record=record, title=record_title(entity, record))
        raw_version = request.form.get("row_version", "")
        svc.records.delete(entity.key, record_id, actor, expected_version=int(raw_version) if raw_version.isdigit() else None)
        flash(translate("deleted"), "success")
        return redirect(url_for("crmkit_web.entity_list", entity_key=entity.key), 303)

    @bp.route("/e/<entity_key>/<int:record_id>/restore", methods=["POST"])
    def entity_restore(entity_key, record_id):
        entity = entity_of(entity_key)
        try:
            services().records.restore(entity.key, record_id, acting())
            flash(translate("restored"), "success")
        except ValidationFailed as exc:
            flash(localize(join(m for msgs in exc.field_errors.values() for m in msgs), current_locale()), "error")
        return redirect(url_for("crmkit_web.entity_bin", entity_key=entity.key), 303)

    @bp.route("/e/<entity_key>/form-rules", methods=["POST"])
    def entity_form_rules(entity_key):
        """htmx: the fields with visible_if/required_if, re-rendered for the posted form state (see web/rules_ui.py)."""
        entity = entity_of(entity_key)
        policy, actor = services().policy, acting()
        if not policy.allows(actor, entity, "update"):  # only someone who may fill in this form
            policy.check(actor, entity, "create")
        return render_rule_fields(entity)

    @bp.route("/e/<entity_key>/child-row/<field_name>")
    def entity_child_row(entity_key, field_name):
        """A blank child-table row for the form (htmx appends it)."""
        entity = entity_of(entity_key)
        f = entity.field_map.get(field_name)
        if f is None or f.type != "child_table":
            raise RecordNotFound(text("{entity} has no child table '{name}'.", "{entity}没有名为“{name}”的子表。", entity=entity.label, name=field_name))
        catalog = services().store.catalog()
        child = catalog.entities[f.opt("entity")]
        actor = acting()
        row = blank_row(catalog, child, f.name, current_locale(), services().policy.writable_fields(actor, child), link_choices_for(actor))
        return render_template("crmkit/_child_row.html", table=f.name, row=row)

    @bp.route("/e/<entity_key>/options")
    def entity_options(entity_key):
        """``<option>`` elements for a link picker, narrowed by ``q`` (the autocomplete box).

        The current choice is kept in the list: the picker sends its value under the field's name (``field`` says which)."""
        entity_of(entity_key)
        q = request.args.get("q", "")[:100]
        field = request.args.get("field", "")
        selected = request.args.get(field, "") if field and field != "q" else ""
        opts = services().queries.options(entity_key, acting(), search=q or None, limit=LINK_CHOICES)
        if selected.isdigit() and int(selected) not in {i for i, _ in opts}:
            opts = list(resolve_titles(entity_key, [selected], acting()).items()) + list(opts)
        return render_template("crmkit/_options.html", options=opts, selected=selected)


def record_title(entity: EntityDef, record: dict) -> str:
    catalog = services().store.catalog()
    f = entity.field(entity.title_field)
    return catalog.type_of(f).display_text(f, record.get(f.name), current_locale()) or f"#{record['id']}"


# --- detail ------------------------------------------------------------------------------------

def render_detail(entity: EntityDef, record_id: int):
    svc = services()
    actor = acting()
    catalog = svc.store.catalog()
    locale = current_locale()
    record = svc.queries.get(entity.key, record_id, actor)
    form = catalog.form(entity)
    # Masked fields this actor may reveal get a "show" button (each reveal is audited by the unmask view).
    unmaskable = set(svc.policy.masks(actor, entity)) & set(svc.policy.unmaskable_fields(actor, entity))
    sections = []
    for s in form.sections:
        items: list[dict[str, Any]] = []
        for ff in s.fields:
            f = entity.field_map.get(ff.field)
            if f is None or f.name not in record:
                continue
            if f.type == "child_table":
                child = catalog.entities[f.opt("entity")]
                cols = [cf for cf in child.fields if catalog.type_of(cf).stored]
                items.append({"kind": "child", "label": f.label.get(locale), "columns": [c.label.get(locale) for c in cols],
                              "rows": [[row_cell(catalog, child, c.name, r, locale) for c in cols] for r in record[f.name]]})
                continue
            items.append({"kind": "value", "label": f.label.get(locale), "cell": row_cell(catalog, entity, f.name, record, locale),
                          "span": ff.span, "help": "",
                          "unmask_url": url_for("crmkit_permissions.unmask", entity_key=entity.key, record_id=record_id, field_name=f.name)
                          if f.name in unmaskable else None})
        sections.append({"id": s.id, "label": s.label.get(locale), "columns": s.columns, "tab": s.tab, "items": items})
    tabs = [(tid, label.get(locale)) for tid, label in form.tabs]
    ctx = {
        "entity": entity, "record": record, "title": record_title(entity, record), "sections": sections, "tabs": tabs,
        "active_tab": active_tab(tabs, request.args.get("tab")), "history": history_entries(entity, record_id),
        "system": [(translate("created_at"), local_time(record["created_at"])), (translate("updated_at"), local_time(record["updated_at"])),
                   (translate("created_by"), record["_labels"].get("created_by", "")), (translate("owner"), record["_labels"].get("owner_id", "")),
                   (translate("version"), record["row_version"]), (translate("record_id"), record["id"])],
        "can": {a: svc.policy.allows(actor, entity, a) for a in ("create", "update", "delete")},
        "personal_data": has_personal_data(entity),
        "panels": current_app.extensions.get("crmkit_panels", {}).get(entity.key, []),
    }
    return render_template("crmkit/entity_detail.html", **ctx)


def active_tab(tabs, wanted: str | None) -> str | None:
    ids = [t for t, _ in tabs]
    if wanted in ids:
        return wanted
    return ids[0] if ids else None


def action_label(action: str) -> str:
    """A known action in the user's language; an app's own action (e.g. ``points.earn``) as it is named."""
    key = f"action_{action}"
    label = translate(key)
    return action if label == key else label


def history_entries(entity: EntityDef, record_id: int) -> list[dict]:
    svc = services()
    actor = acting()
    catalog = svc.store.catalog()
    locale = current_locale()
    raw = svc.queries.history(entity.key, record_id, actor)
    # Link values in the audit are ids: resolve their titles per target, one query each.
    wanted: dict[str, set] = {}
    for entry in raw:
        for name, change in entry["changes"].items():
            f = entity.field_map.get(name)
            if f is not None and f.type == "link" and isinstance(change, list):
                wanted.setdefault(f.opt("target"), set()).update(v for v in change if v is not None)
    titles = {target: resolve_titles(target, ids, actor) for target, ids in wanted.items()}
    out = []
    for entry in raw:
        changes, children = [], []
        for name, change in entry["changes"].items():
            f = entity.field_map.get(name)
            if f is None:
                continue
            if f.type == "child_table" and isinstance(change, dict):
                parts = []
                for key, msg in (("added", "rows_added"), ("changed", "rows_changed"), ("removed", "rows_removed")):
                    if change.get(key):
                        parts.append(translate(msg, count=len(change[key])))
                children.append({"label": f.label.get(locale), "summary": "，".join(parts) if locale == "zh" else ", ".join(parts)})
                continue
            if not isinstance(change, list) or len(change) != 2:
                continue
            labels = titles.get(f.opt("target"), {}) if f.type == "link" else None
            old, new = change
            changes.append({"label": f.label.get(locale),
                            "old": json_cell(catalog, f, old, locale, labels) if old is not None else EMPTY,
                            "new": json_cell(catalog, f, new, locale, labels) if new is not None else EMPTY})
        out.append({"when": local_time(entry["at"]), "who": entry["actor"], "action": entry["action"],
                    "what": action_label(entry["action"]), "css": ACTION_CLASS.get(entry["action"], "updated"),
                    "changes": changes, "children": children})
    return out


# --- create / edit ---------------------------------------------------------------------------

def handle_form(entity: EntityDef, record_id: int | None):
    svc = services()
    actor = acting()
    catalog = svc.store.catalog()
    form = catalog.form(entity)
    tz = svc.settings.timezone
    record = svc.queries.get(entity.key, record_id, actor) if record_id is not None else None
    if request.method == "GET":
        values = record_form_values(catalog, entity, record, tz) if record else default_form_values(catalog, entity, tz)
        return render_form(entity, form, record, values, {}, status=200)
    writable = svc.policy.writable_fields(actor, entity)
    sub = parse_submission(catalog, entity, form, request.form, request.files, writable,
                           lambda child: svc.policy.writable_fields(actor, child),
                           lambda upload: svc.records.store_file(svc.settings.upload_dir, upload.filename, upload.mimetype, upload.read(), actor))
    values = (record_form_values(catalog, entity, record, tz) if record else default_form_values(catalog, entity, tz)) | sub.values
    edit_rows = row_edit_request(entity, sub)
    if edit_rows:  # "add row" / "remove row" without JavaScript: show the form again, save nothing
        return render_form(entity, form, record, values, {}, status=200, row_version=request.form.get("row_version"))
    try:
        if record is None:
            new_id = svc.records.create(entity.key, sub.payload, actor)
            flash(translate("created"), "success")
            return go(url_for("crmkit_web.entity_detail", entity_key=entity.key, record_id=new_id))
        raw_version = request.form.get("row_version", "")
        svc.records.update(entity.key, record_id, sub.payload, actor, expected_version=int(raw_version) if raw_version.isdigit() else None)
        flash(translate("saved"), "success")
        return go(url_for("crmkit_web.entity_detail", entity_key=entity.key, record_id=record_id))
    except ValidationFailed as exc:
        return render_form(entity, form, record, values, split_errors(exc.field_errors, sub.child_keys), status=422, row_version=request.form.get("row_version"))
    except StaleRecord as exc:
        return render_form(entity, form, record, values, {}, status=409, stale=exc.message, row_version=request.form.get("row_version"))


def row_edit_request(entity: EntityDef, sub) -> bool:
    """Apply a no-JavaScript "add row"/"remove row" button to the submitted values; True when one was pressed."""
    catalog = services().store.catalog()
    add = request.form.get("_add_row")
    remove = request.form.get("_remove_row")
    if add and add in entity.field_map and entity.field_map[add].type == "child_table":
        child = catalog.entities[entity.field_map[add].opt("entity")]
        rows = sub.values.setdefault(add, [])
        rows.append((new_row_key(), {cf.name: "" for cf in child.fields}))
        return True
    if remove and ":" in remove:
        table, key = remove.split(":", 1)
        if table in sub.values and isinstance(sub.values[table], list):
            sub.values[table] = [(k, r) for k, r in sub.values[table] if k != key]
            return True
    return False


def go(url: str):
    """Redirect after a successful POST; htmx follows ``HX-Redirect`` with a full page load."""
    if is_fragment_request():
        resp = make_response("", 200)
        resp.headers["HX-Redirect"] = url
        return resp
    return redirect(url, 303)


def drop_redundant_required(messages: list[str]) -> list[str]:
    """An invalid value is also reported as missing; the specific message is enough."""
    return [m for m in messages if m != REQUIRED] if len(messages) > 1 else messages


def render_form(entity: EntityDef, form, record, values: dict, errors: dict, *, status: int, stale: str | None = None,
                row_version=None):
    """``stale`` is the record service's message when the edit was based on an old version."""
    svc = services()
    actor = acting()
    catalog = svc.store.catalog()
    locale = current_locale()
    shown = {f.name: row_cell(catalog, entity, f.name, record, locale) for f in entity.fields} if record else {}
    sections = build_sections(catalog, entity, form, values, locale, writable=svc.policy.writable_fields(actor, entity),
                              child_writable=lambda child: svc.policy.writable_fields(actor, child), errors=errors,
                              link_choices=link_choices_for(actor), shown=shown, creating=record is None,
                              readable=svc.policy.readable_fields(actor, entity))
    apply_states(catalog, entity, sections, values)
    rendered = {w.name for s in sections for w in s.widgets}
    rendered |= {cw.name for s in sections for w in s.widgets for _, _, cws in w.rows for cw in cws}
    # Errors about inputs that are not on the form (or hidden ones, like a child row's id) are listed above it.
    # Messages stay bilingual ``Text`` here; the templates show them with ``|loc``.
    problems = [(field_label(catalog, entity, k.split("-")[0], locale) if k.split("-")[0] in entity.field_map else "", join(v))
                for k, v in errors.items() if k not in rendered]
    for s in sections:
        for w in s.widgets:
            w.errors = drop_redundant_required(w.errors)
    tabs = [(tid, label.get(locale)) for tid, label in form.tabs]
    error_tab = next((s.tab for s in sections for w in s.widgets if w.errors or any(cw.errors for _, _, cws in w.rows for cw in cws)), None)
    ctx = {
        "entity": entity, "record": record, "sections": sections, "tabs": tabs,
        "active_tab": error_tab or active_tab(tabs, request.args.get("tab")), "problems": problems, "stale": stale,
        "has_errors": bool(errors) or bool(problems),
        "row_version": row_version or (record["row_version"] if record else None),
        "title": record_title(entity, record) if record else translate("new_record", entity=entity.label.get(locale)),
        "action": url_for("crmkit_web.entity_edit", entity_key=entity.key, record_id=record["id"]) if record
        else url_for("crmkit_web.entity_new", entity_key=entity.key),
        "cancel": url_for("crmkit_web.entity_detail", entity_key=entity.key, record_id=record["id"]) if record
        else url_for("crmkit_web.entity_list", entity_key=entity.key),
        "multipart": any(w.kind == "file" for s in sections for w in s.widgets),
        "rules_url": url_for("crmkit_web.entity_form_rules", entity_key=entity.key) if rule_fields(entity) else None,
    }
    return render_template("crmkit/entity_form.html", **ctx), status


def render_rule_fields(entity: EntityDef):
    svc = services()
    actor = acting()
    catalog = svc.store.catalog()
    form = catalog.form(entity)
    writable = svc.policy.writable_fields(actor, entity)
    # Files are not read here: uploads are saved only when the form is saved.
    sub = parse_submission(catalog, entity, form, request.form, request.files, writable, lambda child: svc.policy.writable_fields(actor, child),
                           lambda upload: {"id": "", "name": upload.filename})
    values = default_form_values(catalog, entity, svc.settings.timezone) | sub.values
    sections = build_sections(catalog, entity, form, values, current_locale(), writable=writable,
                              child_writable=lambda child: svc.policy.writable_fields(actor, child), errors={},
                              link_choices=link_choices_for(actor), shown={}, creating=True,
                              readable=svc.policy.readable_fields(actor, entity))
    apply_states(catalog, entity, sections, values)
    ruled = rule_fields(entity)
    widgets = [w for s in sections for w in s.widgets if w.field in ruled]
    return render_template("crmkit/_rule_fields.html", widgets=widgets)
