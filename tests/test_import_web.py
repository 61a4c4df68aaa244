"""The import wizard pages: upload → mapping → options → dry run → start → progress → error report."""
from __future__ import annotations

import csv
import io
import re

from sqlalchemy import func, select

from crmkit.runtime.imports import ImportEngine
from crmkit.runtime.imports.actor import actor_by_username
from crmkit.runtime.imports.mapping import saved_mappings
from crmkit.runtime.imports.tables import import_run

from conftest import csrf_from, login
from import_support import HEADERS, member_rows, members


def csv_bytes(rows, headers=HEADERS, encoding="utf-8"):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(headers)
    w.writerows(rows)
    return buf.getvalue().encode(encoding)


def upload(client, data: bytes, name="会员.csv"):
    page = client.get("/e/membership.member/import")
    assert page.status_code == 200
    token = csrf_from(page.get_data(as_text=True))
    return client.post("/e/membership.member/import", data={"csrf_token": token, "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def run_id_of(resp) -> int:
    return int(re.search(r"/imports/(\d+)/", resp.headers["Location"]).group(1))


def test_the_wizard_end_to_end(app, client, services):
    rows = member_rows(6)
    rows[2][1] = "bad-mobile"
    listing = client.get("/e/membership.member/").get_data(as_text=True)
    assert 'href="/e/membership.member/import"' in listing
    resp = upload(client, csv_bytes(rows, encoding="gbk"))
    assert resp.status_code == 302
    rid = run_id_of(resp)
    page = client.get(f"/imports/{rid}/mapping").get_data(as_text=True)
    assert '<div class="sample">会员00000</div>' in page and '<div class="sample">13900000001</div>' in page
    assert 'value="mobile" selected' in page and "对应字段" in page
    token = csrf_from(page)
    form = {"csrf_token": token, **{f"col_{i}": f for i, f in enumerate(["name", "mobile", "email", "joined_on", "status", "total_spent", ""])},
            "save_name": "门店模板"}
    resp = client.post(f"/imports/{rid}/mapping", data=form)
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/imports/{rid}/options")
    assert saved_mappings(services.engine, "membership.member")["门店模板"]["手机号"] == "mobile"
    page = client.get(f"/imports/{rid}/options").get_data(as_text=True)
    resp = client.post(f"/imports/{rid}/options", data={"csrf_token": csrf_from(page), "mode": "upsert", "key": "mobile", "action": "dry_run"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "试导入结果" in html and "开始导入" in html
    assert re.search(r'<span class="count">5</span>新增', html) and "bad-mobile" not in html and ">4<" in html  # row 4 has the error
    assert members(services) == {}  # the dry run wrote nothing
    resp = client.post(f"/imports/{rid}/options", data={"csrf_token": csrf_from(html), "mode": "upsert", "key": "mobile", "action": "start"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/imports/{rid}")
    page = client.get(f"/imports/{rid}").get_data(as_text=True)
    assert 'data-status="pending"' in page and "等待后台任务执行" in page and 'hx-trigger="every 1s"' in page
    # No job runner is composed yet: the worker's part is played here by the engine (see imports/submit.py).
    admin = actor_by_username(services.engine, "admin")
    ImportEngine(services).run(rid, admin)
    frag = client.get(f"/imports/{rid}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert frag.lstrip().startswith('<div id="import-status"') and 'data-status="succeeded"' in frag and "every 1s" not in frag
    assert '<span class="count" data-count="created">5</span>' in frag and '<span class="count" data-count="errors">1</span>' in frag
    assert len(members(services)) == 5
    report = client.get(f"/imports/{rid}/errors.csv")
    got = list(csv.reader(io.StringIO(report.get_data(as_text=True)[1:])))
    assert got[0] == HEADERS + ["错误信息"] and got[1][:-1] == rows[2]
    assert client.get(f"/imports/{rid}/errors.xlsx").status_code == 200
    # settings cannot change once started
    assert client.get(f"/imports/{rid}/mapping").status_code == 302


def test_bad_uploads_and_bad_settings_are_explained(client, services):
    resp = upload(client, b"\x00\x01", name="x.pdf")
    assert resp.status_code == 422 and "请上传 .csv 或 .xlsx 文件" in resp.get_data(as_text=True)
    resp = upload(client, b"", name="empty.csv")
    assert resp.status_code == 422 and "文件为空" in resp.get_data(as_text=True)
    rid = run_id_of(upload(client, csv_bytes(member_rows(1))))
    page = client.get(f"/imports/{rid}/mapping").get_data(as_text=True)
    resp = client.post(f"/imports/{rid}/mapping", data={"csrf_token": csrf_from(page), "col_0": "name", "col_1": "name"})
    assert resp.status_code == 422 and "已由" in resp.get_data(as_text=True)
    page = client.get(f"/imports/{rid}/options").get_data(as_text=True)
    resp = client.post(f"/imports/{rid}/options", data={"csrf_token": csrf_from(page), "mode": "update", "key": "", "action": "start"})
    assert resp.status_code == 422 and "更新需要选择一个匹配记录的字段" in resp.get_data(as_text=True)
    with services.engine.connect() as conn:
        assert conn.execute(select(import_run.c.status).where(import_run.c.id == rid)).scalar() == "draft"
    # CSRF is required
    assert client.post(f"/imports/{rid}/options", data={"mode": "insert", "action": "start"}).status_code == 400


def test_the_wizard_needs_the_import_permission(app, services):
    from policy_support import PASSWORD, build_scenario

    build_scenario(app)
    c = app.test_client()
    login(c, "desk_sh", PASSWORD)
    assert 'href="/e/membership.member/import"' not in c.get("/e/membership.member/").get_data(as_text=True)
    assert c.get("/e/membership.member/import").status_code == 403
    admin = app.test_client()
    login(admin)
    rid = run_id_of(upload(admin, csv_bytes(member_rows(1))))
    assert c.get(f"/imports/{rid}/mapping").status_code == 403
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(import_run)).scalar() == 1


def test_cancel_from_the_progress_page(client, services):
    rid = run_id_of(upload(client, csv_bytes(member_rows(30))))
    page = client.get(f"/imports/{rid}/options").get_data(as_text=True)
    resp = client.post(f"/imports/{rid}/options", data={"csrf_token": csrf_from(page), "mode": "insert", "key": "", "action": "start"})
    assert resp.status_code == 302
    page = client.get(f"/imports/{rid}").get_data(as_text=True)
    assert client.post(f"/imports/{rid}/cancel", data={"csrf_token": csrf_from(page)}).status_code == 302
    with services.engine.begin() as conn:
        conn.execute(import_run.update().where(import_run.c.id == rid).values(batch_size=10))
    summary = ImportEngine(services).run(rid, actor_by_username(services.engine, "admin"))
    assert summary.status == "cancelled" and len(members(services)) == 10  # stopped cleanly after the batch in flight
    page = client.get(f"/imports/{rid}").get_data(as_text=True)
    assert 'data-status="cancelled"' in page and "every 1s" not in page
