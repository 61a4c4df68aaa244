"""The ``crmkit_org`` blueprint: admin pages for the org tree, posts (岗位) and user assignments.

Plain HTML forms (CSRF-protected by Flask-WTF) that work without JavaScript. A refused change
re-renders the page with 422 and the errors beside the fields; the database is left as it was.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from ..actor import Actor
from ..errors import PermissionDenied, ValidationFailed
from ..i18n_text import text
from ..storage.entity_tables import SYSTEM_COLUMNS
from ..web.actors import current_actor
from ..web.i18n import translate
from .service import OrgService
from .tables import UNIT_KINDS

org_blueprint = Blueprint("crmkit_org", __name__, url_prefix="/admin/org")

NOT_A_NUMBER = object()


def org_service() -> OrgService:
    services = current_app.extensions["crmkit"]
    return OrgService(services.engine, admin_role=current_app.config.get("AUTH_ROLE_ADMIN", "Admin"),
                      referencing_columns=lambda: _org_unit_columns(services))


def _org_unit_columns(services) -> list:
    """Columns of record tables that hold org-unit ids: every table's ``org_unit_id`` and org-unit fields."""
    catalog = services.store.catalog()
    tables = services.records.table_cache.tables(catalog)
    cols = []
    for entity in catalog.entities.values():
        table = tables[entity.key]
        cols.append(table.c.org_unit_id)
        cols += [table.c[f.name] for f in entity.fields if f.type == "org_unit" and f.name in table.c and f.name not in SYSTEM_COLUMNS]
    return cols


@org_blueprint.before_request
def admins_only():
    actor = current_actor()
    if actor is None:
        return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
    if not actor.is_admin:
        raise PermissionDenied(text("Only administrators can manage the org structure. Ask an administrator for access.",
                                    "只有管理员可以管理组织架构。请联系管理员开通权限。"))
    return None


def _actor() -> Actor:
    actor = current_actor()
    if actor is None:  # the blueprint's before_request sends anonymous users to the login page first
        raise PermissionDenied(text("Log in first.", "请先登录。"))
    return actor


# --- form parsing ---------------------------------------------------------------------
def _opt_id(name: str) -> Any:
    """An optional id from the form: None when blank, NOT_A_NUMBER when not a positive integer."""
    raw = (request.form.get(name) or "").strip()
    if not raw:
        return None
    return int(raw) if raw.isdigit() and len(raw) < 19 else NOT_A_NUMBER


def _ids(name: str) -> list:
    return [int(v) if v.strip().isdigit() and len(v.strip()) < 19 else NOT_A_NUMBER for v in request.form.getlist(name) if v.strip()]


# --- the tree -------------------------------------------------------------------------
@org_blueprint.get("/")
def tree():
    return _tree_page(request.args.get("unit", type=int), confirm_delete=request.args.get("confirm") == "delete")


def _tree_page(selected: int | None, *, errors: dict | None = None, form: dict | None = None, form_kind: str = "", status: int = 200,
               confirm_delete: bool = False):
    svc = org_service()
    units = svc.units()
    by_id = {u.id: u for u in units}
    unit = by_id.get(selected) if selected else None
    counts = svc.unit_counts()
    users = svc.users()
    posts = svc.posts()
    ctx = {
        "units": units, "by_id": by_id, "unit": unit, "counts": counts, "kinds": UNIT_KINDS,
        "members": [u for u in users if unit and u["org_unit_id"] == unit.id],
        "unit_posts": [p for p in posts if unit and p.org_unit_id == unit.id],
        "move_targets": [u for u in units if not unit or not u.path.startswith(unit.path)],
        "errors": errors or {}, "form": form or {}, "form_kind": form_kind, "user_count": len(users), "post_count": len(posts),
        "confirm_delete": confirm_delete and unit is not None,
    }
    return render_template("crmkit/org/tree.html", **ctx), status


@org_blueprint.post("/units")
def create_unit():
    form = {"name": request.form.get("name", ""), "code": request.form.get("code", ""), "kind": request.form.get("kind", ""),
            "parent_id": _opt_id("parent_id")}
    try:
        new_id = org_service().create_unit(_actor(), **form)
    except ValidationFailed as exc:
        return _tree_page(form["parent_id"] if isinstance(form["parent_id"], int) else None, errors=exc.field_errors,
                          form=form, form_kind="create", status=422)
    flash(translate("org_unit_created", name=form["name"].strip()), "success")
    return redirect(url_for("crmkit_org.tree", unit=new_id))


@org_blueprint.post("/units/<int:unit_id>")
def update_unit(unit_id: int):
    svc = org_service()
    svc.unit(unit_id)  # 404 for an unknown unit
    form = {"name": request.form.get("name", ""), "code": request.form.get("code", ""), "kind": request.form.get("kind", "")}
    try:
        svc.update_unit(_actor(), unit_id, **form)
    except ValidationFailed as exc:
        return _tree_page(unit_id, errors=exc.field_errors, form=form, form_kind="edit", status=422)
    flash(translate("org_unit_saved", name=form["name"].strip()), "success")
    return redirect(url_for("crmkit_org.tree", unit=unit_id))


@org_blueprint.post("/units/<int:unit_id>/move")
def move_unit(unit_id: int):
    svc = org_service()
    unit = svc.unit(unit_id)
    parent_id = _opt_id("parent_id")
    try:
        moved = svc.move_unit(_actor(), unit_id, parent_id)
    except ValidationFailed as exc:
        return _tree_page(unit_id, errors=exc.field_errors, form={"parent_id": parent_id}, form_kind="move", status=422)
    flash(translate("org_unit_moved", name=unit.name, count=moved), "success")
    return redirect(url_for("crmkit_org.tree", unit=unit_id))


@org_blueprint.post("/units/<int:unit_id>/delete")
def delete_unit(unit_id: int):
    svc = org_service()
    unit = svc.unit(unit_id)
    try:
        svc.delete_unit(_actor(), unit_id)
    except ValidationFailed as exc:
        return _tree_page(unit_id, errors={"delete": [exc.message]}, form_kind="delete", status=422)
    flash(translate("org_unit_deleted", name=unit.name), "success")
    return redirect(url_for("crmkit_org.tree", unit=unit.parent_id) if unit.parent_id else url_for("crmkit_org.tree"))


# --- posts ----------------------------------------------------------------------------
@org_blueprint.get("/posts")
def posts():
    return _posts_page(request.args.get("post", type=int), new=request.args.get("new") == "1")


def _posts_page(selected: int | None, *, new: bool = False, errors: dict | None = None, form: dict | None = None, status: int = 200):
    svc = org_service()
    all_posts = svc.posts()
    post = next((p for p in all_posts if p.id == selected), None) if selected else None
    if selected and post is None:
        svc.post(selected)  # raises RecordNotFound
    units = svc.units()
    users = svc.users()
    if form is None:
        form = {"name": post.name, "code": post.code, "org_unit_id": post.org_unit_id, "description": post.description,
                "role_ids": list(post.role_ids)} if post else {"role_ids": []}
    ctx = {
        "posts": all_posts, "post": post, "new": new or errors is not None and post is None, "units": units,
        "by_id": {u.id: u for u in units}, "roles": svc.roles(), "role_names": dict(svc.roles()),
        "holders": {p.id: [u for u in users if p.id in u["post_ids"]] for p in all_posts},
        "errors": errors or {}, "form": form,
    }
    return render_template("crmkit/org/posts.html", **ctx), status


def _post_form() -> dict:
    return {"name": request.form.get("name", ""), "code": request.form.get("code", ""), "org_unit_id": _opt_id("org_unit_id"),
            "description": request.form.get("description", ""), "role_ids": _ids("role_ids")}


@org_blueprint.post("/posts")
def create_post():
    form = _post_form()
    try:
        post_id = org_service().create_post(_actor(), **form)
    except ValidationFailed as exc:
        return _posts_page(None, new=True, errors=exc.field_errors, form=form, status=422)
    flash(translate("org_post_created", name=form["name"].strip()), "success")
    return redirect(url_for("crmkit_org.posts", post=post_id))


@org_blueprint.post("/posts/<int:post_id>")
def update_post(post_id: int):
    svc = org_service()
    svc.post(post_id)
    form = _post_form()
    try:
        svc.update_post(_actor(), post_id, **form)
    except ValidationFailed as exc:
        return _posts_page(post_id, errors=exc.field_errors, form=form, status=422)
    flash(translate("org_post_saved", name=form["name"].strip()), "success")
    return redirect(url_for("crmkit_org.posts", post=post_id))


@org_blueprint.post("/posts/<int:post_id>/delete")
def delete_post(post_id: int):
    svc = org_service()
    post = svc.post(post_id)
    svc.delete_post(_actor(), post_id)
    flash(translate("org_post_deleted", name=post.name), "success")
    return redirect(url_for("crmkit_org.posts"))


# --- users ----------------------------------------------------------------------------
@org_blueprint.get("/users")
def users():
    svc = org_service()
    unit_filter = request.args.get("unit", type=int)
    all_users = svc.users()
    units = svc.units()
    by_id = {u.id: u for u in units}
    shown = all_users
    if unit_filter and unit_filter in by_id:
        prefix = by_id[unit_filter].path
        shown = [u for u in all_users if u["org_unit_id"] in by_id and by_id[u["org_unit_id"]].path.startswith(prefix)]
    return render_template("crmkit/org/users.html", users=shown, total=len(all_users), units=units, by_id=by_id, unit_filter=unit_filter,
                           post_names={p.id: p.name for p in svc.posts()}, role_names=dict(svc.roles()))


@org_blueprint.get("/users/<int:user_id>")
def user(user_id: int):
    return _user_page(user_id)


def _user_page(user_id: int, *, errors: dict | None = None, form: dict | None = None, status: int = 200):
    svc = org_service()
    membership = svc.membership(user_id)
    person = next(u for u in svc.users() if u["id"] == user_id)
    if form is None:
        form = {"org_unit_id": membership.org_unit_id, "post_ids": list(membership.post_ids), "role_ids": list(membership.role_ids)}
    posts = svc.posts()
    role_names = dict(svc.roles())
    chosen = [p for p in posts if p.id in form["post_ids"]]
    via_posts = sorted({role_names.get(r, str(r)) for p in chosen for r in p.role_ids})
    units = svc.units()
    by_id = {u.id: u for u in units}
    post_options = [(p.id, f"{p.name} · {by_id[p.org_unit_id].name}" if p.org_unit_id in by_id else p.name) for p in posts]
    return render_template("crmkit/org/user.html", person=person, form=form, units=units, post_options=post_options,
                           roles=svc.roles(), via_posts=via_posts, errors=errors or {}), status


@org_blueprint.post("/users/<int:user_id>")
def assign_user(user_id: int):
    svc = org_service()
    svc.membership(user_id)  # 404 for an unknown user
    form = {"org_unit_id": _opt_id("org_unit_id"), "post_ids": _ids("post_ids"), "role_ids": _ids("role_ids")}
    try:
        svc.assign_user(_actor(), user_id, **form)
    except ValidationFailed as exc:
        return _user_page(user_id, errors=exc.field_errors, form=form, status=422)
    flash(translate("org_user_saved"), "success")
    return redirect(url_for("crmkit_org.user", user_id=user_id))
