"""``survey.send``: the satisfaction-survey link for a resolved ticket, sent to its requester by the
``survey_on_resolution`` automation (the built-in message action cannot sign a link).

The link is ``CRMKIT_BASE_URL`` + ``public.survey_path`` (a signed, expiring token). The channel is the first of
the automation's ``channels`` for which the ticket has an address (``email`` → requester email, ``sms`` →
requester mobile); the ticket is the data subject, so the messaging service checks its consent for the channel
and ``purpose`` and logs a refusal instead of sending.
"""
from __future__ import annotations

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.i18n_text import text

from .public import survey_path

TICKET = "crm_service.ticket"
ADDRESS = {"email": "requester_email", "sms": "requester_mobile"}


def survey_link(services, ticket_id: int) -> str:
    base, secret = services.settings.base_url, services.settings.secret_key
    if not base:
        raise ValidationFailed({"base_url": [text("Set CRMKIT_BASE_URL (the site's public address) so that survey links can be sent.",
                                                  "请设置 CRMKIT_BASE_URL（站点的公网地址），才能发送满意度调查链接。")]})
    if not secret:
        raise ValidationFailed({"secret_key": [text("Set CRMKIT_SECRET_KEY so that survey links can be signed.", "请设置 CRMKIT_SECRET_KEY 以签发调查链接。")]})
    return base.rstrip("/") + survey_path(secret, ticket_id)


def send_survey_action(services, actor, payload: dict) -> dict:
    channels = list(payload.get("channels") or ["email", "sms"])
    unknown = [c for c in channels if c not in ADDRESS]
    if unknown or not payload.get("body"):
        raise ValidationFailed({"params": [text("survey.send needs a body and channels from email / sms.", "survey.send 需要正文，渠道只能是 email / sms。")]})
    ticket = services.queries.get(TICKET, int(payload["id"]), SYSTEM)
    if ticket.get("satisfaction") is not None:
        return {"status": "skipped", "reason": "already rated"}
    channel = next((c for c in channels if ticket.get(ADDRESS[c])), None)
    if channel is None:
        return {"status": "skipped", "reason": "no requester " + " / ".join(ADDRESS[c] for c in channels)}
    context = {"number": ticket.get("number"), "subject": ticket.get("subject"), "requester_name": ticket.get("requester_name"),
               "link": survey_link(services, ticket["id"])}
    row = services.messaging.send(channel, to=ticket[ADDRESS[channel]], actor=None, subject_ref=(TICKET, ticket["id"]),
                                  subject=payload.get("subject") if channel == "email" else None, body=payload["body"],
                                  context=context, purpose=payload.get("purpose") or "service")
    return {"delivery": row["id"], "channel": channel, "status": row["status"], "error": row.get("error")}
