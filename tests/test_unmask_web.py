"""The record page offers "show" on masked fields only to users who may unmask them; each reveal is audited."""
from sqlalchemy import func, select

from conftest import ADMIN_PASSWORD, csrf_from, login
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.storage import platform_tables as pt
from policy_support import mask_member_fields

MOBILE = "13812345678"


def unmask_events(services) -> int:
    with services.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(pt.audit).where(pt.audit.c.action == "unmask")).scalar_one()


def test_admin_sees_the_mask_reveals_the_value_and_the_reveal_is_audited(app, client, services):
    mask_member_fields(services)
    mid = services.records.create("membership.member", {"name": "王芳", "mobile": MOBILE, "joined_on": "2024-05-01"}, SYSTEM)
    page = client.get(f"/e/membership.member/{mid}").get_data(as_text=True)
    assert MOBILE not in page and "138****5678" in page
    url = f"/e/membership.member/{mid}/unmask/mobile"
    assert f'hx-post="{url}"' in page
    before = unmask_events(services)
    resp = client.post(url, headers={"HX-Request": "true", "X-CSRFToken": csrf_from(page)})
    assert resp.status_code == 200 and MOBILE in resp.get_data(as_text=True)
    assert resp.headers["Cache-Control"] == "no-store"
    assert unmask_events(services) == before + 1


def test_reveal_without_csrf_is_refused_and_not_audited(app, client, services):
    mask_member_fields(services)
    mid = services.records.create("membership.member", {"name": "李雷", "mobile": MOBILE, "joined_on": "2024-05-01"}, SYSTEM)
    before = unmask_events(services)
    resp = client.post(f"/e/membership.member/{mid}/unmask/mobile", headers={"HX-Request": "true"})
    assert resp.status_code in (400, 403) and MOBILE not in resp.get_data(as_text=True)
    assert unmask_events(services) == before


def test_a_reader_without_the_unmask_right_gets_no_button_and_a_403(app, services):
    mask_member_fields(services)
    mid = services.records.create("membership.member", {"name": "张伟", "mobile": MOBILE, "joined_on": "2024-05-01"}, SYSTEM)
    with app.app_context():
        sm = app.appbuilder.sm
        role = sm.add_role("MemberReader")
        sm.add_permission_role(role, sm.find_permission_view_menu("read", "entity:membership.member"))
        sm.add_user("reader", "Re", "Ader", "reader@example.com", role, ADMIN_PASSWORD)
    c = app.test_client()
    login(c, "reader", ADMIN_PASSWORD)
    page = c.get(f"/e/membership.member/{mid}").get_data(as_text=True)
    assert "138****5678" in page and MOBILE not in page
    assert "/unmask/" not in page
    before = unmask_events(services)
    resp = c.post(f"/e/membership.member/{mid}/unmask/mobile", headers={"HX-Request": "true", "X-CSRFToken": csrf_from(page)})
    assert resp.status_code == 403 and MOBILE not in resp.get_data(as_text=True)
    assert unmask_events(services) == before


# --- the API: POST /api/v1/records/<entity>/<id>/unmask with a bearer token -----------------------------------------
def _api_reader(app, *, may_unmask: bool) -> str:
    from crmkit.runtime.permissions.admin import PermissionAdmin
    from test_api_auth import jwt_for

    with app.app_context():
        sm = app.appbuilder.sm
        role = sm.add_role("ApiReader")
        sm.add_permission_role(role, sm.find_permission_view_menu("read", "entity:membership.member"))
        sm.add_user("apireader", "Api", "Reader", "apireader@example.com", role, ADMIN_PASSWORD)
        role_id = role.id
        app.extensions["sqlalchemy"].session.remove()
    services = app.extensions["crmkit"]
    if may_unmask:
        member = services.store.catalog().entity("membership.member")
        PermissionAdmin(services.engine, services.policy.rules, services.store.catalog).set_field_rules(
            role_id, member, {"mobile": ("read_only", True)}, actor_id=None)
    return jwt_for(app, "apireader", ADMIN_PASSWORD)["access_token"]


def test_api_unmask_reveals_the_value_to_a_token_holder_with_the_right_and_audits_it(app, services):
    from api_support import token_client

    mask_member_fields(services)
    mid = services.records.create("membership.member", {"name": "赵敏", "mobile": MOBILE, "joined_on": "2024-05-01"}, SYSTEM)
    api = token_client(app, _api_reader(app, may_unmask=True))
    assert api.get(f"/api/v1/records/membership.member/{mid}").get_json()["mobile"] == "138****5678"
    before = unmask_events(services)
    resp = api.post(f"/api/v1/records/membership.member/{mid}/unmask", json={"field": "mobile"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json() == {"id": mid, "field": "mobile", "value": MOBILE}
    assert resp.headers["Cache-Control"] == "no-store"
    assert unmask_events(services) == before + 1
    spec = api.get("/api/v1/openapi.json").get_json()
    assert "/records/membership.member/{id}/unmask" in spec["paths"]


def test_api_unmask_without_the_right_or_with_bad_input_reveals_nothing(app, services):
    from api_support import assert_error, token_client

    mask_member_fields(services)
    mid = services.records.create("membership.member", {"name": "周芷若", "mobile": MOBILE, "joined_on": "2024-05-01"}, SYSTEM)
    api = token_client(app, _api_reader(app, may_unmask=False))
    before = unmask_events(services)
    body = assert_error(api.post(f"/api/v1/records/membership.member/{mid}/unmask", json={"field": "mobile"}), 403, "forbidden")
    assert MOBILE not in str(body) and "may unmask" in body["message"]
    assert_error(api.post(f"/api/v1/records/membership.member/{mid}/unmask", json={}), 422, "validation_failed")
    assert_error(api.post(f"/api/v1/records/membership.member/{mid}/unmask", json={"field": "mobile", "x": 1}), 422, "validation_failed")
    assert_error(api.post(f"/api/v1/records/membership.member/{mid}/unmask", json={"field": "name"}), 400, "bad_query")
    assert_error(api.post(f"/api/v1/records/membership.member/{mid + 999}/unmask", json={"field": "mobile"}), 403, "forbidden")
    assert unmask_events(services) == before
