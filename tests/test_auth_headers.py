"""Security headers (CSP with nonces, no-store), cookie flags, safe redirects, and the secret-key check."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from auth_support import make_auth_app, post_login  # noqa: F401

from crmkit.runtime.auth.redirects import is_safe_path, local_path_of
from crmkit.runtime.config import ConfigError, Settings

OPEN_REDIRECTS = [
    "//evil.example", "///evil.example", "////evil.example/x", "/\\evil.example", "\\\\evil.example", "/\\/evil.example",
    "https://evil.example/", "http://evil.example", "HTTPS://evil.example", "http:evil.example", "https:/evil.example",
    "//evil.example/%2e%2e", "javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>alert(1)</script>",
    " //evil.example", "\t//evil.example", "/\t/evil.example", "/ /evil.example", "\x00//evil.example", "/\u3000/evil.example",
    "%2F%2Fevil.example", "evil.example", "@evil.example", "//evil.example@localhost", "//localhost@evil.example",
    "\u2215\u2215evil.example", "/\r\n/evil.example",
]
SAFE = ["/", "/home", "/e/membership.member?q=a&sort=-name", "/e/会员", "/e/membership.member/1#top"]


@pytest.mark.parametrize("payload", OPEN_REDIRECTS)
def test_payloads_are_not_safe_paths(payload):
    assert not is_safe_path(payload)


@pytest.mark.parametrize("target", SAFE)
def test_local_paths_are_safe(target):
    assert is_safe_path(target)


def test_local_path_of_referrer():
    assert local_path_of("http://localhost/e/x?a=1", "http://localhost/") == "/e/x?a=1"
    assert local_path_of("http://localhost.evil.example/e", "http://localhost/") is None
    assert local_path_of("http://localhost//evil.example", "http://localhost/") is None
    assert local_path_of(None, "http://localhost/") is None


def _is_local(location: str) -> bool:
    return location.startswith("/") and not location.startswith("//") and "\\" not in location and "evil" not in location


def test_login_next_open_redirect_payloads(app):
    from urllib.parse import quote

    for payload in OPEN_REDIRECTS:
        c = app.test_client()
        resp = c.get("/login/?next=" + quote(payload, safe=""))
        assert resp.status_code == 303 and resp.headers["Location"] == "/login/", payload
        resp = post_login(c, next_url=quote(payload, safe=""))
        assert _is_local(resp.headers["Location"]), (payload, resp.headers["Location"])
        assert "evil" not in c.get("/login/").get_data(as_text=True)


def test_login_follows_a_local_next(app):
    resp = post_login(app.test_client(), next_url="/e/membership.member")
    assert resp.status_code == 302 and resp.headers["Location"] == "/e/membership.member"


def test_locale_switch_only_returns_to_this_site(client):
    for referrer in ["https://evil.example/phish", "//evil.example", "http://localhost.evil.example/", "javascript:alert(1)",
                     "http://localhost//evil.example"]:
        resp = client.get("/locale/en", headers={"Referer": referrer})
        assert resp.status_code == 302 and resp.headers["Location"] == "/home", referrer
    resp = client.get("/locale/en", headers={"Referer": "http://localhost/e/membership.member?q=x"})
    assert resp.headers["Location"] == "/e/membership.member?q=x"


def test_bulk_next_only_stays_on_the_entity(client, csrf_token):
    for payload in ["https://evil.example/", "//evil.example", "/e/membership.member/\\evil", "/home", "/e/membership.member\t//x"]:
        resp = client.post("/e/membership.member/bulk", data={"csrf_token": csrf_token, "next": payload, "action": "delete"})
        assert resp.status_code == 303 and resp.headers["Location"] == "/e/membership.member/", payload
    resp = client.post("/e/membership.member/bulk", data={"csrf_token": csrf_token, "next": "/e/membership.member/?q=ab", "action": "x"})
    assert resp.headers["Location"] == "/e/membership.member/?q=ab"


def test_pages_carry_csp_with_a_nonce_that_matches_their_scripts(client):
    resp = client.get("/e/membership.member/")
    csp = resp.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "unsafe-eval" not in csp and "script-src 'self' 'nonce-" in csp
    html = resp.get_data(as_text=True)
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all(f'nonce="{nonce}"' in s for s in scripts), scripts
    assert "javascript:" not in html
    other = client.get("/e/membership.member/").headers["Content-Security-Policy"]
    assert other != csp  # a fresh nonce per response


def test_fab_pages_and_login_have_nonced_scripts(client):
    for url in ["/users/list/", "/login/"]:
        resp = (client if url != "/login/" else client.application.test_client()).get(url)
        nonce = re.search(r"'nonce-([^']+)'", resp.headers["Content-Security-Policy"]).group(1)
        scripts = re.findall(r"<script\b[^>]*>", resp.get_data(as_text=True))
        assert all(f'nonce="{nonce}"' in s for s in scripts), (url, scripts)


def test_security_headers_and_no_store_on_pages_and_api(client, api_token):
    for resp in [client.get("/home"), client.get("/e/membership.member/"), client.application.test_client().get("/login/"),
                 client.get("/api/v1/records/membership.member", headers={"Authorization": f"Bearer {api_token}"})]:
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Referrer-Policy"] == "same-origin"
        assert "Content-Security-Policy" in resp.headers


def test_static_assets_may_be_cached(client):
    resp = client.get("/static/crmkit/crmkit.css")
    assert resp.status_code == 200
    assert resp.headers.get("Cache-Control") != "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def _cookie_flags(resp):
    cookies = [v for k, v in resp.headers.items() if k == "Set-Cookie" and v.startswith("session=")]
    assert cookies
    return cookies[-1].lower()


def test_session_cookie_is_secure_httponly_lax_by_default(make_auth_app):
    app = make_auth_app()  # production-style settings: not debug, secure_cookies unset
    resp = post_login(app.test_client())
    flags = _cookie_flags(resp)
    assert "secure" in flags and "httponly" in flags and "samesite=lax" in flags and "expires=" in flags
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert "max-age=31536000" in app.test_client().get("/login/").headers["Strict-Transport-Security"]


def test_local_http_demo_turns_secure_cookies_off(make_auth_app):
    app = make_auth_app(secure_cookies=False)
    flags = _cookie_flags(post_login(app.test_client()))
    assert "secure" not in flags.replace("samesite", "") and "httponly" in flags
    assert "Strict-Transport-Security" not in app.test_client().get("/login/").headers


def test_settings_for_cookies_and_limits_from_env():
    assert Settings.from_env({}).cookies_secure is True
    assert Settings.from_env({"CRMKIT_DEBUG": "1"}).cookies_secure is False
    assert Settings.from_env({"CRMKIT_DEBUG": "1", "CRMKIT_SECURE_COOKIES": "1"}).cookies_secure is True
    assert Settings.from_env({"CRMKIT_SECURE_COOKIES": "off"}).cookies_secure is False
    s = Settings.from_env({"CRMKIT_LOGIN_RATE_LIMIT": "5/30 seconds", "CRMKIT_SESSION_IDLE_SECONDS": "900"})
    assert (s.login_rate_limit, s.session_idle_seconds) == ("5/30 seconds", 900)
    for env, name in [({"CRMKIT_SECURE_COOKIES": "maybe"}, "CRMKIT_SECURE_COOKIES"),
                      ({"CRMKIT_LOGIN_RATE_LIMIT": "lots"}, "CRMKIT_LOGIN_RATE_LIMIT"),
                      ({"CRMKIT_SESSION_IDLE_SECONDS": "0"}, "CRMKIT_SESSION_IDLE_SECONDS"),
                      ({"CRMKIT_LOGIN_LOCKOUT_THRESHOLD": "five"}, "CRMKIT_LOGIN_LOCKOUT_THRESHOLD")]:
        with pytest.raises(ConfigError, match=name):
            Settings.from_env(env)


def test_make_run_serves_plain_http_without_secure_cookies():
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(["make", "-n", "run"], cwd=root, capture_output=True, text=True, check=True).stdout
    serve = [line for line in out.splitlines() if "crmkit run" in line]
    assert serve and all("CRMKIT_SECURE_COOKIES=0" in line for line in serve)


def test_secret_key_is_required_and_long_outside_debug(tmp_path):
    with pytest.raises(ConfigError, match="not set"):
        Settings(database_url="sqlite://").require_secret_key()
    with pytest.raises(ConfigError, match="too short"):
        Settings(database_url="sqlite://", secret_key="x" * 31).require_secret_key()
    assert Settings(database_url="sqlite://", secret_key="k" * 32).require_secret_key() == "k" * 32
    assert Settings(database_url="sqlite://", debug=True).require_secret_key()
    from crmkit.runtime.web.app import create_app

    with pytest.raises(ConfigError, match="too short"):
        create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", secret_key="short-secret"))


def test_cli_run_refuses_a_short_secret(tmp_path):
    from click.testing import CliRunner

    from crmkit.runtime.cli import main

    r = CliRunner().invoke(main, ["run"], env={"CRMKIT_SECRET_KEY": "tooshort", "CRMKIT_VAR_DIR": str(tmp_path)})
    assert r.exit_code == 1 and "too short" in r.output
