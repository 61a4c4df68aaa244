"""The member's consent tick boxes are real consents.

``consent_sms`` / ``consent_email`` / ``consent_wechat`` on the member are what the front desk, the join form, an
import or the API set. Messaging (care campaigns, activity invitations, the welcome/birthday/wake-up automations)
checks the platform's consent records, so this record listener keeps the two in step in the same transaction as the
member write: ticking a box grants a consent for the channel and every purpose (``ANY_PURPOSE``); clearing it
withdraws every open consent of that channel, whatever its purpose (the member said no to the channel). Both are
audited as privacy events. Consents granted elsewhere (the privacy API, with a purpose) stay as they are until the
box is cleared.
"""
from __future__ import annotations

from crmkit.runtime.privacy.consent import ANY_PURPOSE, grant_within, withdraw_channel_within

MEMBER = "membership.member"
CONSENT_FIELDS = {"consent_sms": "sms", "consent_email": "email", "consent_wechat": "wechat"}
VERSION = "member-record"  # the consent was given as a tick box on the member record


def sync_consents(conn, written) -> None:
    """Record listener on members: grant or withdraw the channel's consent when its box changed."""
    if written.verb not in ("created", "updated"):
        return
    for name, channel in CONSENT_FIELDS.items():
        if name not in written.changes:
            continue
        old, new = written.changes[name]  # the record service's [before, after]
        if bool(new) == bool(old):
            continue
        if new:
            grant_within(conn, MEMBER, written.record_id, channel, ANY_PURPOSE, VERSION, written.actor)
        else:
            withdraw_channel_within(conn, MEMBER, written.record_id, channel, written.actor)
