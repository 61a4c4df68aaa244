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
