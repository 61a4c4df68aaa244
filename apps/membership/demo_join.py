"""Demo data for joining and cards (runs after ``demo.seed_demo``): an org unit per store with the members spread
across the stores, a card pool (a batch with check digits and two special numbers), card histories (lost,
unfrozen, reissued, cancelled cards), and join applications in every state — including flagged duplicates and
approved ones that drew pool cards. Everything goes through the record, workflow and card services, except the
placement of the already-seeded members in their stores (a system column, set once for the demo)."""
from __future__ import annotations

import random
from dataclasses import replace
from types import SimpleNamespace

from faker import Faker
from sqlalchemy import func, select

from crmkit.runtime.actor import Actor
from crmkit.runtime.db import write_transaction
from crmkit.runtime.org.service import OrgService
from crmkit.runtime.org.tables import ab_role, ab_user, ab_user_role, org_unit
from crmkit.runtime.workflow.tables import approval_task

from . import card_pool
from .card_actions import card_action

REASONS = {"report_lost": ["顾客来电挂失", "钱包丢失，门店登记挂失", "卡片遗失"], "unfreeze": ["找回原卡，本人持身份证解挂", "误挂失，核实后解挂"],
           "reissue": ["卡片磨损，补办新卡", "挂失后补卡", "卡片消磁无法读取"], "cancel": ["会员本人申请注销", "长期未使用，本人电话确认注销", "重复开卡合并"]}
DEMO_MANAGER = "demo_manager"


def seed_joining(ctx) -> int:
    services = ctx.services
    if services is None:
        return 0
    tables = services.records.table_cache.tables(services.store.catalog())
    hist, members, stores = tables["membership.card_history"], tables["membership.member"], tables["membership.store"]
    with services.engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(hist)).scalar_one():
            return 0  # demo data goes into an empty app only
    rnd = random.Random(20261126)
    fake = Faker("zh_CN")
    Faker.seed(20261126)
    units = _store_units(services, ctx.actor, stores)
    created = 0
    with write_transaction(services.engine) as conn:
        ids = list(conn.execute(select(members.c.id).where(members.c.deleted_at.is_(None)).order_by(members.c.id)).scalars())
        unit_ids = list(units.values())
        for i, uid in enumerate(unit_ids):
            conn.execute(members.update().where(members.c.id.in_(ids[i::len(unit_ids)] or [-1])).values(org_unit_id=uid))
    size = max(len(ids), 10)
    card_pool.generate_batch(services.engine, prefix="MC", start=1, count=max(size // 4, 40), digits=8, check_digit=True, actor_id=ctx.actor.id,
                             batch="demo")
    for special in ("88888888", "66666666"):
        card_pool.add_special(services.engine, special, actor_id=ctx.actor.id)
    svc = SimpleNamespace(queries=services.queries, records=services.records, store=services.store)
    for mid in rnd.sample(ids, min(len(ids), max(size // 10, 3))):
        steps = rnd.choices([["report_lost"], ["report_lost", "unfreeze"], ["report_lost", "reissue"], ["reissue"], ["cancel"]],
                            [40, 15, 15, 10, 20])[0]
        for step in steps:
            card_action(svc, ctx.actor, mid, step, rnd.choice(REASONS[step]))
            created += 1
    return created + _applications(services, ctx.actor, rnd, fake, unit_ids, size)


def _store_units(services, actor, stores) -> dict[int, int]:
    """Store id → org unit id (a unit per store under 门店 / Stores), linked on the store record."""
    org = OrgService(services.engine)
    with services.engine.connect() as conn:
        existing = {r.code: r.id for r in conn.execute(select(org_unit.c.code, org_unit.c.id))}
        rows = conn.execute(select(stores.c.id, stores.c.code, stores.c.name, stores.c.row_version).where(stores.c.deleted_at.is_(None))
                            .order_by(stores.c.id)).all()
    root = existing.get("STORES") or org.create_unit(actor, name="门店", code="STORES", kind="department")
    out = {}
    for s in rows:
        uid = existing.get(s.code) or org.create_unit(actor, name=s.name, code=s.code, kind="department", parent_id=root)
        services.records.update("membership.store", s.id, {"org_unit": uid}, actor, expected_version=s.row_version)
        out[s.id] = uid
    return out


def _demo_manager(services) -> Actor:
    """A Membership Manager without a password (cannot sign in) who decides the demo approvals."""
    with write_transaction(services.engine) as conn:
        role = conn.execute(select(ab_role.c.id).where(ab_role.c.name == "Membership Manager")).scalar_one()
        uid = conn.execute(select(ab_user.c.id).where(ab_user.c.username == DEMO_MANAGER)).scalar()
        if uid is None:
            uid = conn.execute(ab_user.insert().values(first_name="演示", last_name="主管", username=DEMO_MANAGER, email="demo_manager@example.invalid",
                                                       active=True, password=None)).inserted_primary_key[0]
            conn.execute(ab_user_role.insert().values(user_id=uid, role_id=role))
    return Actor(id=int(uid), username=DEMO_MANAGER, is_admin=False, role_ids=frozenset({int(role)}))


def _applications(services, actor, rnd: random.Random, fake, unit_ids: list[int], size: int) -> int:
    """Applications in every state: submitted (some flagged), under review, waiting for approval, approved, rejected."""
    wf, app = services.workflows, "membership.application"
    manager = _demo_manager(services)
    tables = services.records.table_cache.tables(services.store.catalog())
    members = tables["membership.member"]
    with services.engine.connect() as conn:
        dup = conn.execute(select(members.c.name, members.c.mobile).where(members.c.deleted_at.is_(None)).order_by(members.c.id).limit(2)).all()
    n = max(12, size // 40)
    created = 0
    for i in range(n):
        at_store = replace(actor, org_unit_id=rnd.choice(unit_ids)) if unit_ids else actor
        data = {"name": fake.name(), "mobile": f"19{rnd.randint(100000000, 999999999)}", "source": rnd.choice(["front_desk", "online", "purchase"])}
        if rnd.random() < 0.7:
            data["id_number"] = fake.ssn(min_age=18, max_age=70)
        elif rnd.random() < 0.7:
            data["birthday"] = fake.date_of_birth(minimum_age=18, maximum_age=70).isoformat()
        if i < len(dup):  # duplicates of existing members: flagged on the application
            data.update(name=dup[i].name, mobile=dup[i].mobile)
        rid = services.records.create(app, data, at_store)
        created += 1
        target = "submitted" if i < len(dup) else ["submitted", "under_review", "pending", "approved", "approved", "rejected"][i % 6]
        if target == "submitted":
            continue
        wf.transition(app, rid, "start_review", actor)
        if target == "rejected":
            wf.transition(app, rid, "reject", actor, values={"rejection_reason": "资料不全，请补充身份证信息后重新申请"})
        elif target in ("pending", "approved"):
            req = wf.transition(app, rid, "approve", actor).pending_approval
            if target == "approved":
                with services.engine.connect() as conn:
                    task = conn.execute(select(approval_task.c.id).where(approval_task.c.request_id == req, approval_task.c.assignee_id == manager.id)).scalar_one()
                # Half of the approved members draw pool cards, the others get sequence numbers.
                card_pool.set_card_mode(services.engine, "pool" if i % 12 < 6 else "sequence", actor_id=actor.id)
                wf.decide(task, "approve", manager)
                created += 2  # the member and its "issued" card history row
    card_pool.set_card_mode(services.engine, "sequence", actor_id=actor.id)
    return created
