"""A permission scenario for the policy tests: a 3-level org tree, roles with field rules and row
scopes, users in units, and members owned by different users in different units.

``expected_*`` helpers compute what each user should see straight from the scenario description
(plain Python over the tree), independently of the policy code under test.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from sqlalchemy import select

from crmkit.runtime.actor import Actor
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.org.grants import resolve_grants
from crmkit.runtime.org.service import OrgService
from crmkit.runtime.permissions.admin import PermissionAdmin
from crmkit.runtime.storage import platform_tables as pt

PASSWORD = "policy-pass-123"
MASKS = {"mobile": "mobile", "id_number": "id_number", "email": "email"}

# role name → (actions on member, actions on level, member field rules {field: (access, may_unmask)}, member row scope, custom filter)
ROLES = {
    "FrontDesk": ({"read", "create", "update"}, {"read"}, {"id_number": ("hidden", False), "total_spent": ("read_only", False)}, "org_unit", None),
    "Manager": ({"read", "update", "export", "delete", "bulk_edit"}, {"read"}, {"mobile": ("editable", True)}, "org_subtree", None),
    "Sales": ({"read", "create", "update"}, set(), {"notes": ("hidden", False), "id_number": ("hidden", False),
                                                     "address": ("hidden", False)}, "own", None),
    "LostDesk": ({"read", "export"}, {"read"}, {"notes": ("hidden", False), "id_number": ("read_only", False)}, "custom",
                 {"field": "status", "op": "eq", "value": "lost"}),
    "Viewer": (set(), {"read"}, {}, "all", None),
}

# username → (roles, org unit code)
USERS = {
    "desk_sh": (["FrontDesk"], "SH"),
    "mgr_east": (["Manager"], "EAST"),
    "sales_bj": (["Sales"], "BJ"),
    "lost_hq": (["LostDesk"], "HQ"),
    "viewer": (["Viewer"], "HQ"),
    "desk_sales": (["FrontDesk", "Sales"], "BJ"),  # union of two roles
}

# code → (name, kind, parent code): HQ → EAST/NORTH → SH/HZ/BJ (3 levels)
UNITS = [("HQ", "集团", "group", None), ("EAST", "华东区", "region", "HQ"), ("NORTH", "华北区", "region", "HQ"),
         ("SH", "上海公司", "company", "EAST"), ("HZ", "杭州公司", "company", "EAST"), ("BJ", "北京公司", "company", "NORTH")]


@dataclass
class Scenario:
    services: object
    units: dict = field(default_factory=dict)  # code → id
    parents: dict = field(default_factory=dict)  # unit id → parent id
    roles: dict = field(default_factory=dict)  # name → id
    users: dict = field(default_factory=dict)  # username → id
    members: dict = field(default_factory=dict)  # member id → {"owner": user id, "unit": unit id, "status": ...}
    levels: list = field(default_factory=list)

    def actor(self, username: str) -> Actor:
        with self.services.engine.connect() as conn:
            g = resolve_grants(conn, self.users[username])
        return Actor(id=self.users[username], username=username, is_admin="Admin" in g.role_names, permissions=g.permissions,
                     org_unit_id=g.org_unit_id, role_ids=g.role_ids)

    # --- independent expectations -------------------------------------------------------
    def subtree(self, unit_id) -> set:
        out = {unit_id}
        changed = True
        while changed:
            changed = False
            for u, p in self.parents.items():
                if p in out and u not in out:
                    out.add(u)
                    changed = True
        return out

    def roles_of(self, username):
        return USERS[username][0]

    def member_actions(self, username) -> set:
        return set().union(*(ROLES[r][0] for r in self.roles_of(username)))

    def level_actions(self, username) -> set:
        return set().union(*(ROLES[r][1] for r in self.roles_of(username)))

    def expected_member_ids(self, username) -> set:
        if "read" not in self.member_actions(username):
            return set()
        uid, unit = self.users[username], self.units[USERS[username][1]]
        out = set()
        for mid, m in self.members.items():
            for r in self.roles_of(username):
                scope, custom = ROLES[r][3], ROLES[r][4]
                if not ROLES[r][0]:
                    continue
                if (scope == "all" or (scope == "own" and m["owner"] == uid) or (scope == "org_unit" and m["unit"] == unit)
                        or (scope == "org_subtree" and m["unit"] in self.subtree(unit)) or (scope == "custom" and m["status"] == custom["value"])):
                    out.add(mid)
        return out

    def expected_hidden(self, username, all_fields) -> set:
        roles = [r for r in self.roles_of(username) if ROLES[r][0]]
        return {f for f in all_fields if roles and all(ROLES[r][2].get(f, ("editable", False))[0] == "hidden" for r in roles)}

    def expected_writable(self, username, all_fields) -> set:
        roles = [r for r in self.roles_of(username) if ROLES[r][0]]
        return {f for f in all_fields if any(ROLES[r][2].get(f, ("editable", False))[0] == "editable" for r in roles)}

    def expected_unmask(self, username) -> set:
        roles = [r for r in self.roles_of(username) if ROLES[r][0]]
        return {f for f in MASKS if any(ROLES[r][2].get(f, ("editable", False))[1] for r in roles)}


def mask_member_fields(services) -> None:
    """Mark the member's mobile, id number and email as masked (a metadata change; no columns change)."""
    with services.engine.connect() as conn:
        body = conn.execute(select(pt.document.c.body).where(pt.document.c.kind == "entity", pt.document.c.key == "membership.member")).scalar_one()
    body = copy.deepcopy(body)
    for f in body["fields"]:
        if f["name"] in MASKS:
            f["mask"] = MASKS[f["name"]]
    services.store.save([RawDocument("entity", "membership", body, "test:member.json")])


def build_scenario(app, *, members_per_pair: int = 1) -> Scenario:
    services = app.extensions["crmkit"]
    mask_member_fields(services)
    sc = Scenario(services)
    org = OrgService(services.engine)
    admin = Actor(id=None, username="system", is_admin=True)
    for code, name, kind, parent in UNITS:
        sc.units[code] = org.create_unit(admin, name=name, code=code, kind=kind, parent_id=sc.units.get(parent))
        sc.parents[sc.units[code]] = sc.units.get(parent)
    catalog = services.store.catalog()
    member, level = catalog.entity("membership.member"), catalog.entity("membership.level")
    perms = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
    with app.app_context():
        sm = app.appbuilder.sm
        for name in ROLES:
            sc.roles[name] = sm.add_role(name).id
        for username, (roles, _unit) in USERS.items():
            user = sm.add_user(username, username, "Test", f"{username}@example.com", [sm.find_role(r) for r in roles], PASSWORD)
            sc.users[username] = user.id
        app.extensions["sqlalchemy"].session.remove()
    for name, (m_actions, l_actions, rules, scope, custom) in ROLES.items():
        rid = sc.roles[name]
        perms.set_actions(rid, member, m_actions, actor_id=None)
        perms.set_actions(rid, level, l_actions, actor_id=None)
        if rules:
            perms.set_field_rules(rid, member, rules, actor_id=None)
        perms.set_row_scope(rid, member, scope, custom, actor_id=None)
    for username, (roles, unit) in USERS.items():
        org.assign_user(admin, sc.users[username], org_unit_id=sc.units[unit], role_ids=[sc.roles[r] for r in roles])
    for code, lv in (("SILVER", 10), ("GOLD", 20)):
        sc.levels.append(services.records.create("membership.level", {"name": f"等级{code}", "code": code, "level_value": lv}, admin))
    n = 0
    owners = ["desk_sh", "mgr_east", "sales_bj", "desk_sales"]
    for unit_code in sc.units:
        for owner in owners:
            for _ in range(members_per_pair):
                n += 1
                status = "lost" if n % 3 == 0 else "active"
                creator = Actor(id=sc.users[owner], username=owner, is_admin=True, org_unit_id=sc.units[unit_code])
                mid = services.records.create("membership.member", {
                    "name": f"会员{n:03d}", "mobile": f"138{n:08d}", "email": f"m{n}@example.com", "joined_on": "2024-01-02",
                    "id_number": None, "notes": f"note {n}", "address": f"地址{n}", "status": status, "total_spent": str(n * 10),
                    "level": sc.levels[n % 2]}, creator)
                sc.members[mid] = {"owner": sc.users[owner], "unit": sc.units[unit_code], "status": status, "n": n}
    return sc


def valid_id_number(seq: int) -> str:
    """An 18-digit mainland ID number with a correct check digit (born 1990-01-01, region 110101)."""
    body = f"11010119900101{seq % 1000:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(body, weights))
    return body + "10X98765432"[total % 11]


def shared_scenario_fixture():
    """A module-scoped scenario for tests that only read (building one costs a few seconds)."""
    import pytest

    @pytest.fixture(scope="module")
    def shared_sc(databases, tmp_path_factory):
        from conftest import make_settings
        from crmkit.runtime.web.app import create_app

        app = create_app(make_settings(databases.fresh("membership"), tmp_path_factory.mktemp("shared")), testing=True)
        sc = build_scenario(app)
        sc.app = app
        yield sc
        with app.app_context():
            app.extensions["sqlalchemy"].session.remove()
            app.extensions["crmkit"].engine.dispose()

    return shared_sc
