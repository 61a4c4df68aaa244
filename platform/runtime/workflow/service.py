"""WorkflowService: the only way a record's ``workflow_state`` changes.

``transition`` checks who may act, the guard and the required fields, then writes through the record
service in one transaction: the state and field values, set actions, app actions, a workflow history row,
an audit entry and a ``workflow.transitioned`` outbox event. Nothing is stored when a check fails.
A transition that needs approval opens an approval request instead; the state moves when the last
approver approves.
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from sqlalchemy import Connection, Engine, func, or_, select, update

from ..actor import Actor
from ..audit import record_event
from ..db import inserted_id, write_transaction
from ..errors import PermissionDenied, RecordNotFound, ValidationFailed
from ..i18n_text import Text, text
from ..meta.catalog import Catalog
from ..meta.model import EntityDef
from ..meta.workflows import ApprovalStep, TransitionDef, WorkflowDef, transition_entity
from ..permissions.masking import mask_value
from ..records.validation import validate_input
from ..storage import platform_tables as pt
from . import people
from .errors import TransitionNotAvailable
from .tables import approval_delegation, approval_request, approval_task, workflow_history

MAX_COMMENT = 2000
DECISIONS = ("approve", "reject", "return")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class TransitionResult:
    state: str
    row_version: int
    pending_approval: int | None = None  # the approval request id when the transition waits for approval


@dataclass(frozen=True)
class ActionContext:
    """What a named app action gets. Write through ``records`` with ``conn`` (e.g. ``records.create_within``)."""

    conn: Connection
    records: Any
    catalog: Catalog
    entity: EntityDef
    record: Mapping[str, Any]
    actor: Actor
    transition: TransitionDef
    values: Mapping[str, Any]
    request_id: str | None = None

    def as_system(self) -> Actor:
        """The acting user with full rights: the workflow definition, not the user's roles, authorizes the action."""
        return replace(self.actor, is_admin=True)


@dataclass(frozen=True)
class AvailableTransition:
    transition: TransitionDef
    guard_ok: bool


class WorkflowService:
    def __init__(self, engine: Engine, store, policy, records, queries, *, actions: Callable[[], Mapping[str, Mapping[str, Callable]]] = dict):
        self.engine = engine
        self.store = store
        self.policy = policy
        self.records = records
        self.queries = queries
        self.timezone = getattr(queries, "timezone", None) or "Asia/Shanghai"
        self._actions = actions
        self._action_cache: Mapping[str, Mapping[str, Callable]] | None = None

    # --- definitions -------------------------------------------------------------------
    def workflow(self, entity_key: str) -> tuple[Catalog, EntityDef, WorkflowDef]:
        catalog = self.store.catalog()
        entity = catalog.entity(entity_key)
        wf = catalog.workflow_of(entity)
        if wf is None:
            raise RecordNotFound(text("{entity} has no workflow.", "{entity}没有配置流程。", entity=entity.label))
        return catalog, entity, wf

    def _transition_def(self, wf: WorkflowDef, entity: EntityDef, name: str) -> TransitionDef:
        t = wf.transition(name)
        if t is None:
            raise RecordNotFound(text("The workflow of {entity} has no transition '{name}'.", "{entity}的流程中没有“{name}”这个操作。",
                                      entity=entity.label, name=name))
        return t

    def action(self, app: str, name: str) -> Callable:
        if self._action_cache is None:
            self._action_cache = self._actions()
        fn = (self._action_cache.get(app) or {}).get(name)
        if fn is None:
            raise ValidationFailed({"_schema": [text("The workflow runs the action '{name}', which the app {app} does not register.",
                                                     "流程需要执行动作“{name}”，但应用 {app} 没有注册它。", name=name, app=app)]})
        return fn

    # --- reading -------------------------------------------------------------------------
    def available(self, entity_key: str, record_id: int, actor: Actor) -> tuple[dict, list[AvailableTransition]]:
        """The record (as the actor sees it) and the transitions the actor may start from its current state."""
        catalog, entity, wf = self.workflow(entity_key)
        record = self._visible(entity, record_id, actor)
        with self.engine.connect() as conn:
            current = self._raw(conn, catalog, entity, record["id"])
            if self.pending_request(conn, entity.key, current["id"]) is not None:
                return record, []
            state = current.get("workflow_state") or wf.initial.name
            out = []
            for t in wf.from_state(state):
                if self._allowed(conn, entity, t, current, actor):
                    out.append(AvailableTransition(t, self._guard_holds(catalog, entity, t, current)))
        return record, out

    def history(self, entity_key: str, record_id: int, actor: Actor) -> list[dict]:
        catalog, entity, wf = self.workflow(entity_key)
        self._visible(entity, record_id, actor)
        h = workflow_history
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(h).where(h.c.entity == entity.key, h.c.record_id == record_id).order_by(h.c.id.desc()))]
            names = people.usernames(conn, [r["actor_id"] for r in rows])
        for r in rows:
            r["actor"] = names.get(r["actor_id"], "system")
        return rows

    def pending_request(self, conn: Connection, entity_key: str, record_id: int) -> dict | None:
        r = approval_request
        row = conn.execute(select(r).where(r.c.entity == entity_key, r.c.record_id == record_id, r.c.status == "pending")).first()
        return dict(row._mapping) if row else None

    # --- transitions ---------------------------------------------------------------------
    def transition(self, entity_key: str, record_id: int, transition: str, actor: Actor, values: Any = None, comment: Any = None,
                   *, request_id: str | None = None) -> TransitionResult:
        catalog, entity, wf = self.workflow(entity_key)
        t = self._transition_def(wf, entity, transition)
        values = _values(values)
        comment = _comment(t, comment)
        self._visible(entity, record_id, actor)
        with write_transaction(self.engine) as conn:
            current = self.records.lock_for_transition(conn, entity.key, record_id)
            state = self._check(conn, catalog, entity, wf, t, current, actor, values)
            if t.approval is not None:
                req = self._open_request(conn, catalog, entity, wf, t, current, state, actor, values, comment)
                return TransitionResult(state=state, row_version=current["row_version"], pending_approval=req)
            version = self._complete(conn, catalog, entity, wf, t, current, state, actor, values, comment, None, request_id)
            return TransitionResult(state=t.target, row_version=version)

    def _check(self, conn, catalog, entity, wf, t, current, actor, values) -> str:
        """Every check before anything is written; returns the current state."""
        state = current.get("workflow_state") or wf.initial.name
        if state not in t.sources:
            raise TransitionNotAvailable(text("'{transition}' cannot be done while the {entity} is {state}.",
                                              "{entity}当前为“{state}”，不能执行“{transition}”。",
                                              transition=t.label, entity=entity.label, state=_state_label(wf, state)))
        if self.pending_request(conn, entity.key, current["id"]) is not None:
            raise TransitionNotAvailable(text("This {entity} is waiting for approval; it can move on after the approvers decide.",
                                              "这条{entity}正在审批中，审批完成后才能继续操作。", entity=entity.label))
        if not self._allowed(conn, entity, t, current, actor):
            raise PermissionDenied(text("You may not do '{transition}' on this {entity}.", "你无权对这条{entity}执行“{transition}”。",
                                        transition=t.label, entity=entity.label))
        self._check_values(catalog, entity, t, current, values)
        if t.guard and not self._guard_holds(catalog, entity, t, {**current, **self._cleaned(catalog, entity, t, current, values)}):
            msg = _label_text(t.guard_message) or text("The conditions for '{transition}' are not met ({guard}).", "不满足执行“{transition}”的条件（{guard}）。",
                                          transition=t.label, guard=t.guard)
            raise ValidationFailed({"_schema": [msg]})
        return state

    def _check_values(self, catalog, entity, t: TransitionDef, current, values: dict) -> None:
        allowed = {tf.field: tf for tf in t.fields}
        errors: dict[str, list] = {}
        for name in values:
            if name not in allowed:
                errors[name] = [text("'{transition}' does not set this field.", "“{transition}”不填写此项。", transition=t.label)]
        for tf in t.fields:
            v = values.get(tf.field)
            if tf.required and (v in (None, "", []) or (isinstance(v, str) and not v.strip())):
                errors[tf.field] = [text("Required for '{transition}'.", "执行“{transition}”时此项必填。", transition=t.label)]
        if errors:
            raise ValidationFailed(errors)
        self._cleaned(catalog, entity, t, current, values)  # raises per-field errors for bad values

    def _cleaned(self, catalog, entity, t, current, values: dict) -> dict:
        if not values:
            return {}
        fields = tuple(tf.field for tf in t.fields)
        return validate_input(catalog, transition_entity(entity, fields), values, self.records.schemas, creating=False, writable=fields, current=current)

    def _complete(self, conn, catalog, entity, wf, t, current, state, actor, values, comment, approval_id, request_id) -> int:
        data = dict(values)
        writable = [tf.field for tf in t.fields]
        for a in t.actions:
            if a.kind == "set":
                for name, v in a.values.items():
                    data[name] = _special(v, actor, self.timezone)
                    writable.append(name)
        version = self.records.write_transition(conn, entity.key, current, t.target, data, writable, actor, request_id=request_id)
        now = utcnow()
        conn.execute(workflow_history.insert().values(entity=entity.key, record_id=current["id"], workflow=wf.name, event="transitioned",
                                                      transition=t.name, from_state=state, to_state=t.target, actor_id=actor.id, at=now,
                                                      comment=comment, field_values=_jsonable(values), approval_id=approval_id))
        record_event(conn, category="record", action="transition", actor_id=actor.id, entity=entity.key, record_id=current["id"],
                     changes={"workflow": wf.name, "transition": t.name, "from": state, "to": t.target, "comment": comment or "",
                              "approval_id": approval_id}, request_id=request_id, at=now)
        conn.execute(pt.outbox.insert().values(created_at=now, topic="workflow.transitioned", entity=entity.key, record_id=current["id"],
                                               payload={"entity": entity.key, "id": current["id"], "workflow": wf.name, "transition": t.name,
                                                        "from": state, "to": t.target, "actor_id": actor.id, "comment": comment or "",
                                                        "approval_id": approval_id}))
        runs = [a for a in t.actions if a.kind == "run"]
        if runs:
            record = self.records.lock_for_transition(conn, entity.key, current["id"])
            for a in runs:
                self.action(entity.app, a.name)(ActionContext(conn=conn, records=self.records, catalog=catalog, entity=entity, record=record,
                                                              actor=actor, transition=t, values=values, request_id=request_id))
        return version

    # --- approvals -------------------------------------------------------------------------
    def _open_request(self, conn, catalog, entity, wf, t, current, state, actor, values, comment) -> int:
        now = utcnow()
        steps = t.approval.steps
        first = range(len(steps)) if t.approval.mode == "any" else range(1)
        assignees = {i: self._approvers(conn, steps[i], current) for i in first}
        for i, ids in assignees.items():
            if not ids:
                raise ValidationFailed({"_schema": [text("No one can approve step {n} ({who}); ask an administrator to assign approvers.",
                                                         "审批第 {n} 步（{who}）没有可用的审批人，请联系管理员设置。", n=i + 1, who=_step_text(steps[i]))]})
        r = approval_request
        conn.execute(update(r).where(r.c.entity == entity.key, r.c.record_id == current["id"], r.c.status == "returned")
                     .values(status="resubmitted"))
        req_id = inserted_id(conn.execute(r.insert().values(entity=entity.key, record_id=current["id"], workflow=wf.name, transition=t.name, from_state=state,
                                                status="pending", mode=t.approval.mode, step=0, field_values=_jsonable(values), comment=comment,
                                                requested_by=actor.id, requested_at=now)))
        seen = set()
        for i, ids in assignees.items():
            for uid in ids:
                if uid in seen:
                    continue
                seen.add(uid)
                conn.execute(approval_task.insert().values(request_id=req_id, step=i, assignee_id=uid, status="pending", created_at=now))
        self._log(conn, entity, wf, current["id"], "requested", t.name, state, t.target, actor, comment, values, req_id, now)
        conn.execute(pt.outbox.insert().values(created_at=now, topic="workflow.approval_requested", entity=entity.key, record_id=current["id"],
                                               payload={"entity": entity.key, "id": current["id"], "transition": t.name, "approval_id": req_id,
                                                        "approvers": sorted(seen)}))
        return req_id

    def _approvers(self, conn, step: ApprovalStep, current) -> list[int]:
        if step.kind == "role":
            return people.users_with_role(conn, step.value)
        if step.kind == "post":
            return people.users_with_post(conn, step.value)
        if step.kind == "manager":
            return people.managers_of(conn, current.get("owner_id"))
        uid = people.user_id_of(conn, step.value)
        return [uid] if uid is not None else []

    def decide(self, task_id: int, decision: str, actor: Actor, comment: Any = None, *, request_id: str | None = None) -> str:
        """Approve, reject or return-for-changes one approval task; returns the request's status afterwards."""
        if decision not in DECISIONS:
            raise ValidationFailed({"decision": [text("Choose approve, reject or return.", "请选择同意、驳回或退回修改。")]})
        comment = _text(comment)
        if decision in ("reject", "return") and not comment:
            raise ValidationFailed({"comment": [text("Say why, so the requester knows what to do.", "请填写原因，方便申请人处理。")]})
        with write_transaction(self.engine) as conn:
            task, req = self._task_for_update(conn, task_id, actor)
            catalog, entity, wf = self.workflow(req["entity"])
            t = self._transition_def(wf, entity, req["transition"])
            current = self.records.lock_for_transition(conn, entity.key, req["record_id"])
            task, req = self._task_for_update(conn, task_id, actor)  # read again under the record's lock
            now = utcnow()
            status = {"approve": "approved", "reject": "rejected", "return": "returned"}[decision]
            conn.execute(update(approval_task).where(approval_task.c.id == task["id"])
                         .values(status=status, decided_by=actor.id, decided_at=now, comment=comment))
            self._log(conn, entity, wf, current["id"], status, t.name, current.get("workflow_state"), t.target, actor, comment, {}, req["id"], now)
            record_event(conn, category="record", action=f"approval_{decision}", actor_id=actor.id, entity=entity.key, record_id=current["id"],
                         changes={"approval_id": req["id"], "transition": t.name, "step": task["step"], "comment": comment}, request_id=request_id, at=now)
            if decision != "approve":
                self._close(conn, req["id"], status, now)
                return status
            steps = t.approval.steps if t.approval else ()  # the approval may have been removed from the workflow since the request
            last = t.approval is None or t.approval.mode == "any" or task["step"] >= len(steps) - 1
            if not last:
                nxt = task["step"] + 1
                conn.execute(update(approval_task).where(approval_task.c.request_id == req["id"], approval_task.c.step == task["step"],
                                                         approval_task.c.status == "pending").values(status="closed", decided_at=now))
                ids = self._approvers(conn, steps[nxt], current)
                if not ids:
                    raise ValidationFailed({"_schema": [text("No one can approve step {n} ({who}); ask an administrator to assign approvers.",
                                                             "审批第 {n} 步（{who}）没有可用的审批人，请联系管理员设置。", n=nxt + 1, who=_step_text(steps[nxt]))]})
                for uid in ids:
                    conn.execute(approval_task.insert().values(request_id=req["id"], step=nxt, assignee_id=uid, status="pending", created_at=now))
                conn.execute(update(approval_request).where(approval_request.c.id == req["id"]).values(step=nxt))
                return "pending"
            self._close(conn, req["id"], "approved", now)
            # The record may have changed while the request waited: check the state and guard again.
            state = current.get("workflow_state") or wf.initial.name
            if state not in t.sources:
                raise TransitionNotAvailable(text("The {entity} is now {state}; '{transition}' no longer applies.",
                                                  "{entity}现在为“{state}”，“{transition}”已不适用。",
                                                  entity=entity.label, state=_state_label(wf, state), transition=t.label))
            values = dict(req["field_values"] or {})
            if t.guard and not self._guard_holds(catalog, entity, t, {**current, **self._cleaned(catalog, entity, t, current, values)}):
                raise ValidationFailed({"_schema": [_label_text(t.guard_message) or text("The conditions for '{transition}' are no longer met.",
                                                                            "已不再满足执行“{transition}”的条件。", transition=t.label)]})
            self._complete(conn, catalog, entity, wf, t, current, state, actor, values, req["comment"], req["id"], request_id)
            return "approved"

    def delegate_task(self, task_id: int, actor: Actor, to_user_id: Any, comment: Any = None) -> int:
        """Hand one pending task to another user; returns the new task's id."""
        to_id = _user_id(to_user_id)
        with write_transaction(self.engine) as conn:
            task, req = self._task_for_update(conn, task_id, actor)
            if to_id is None or not people.usernames(conn, [to_id]) or to_id == task["assignee_id"]:
                raise ValidationFailed({"delegate_id": [text("Choose another active user.", "请选择另一位有效用户。")]})
            now = utcnow()
            conn.execute(update(approval_task).where(approval_task.c.id == task["id"]).values(status="delegated", decided_by=actor.id, decided_at=now,
                                                                                               comment=_text(comment)))
            new_id = inserted_id(conn.execute(approval_task.insert().values(request_id=req["id"], step=task["step"], assignee_id=to_id, status="pending",
                                                                delegated_from=task["assignee_id"], created_at=now)))
            catalog, entity, wf = self.workflow(req["entity"])
            self._log(conn, entity, wf, req["record_id"], "delegated", req["transition"], None, None, actor, _text(comment), {"to": to_id}, req["id"], now)
            record_event(conn, category="record", action="approval_delegate", actor_id=actor.id, entity=entity.key, record_id=req["record_id"],
                         changes={"approval_id": req["id"], "task": task["id"], "to": to_id}, at=now)
            return new_id

    def add_delegation(self, actor: Actor, delegate_id: Any, starts_at: dt.datetime, ends_at: dt.datetime, note: Any = None) -> int:
        """While ``actor`` is away, ``delegate_id`` decides ``actor``'s approvals."""
        to_id = _user_id(delegate_id)
        errors = {}
        if starts_at is None or ends_at is None or ends_at <= starts_at:
            errors["ends_at"] = [text("The period must end after it starts.", "结束时间必须晚于开始时间。")]
        with write_transaction(self.engine) as conn:
            if to_id is None or to_id == actor.id or not people.usernames(conn, [to_id]):
                errors["delegate_id"] = [text("Choose another active user.", "请选择另一位有效用户。")]
            if errors:
                raise ValidationFailed(errors)
            now = utcnow()
            did = inserted_id(conn.execute(approval_delegation.insert().values(user_id=actor.id, delegate_id=to_id, starts_at=starts_at, ends_at=ends_at,
                                                                   note=_text(note)[:500] or None, created_at=now)))
            record_event(conn, category="record", action="approval_delegation", actor_id=actor.id, subject=f"delegation:{did}",
                         changes={"delegate_id": to_id, "starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat()}, at=now)
            return did

    def revoke_delegation(self, actor: Actor, delegation_id: int) -> None:
        d = approval_delegation
        with write_transaction(self.engine) as conn:
            n = conn.execute(update(d).where(d.c.id == delegation_id, d.c.user_id == actor.id, d.c.revoked_at.is_(None))
                             .values(revoked_at=utcnow())).rowcount
            if n != 1:
                raise RecordNotFound(text("There is no such delegation of yours.", "没有找到你的这条委托。"))
            record_event(conn, category="record", action="approval_delegation_end", actor_id=actor.id, subject=f"delegation:{delegation_id}")

    def delegations(self, actor: Actor) -> list[dict]:
        d = approval_delegation
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(d).where(or_(d.c.user_id == actor.id, d.c.delegate_id == actor.id),
                                                                           d.c.revoked_at.is_(None), d.c.ends_at > utcnow()).order_by(d.c.starts_at))]
            names = people.usernames(conn, [r["user_id"] for r in rows] + [r["delegate_id"] for r in rows])
        for r in rows:
            r["user"], r["delegate"] = names.get(r["user_id"], ""), names.get(r["delegate_id"], "")
        return rows

    def set_managers(self, actor: Actor, unit_id: Any, user_ids) -> None:
        """Replace the managers of an org unit (administrators only; audited)."""
        if not actor.is_admin:
            raise PermissionDenied(text("Only administrators can set org managers.", "只有管理员可以设置组织负责人。"))
        uid = _user_id(unit_id)
        raw_ids = [_user_id(u) for u in user_ids]
        ids = [i for i in raw_ids if i is not None]
        with write_transaction(self.engine) as conn:
            if uid is None or conn.execute(select(pt.org_unit.c.id).where(pt.org_unit.c.id == uid)).first() is None:
                raise RecordNotFound(text("There is no org unit with id {id}.", "没有编号为 {id} 的组织单元。", id=unit_id))
            if len(ids) != len(raw_ids) or len(people.usernames(conn, ids)) != len(set(ids)):
                raise ValidationFailed({"managers": [text("Choose existing users.", "请选择已存在的用户。")]})
            before = people.unit_managers(conn, uid)
            people.set_unit_managers(conn, uid, ids)
            record_event(conn, category="permission", action="org_managers", actor_id=actor.id, entity="org.unit", record_id=uid,
                         changes={"managers": [before, sorted(set(ids))]})

    # --- inboxes ---------------------------------------------------------------------------
    def _assignee_clause(self, conn, actor: Actor):
        ids: list[int | None] = [actor.id, *people.delegators_of(conn, actor.id, utcnow())]
        return approval_task.c.assignee_id.in_(ids)

    def approvals(self, actor: Actor, *, limit: int = 200) -> list[dict]:
        """Pending tasks the actor may decide (their own and those delegated to them now), oldest first."""
        catalog = self.store.catalog()
        tk, r = approval_task, approval_request
        with self.engine.connect() as conn:
            rows = [dict(x._mapping) for x in conn.execute(
                select(tk.c.id, tk.c.step, tk.c.assignee_id, tk.c.created_at, tk.c.delegated_from, r.c.id.label("request_id"), r.c.entity,
                       r.c.record_id, r.c.transition, r.c.field_values, r.c.comment, r.c.requested_by, r.c.requested_at, r.c.mode)
                .join(r, r.c.id == tk.c.request_id)
                .where(tk.c.status == "pending", r.c.status == "pending", self._assignee_clause(conn, actor))
                .order_by(tk.c.created_at, tk.c.id).limit(limit))]
            names = people.usernames(conn, [x["requested_by"] for x in rows] + [x["assignee_id"] for x in rows])
            out = []
            for x in rows:
                entity = catalog.entities.get(x["entity"])
                wf = catalog.workflow_of(x["entity"])
                t = wf.transition(x["transition"]) if wf else None
                if entity is None or t is None:
                    continue
                x["field_values"] = self._visible_values(actor, entity, x["field_values"])
                x.update(entity_def=entity, transition_def=t, requester=names.get(x["requested_by"], ""), assignee=names.get(x["assignee_id"], ""),
                         title=self._title(conn, catalog, entity, x["record_id"], actor), steps=len(t.approval.steps) if t.approval else 1)
                out.append(x)
        return out

    def _visible_values(self, actor: Actor, entity, values: dict | None) -> dict:
        """A request's entered values as the approver may see them: fields they cannot read left out, masked ones masked
        (the decision itself applies the values as stored)."""
        readable = set(self.policy.readable_fields(actor, entity))
        shown = {k: v for k, v in (values or {}).items() if k in readable}
        self.policy.mask(actor, entity, shown)
        return shown

    def approval_count(self, actor: Actor) -> int:
        tk, r = approval_task, approval_request
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(tk.join(r, r.c.id == tk.c.request_id))
                                .where(tk.c.status == "pending", r.c.status == "pending", self._assignee_clause(conn, actor))).scalar_one()

    def tasks(self, actor: Actor, *, limit: int = 50) -> list[dict]:
        """Records waiting for the actor: requests returned to them for changes, and records in a state with a
        transition they may start (checked per record, within the records they may see)."""
        catalog = self.store.catalog()
        tables = self.records.table_cache.tables(catalog)
        out = []
        r = approval_request
        with self.engine.connect() as conn:
            for x in conn.execute(select(r).where(r.c.requested_by == actor.id, r.c.status == "returned").order_by(r.c.id.desc()).limit(limit)):
                entity = catalog.entities.get(x.entity)
                wf = catalog.workflow_of(x.entity)
                if entity is None or wf is None:
                    continue
                t = wf.transition(x.transition)
                out.append({"kind": "returned", "entity_def": entity, "record_id": x.record_id, "title": self._title(conn, catalog, entity, x.record_id, actor),
                            "transitions": [t] if t else [], "state": wf.state(x.from_state), "at": x.decided_at or x.requested_at,
                            "comment": self._return_comment(conn, x.id)})
            pending = select(r.c.record_id).where(r.c.status == "pending")
            roles = people.role_names(conn, actor.role_ids)
            for key, wf in catalog.workflows.items():
                entity = catalog.entities.get(key)
                if entity is None or not self.policy.allows(actor, entity, "read"):
                    continue
                sources = sorted({s for t in wf.transitions for s in t.sources})
                table = tables[key]
                state_col = func.coalesce(table.c.workflow_state, wf.initial.name)
                q = (select(table).where(table.c.deleted_at.is_(None), state_col.in_(sources),
                                         table.c.id.not_in(pending.where(r.c.entity == key)))
                     .order_by(table.c.updated_at.desc()).limit(limit))
                scope = self.policy.row_filter(actor, entity, table, catalog)
                if scope is not None:
                    q = q.where(scope)
                title_of = self._titles_for(actor, entity)
                for mapping in conn.execute(q).mappings():
                    row = dict(mapping)
                    state = row.get("workflow_state") or wf.initial.name
                    allowed = [t for t in wf.from_state(state) if self._allowed(conn, entity, t, row, actor, owner_only_if_open=True, roles=roles)]
                    if allowed:
                        out.append({"kind": "state", "entity_def": entity, "record_id": row["id"], "title": title_of(row),
                                    "transitions": allowed, "state": wf.state(state), "at": row["updated_at"], "comment": ""})
                    if len(out) >= limit:
                        break
        return out[:limit]

    def task_count(self, actor: Actor) -> int:
        return len(self.tasks(actor, limit=100))

    # --- helpers ---------------------------------------------------------------------------
    def _visible(self, entity: EntityDef, record_id: int, actor: Actor) -> dict:
        """The record as the actor may read it; RecordNotFound when they may not."""
        return self.queries.get(entity.key, record_id, actor)

    def _raw(self, conn, catalog, entity, record_id) -> dict:
        table = self.records.table_cache.tables(catalog)[entity.key]
        row = conn.execute(select(table).where(table.c.id == record_id)).mappings().first()
        if row is None:
            raise RecordNotFound(text("{entity} #{id} does not exist.", "{entity} #{id} 不存在。", entity=entity.label, id=record_id))
        current = dict(row)
        for f in entity.fields:
            if f.name in current:
                current[f.name] = catalog.type_of(f).from_db(f, current[f.name])
        return current

    def _allowed(self, conn, entity: EntityDef, t: TransitionDef, record: Mapping, actor: Actor, *, owner_only_if_open: bool = False,
                 roles: set[str] | None = None) -> bool:
        if actor is None:
            return False
        a = t.allowed
        if a.open:
            if owner_only_if_open:  # the inbox lists open transitions only on the actor's own records
                return record.get("owner_id") == actor.id and self.policy.allows(actor, entity, "update")
            return actor.is_admin or self.policy.allows(actor, entity, "update")
        if actor.is_admin:
            return True
        if a.owner and record.get("owner_id") is not None and record.get("owner_id") == actor.id:
            return True
        if a.users and actor.username in a.users:
            return True
        if a.roles and (roles if roles is not None else people.role_names(conn, actor.role_ids)) & set(a.roles):
            return True
        if a.manager and actor.id in people.managers_of(conn, record.get("owner_id")):
            return True
        return False

    def _guard_holds(self, catalog, entity, t: TransitionDef, record: Mapping) -> bool:
        if not t.guard:
            return True
        from ..expr import ExpressionError, compile_expression

        compiled = compile_expression(t.guard, entity, catalog, result="boolean")
        try:
            return compiled.evaluate(record) is True
        except ExpressionError:  # an evaluation error (e.g. a bad value, the step budget) means the condition is not met
            return False

    def _task_for_update(self, conn, task_id: Any, actor: Actor) -> tuple[dict, dict]:
        tid = _user_id(task_id)
        row = None
        if tid is not None:
            q = select(approval_task).where(approval_task.c.id == tid)
            row = conn.execute(q).mappings().first()
        if row is None:
            raise RecordNotFound(text("There is no such approval task.", "没有找到这条审批任务。"))
        req = conn.execute(select(approval_request).where(approval_request.c.id == row["request_id"])).mappings().first()
        if not people.acts_for(conn, actor.id, row["assignee_id"], utcnow()):
            raise PermissionDenied(text("This approval is assigned to someone else.", "这条审批已分配给其他人。"))
        if row["status"] != "pending" or req["status"] != "pending":
            raise TransitionNotAvailable(text("This approval has already been decided.", "这条审批已经处理过了。"))
        return dict(row), dict(req)

    def _close(self, conn, req_id: int, status: str, now) -> None:
        conn.execute(update(approval_request).where(approval_request.c.id == req_id).values(status=status, decided_at=now))
        conn.execute(update(approval_task).where(approval_task.c.request_id == req_id, approval_task.c.status == "pending")
                     .values(status="closed", decided_at=now))

    def _log(self, conn, entity, wf, record_id, event, transition, from_state, to_state, actor, comment, values, approval_id, now) -> None:
        conn.execute(workflow_history.insert().values(entity=entity.key, record_id=record_id, workflow=wf.name, event=event, transition=transition,
                                                      from_state=from_state, to_state=to_state, actor_id=actor.id, at=now, comment=comment or None,
                                                      field_values=_jsonable(values), approval_id=approval_id))

    def _return_comment(self, conn, req_id: int) -> str:
        return conn.execute(select(approval_task.c.comment).where(approval_task.c.request_id == req_id, approval_task.c.status == "returned")
                            .order_by(approval_task.c.id.desc())).scalar() or ""

    def _title(self, conn, catalog, entity, record_id, actor: Actor) -> str:
        table = self.records.table_cache.tables(catalog)[entity.key]
        row = conn.execute(select(table).where(table.c.id == record_id)).mappings().first()
        return self._titles_for(actor, entity)(dict(row)) if row else f"#{record_id}"

    def _titles_for(self, actor: Actor, entity: EntityDef) -> Callable[[dict], str]:
        """Titles of raw rows as ``actor`` may see them in an inbox: masked if they see the title masked, the id alone
        if they may not read it (the actor's field access is looked up once, not per row)."""
        f = entity.field_map.get(entity.title_field)
        readable = f is not None and f.name in self.policy.readable_fields(actor, entity)
        masks = self.policy.masks(actor, entity)

        def title_of(row: dict) -> str:
            if f is None or not readable or row.get(f.name) in (None, ""):
                return f"#{row['id']}"
            return str(mask_value(masks[f.name], row[f.name]) if f.name in masks else row[f.name])

        return title_of


def _state_label(wf: WorkflowDef, state: str | None):
    s = wf.state(state)
    return s.label if s else (state or "")


def _label_text(label) -> Text | None:
    return Text(label.en, label.zh) if label is not None else None


def _step_text(step: ApprovalStep) -> str:
    return "manager" if step.kind == "manager" else f"{step.kind} {step.value}"


def _values(values: Any) -> dict:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValidationFailed({"values": [text("Send the field values as an object.", "请以对象形式提交字段值。")]})
    return dict(values)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationFailed({"comment": [text("The comment must be text.", "意见必须是文本。")]})
    value = value.strip()
    if len(value) > MAX_COMMENT:
        raise ValidationFailed({"comment": [text("At most {n} characters.", "最多 {n} 个字符。", n=MAX_COMMENT)]})
    if "\x00" in value:
        raise ValidationFailed({"comment": [text("Text cannot contain the NUL character.", "文本中不能包含 NUL 字符。")]})
    return value


def _comment(t: TransitionDef, comment: Any) -> str:
    c = _text(comment)
    if t.comment == "required" and not c:
        raise ValidationFailed({"comment": [text("A comment is required for '{transition}'.", "执行“{transition}”需要填写意见。", transition=t.label)]})
    return c


def _user_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if 0 < n < 2**31 else None


def _special(value: Any, actor: Actor, timezone: str = "Asia/Shanghai") -> Any:
    """``$now``, ``$today`` and ``$actor`` in set actions."""
    if value == "$now":
        return utcnow().isoformat()
    if value == "$today":
        return dt.datetime.now(ZoneInfo(timezone)).date().isoformat()
    if value == "$actor":
        return actor.id
    return value


def _jsonable(values: Mapping) -> dict:
    import json

    return json.loads(json.dumps(dict(values), default=str))


__all__ = ["ActionContext", "AvailableTransition", "TransitionResult", "WorkflowService"]
