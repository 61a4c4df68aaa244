"""Admin pages: the permission matrix (roles × entities), the per-role drill-down to field rules and
row scope, the "Why can X see Y?" explainer, and the unmask action on record pages."""
from __future__ import annotations

import json

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from ..errors import BadQuery, PermissionDenied, RecordNotFound, ValidationFailed
from ..policy import ACTIONS
from ..web.actors import current_actor
from ..web.i18n import current_locale, translate
from .admin import PermissionAdmin, field_rule_errors
from .masking import mask_style, role_mask_style
from .rules import field_access
from .tables import FIELD_ACCESS, SCOPES

permissions_blueprint = Blueprint("crmkit_permissions", __name__)


def services():
    return current_app.extensions["crmkit"]


def admin_service() -> PermissionAdmin:
    svc = services()
    return PermissionAdmin(svc.engine, svc.policy.rules, svc.store.catalog)


@permissions_blueprint.before_request
def admins_only():
    if not current_user.is_authenticated:
        return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
    if request.endpoint == "crmkit_permissions.unmask":
        return None
    actor = current_actor()
    if actor is None or not actor.is_admin:
        raise PermissionDenied("Only administrators manage permissions.")
    return None


def top_entities():
    return [e for e in services().store.catalog().entities.values() if not e.is_child]


def entity_or_404(key: str):
    entity = services().store.catalog().entity(key)
    if entity.is_child:
        raise RecordNotFound(f"{entity.label.en} rows follow their parent's permissions.")
    return entity


def role_id_of(raw) -> int:
    try:
        role_id = int(raw)
    except (TypeError, ValueError):
        raise BadQuery("Choose a role from the list.") from None
    admin_service().role_name(role_id)
    return role_id


@permissions_blueprint.route("/admin/permissions/", methods=["GET", "POST"])
def matrix():
    """Roles × entities: a checkbox per action; saving sets exactly the ticked actions of one role."""
    svc = services()
    admin = admin_service()
    admin_role = current_app.config["AUTH_ROLE_ADMIN"]
    roles = [(rid, name) for rid, name in admin.roles() if name != admin_role]
    if request.method == "POST":
        role_id = role_id_of(request.form.get("role_id"))
        actor = current_actor()
        changed = 0
        for entity in top_entities():
            ticked = {a for a in ACTIONS if request.form.get(f"{entity.key}:{a}") == "on"}
            result = admin.set_actions(role_id, entity, ticked, actor_id=actor.id)
            changed += len(result["added"]) + len(result["removed"])
        flash(translate("perm_saved", count=changed) if translate("perm_saved") != "perm_saved" else f"{changed}", "success")
        return redirect(url_for("crmkit_permissions.matrix", role=role_id), 303)
    selected = request.args.get("role", type=int) or (roles[0][0] if roles else None)
    rules = svc.policy.rules.rules()
    held = rules.role_perms.get(selected, frozenset())
    locale = current_locale()
    rows = [{"entity": e, "label": e.plural_label.get(locale), "actions": {a: (a, f"entity:{e.key}") in held for a in ACTIONS}}
            for e in top_entities()]
    return render_template("crmkit/permissions/matrix.html", roles=roles, selected=selected, rows=rows, actions=ACTIONS,
                           role_name=dict(roles).get(selected, ""))


@permissions_blueprint.route("/admin/permissions/<int:role_id>/<entity_key>", methods=["GET", "POST"])
def role_entity(role_id: int, entity_key: str):
    """One role on one entity: field access (hidden / masked / read-only / editable, may unmask) and the row scope."""
    svc = services()
    admin = admin_service()
    role_name = admin.role_name(role_id)
    entity = entity_or_404(entity_key)
    locale = current_locale()
    errors: dict = {}
    form_scope, form_filter = None, None
    if request.method == "POST":
        actor = current_actor()
        rules = {f.name: (request.form.get(f"access:{f.name}", "editable"), request.form.get(f"unmask:{f.name}") == "on") for f in entity.fields}
        form_scope = request.form.get("scope", "all")
        form_filter = request.form.get("filter", "").strip()
        try:
            tree = None
            if form_scope == "custom":
                try:
                    tree = json.loads(form_filter) if form_filter else None
                except ValueError:
                    raise ValidationFailed({"filter": ["The custom filter is not valid JSON; check brackets and quotes."]}) from None
            # Check everything before writing anything, so a bad scope leaves the field rules unchanged too.
            if form_scope not in SCOPES:
                raise ValidationFailed({"scope": [f"Choose one of: {', '.join(SCOPES)}."]})
            if form_scope == "custom":
                admin.check_custom_filter(entity, tree)
            bad = field_rule_errors(entity, rules)
            if bad:
                raise ValidationFailed(bad)
            admin.set_field_rules(role_id, entity, rules, actor_id=actor.id if actor else None)
            admin.set_row_scope(role_id, entity, form_scope, tree, actor_id=actor.id if actor else None)
            flash(translate("saved"), "success")
            return redirect(url_for("crmkit_permissions.role_entity", role_id=role_id, entity_key=entity.key), 303)
        except ValidationFailed as exc:
            errors = exc.field_errors
    rules = svc.policy.rules.rules()
    fields = []
    for f in entity.fields:
        fr = field_access(rules, role_id, entity, f.name)
        chosen = request.form.get(f"access:{f.name}", fr.access) if errors else fr.access
        fields.append({"name": f.name, "label": f.label.get(locale), "type": f.type, "access": chosen, "may_unmask": fr.may_unmask,
                       "masked": mask_style(f), "maskable": role_mask_style(f) is not None, "read_only": f.read_only,
                       "errors": errors.get(f.name, [])})
    scope = rules.scopes.get((role_id, entity.key))
    status = 422 if errors else 200
    return render_template("crmkit/permissions/role_entity.html", role_id=role_id, role_name=role_name, entity=entity,
                           entity_label=entity.plural_label.get(locale), fields=fields, access_choices=FIELD_ACCESS, scopes=SCOPES,
                           scope=form_scope or (scope.scope if scope else "all"),
                           filter_text=form_filter if form_filter is not None else (json.dumps(scope.filter, ensure_ascii=False) if scope and scope.filter else ""),
                           errors=errors, actions=sorted(a for a, r in rules.role_perms.get(role_id, ()) if r == f"entity:{entity.key}")), status


@permissions_blueprint.route("/admin/permissions/explain")
def explain_page():
    """"Why can X see Y?" — which roles and rules grant or deny a user access to an entity, record or field."""
    from ..org.grants import resolve_grants
    from ..org.tables import ab_user
    from sqlalchemy import select
    from ..actor import Actor
    from .explain import explain

    svc = services()
    locale = current_locale()
    with svc.engine.connect() as conn:
        users = [(r.id, r.username) for r in conn.execute(select(ab_user.c.id, ab_user.c.username).order_by(ab_user.c.username))]
    entities = [(e.key, e.plural_label.get(locale)) for e in top_entities()]
    args = request.args
    result, problem, entity = None, None, None
    if args.get("user") and args.get("entity"):
        try:
            user_id = int(args["user"])
            entity = entity_or_404(args["entity"])
            record_id = args.get("record", "").strip()
            record_id = int(record_id) if record_id else None
            if record_id is not None and not 1 <= record_id <= 2**63 - 1:
                raise ValueError(record_id)
            field_name = args.get("field") or None
            if field_name is not None and field_name not in entity.field_map:
                raise BadQuery(f"{entity.key} has no field '{field_name}'.")
            with svc.engine.connect() as conn:
                g = resolve_grants(conn, user_id, current_app.config["AUTH_ROLE_ADMIN"])
            if g is None:
                raise BadQuery("There is no such user.")
            username = dict(users).get(user_id, f"#{user_id}")
            actor = Actor(id=user_id, username=username, is_admin=current_app.config["AUTH_ROLE_ADMIN"] in g.role_names,
                          permissions=g.permissions, org_unit_id=g.org_unit_id, role_ids=g.role_ids, locale=locale)
            result = explain(svc, actor, entity, record_id, field_name)
        except ValueError:
            problem = translate("perm_bad_number") if translate("perm_bad_number") != "perm_bad_number" else "Enter the record id as a whole number."
        except (BadQuery, RecordNotFound) as exc:
            problem = exc.message
    fields = [(f.name, f.label.get(locale)) for f in entity.fields] if entity else []
    status = 400 if problem else 200
    return render_template("crmkit/permissions/explain.html", users=users, entities=entities, fields=fields, args=args,
                           result=result, problem=problem), status


@permissions_blueprint.route("/e/<entity_key>/<int:record_id>/unmask/<field_name>", methods=["POST"])
def unmask(entity_key: str, record_id: int, field_name: str):
    """Reveal one masked value (audited). htmx swaps the returned text into the cell; JSON for scripts."""
    actor = current_actor()
    if actor is None:
        raise PermissionDenied("Log in first.")
    svc = services()
    entity = entity_or_404(entity_key)
    value = svc.queries.unmask(entity.key, record_id, field_name, actor)
    catalog = svc.store.catalog()
    f = entity.field(field_name)
    shown = catalog.type_of(f).display(f, value, current_locale()) if value is not None else ""
    if request.headers.get("HX-Request"):
        resp = current_app.make_response(render_template("crmkit/permissions/_unmasked.html", value=shown))
    else:
        resp = jsonify({"field": field_name, "value": shown})
    resp.headers["Cache-Control"] = "no-store"
    return resp
