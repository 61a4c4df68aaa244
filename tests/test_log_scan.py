"""No log line carries an unmasked ID number or mobile number, whatever the request does with them."""
import logging

from crmkit.runtime.actor import SYSTEM
from policy_support import mask_member_fields

MOBILE = "13987654321"
ID_NUMBER = "11010519491231002X"


def test_logs_never_contain_personal_numbers(app, client, csrf_token, api_token, services, caplog):
    caplog.set_level(logging.DEBUG)
    mask_member_fields(services)
    mid = services.records.create("membership.member", {"name": "周杰", "mobile": MOBILE, "id_number": ID_NUMBER,
                                                         "joined_on": "2024-05-01"}, SYSTEM)
    auth = {"Authorization": f"Bearer {api_token}"}
    # Reads, searches, exports, a validation failure echoing the number, a duplicate, a bad filter and an unmask.
    client.get(f"/e/membership.member/{mid}")
    client.get(f"/e/membership.member/?q={MOBILE}")
    client.get("/e/membership.member/export.csv")
    client.get(f"/api/v1/records/membership.member?search={MOBILE}", headers=auth)
    client.get(f"/api/v1/records/membership.member/{mid}", headers=auth)
    client.post("/api/v1/records/membership.member", json={"name": "重复", "mobile": MOBILE, "joined_on": "2024-05-01"}, headers=auth)
    client.post("/api/v1/records/membership.member", json={"name": "坏", "mobile": MOBILE + "9", "id_number": ID_NUMBER[:-1] + "1",
                                                           "joined_on": "2024-05-01"}, headers=auth)
    client.get('/api/v1/records/membership.member?filter={"field":"mobile","op":"eq","value":"' + MOBILE + '"', headers=auth)
    client.post(f"/e/membership.member/{mid}/unmask/mobile", headers={"HX-Request": "true", "X-CSRFToken": csrf_token})
    client.post("/api/v1/security/login", json={"username": MOBILE, "password": ID_NUMBER, "provider": "db"})  # failed login, audited
    logged = "\n".join(r.getMessage() + (str(r.exc_info) if r.exc_info else "") for r in caplog.records)
    for secret in (MOBILE, ID_NUMBER, ID_NUMBER[:-1] + "1", MOBILE + "9"):
        assert secret not in logged


def test_redaction_masks_numbers_in_messages_and_tracebacks():
    import logging

    from crmkit.runtime.auth.log_redaction import PersonalNumberFilter, redact

    assert redact(f"user {MOBILE} id {ID_NUMBER} order 2024050112345678") == \
        "user 139****4321 id 110105********002X order 2024050112345678"
    try:
        raise ValueError(f"duplicate mobile {MOBILE}")
    except ValueError:
        import sys

        record = logging.LogRecord("crmkit.runtime.web.errors", logging.ERROR, __file__, 1, "failed for %s", (MOBILE,), sys.exc_info())
    PersonalNumberFilter().filter(record)
    assert MOBILE not in record.getMessage() and MOBILE not in record.exc_text and "139****4321" in record.exc_text
