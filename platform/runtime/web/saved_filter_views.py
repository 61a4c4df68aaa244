"""Users' saved list filters on the list page: save the current filter, apply one, rename, re-share, delete.

Saving posts the list's applied conditions (hidden fields of the save form) and redirects to the list with
``?saved=sf-<id>``. The management page's rows are one partial that serves the full page and the htmx swap.
Storage, validation and who may share are ``SavedFilterService``'s and the policy point's business.
"""
from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for

from ..actor import Actor
from ..errors import BadQuery, PermissionDenied, RecordNotFound, ValidationFailed
from ..i18n_text import localize
from ..meta.model import EntityDef, ViewDef
from ..storage import fab_tables
from .filters_ui import conditions_from_args, conditions_tree
from .i18n import current_locale, translate

REFUSED = (BadQuery, ValidationFailed, PermissionDenied, RecordNotFound)


def _services():
    return current_app.extensions["crmkit"]


def saved_groups(view: ViewDef, actor: Actor, locale: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The list page's saved-filter menu: (group label, [(value for ?saved=, label)]) for the view's, mine, shared."""
    mine: list[tuple[str, str]] = []
    shared: list[tuple[str, str]] = []
    for f in _services().saved_filters.visible(actor, view.entity):
        (mine if f.owner_id == actor.id else shared).append((f.key, f.name + (translate("sf_shared_mark", locale) if f.role_ids and f.owner_id == actor.id else "")))
    groups = [(translate("sf_group_view", locale), [(s.name, s.label.get(locale)) for s in view.filters]),
              (translate("sf_group_mine", locale), mine), (translate("sf_group_shared", locale), shared)]
    return [(label, items) for label, items in groups if items]


def save_filter_context(entity: EntityDef, actor: Actor) -> dict:
    """What the save form offers: sharing with roles only for those the policy point allows."""
    svc = _services()
    may_share = actor.id is not None and svc.policy.may_share_filters(actor, entity)
    return {"may_share": may_share, "roles": svc.saved_filters.roles() if may_share else []}


def _error_text(exc) -> str:
    locale = current_locale()
    if isinstance(exc, ValidationFailed) and exc.field_errors:
        sep = "；" if locale == "zh" else "; "
        return sep.join(str(localize(m, locale)) for msgs in exc.field_errors.values() for m in (msgs if isinstance(msgs, list) else [msgs]))
    return str(localize(exc.message, locale))


def _owner_names(ids) -> dict[int, str]:
    from sqlalchemy import select

    if not ids:
        return {}
    u = fab_tables.ab_user
    with _services().engine.connect() as conn:
        rows = conn.execute(select(u.c.id, u.c.username, u.c.first_name, u.c.last_name).where(u.c.id.in_(sorted(ids)))).all()
    return {i: (" ".join(p for p in (first, last) if p) or name) for i, name, first, last in rows}


def register_saved_filter_routes(bp):
    from .entity_views import acting, entity_of, is_fragment_request, safe_next

    def list_url(entity: EntityDef, **params) -> str:
        return url_for("crmkit_web.entity_list", entity_key=entity.key, **params)

    @bp.route("/e/<entity_key>/saved-filters", methods=["POST"])
    def saved_filter_create(entity_key):
        """Save the list's applied conditions (and, if ticked, its sort) under a name."""
        entity = entity_of(entity_key)
        actor = acting()
        back = safe_next(entity, request.form.get("next"))
        try:
            tree = conditions_tree(conditions_from_args(request.form), "any" if request.form.get("match") == "any" else "all")
            sort = request.form.get("sort", "")[:200] if request.form.get("keep_sort") else None
            roles = request.form.getlist("role_ids") if request.form.get("visibility") == "roles" else []
            saved = _services().saved_filters.create(actor, entity.key, name=request.form.get("name", ""), filter=tree, sort=sort, role_ids=roles)
        except REFUSED as exc:
            flash(translate("sf_not_saved") + " " + _error_text(exc), "error")
            return redirect(back, 303)
        flash(translate("sf_saved", name=saved.name), "success")
        return redirect(list_url(entity, saved=saved.key), 303)

    @bp.route("/e/<entity_key>/saved-filters")
    def saved_filter_manage(entity_key):
        entity = entity_of(entity_key)
        return render_manage(entity, acting())

    @bp.route("/e/<entity_key>/saved-filters/<int:filter_id>", methods=["POST"])
    def saved_filter_update(entity_key, filter_id):
        entity = entity_of(entity_key)
        actor = acting()
        svc = _services().saved_filters
        error = message = None
        try:
            current = svc.own(actor, entity.key, filter_id)
            # The sharing inputs are only on the form for those who may share; without them the roles stay as they are.
            roles = (request.form.getlist("role_ids") if request.form.get("visibility") == "roles" else []) \
                if "visibility" in request.form else current.role_ids
            saved = svc.update(actor, entity.key, filter_id, name=request.form.get("name", ""), role_ids=roles)
            message = translate("sf_updated", name=saved.name)
        except REFUSED as exc:
            error = _error_text(exc)
        return after_change(entity, actor, error, message)

    @bp.route("/e/<entity_key>/saved-filters/<int:filter_id>/delete", methods=["POST"])
    def saved_filter_delete(entity_key, filter_id):
        entity = entity_of(entity_key)
        actor = acting()
        error = message = None
        try:
            gone = _services().saved_filters.own(actor, entity.key, filter_id)
            _services().saved_filters.delete(actor, entity.key, filter_id)
            message = translate("sf_deleted", name=gone.name)
        except REFUSED as exc:
            error = _error_text(exc)
        return after_change(entity, actor, error, message)

    def after_change(entity: EntityDef, actor: Actor, error: str | None, message: str | None):
        if is_fragment_request():
            return render_manage(entity, actor, error=error, message=message, fragment=True), 422 if error else 200
        flash(error or message or "", "error" if error else "success")
        return redirect(url_for("crmkit_web.saved_filter_manage", entity_key=entity.key), 303)

    def render_manage(entity: EntityDef, actor: Actor, *, error=None, message=None, fragment=False):
        svc = _services()
        locale = current_locale()
        filters = svc.saved_filters.visible(actor, entity.key)
        ctx = save_filter_context(entity, actor)
        role_names = dict(svc.saved_filters.roles())
        owners = _owner_names({f.owner_id for f in filters if f.owner_id != actor.id})
        mine = [{"f": f, "roles": [role_names.get(r, f"#{r}") for r in f.role_ids], "url": list_url(entity, saved=f.key)}
                for f in filters if f.owner_id == actor.id]
        shared = [{"f": f, "owner": owners.get(f.owner_id, f"#{f.owner_id}"), "url": list_url(entity, saved=f.key)}
                  for f in filters if f.owner_id != actor.id]
        template = "crmkit/_saved_filters.html" if fragment else "crmkit/saved_filters.html"
        return render_template(template, entity=entity, mine=mine, shared=shared, error=error, message=message,
                               title=entity.plural_label.get(locale), list_url=list_url(entity), **ctx)
