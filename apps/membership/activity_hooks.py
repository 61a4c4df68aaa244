"""What segments, member care and activities plug into the runtime (called from ``hooks.register``): validators,
named actions, the care jobs, role grants for the new entities, demo data and the activity page panel."""
from __future__ import annotations

from huey import crontab

from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.i18n_text import text
from crmkit.runtime.packages import AppHooks

from . import activities, care, segments
from .activity_demo import seed_activities
from .activity_roles import install_activity_roles


def register_activities(hooks: AppHooks) -> AppHooks:
    hooks.validator(segments.SEGMENT)(segments.check_segment)
    hooks.validator(activities.REG)(activities.registration_key)
    hooks.roles(install_activity_roles)
    hooks.demo_seeder(seed_activities)  # after the main and coupon seeders: it needs members, stores and orders
    hooks.action("segments.preview")(lambda services, actor, p: segments.preview(services, _id(p, "segment"), actor, limit=int(p.get("limit", 20))))
    hooks.action("segments.count")(lambda services, actor, p: {"count": segments.count(services, _id(p, "segment"), actor)})
    hooks.action("care.start")(lambda services, actor, p: care.start(services, _id(p, "care"), actor))
    hooks.action("activities.invite")(lambda services, actor, p: activities.invite(services, _id(p, "activity"), actor))
    hooks.action("activities.register")(lambda services, actor, p: {
        "registration": activities.register(services, _id(p, "activity"), _id(p, "member"), actor)})
    hooks.action("activities.check_in")(lambda services, actor, p: activities.check_in(services, _id(p, "activity"), actor, card_no=p.get("card_no"),
                                                                                       mobile=p.get("mobile")))
    hooks.action("activities.award_points")(lambda services, actor, p: activities.award_points(services, _id(p, "activity"), actor))
    hooks.action("activities.evaluate")(lambda services, actor, p: _jsonable(activities.evaluate(services, _id(p, "activity"), actor)))
    from .loyalty_hooks import installed_only

    hooks.job(care.SEND_JOB, installed_only(care.send_job))
    hooks.job(care.DUE_JOB, installed_only(care.due_job), schedule=crontab(minute="*/5"))
    from .web.activity_views import activity_blueprint

    hooks.blueprint(activity_blueprint)
    hooks.detail_panel(activities.ACTIVITY, "membership_activity.activity_panel", en="Check-in & evaluation", zh="签到与评估")
    hooks.detail_panel(segments.SEGMENT, "membership_activity.segment_panel", en="Members", zh="分群会员")
    hooks.detail_panel(care.CARE, "membership_activity.care_panel", en="Sending", zh="发送")
    hooks.nav_link("membership_activity.segment_build", en="Build a segment", zh="设置会员分群", icon="filter",
                   visible=lambda services, actor: services.policy.allows(actor, services.store.catalog().entity(segments.SEGMENT), "create"))
    return hooks


def _id(payload: dict, name: str) -> int:
    try:
        return int(payload[name])
    except (KeyError, TypeError, ValueError):
        raise ValidationFailed({name: [text("Give {name} as a record id.", "请以记录 ID 提供 {name}。", name=name)]}) from None


def _jsonable(result: dict) -> dict:
    return {k: (str(v) if v is not None and not isinstance(v, (int, str)) else v) for k, v in result.items()}
