"""The builder over HTTP: every designer action through the Flask test client, with the results checked
in the definitions, the database, the API, OpenAPI and CSV export."""
from __future__ import annotations

import io
import json
import re
import zipfile

from sqlalchemy import inspect, select

from conftest import csrf_from, login
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.storage import platform_tables as pt

MEMBER = "membership.member"
B = "/builder/e/membership.member"


def rev(client, url=B + "/") -> int:
    html = client.get(url).get_data(as_text=True)
    m = re.search(r'name="revision" value="(-?\d+)"', html)
    return int(m.group(1)) if m else 0


def post(client, url, data, **kw):
    token = csrf_from(client.get("/builder/").get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **data}, **kw)


def add_field(client, ftype, name, zh, en, **props):
    data = {"revision": rev(client), "type": ftype, "name": name, "p.label.zh": zh, "p.label.en": en, "in_list": "1", **props}
    return post(client, f"{B}/fields/new?type={ftype}", data)


def publish(client, **extra):
    r = rev(client, B + "/publish")
    return post(client, B + "/publish", {"revision": r, **extra})


def columns(services, table="membership_member"):
    with services.engine.connect() as conn:
        return {c["name"] for c in inspect(conn).get_columns(table)}


def test_builder_home_lists_entities_and_nav_link(client):
    html = client.get("/builder/").get_data(as_text=True)
    assert "membership.member" in html and "membership.level" in html
    assert 'href="/builder/"' in client.get("/home").get_data(as_text=True)


def test_add_select_field_publish_and_see_it_in_api_openapi_and_csv(client, services, api_token):
    services.records.create(MEMBER, {"name": "王五", "mobile": "13800000009", "joined_on": "2024-02-01"}, SYSTEM)
    resp = add_field(client, "single_select", "preferred_store", "常去门店", "Preferred store",
                     **{"p.options.value": ["sh", "bj"], "p.options.zh": ["上海店", "北京店"], "p.options.en": ["Shanghai", "Beijing"],
                        "p.options.color": ["#2563eb", "#16a34a"], "p.required": ""})
    assert resp.status_code == 303, resp.get_data(as_text=True)[:2000]
    draft_field = next(f for f in services_draft(services)["entity"]["fields"] if f["name"] == "preferred_store")
    assert draft_field["options"] == [{"value": "sh", "label": {"zh": "上海店", "en": "Shanghai"}, "color": "#2563eb"},
                                      {"value": "bj", "label": {"zh": "北京店", "en": "Beijing"}, "color": "#16a34a"}]
    page = client.get(B + "/publish").get_data(as_text=True)
    assert "add_column" in page and "preferred_store" in page
    assert publish(client).status_code == 303
    assert "preferred_store" in columns(services)
    # Without a restart: the API, OpenAPI and the CSV export know the field.
    api = client.application.test_client()
    headers = {"Authorization": f"Bearer {api_token}"}
    created = api.post("/api/v1/records/membership.member", json={"name": "赵六", "mobile": "13800000010", "joined_on": "2024-03-01",
                                                           "preferred_store": "sh"}, headers=headers)
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.get_json()["preferred_store"] == "sh"
    spec = api.get("/api/v1/openapi.json", headers=headers).get_json()
    assert "preferred_store" in json.dumps(spec)
    csv_text = client.get("/e/membership.member/export.csv").get_data(as_text=True)
    assert "Preferred store" in csv_text.splitlines()[0] or "常去门店" in csv_text.splitlines()[0]
    assert "上海店" in csv_text or "Shanghai" in csv_text


def services_draft(services):
    with services.engine.connect() as conn:
        return conn.execute(select(pt.builder_draft.c.documents).where(pt.builder_draft.c.entity_key == MEMBER)).scalar()


def test_property_editor_is_generated_from_the_type_schema(client):
    text_page = client.get(B + "/fields/new?type=text").get_data(as_text=True)
    assert 'name="p.max_length"' in text_page and 'name="p.pattern"' in text_page and 'name="p.help.zh"' in text_page
    link_page = client.get(B + "/fields/new?type=link").get_data(as_text=True)
    assert 'name="p.target"' in link_page and 'value="membership.level"' in link_page
    seq_page = client.get(B + "/fields/new?type=sequence").get_data(as_text=True)
    assert 'name="p.digits"' in seq_page and 'name="p.prefix"' in seq_page
    select_page = client.get(B + "/fields/new?type=single_select").get_data(as_text=True)
    assert 'name="p.options.value"' in select_page and 'name="p.options.color"' in select_page


def test_bad_property_values_are_shown_and_nothing_is_stored(client, services):
    resp = add_field(client, "integer", "visits", "到店次数", "Visits", **{"p.min": "many"})
    assert resp.status_code == 422
    assert "number" in resp.get_data(as_text=True) or "数字" in resp.get_data(as_text=True)
    assert services_draft(services) is None
    resp = add_field(client, "text", "Bad Name", "坏", "Bad")
    assert resp.status_code == 422 and services_draft(services) is None


def test_publish_refuses_an_invalid_draft_with_errors_by_field(client, services):
    # max_length must be at least 1: the meta-schema says so at publish time, pointing at the field.
    assert add_field(client, "text", "wechat_id", "微信号", "WeChat ID", **{"p.max_length": "0"}).status_code == 303
    page = client.get(B + "/publish").get_data(as_text=True)
    assert f"/fields/{len(services.store.catalog().entity('membership.member').fields)}/max_length" in page  # the added, last field
    resp = publish(client)
    assert resp.status_code == 422
    assert "wechat_id" not in columns(services)


def test_rename_reorder_retire_and_edit_through_http(client, services):
    rid = services.records.create(MEMBER, {"name": "甲", "mobile": "13800000001", "joined_on": "2024-01-01", "notes": "secret"}, SYSTEM)
    shipped_order = [x.name for x in services.store.catalog().entity(MEMBER).fields]
    above = shipped_order[shipped_order.index("address") - 1]  # the field the renamed one moves above
    r = rev(client)
    resp = post(client, B + "/fields/address", {"revision": r, "name": "home_address", "type": "text", "p.label.zh": "住址", "p.label.en": "Home address",
                                                "p.max_length": "120", "p.help.zh": "街道门牌", "p.help.en": "Street and number"})
    assert resp.status_code == 303
    assert post(client, B + "/fields/order", {"revision": rev(client), "field": "home_address", "direction": "up"}).status_code == 303
    assert post(client, B + "/fields/notes/retire", {"revision": rev(client)}).status_code == 303
    assert publish(client).status_code == 303
    catalog = services.store.catalog()
    entity = catalog.entity(MEMBER)
    f = entity.field("home_address")
    assert f.help.en == "Street and number" and f.opt("max_length") == 120
    names = [x.name for x in entity.fields]
    assert names.index("home_address") == names.index(above) - 1
    assert {"home_address", "notes"} <= columns(services) and "address" not in columns(services)
    assert "notes" not in services.queries.get(MEMBER, rid, SYSTEM)


def test_delete_field_needs_the_row_count(client, services):
    services.records.create(MEMBER, {"name": "甲", "mobile": "13800000001", "joined_on": "2024-01-01", "notes": "n1"}, SYSTEM)
    services.records.create(MEMBER, {"name": "乙", "mobile": "13800000002", "joined_on": "2024-01-01", "notes": "n2"}, SYSTEM)
    page = client.get(B + "/fields/notes/delete").get_data(as_text=True)
    assert 'id="delete-rows">2<' in page
    assert post(client, B + "/fields/notes/delete", {"revision": rev(client), "confirm_rows": "1"}).status_code == 422
    assert services_draft(services) is None
    assert post(client, B + "/fields/notes/delete", {"revision": rev(client), "confirm_rows": "2"}).status_code == 303
    # Publishing is refused without the second confirmation, and with a wrong count.
    assert publish(client).status_code == 409
    assert publish(client, confirm="1", confirm_rows="5").status_code == 409
    assert "notes" in columns(services)
    page = client.get(B + "/publish").get_data(as_text=True)
    assert 'id="risky-rows">2<' in page
    assert publish(client, confirm="1", confirm_rows="2").status_code == 303
    assert "notes" not in columns(services)


def test_stale_revision_gets_a_conflict_not_an_overwrite(client, services):
    r = rev(client)
    assert post(client, B + "/entity", {"revision": r, "label_zh": "会员A", "label_en": "Member A", "title_field": "name"}).status_code == 303
    resp = post(client, B + "/entity", {"revision": r, "label_zh": "会员B", "label_en": "Member B", "title_field": "name"})
    assert resp.status_code == 409
    error = resp.get_data(as_text=True).split('id="builder-error"', 1)[1].split("</div>", 1)[0]
    assert "admin" in error and "修订号 1" in error  # who changed it, and the current revision
    assert services_draft(services)["entity"]["label"]["zh"] == "会员A"


def test_layout_designer_sections_moves_width_and_preview(client, services):
    assert add_field(client, "text", "wechat_id", "微信号", "WeChat ID").status_code == 303
    r = rev(client)
    resp = post(client, B + "/layout/sections", {"revision": r, "id": "preferences", "label_zh": "偏好", "label_en": "Preferences",
                                                 "columns": "2", "tab": "membership"}, headers={"HX-Request": "true"})
    assert resp.status_code == 200 and 'data-section-id="preferences"' in resp.get_data(as_text=True)
    arrangement = [{"id": s["id"], "fields": [i if isinstance(i, str) else i["field"] for i in s["fields"]]}
                   for s in services_draft(services)["forms"]["default"]["sections"]]
    for s in arrangement:
        if s["id"] == "more":
            s["fields"].remove("notes")
        if s["id"] == "preferences":
            s["fields"] = ["notes", "wechat_id"]
    resp = post(client, B + "/layout/arrange", {"revision": rev(client, B + "/layout"), "arrangement": json.dumps(arrangement)},
                headers={"HX-Request": "true"})
    assert resp.status_code == 200
    assert post(client, B + "/layout/move", {"revision": rev(client, B + "/layout"), "kind": "field", "name": "wechat_id", "direction": "up"}).status_code == 303
    assert post(client, B + "/layout/fields", {"revision": rev(client, B + "/layout"), "name": "wechat_id", "span": "2"}).status_code == 303
    assert post(client, B + "/layout/move", {"revision": rev(client, B + "/layout"), "kind": "section", "name": "preferences", "direction": "up"}).status_code == 303
    preview = client.get(B + "/preview").get_data(as_text=True)
    assert 'data-section="preferences"' in preview and 'id="f-wechat_id"' in preview
    assert publish(client).status_code == 303
    form = services.store.catalog().forms[(MEMBER, "default")]
    ids = [s.id for s in form.sections]
    assert ids.index("preferences") == ids.index("more") - 1
    prefs = form.sections[ids.index("preferences")]
    assert [(f.field, f.span) for f in prefs.fields] == [("wechat_id", 2), ("notes", 1)]
    # The record form renders the new section.
    html = client.get("/e/membership.member/new").get_data(as_text=True)
    assert "Preferences" in html or "偏好" in html


def test_arrangement_naming_unknown_fields_is_refused(client, services):
    resp = post(client, B + "/layout/arrange", {"revision": 0, "arrangement": json.dumps([{"id": "identity", "fields": ["nope"]}])})
    assert resp.status_code == 422 and services_draft(services) is None


def test_create_entity_and_publish_gives_table_menu_and_pages(client, services):
    token = csrf_from(client.get("/builder/").get_data(as_text=True))
    resp = client.post("/builder/entities", data={"csrf_token": token, "app": "membership", "name": "supplier", "label_zh": "供应商",
                                                  "label_en": "Supplier", "icon": "building", "menu": "end"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/builder/e/membership.supplier/")
    r = rev(client, "/builder/e/membership.supplier/publish")
    assert client.post("/builder/e/membership.supplier/publish", data={"csrf_token": token, "revision": r}).status_code == 303
    assert "membership_supplier" in inspect(services.engine).get_table_names()
    assert "/e/membership.supplier/" in client.get("/home").get_data(as_text=True)
    assert client.get("/e/membership.supplier/").status_code == 200


def test_versions_page_and_restore(client, services):
    assert add_field(client, "text", "wechat_id", "微信号", "WeChat ID").status_code == 303
    assert publish(client).status_code == 303
    page = client.get(B + "/versions").get_data(as_text=True)
    assert "/fields/wechat_id" in page and "admin" in page
    first = min(v["id"] for v in builder_versions(services) if v["kind"] == "entity")
    plan_page = client.get(f"{B}/versions/{first}/restore").get_data(as_text=True)
    assert "drop_column" in plan_page
    token = csrf_from(plan_page)
    assert client.post(f"{B}/versions/{first}/restore", data={"csrf_token": token}).status_code == 409
    assert client.post(f"{B}/versions/{first}/restore", data={"csrf_token": token, "confirm": "1", "confirm_rows": "0"}).status_code == 303
    assert "wechat_id" not in columns(services)


def builder_versions(services):
    from crmkit.builder.service import BuilderService

    return BuilderService(services).versions(SYSTEM, MEMBER)


def test_non_builder_roles_are_refused(app, services):
    from org_support import PASSWORD, add_role, add_user

    add_role(app, "Clerk", [("read", "entity:membership.member"), ("create", "entity:membership.member")])
    add_user(app, "clerk", ["Clerk"])
    c = app.test_client()
    login(c, "clerk", PASSWORD)
    assert c.get("/builder/").status_code == 403
    assert c.get(B + "/").status_code == 403
    assert 'href="/builder/"' not in c.get("/home").get_data(as_text=True)
    token = csrf_from(c.get("/home").get_data(as_text=True))
    resp = c.post(B + "/fields/new?type=text", data={"csrf_token": token, "revision": 0, "name": "x", "p.label.zh": "x"})
    assert resp.status_code == 403 and services_draft(services) is None
    # A designer role with the builder permission on members may open members, not levels.
    add_role(app, "Designer", [("read", "entity:membership.member"), ("builder", "entity:membership.member")])
    add_user(app, "designer", ["Designer"])
    d = app.test_client()
    login(d, "designer", PASSWORD)
    assert d.get(B + "/").status_code == 200
    assert d.get("/builder/e/membership.level/").status_code == 403


def test_builder_actions_are_audited(client, services):
    assert add_field(client, "text", "wechat_id", "微信号", "WeChat ID").status_code == 303
    assert publish(client).status_code == 303
    with services.engine.connect() as conn:
        rows = conn.execute(select(pt.audit.c.action, pt.audit.c.actor_id).where(pt.audit.c.category == "builder")).all()
    assert [r.action for r in rows] == ["add_field", "publish"] and all(r.actor_id for r in rows)


def test_config_zip_export_and_import_round_trip(client, services):
    data = client.get("/builder/config/export.zip").data
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "crmkit-config/membership/entities/member.json" in names
    # Change the member label in the zip and import it: plan first, then apply.
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w") as dst:
        for n in src.namelist():
            body = src.read(n)
            if n.endswith("entities/member.json"):
                doc = json.loads(body)
                doc["label"]["en"] = "Club member"
                body = json.dumps(doc).encode()
            dst.writestr(n, body)
    token = csrf_from(client.get("/builder/config").get_data(as_text=True))
    dry = client.post("/builder/config/import", data={"csrf_token": token, "file": (io.BytesIO(buf.getvalue()), "c.zip")},
                      content_type="multipart/form-data")
    assert dry.status_code == 200 and "entity:membership.member" in dry.get_data(as_text=True)
    assert services.store.catalog().entity(MEMBER).label.en == "Member"
    done = client.post("/builder/config/import", data={"csrf_token": token, "apply": "1", "file": (io.BytesIO(buf.getvalue()), "c.zip")},
                       content_type="multipart/form-data")
    assert done.status_code == 303
    assert services.store.catalog().entity(MEMBER).label.en == "Club member"


def test_config_import_rejects_paths_outside_the_zip(client, services):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.json", "{}")
    token = csrf_from(client.get("/builder/config").get_data(as_text=True))
    resp = client.post("/builder/config/import", data={"csrf_token": token, "apply": "1", "file": (io.BytesIO(buf.getvalue()), "c.zip")},
                       content_type="multipart/form-data")
    assert resp.status_code == 422


def test_list_view_designer_sets_columns_sort_and_page_size(client, services):
    page = client.get(B + "/list").get_data(as_text=True)
    assert 'name="columns" value="card_no" checked' in page
    resp = post(client, B + "/list", {"revision": rev(client, B + "/list"), "order": "name,mobile,email,card_no",
                                      "columns": ["name", "mobile", "email"], "sort_field": "name", "sort_dir": "asc", "page_size": "50"})
    assert resp.status_code == 303
    assert publish(client).status_code == 303
    view = services.store.catalog().views[(MEMBER, "default")]
    assert view.columns == ("name", "mobile", "email") and view.page_size == 50
    assert [(s.field, s.descending) for s in view.default_sort] == [("name", False)]
    bad = post(client, B + "/list", {"revision": rev(client, B + "/list"), "columns": ["nope"]})
    assert bad.status_code == 422
