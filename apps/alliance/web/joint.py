"""The activity page's panel listing the alliance merchants attached to a membership activity."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, render_template

from crmkit.runtime.web.views import require_actor

from ..joint_activities import LINK, merchants_of

joint_blueprint = Blueprint("alliance_joint", __name__, url_prefix="/alliance/activity", template_folder=str(Path(__file__).parent / "templates"))


@joint_blueprint.route("/<int:record_id>/merchants")
def activity_merchants(record_id: int):
    actor, services = require_actor(), current_app.extensions["crmkit"]
    allowed = services.policy.allows(actor, services.store.catalog().entity(LINK), "read")
    rows = merchants_of(services, record_id, actor) if allowed else []
    return render_template("alliance/joint_panel.html", rows=rows, allowed=allowed, record_id=record_id)
