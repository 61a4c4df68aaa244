"""The import engine: encodings, XLSX merged headers and dates, modes, dedupe, dry run, policy, audit and events."""
from __future__ import annotations

import datetime as dt
import decimal

import pytest
from sqlalchemy import func, select

from crmkit.runtime.audit import flush_sealer
from crmkit.runtime.audit.verify import verify_chain
from crmkit.runtime.errors import PermissionDenied, ValidationFailed
from crmkit.runtime.imports import ImportEngine, auto_map, open_table
from crmkit.runtime.imports.actor import actor_by_username
from crmkit.runtime.imports.tables import import_error, import_run
from crmkit.runtime.storage import platform_tables as pt

from import_support import HEADERS, member_rows, members, write_csv


@pytest.fixture
def admin(services):
    return actor_by_username(services.engine, "admin")


def run_file(services, admin, path, **kw):
    engine = ImportEngine(services)
    dry = kw.pop("dry_run", False)
    run_id = engine.create_run(path, "membership.member", admin, **kw)
    summary = engine.run(run_id, admin, dry_run=dry)
    return engine, run_id, summary


def problems(services, run_id):
    with services.engine.connect() as conn:
        return conn.execute(select(import_error).where(import_error.c.run_id == run_id).order_by(import_error.c.row_number)).mappings().all()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_encodings_are_detected_and_every_row_lands(services, admin, tmp_path, encoding):
    path = write_csv(tmp_path / "m.csv", member_rows(30), encoding=encoding)
    src = open_table(path)
    assert src.headers == HEADERS
    _, run_id, s = run_file(services, admin, path, batch_size=7)
    assert (s.status, s.created, s.errors, s.total, s.checkpoint) == ("succeeded", 30, 0, 30, 31)
    got = members(services)
    assert len(got) == 30
    m = got["13900000001"]
    assert m["name"] == "会员00001" and m["joined_on"] == dt.date(2024, 3, 5) and m["status"] == "active"
    assert decimal.Decimal(m["total_spent"]) == decimal.Decimal("1.50") and m["card_no"].startswith("VIP")
    assert got["13900000000"]["status"] == "lost"  # the zh label 挂失 maps to its option value
    assert len({r["card_no"] for r in got.values()}) == 30  # sequence numbers reserved as a block, all distinct


def test_auto_mapping_by_label_name_and_similarity(services):
    catalog = services.store.catalog()
    entity = catalog.entity("membership.member")
    got = auto_map(["姓名", "手机", "E-mail", "姓名 (2)", "入会日", "不相关"], catalog, entity)
    assert got["姓名"] == "name" and got["手机"] == "mobile" and got["E-mail"] == "email"
    assert got["入会日"] == "joined_on" and got["不相关"] is None and got["姓名 (2)"] is None  # name is already taken


def test_xlsx_merged_headers_and_excel_dates(services, admin, tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "会员"
    ws.append(["姓名", "联系方式", None, "入会日期", "累计消费"])
    ws.append([None, "手机号", "邮箱", None, None])
    ws.merge_cells("A1:A2")
    ws.merge_cells("B1:C1")
    ws.merge_cells("D1:D2")
    ws.merge_cells("E1:E2")
    ws.append(["张三", 13800000001, "z@example.com", dt.datetime(2023, 7, 1), 12.5])
    ws.append(["李四", "13800000002", None, 45123, 0])  # an Excel date serial in a plain number cell
    ws.append([None, None, None, None, None])  # blank rows are not data
    ws.append(["王五", "13800000003", "w@example.com", "2022年1月9日", "7"])
    path = tmp_path / "m.xlsx"
    wb.save(path)
    src = open_table(path)
    assert src.header_rows == 2 and src.headers == ["姓名", "手机号", "邮箱", "入会日期", "累计消费"]
    _, run_id, s = run_file(services, admin, path)
    assert (s.created, s.errors) == (3, 0)
    got = members(services)
    assert got["13800000001"]["joined_on"] == dt.date(2023, 7, 1)
    assert got["13800000002"]["joined_on"] == dt.date(1899, 12, 30) + dt.timedelta(days=45123)
    assert got["13800000003"]["joined_on"] == dt.date(2022, 1, 9)
    with services.engine.connect() as conn:
        assert conn.execute(select(import_run.c.checkpoint).where(import_run.c.id == run_id)).scalar() == 6


def test_errors_are_reported_per_row_and_column_and_nothing_is_lost(services, admin, tmp_path):
    rows = member_rows(6)
    rows[1][1] = "12345"  # bad mobile
    rows[2][3] = "not a date"
    rows[3][0] = ""  # name is required
    path = write_csv(tmp_path / "m.csv", rows)
    _, run_id, s = run_file(services, admin, path, batch_size=4)
    assert (s.created, s.errors, s.skipped) == (3, 3, 0)
    probs = problems(services, run_id)
    assert [p["row_number"] for p in probs] == [3, 4, 5]
    assert probs[0]["messages"][0]["column"] == "手机号" and probs[0]["cells"] == rows[1]
    assert probs[1]["messages"][0]["column"] == "入会日期" and "YYYY-MM-DD" in probs[1]["messages"][0]["message"]["en"]
    assert probs[2]["messages"][0]["column"] == "姓名" and probs[2]["messages"][0]["message"]["zh"] == "此项必填。"
    assert len(members(services)) == 3


def test_dry_run_counts_and_writes_nothing(services, admin, tmp_path):
    rows = member_rows(10) + [member_rows(1, start=3)[0]]  # a duplicate of row 5
    rows[0][1] = "bad"
    path = write_csv(tmp_path / "m.csv", rows)
    with services.engine.connect() as conn:
        before = [conn.execute(select(func.count()).select_from(t)).scalar() for t in (pt.audit, pt.outbox, pt.sequence)]
    engine, run_id, s = run_file(services, admin, path, dry_run=True, key="mobile", batch_size=3)
    assert (s.created, s.errors, s.skipped, s.total) == (9, 1, 1, 11)
    assert [(p.row, p.kind) for p in s.problems] == [(2, "error"), (12, "skip")]
    assert "row 5" in s.problems[1].messages[0]["message"]["en"]
    with services.engine.connect() as conn:
        after = [conn.execute(select(func.count()).select_from(t)).scalar() for t in (pt.audit, pt.outbox, pt.sequence)]
        assert conn.execute(select(func.count()).select_from(import_error)).scalar() == 0
        assert conn.execute(select(import_run.c.status, import_run.c.checkpoint).where(import_run.c.id == run_id)).one() == ("pending", 0)
    assert before == after and members(services) == {}


def test_modes_and_dedupe_against_the_database_and_the_file(services, admin, tmp_path):
    path = write_csv(tmp_path / "a.csv", member_rows(5))
    run_file(services, admin, path)
    first = members(services)
    # insert only: existing keys are skipped, a duplicate inside the file too, new rows are created
    rows = member_rows(7)
    rows[0][0] = "改名"
    rows.append(list(rows[6]))
    _, run_id, s = run_file(services, admin, write_csv(tmp_path / "b.csv", rows), mode="insert", key="mobile")
    assert (s.created, s.updated, s.skipped, s.errors) == (2, 0, 6, 0)
    assert members(services)["13900000000"]["name"] == "会员00000"
    kinds = [(p["row_number"], p["kind"]) for p in problems(services, run_id)]
    assert kinds == [(2, "skip"), (3, "skip"), (4, "skip"), (5, "skip"), (6, "skip"), (9, "skip")]
    # update only: existing rows change (row_version bumps), unknown keys are skipped
    rows = member_rows(2) + member_rows(1, start=50)
    rows[0][0], rows[1][6] = "新名字", "新备注"
    _, _, s = run_file(services, admin, write_csv(tmp_path / "c.csv", rows), mode="update", key="mobile")
    assert (s.created, s.updated, s.skipped) == (0, 2, 1)
    got = members(services)
    assert got["13900000000"]["name"] == "新名字" and got["13900000000"]["row_version"] == 2
    assert got["13900000001"]["notes"] == "新备注" and "13900000050" not in got
    assert got["13900000000"]["card_no"] == first["13900000000"]["card_no"]
    # upsert: both
    rows = member_rows(1) + member_rows(1, start=60)
    rows[0][5] = "999.00"
    _, _, s = run_file(services, admin, write_csv(tmp_path / "d.csv", rows), mode="upsert", key="mobile")
    assert (s.created, s.updated) == (1, 1)
    got = members(services)
    assert decimal.Decimal(got["13900000000"]["total_spent"]) == 999 and "13900000060" in got
    with services.engine.connect() as conn:
        topics = dict(conn.execute(select(pt.outbox.c.topic, func.count()).group_by(pt.outbox.c.topic)).all())
        audits = dict(conn.execute(select(pt.audit.c.action, func.count()).where(pt.audit.c.category == "record").group_by(pt.audit.c.action)).all())
        assert verify_chain(conn).ok
    assert topics == {"record.created": 8, "record.updated": 3} and audits == {"create": 8, "update": 3}


def test_upsert_by_sequence_card_number(services, admin, tmp_path):
    run_file(services, admin, write_csv(tmp_path / "a.csv", member_rows(2)))
    cards = {m: r["card_no"] for m, r in members(services).items()}
    rows = [[cards["13900000001"], "改了名字", "13900000001"]]
    _, _, s = run_file(services, admin, write_csv(tmp_path / "b.csv", rows, headers=["会员卡号", "姓名", "手机号"]), mode="update", key="card_no")
    assert (s.updated, s.errors) == (1, 0)
    assert members(services)["13900000001"]["name"] == "改了名字"


def test_audit_entries_match_the_single_record_path(services, admin, tmp_path):
    run_file(services, admin, write_csv(tmp_path / "a.csv", member_rows(1)))
    services.records.create("membership.member", {"name": "会员00001", "mobile": "13900000001", "email": "m1@example.com", "joined_on": "2024-03-05",
                                                  "status": "active", "total_spent": "1.50", "notes": "备注 1"}, admin)
    flush_sealer(services.engine)  # ordered by the chain: wait for PostgreSQL's background seal
    with services.engine.connect() as conn:
        rows = conn.execute(select(pt.audit.c.changes).where(pt.audit.c.category == "record").order_by(pt.audit.c.seq)).scalars().all()
        events = conn.execute(select(pt.outbox.c.payload).order_by(pt.outbox.c.id)).scalars().all()
    batch, single = rows
    assert set(batch) == set(single) and batch["name"] == [None, "会员00000"]
    assert set(events[0]["changes"]) == set(events[1]["changes"])


def test_policy_import_permission_and_field_rules(app, tmp_path):
    from policy_support import build_scenario

    sc = build_scenario(app)
    services = sc.services
    engine = ImportEngine(services)
    path = write_csv(tmp_path / "a.csv", member_rows(2))
    desk = actor_by_username(services.engine, "desk_sh")
    with pytest.raises(PermissionDenied):  # FrontDesk may create but has no import permission
        engine.create_run(path, "membership.member", desk)
    from crmkit.runtime.permissions.admin import PermissionAdmin

    perms = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
    member = services.store.catalog().entity("membership.member")
    perms.set_actions(sc.roles["FrontDesk"], member, {"read", "create", "update", "import"}, actor_id=None)
    desk = actor_by_username(services.engine, "desk_sh")
    before = len(members(services))
    # total_spent is read-only for FrontDesk: a row that sets it is refused, a row without it is imported
    rows = member_rows(2)
    rows[1][5] = ""
    run_id = engine.create_run(write_csv(tmp_path / "b.csv", rows), "membership.member", desk)
    s = engine.run(run_id, desk)
    assert (s.created, s.errors) == (1, 1)
    msg = problems(services, run_id)[0]["messages"][0]
    assert msg["column"] == "累计消费" and msg["message"]["zh"] == "你没有修改此项的权限。"
    assert len(members(services)) == before + 1


def test_bad_options_are_refused_before_anything_runs(services, admin, tmp_path):
    path = write_csv(tmp_path / "a.csv", member_rows(1))
    engine = ImportEngine(services)
    with pytest.raises(ValidationFailed) as e:
        engine.create_run(path, "membership.member", admin, mode="update")
    assert "key" in e.value.field_errors
    with pytest.raises(ValidationFailed):
        engine.create_run(path, "membership.member", admin, mode="upsert", key="name")  # not unique
    with pytest.raises(ValidationFailed):
        engine.create_run(path, "membership.member", admin, mapping={"姓名": "name", "手机号": "name"})
    bad = tmp_path / "x.csv"
    bad.write_bytes(b"\xff\xfe\x00\x00garbage\x80\x81")
    with pytest.raises(ValidationFailed):
        engine.create_run(bad, "membership.member", admin)
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(import_run)).scalar() == 0


def test_cancel_stops_after_the_current_batch(services, admin, tmp_path):
    engine = ImportEngine(services)
    run_id = engine.create_run(write_csv(tmp_path / "a.csv", member_rows(25)), "membership.member", admin, batch_size=10)
    calls = []
    s = engine.run(run_id, admin, cancel_requested=lambda: calls.append(1) or len(calls) >= 1)
    assert s.status == "cancelled" and s.created == 10 and len(members(services)) == 10
    info = engine.run_info(run_id)
    assert info["status"] == "cancelled" and info["checkpoint"] == 11


def test_error_report_round_trip_csv_and_xlsx(services, admin, tmp_path):
    import csv
    import io

    from openpyxl import load_workbook

    from crmkit.runtime.imports.report import report_csv, report_xlsx

    rows = member_rows(4)
    rows[1][1] = "12345"
    rows[3][3] = "2024-13-45"
    rows[2][6] = "=HYPERLINK(1)"
    rows[2][1] = "bad"
    _, run_id, s = run_file(services, admin, write_csv(tmp_path / "a.csv", rows))
    assert (s.created, s.errors) == (1, 3)
    text = "".join(report_csv(services.engine, run_id, "zh"))
    assert text.startswith("\ufeff")
    got = list(csv.reader(io.StringIO(text[1:])))
    assert got[0] == HEADERS + ["错误信息"]
    assert [r[:-1] for r in got[1:]] == [rows[1], [*rows[2][:6], "'=HYPERLINK(1)"], rows[3]]
    assert got[1][-1].startswith("[3] 手机号: ")
    wb = load_workbook(io.BytesIO(report_xlsx(services.engine, run_id, "en")), read_only=True)
    x = [list(r) for r in wb.active.iter_rows(values_only=True)]
    assert x[0][-1] == "Errors" and len(x) == 4 and x[1][1] == "12345"
    # fix the rows in the report and upload it again: the error column is not mapped, the rest imports
    fixed = [r[:-1] for r in got[1:]]
    fixed[0][1], fixed[1][1], fixed[1][6], fixed[2][3] = "13911111111", "13922222222", "ok", "2024-12-31"
    path = tmp_path / "fixed.csv"
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh)
        w.writerow(got[0])
        w.writerows([*r, "old error"] for r in fixed)
    _, _, s = run_file(services, admin, path)
    assert (s.created, s.errors) == (3, 0) and len(members(services)) == 4


def test_job_handler_reports_progress_and_honours_cancel(services, admin, tmp_path):
    from crmkit.runtime.imports.job import JOB_KIND, register_import_jobs, run_import

    class Registry:
        def __init__(self):
            self.handlers = {}

        def register(self, kind, handler):
            self.handlers[kind] = handler

    reg = Registry()
    register_import_jobs(reg)
    assert reg.handlers == {JOB_KIND: run_import} and JOB_KIND == "import.run"

    class Ctx:
        def __init__(self, cancel_after=None):
            self.services, self.calls, self.cancel_after = services, [], cancel_after

        def progress(self, done, total, message=None):
            self.calls.append((done, total))

        def cancel_requested(self):
            return self.cancel_after is not None and len(self.calls) >= self.cancel_after

    engine = ImportEngine(services)
    run_id = engine.create_run(write_csv(tmp_path / "a.csv", member_rows(9)), "membership.member", admin, batch_size=4)
    ctx = Ctx()
    out = run_import(ctx, {"run_id": run_id})
    assert out["status"] == "succeeded" and out["created"] == 9 and ctx.calls == [(4, 9), (8, 9), (9, 9)]
    assert run_import(Ctx(), {"run_id": run_id})["created"] == 9  # a retried job finds the run finished: nothing twice
    run_id = engine.create_run(write_csv(tmp_path / "b.csv", member_rows(9, start=100)), "membership.member", admin, batch_size=4)
    out = run_import(Ctx(cancel_after=1), {"run_id": run_id})
    assert out["status"] == "cancelled" and out["created"] == 4 and len(members(services)) == 13


def test_links_are_matched_by_title_or_id(services, admin, tmp_path):
    gold = services.records.create("membership.level", {"name": "金卡", "code": "GOLD", "level_value": 30}, admin)
    rows = [["甲", "13900000001", "2024-01-01", "金卡"], ["乙", "13900000002", "2024-01-01", str(gold)], ["丙", "13900000003", "2024-01-01", "钻石卡"]]
    _, run_id, s = run_file(services, admin, write_csv(tmp_path / "a.csv", rows, headers=["姓名", "手机号", "入会日期", "会员等级"]))
    assert (s.created, s.errors) == (2, 1)
    got = members(services)
    assert got["13900000001"]["level"] == gold == got["13900000002"]["level"]
    assert "钻石卡" in problems(services, run_id)[0]["messages"][0]["message"]["zh"]


def test_limited_dry_run_and_a_failed_run_resumes(services, admin, tmp_path):
    engine = ImportEngine(services)
    run_id = engine.create_run(write_csv(tmp_path / "a.csv", member_rows(10)), "membership.member", admin, batch_size=3)
    s = engine.dry_run(run_id, admin, limit=4)
    assert (s.checked, s.total, s.created) == (4, 10, 4) and members(services) == {}
    s = engine.run(run_id, admin, cancel_requested=lambda: True)
    assert s.created == 3
    with services.engine.begin() as conn:  # as if the worker had lost its database connection
        conn.execute(import_run.update().where(import_run.c.id == run_id).values(status="failed", message="connection lost"))
    s = engine.run(run_id, admin)
    assert s.status == "succeeded" and s.created == 10 and len(members(services)) == 10


def test_xlsx_chosen_sheet_and_a_missing_one(services, admin, tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.title = "说明"
    wb.active.append(["这是说明页"])
    ws = wb.create_sheet("会员")
    ws.append(["姓名", "手机号", "入会日期"])
    ws.append(["赵六", "13700000001", dt.date(2024, 2, 29)])
    path = tmp_path / "two.xlsx"
    wb.save(path)
    assert open_table(path).sheets == ["说明", "会员"] and open_table(path).headers == ["这是说明页"]
    with pytest.raises(ValidationFailed) as e:
        open_table(path, sheet="没有")
    assert "sheet" in e.value.field_errors
    _, _, s = run_file(services, admin, path, sheet="会员")
    assert s.created == 1 and members(services)["13700000001"]["joined_on"] == dt.date(2024, 2, 29)


def test_rows_without_the_key_are_created_in_insert_and_upsert_but_not_matched_in_update(services, admin, tmp_path):
    from policy_support import valid_id_number

    rows = [["甲", "13900000001", "2024-01-01", valid_id_number(1)], ["乙", "13900000002", "2024-01-01", ""]]
    headers = ["姓名", "手机号", "入会日期", "身份证号"]
    _, _, s = run_file(services, admin, write_csv(tmp_path / "a.csv", rows, headers=headers), mode="upsert", key="id_number")
    assert (s.created, s.errors) == (2, 0)
    rows = [["甲改", "13900000001", "2024-01-01", valid_id_number(1)], ["乙改", "13900000002", "2024-01-01", ""]]
    _, run_id, s = run_file(services, admin, write_csv(tmp_path / "b.csv", rows, headers=headers), mode="update", key="id_number")
    assert (s.updated, s.errors) == (1, 1)
    got = members(services)
    assert got["13900000001"]["name"] == "甲改" and got["13900000002"]["name"] == "乙"
    assert problems(services, run_id)[0]["messages"][0]["column"] == "身份证号"
