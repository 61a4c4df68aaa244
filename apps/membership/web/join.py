"""The online public join form (线上入会): ``/join``, no login.

Protection, in the order a POST is checked:
- CSRF: Flask-WTF checks ``csrf_token`` for the whole app (the token lives in the visitor's session cookie);
- rate limit: the app's Flask-Limiter (``app.appbuilder.sm.limiter``), ``JOIN_RATE`` POSTs per client address;
- honeypot: a hidden ``website`` field people never fill in; a filled one is answered like a success, storing nothing;
- challenge: a small sum signed by the server (itsdangerous, the app's secret key, valid ``CHALLENGE_MAX_AGE``
  seconds), so a bot must render the page and compute it; the answer is checked against the signed value.

A valid form becomes a ``membership.application`` with ``source = online``, written through the record service
as the system actor; the duplicate and missing-field checks run on it like on any other application.
"""
from __future__ import annotations

import random
import secrets
from pathlib import Path

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.i18n_text import text

join_blueprint = Blueprint("membership_join", __name__, url_prefix="/join", template_folder=str(Path(__file__).parent / "templates"))
JOIN_RATE = "5 per minute"
CHALLENGE_MAX_AGE = 30 * 60
FIELDS = ("name", "mobile", "id_number", "birthday", "notes")
WRONG_ANSWER = text("The answer to the check question is wrong; try the new question.", "验证题答案不正确，请回答新的题目。")
EXPIRED = text("The form expired; answer the new check question and send it again.", "表单已过期，请回答新的验证题后重新提交。")


@join_blueprint.record_once
def _limit(state) -> None:
    """Rate-limit POSTs to the form with the app's own limiter (registered when the web app registers the blueprint)."""
    limiter = state.app.appbuilder.sm.limiter
    limiter.limit(JOIN_RATE, methods=["POST"], error_message=lambda: _too_many())(join_blueprint)


def _too_many() -> str:
    return "Too many join requests from your network; wait a minute and try again. 提交过于频繁，请稍等一分钟后再试。"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="membership-join-challenge")


def new_challenge() -> tuple[str, str]:
    """(question, signed token): the token carries the expected sum, signed and timestamped."""
    rnd = random.SystemRandom()
    a, b = rnd.randint(2, 9), rnd.randint(10, 40)
    return f"{a} + {b}", _serializer().dumps({"sum": a + b, "n": secrets.token_hex(4)})


def check_challenge(token: str, answer: str) -> None:
    try:
        expected = _serializer().loads(token or "", max_age=CHALLENGE_MAX_AGE)["sum"]
    except SignatureExpired:
        raise ValidationFailed({"challenge": [EXPIRED]}) from None
    except (BadSignature, KeyError, TypeError):
        raise ValidationFailed({"challenge": [WRONG_ANSWER]}) from None
    if (answer or "").strip() != str(expected):
        raise ValidationFailed({"challenge": [WRONG_ANSWER]})


def _form_page(form: dict | None = None, errors: dict | None = None, status: int = 200):
    question, token = new_challenge()
    return render_template("membership/join_form.html", form=form or {}, errors=errors or {}, question=question, token=token), status


@join_blueprint.route("", methods=["GET"])
def join_form():
    return _form_page()


@join_blueprint.route("", methods=["POST"])
def join_submit():
    form = {k: (request.form.get(k) or "").strip() for k in FIELDS}
    if request.form.get("website"):
        return redirect(url_for("membership_join.thanks"))  # honeypot: looks like success to the bot, stores nothing
    try:
        check_challenge(request.form.get("challenge_token", ""), request.form.get("challenge", ""))
        if request.form.get("consent") != "yes":
            raise ValidationFailed({"consent": [text("Please agree to the membership terms to join.", "请同意会员条款后再提交。")]})
        data = {k: v for k, v in form.items() if v}
        data["source"] = "online"
        services = current_app.extensions["crmkit"]
        services.records.create("membership.application", data, SYSTEM)
    except ValidationFailed as exc:
        return _form_page(form, exc.field_errors, 422)
    return redirect(url_for("membership_join.thanks"))


@join_blueprint.route("/thanks")
def thanks():
    return render_template("membership/join_thanks.html")
