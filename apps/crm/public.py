"""Public pages of the CRM templates (no login): the lead and ticket web forms and the satisfaction survey.

Every POST carries the CSRF token (CSRFProtect covers the blueprint), is rate limited per client address with
Flask-AppBuilder's limiter, and the forms have a honeypot field that people never see: a bot that fills it gets the
same thank-you page and nothing is stored. Survey links are signed tokens that expire; one answer per ticket.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import RecordNotFound, StaleRecord, ValidationFailed
from crmkit.runtime.i18n_text import text
from crmkit.runtime.web.i18n import current_locale

from .calendar import app_settings

public_blueprint = Blueprint("crm_public", __name__, url_prefix="/p/crm", template_folder="templates")
HONEYPOT = "website"
SURVEY_SALT = "crm-survey"
LEAD_FIELDS = ("name", "company", "mobile", "email", "description")
TICKET_FIELDS = ("requester_name", "requester_mobile", "requester_email", "subject", "category", "order_ref", "description")


@public_blueprint.record_once
def _limit(state) -> None:
    """The public POSTs share one per-address limit (settings ``public_form_rate_limit``)."""
    limiter = state.app.appbuilder.sm.limiter
    limiter.limit(app_settings().get("public_form_rate_limit", "5 per minute"), methods=["POST"],
                  error_message=lambda: text("Too many submissions from your address. Please wait a minute.", "提交过于频繁，请稍等一分钟后再试。").get(current_locale()))(public_blueprint)


def _services():
    return current_app.extensions["crmkit"]


def _require(entity_key: str) -> None:
    """The page exists only while the template that owns the entity is installed."""
    if entity_key not in _services().store.catalog().entities:
        abort(404)


def _page(template: str, status: int = 200, **ctx):
    return render_template(f"crm_public/{template}", locale=current_locale(), **ctx), status


def _errors(exc: ValidationFailed) -> dict:
    loc = current_locale()
    return {k: [m.get(loc) if hasattr(m, "get") else str(m) for m in v] for k, v in exc.field_errors.items()}


def _form(fields) -> dict:
    return {k: (request.form.get(k) or "").strip() or None for k in fields}


@public_blueprint.route("/lead", methods=["GET", "POST"])
def lead_form():
    _require("crm_sales.lead")
    if request.method == "GET":
        return _page("lead_form.html", form={}, errors={})
    form = _form(LEAD_FIELDS)
    if request.form.get(HONEYPOT):
        return _page("thanks.html", kind="lead")  # a bot: same answer, nothing stored
    s = _services()
    try:
        s.records.create("crm_sales.lead", {**form, "source": "web", "status": "new"}, SYSTEM)
    except ValidationFailed as exc:
        errors = _errors(exc)
        if set(errors) <= {"mobile", "email"} and _duplicate_only(exc):
            _note_resubmission(s, form)  # a known person: no second lead, and the form does not reveal who is on file
            return _page("thanks.html", kind="lead")
        return _page("lead_form.html", 422, form=form, errors=errors)
    return _page("thanks.html", kind="lead")


def _duplicate_only(exc: ValidationFailed) -> bool:
    return all("uplicate" in str(m.get("en") if hasattr(m, "get") else m) for msgs in exc.field_errors.values() for m in msgs)


def _note_resubmission(s, form: dict) -> None:
    for field in ("mobile", "email"):
        if not form.get(field):
            continue
        rows = s.queries.list("crm_sales.lead", SYSTEM, filter={"field": field, "op": "eq", "value": form[field]}, limit=1, count="none", labels=False).rows
        if rows:
            s.records.create("crm.activity", {"subject": text("Submitted the web form again", "再次提交官网表单").get("zh"), "kind": "note",
                                              "regarding_type": "lead", "regarding_id": rows[0]["id"], "notes": form.get("description")}, SYSTEM)
            return


@public_blueprint.route("/ticket", methods=["GET", "POST"])
def ticket_form():
    _require("crm_service.ticket")
    if request.method == "GET":
        return _page("ticket_form.html", form={}, errors={})
    form = _form(TICKET_FIELDS)
    if request.form.get(HONEYPOT):
        return _page("thanks.html", kind="ticket")
    if not form.get("requester_mobile") and not form.get("requester_email"):
        msg = text("Leave a mobile number or an email so that we can reply.", "请留下手机号或邮箱，以便我们回复您。").get(current_locale())
        return _page("ticket_form.html", 422, form=form, errors={"requester_mobile": [msg]})
    try:
        tid = _services().records.create("crm_service.ticket", {**form, "channel": "web", "status": "new"}, SYSTEM)
    except ValidationFailed as exc:
        return _page("ticket_form.html", 422, form=form, errors=_errors(exc))
    number = _services().queries.get("crm_service.ticket", tid, SYSTEM)["number"]
    return _page("thanks.html", kind="ticket", number=number)


def survey_token(secret_key: str, ticket_id: int) -> str:
    return URLSafeTimedSerializer(secret_key, salt=SURVEY_SALT).dumps({"t": int(ticket_id)})


def survey_path(secret_key: str, ticket_id: int) -> str:
    """The path of the survey link to send after resolution (prefix it with the site's address)."""
    return f"/p/crm/survey/{survey_token(secret_key, ticket_id)}"


def _ticket_from(token: str) -> int:
    days = int(app_settings().get("survey_token_days", 14))
    try:
        data = URLSafeTimedSerializer(_services().settings.secret_key, salt=SURVEY_SALT).loads(token, max_age=days * 86400)
    except SignatureExpired:
        abort(410)
    except BadSignature:
        abort(404)
    return int(data["t"])


@public_blueprint.route("/survey/<token>", methods=["GET", "POST"])
def survey(token: str):
    _require("crm_service.ticket")
    tid = _ticket_from(token)
    s = _services()
    try:
        ticket = s.queries.get("crm_service.ticket", tid, SYSTEM)
    except RecordNotFound:
        abort(404)
    if ticket.get("satisfaction"):
        return _page("survey.html", ticket=ticket, done=True, errors={})
    if request.method == "GET":
        return _page("survey.html", ticket=ticket, done=False, errors={})
    rating = request.form.get("rating", "")
    if rating not in {"1", "2", "3", "4", "5"}:
        return _page("survey.html", 422, ticket=ticket, done=False,
                     errors={"rating": [text("Choose from 1 to 5 stars.", "请选择 1 到 5 星。").get(current_locale())]})
    try:
        s.records.update("crm_service.ticket", tid, {"satisfaction": int(rating), "satisfaction_comment": (request.form.get("comment") or "").strip()[:2000] or None},
                         SYSTEM, expected_version=ticket["row_version"])
    except (StaleRecord, ValidationFailed) as exc:
        ticket = s.queries.get("crm_service.ticket", tid, SYSTEM)
        if ticket.get("satisfaction"):  # answered at the same moment in another tab
            return _page("survey.html", ticket=ticket, done=True, errors={})
        if isinstance(exc, StaleRecord):
            raise
        return _page("survey.html", 422, ticket=ticket, done=False, errors={"rating": [m for msgs in _errors(exc).values() for m in msgs]})
    return _page("survey.html", ticket=s.queries.get("crm_service.ticket", tid, SYSTEM), done=True, thanks=True, errors={})
