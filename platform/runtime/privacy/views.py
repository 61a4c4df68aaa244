"""Personal-data pages: the consent section of a record's detail page, subject export and erasure.

``crmkit_privacy`` serves the browser (CSRF-protected forms and htmx); ``crmkit_privacy_api`` serves
the same operations as JSON under /api/v1/privacy with the API's authentication.
"""
from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, flash, g, jsonify, redirect, render_template, request, url_for

from ..api.auth import request_actor
from ..errors import CrmkitError
from ..web.i18n import translate
from ..web.views import require_actor
from .consent import CHANNELS, grant_consent, list_consents, withdraw_consent
from .erasure import erase_subject
from .personal import has_personal_data
from .subject_export import export_subject

privacy_blueprint = Blueprint("crmkit_privacy", __name__, url_prefix="/privacy")
privacy_api_blueprint = Blueprint("crmkit_privacy_api", __name__, url_prefix="/api/v1/privacy")


def _services():
    return current_app.extensions["crmkit"]


# --- browser ---------------------------------------------------------------------------------
@privacy_blueprint.route("/<entity_key>/<int:record_id>/consent", methods=["GET", "POST"])
def consent_section(entity_key, record_id):
    """The consent panel (an htmx partial on the detail page); POST records a new consent."""
    actor = require_actor()
    services = _services()
    error = None
    if request.method == "POST":
        try:
            grant_consent(services, entity_key, record_id, request.form.to_dict(), actor)
        except CrmkitError as exc:
            if exc.status >= 500 or exc.status in (403, 404):
                raise
            error = exc
    return _section(services, entity_key, record_id, actor, error)


@privacy_blueprint.route("/<entity_key>/<int:record_id>/consent/<int:consent_id>/withdraw", methods=["POST"])
def consent_withdraw(entity_key, record_id, consent_id):
    actor = require_actor()
    services = _services()
    withdraw_consent(services, entity_key, record_id, consent_id, actor)
    return _section(services, entity_key, record_id, actor, None)


@privacy_blueprint.route("/<entity_key>/<int:record_id>/export")
def subject_export_download(entity_key, record_id):
    actor = require_actor()
    data = export_subject(_services(), entity_key, record_id, actor)
    body = json.dumps(data, ensure_ascii=False, indent=2)
    name = f"subject-{entity_key}-{record_id}.json"
    return Response(body, mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


@privacy_blueprint.route("/<entity_key>/<int:record_id>/erase", methods=["POST"])
def subject_erase(entity_key, record_id):
    actor = require_actor()
    erase_subject(_services(), entity_key, record_id, actor)
    flash(translate("privacy_erased"), "success")
    target = url_for("crmkit_web.entity_detail", entity_key=entity_key, record_id=record_id)
    if request.headers.get("HX-Request"):
        return "", 204, {"HX-Redirect": target}
    return redirect(target)


def _section(services, entity_key, record_id, actor, error):
    entity = services.store.catalog().entity(entity_key)
    consents = list_consents(services, entity_key, record_id, actor)
    ctx = dict(entity=entity, record_id=record_id, consents=consents, channels=CHANNELS, error=error,
               can_update=services.policy.allows(actor, entity, "update"), is_admin=actor.is_admin,
               personal=has_personal_data(entity), form=request.form if error else {})
    status = error.status if error else 200
    resp = render_template("crmkit/privacy/_consent.html", **ctx)
    if request.method == "POST" and not request.headers.get("HX-Request"):
        return redirect(url_for("crmkit_web.entity_detail", entity_key=entity_key, record_id=record_id))
    return resp, status, {"Cache-Control": "no-store"}


# --- API -------------------------------------------------------------------------------------
@privacy_api_blueprint.before_request
def authenticate():
    g.api_actor = request_actor()


@privacy_api_blueprint.after_request
def no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


@privacy_api_blueprint.get("/<entity_key>/<int:record_id>/consents")
def api_consents(entity_key, record_id):
    return jsonify({"data": list_consents(_services(), entity_key, record_id, g.api_actor)})


@privacy_api_blueprint.post("/<entity_key>/<int:record_id>/consents")
def api_grant(entity_key, record_id):
    return jsonify({"data": grant_consent(_services(), entity_key, record_id, request.get_json(silent=True), g.api_actor)}), 201


@privacy_api_blueprint.post("/<entity_key>/<int:record_id>/consents/<int:consent_id>/withdraw")
def api_withdraw(entity_key, record_id, consent_id):
    return jsonify({"data": withdraw_consent(_services(), entity_key, record_id, consent_id, g.api_actor)})


@privacy_api_blueprint.get("/<entity_key>/<int:record_id>/export")
def api_export(entity_key, record_id):
    return jsonify(export_subject(_services(), entity_key, record_id, g.api_actor))


@privacy_api_blueprint.post("/<entity_key>/<int:record_id>/erase")
def api_erase(entity_key, record_id):
    return jsonify({"data": erase_subject(_services(), entity_key, record_id, g.api_actor)})
