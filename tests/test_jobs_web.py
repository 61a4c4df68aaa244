"""Jobs pages: list (admins all, users their own), status page with polled progress, cancel with CSRF, zh/en."""
from __future__ import annotations

from auth_support import STAFF_PASSWORD, add_user
from conftest import csrf_from, login
from crmkit.runtime.actor import Actor


def submit(app, kind, actor_id, payload=None):
    services = app.extensions["crmkit"]
    if kind not in services.jobs.registry:
        services.jobs.registry.register(kind, lambda ctx, p: ctx.progress(2, 5, "halfway") or {"ok": True})
    return services.jobs.submit(kind, payload or {}, actor=Actor(id=actor_id, username="x"))


def test_status_page_polls_until_finished_and_shows_progress(app, client):
    jid = submit(app, "test.page", 1)
    page = client.get(f"/jobs/{jid}").get_data(as_text=True)
    assert 'id="job-status"' in page and 'hx-trigger="every 1s"' in page and "test.page" in page
    assert "job-cancel" in page
    frag = client.get(f"/jobs/{jid}", headers={"HX-Request": "true", "HX-Target": "job-status"}).get_data(as_text=True)
    assert frag.lstrip().startswith('<div id="job-status"') and "<html" not in frag
    services = app.extensions["crmkit"]
    assert services.jobs.execute(jid) == "succeeded"
    frag = client.get(f"/jobs/{jid}", headers={"HX-Request": "true", "HX-Target": "job-status"}).get_data(as_text=True)
    assert "every 1s" not in frag and 'aria-valuenow="100"' in frag and "halfway" in frag and "job-cancel" not in frag


def test_failed_job_shows_error_and_retries(app, client):
    services = app.extensions["crmkit"]
    services.jobs.registry.register("test.broken", lambda ctx, p: 1 / 0, max_attempts=2)
    jid = services.jobs.submit("test.broken", {}, actor=Actor(id=1, username="admin"))
    services.jobs.execute(jid)
    page = client.get(f"/jobs/{jid}").get_data(as_text=True)
    assert "ZeroDivisionError: division by zero" in page and "1 / 2" in page and "Traceback" in page  # admin sees the traceback
    client.get("/locale/zh")
    page = client.get(f"/jobs/{jid}").get_data(as_text=True)
    assert "下次重试" in page and "排队中" in page and "最近一次错误" in page


def test_cancel_needs_csrf_and_cancels(app, client):
    jid = submit(app, "test.cancel", 1)
    assert client.post(f"/jobs/{jid}/cancel").status_code == 400
    assert app.extensions["crmkit"].jobs.get(jid)["status"] == "queued"
    token = csrf_from(client.get(f"/jobs/{jid}").get_data(as_text=True))
    resp = client.post(f"/jobs/{jid}/cancel", data={"csrf_token": token})
    assert resp.status_code == 302
    assert app.extensions["crmkit"].jobs.get(jid)["status"] == "cancelled"
    page = client.get(f"/jobs/{jid}").get_data(as_text=True)
    assert "Cancelled" in page or "已取消" in page
    resp = client.post(f"/jobs/{jid}/cancel", data={"csrf_token": token}, follow_redirects=True)
    assert "already finished" in resp.get_data(as_text=True) or "已经结束" in resp.get_data(as_text=True)


def test_users_see_only_their_jobs(app, client):
    uid = add_user(app, "clerk", role="Public")
    mine = submit(app, "test.mine", uid)
    admins = submit(app, "test.admins", 1)
    other = app.test_client()
    login(other, "clerk", STAFF_PASSWORD)
    page = other.get("/jobs/").get_data(as_text=True)
    assert f'/jobs/{mine}"' in page and f'/jobs/{admins}"' not in page
    assert other.get(f"/jobs/{admins}").status_code == 404
    token = csrf_from(other.get(f"/jobs/{mine}").get_data(as_text=True))
    assert other.post(f"/jobs/{admins}/cancel", data={"csrf_token": token}).status_code == 404
    assert app.extensions["crmkit"].jobs.get(admins)["status"] == "queued"
    page = client.get("/jobs/").get_data(as_text=True)
    assert f'/jobs/{mine}"' in page and f'/jobs/{admins}"' in page and 'hx-trigger="every 2s"' in page
    assert client.get("/jobs/?status=succeeded").get_data(as_text=True).count("/jobs/1\"") == 0
    assert client.get("/jobs/abc").status_code == 404
