"""The dependency audit's verdicts, against a fake PyPI: it fails on a known vulnerability of an installed version,
says which versions it cannot audit on this network instead of passing them, and never passes when PyPI is down."""
import importlib.util
import io
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "dependency_audit.py"


def load_script():
    spec = importlib.util.spec_from_file_location("dependency_audit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


da = load_script()

CVE_ADVISORY = {"id": "GHSA-aaaa-bbbb-cccc", "aliases": ["CVE-2099-0001"], "fixed_in": ["3.1.5"],
                "summary": "Sandbox breakout through crafted templates", "details": "Long text.\nMore.",
                "link": "https://osv.dev/vulnerability/GHSA-aaaa-bbbb-cccc", "withdrawn": None}


class FakePyPI:
    """fetch(url) over a dict of pages; a missing page is a 404, an exception in the dict (or `down`) is raised."""

    def __init__(self, pages=None, down=None):
        self.pages = pages or {}
        self.down = down
        self.calls = []

    def __call__(self, url):
        self.calls.append(url)
        answer = self.down or self.pages.get(url, (404, None))
        if isinstance(answer, Exception):
            raise answer
        return answer


def release_page(vulnerabilities=(), yanked=False, yanked_reason=None):
    return 200, {"info": {"yanked": yanked, "yanked_reason": yanked_reason}, "vulnerabilities": list(vulnerabilities)}


def project_page(latest, vulnerabilities=(), releases=None):
    releases = releases if releases is not None else {latest: [{"yanked": False, "yanked_reason": None}]}
    return 200, {"info": {"version": latest}, "releases": releases, "vulnerabilities": list(vulnerabilities)}


def run(dists, pages, acknowledged=None, strict=False):
    out = io.StringIO()
    code = da.report(da.audit(dists, FakePyPI(pages)), acknowledged or {}, strict=strict, out=out)
    return code, out.getvalue()


def test_a_vulnerability_of_the_exact_installed_version_fails_and_is_described():
    code, out = run([("Jinja2", "3.1.4")], {"https://pypi.org/pypi/jinja2/3.1.4/json": release_page([CVE_ADVISORY])})
    assert code == 1
    assert "VULNERABLE  Jinja2==3.1.4  GHSA-aaaa-bbbb-cccc (CVE-2099-0001)  fixed in 3.1.5" in out
    assert "Sandbox breakout through crafted templates" in out
    assert "1 packages audited exactly" in out and "1 vulnerabilities" in out
    assert "dependency audit FAILED: 1 known vulnerability in installed versions" in out


def test_the_summary_stands_in_for_a_missing_one_line_summary():
    advisory = da.Advisory.from_pypi({**CVE_ADVISORY, "summary": None, "details": "\n  First line of details.\nSecond."})
    assert advisory.summary == "First line of details."


def test_without_the_per_version_page_the_project_page_is_exact_for_the_latest_version():
    pages = {"https://pypi.org/pypi/jinja2/json": project_page("3.1.4", [CVE_ADVISORY])}
    code, out = run([("Jinja2", "3.1.4")], pages)
    assert code == 1
    assert "VULNERABLE  Jinja2==3.1.4  GHSA-aaaa-bbbb-cccc" in out
    assert "not auditable" not in out.split("summary:")[0]


def test_an_older_version_is_not_auditable_without_the_per_version_page():
    pages = {"https://pypi.org/pypi/redis/json": project_page("8.1.0")}
    code, out = run([("redis", "7.4.1")], pages)
    assert code == 1
    assert "dependency audit FAILED: no package could be audited exactly" in out
    pages["https://pypi.org/pypi/flask/json"] = project_page("3.1.3")
    code, out = run([("redis", "7.4.1"), ("Flask", "3.1.3")], pages)
    assert code == 0
    assert "not auditable here (1):" in out
    assert ("redis==7.4.1: per-version advisory lookup unavailable (HTTP 404) and the installed version is not the latest (8.1.0)"
            in out)
    assert "summary: 1 packages audited exactly, 1 not auditable here" in out
    assert "dependency audit passed (see the packages not auditable here above)" in out

    code, out = run([("redis", "7.4.1"), ("Flask", "3.1.3")], pages, strict=True)
    assert code == 1
    assert "--strict: 1 package(s) not auditable here" in out


def test_the_latest_releases_advisories_are_context_for_an_older_version_not_a_verdict():
    pages = {"https://pypi.org/pypi/jinja2/json": project_page("3.1.6", [CVE_ADVISORY]),
             "https://pypi.org/pypi/flask/json": project_page("3.1.3")}
    code, out = run([("Jinja2", "3.1.4"), ("Flask", "3.1.3")], pages)
    assert code == 0
    assert "VULNERABLE" not in out
    assert "the latest release has GHSA-aaaa-bbbb-cccc (CVE-2099-0001) (fixed in 3.1.5)" in out


def test_pypi_unreachable_fails_with_a_clear_message():
    fetch = FakePyPI(down=OSError("https://pypi.org/pypi/...: Name or service not known"))
    dists = [(f"pkg{i}", "1.0") for i in range(20)]
    out = io.StringIO()
    code = da.report(da.audit(dists, fetch, jobs=2), {}, out=out)
    assert code == 1
    assert "dependency audit FAILED: PyPI is unreachable: every lookup failed (https://pypi.org/pypi/...: Name or service not known)" in out.getvalue()
    assert "LOOKUP FAILED" not in out.getvalue(), "said once, not once per package"
    assert len(fetch.calls) <= 3, "once the first lookups all failed, the rest are not attempted"


def test_one_failed_lookup_fails_the_audit():
    pages = {"https://pypi.org/pypi/flask/3.1.3/json": release_page(),
             "https://pypi.org/pypi/redis/7.4.1/json": OSError("timed out")}
    code, out = run([("Flask", "3.1.3"), ("redis", "7.4.1")], pages)
    assert code == 1
    assert "LOOKUP FAILED redis==7.4.1: timed out" in out
    assert "1 package(s) could not be looked up" in out


def test_a_package_missing_from_pypi_is_not_auditable():
    pages = {"https://pypi.org/pypi/flask/3.1.3/json": release_page()}
    code, out = run([("Flask", "3.1.3"), ("in-house-wheel", "0.1")], pages)
    assert code == 0
    assert "in-house-wheel==0.1: no PyPI project page (HTTP 404)" in out


def test_an_acknowledged_advisory_is_printed_but_does_not_fail():
    pages = {"https://pypi.org/pypi/jinja2/3.1.4/json": release_page([CVE_ADVISORY])}
    acknowledged = da.parse_ignore_file("# header\n\ncve-2099-0001   # only the sandbox is affected; we do not use it\n")
    code, out = run([("Jinja2", "3.1.4")], pages, acknowledged=acknowledged)
    assert code == 0
    assert "IGNORED     Jinja2==3.1.4  GHSA-aaaa-bbbb-cccc (CVE-2099-0001)" in out
    assert "acknowledged in the ignore file: only the sandbox is affected; we do not use it" in out
    assert "0 vulnerabilities, 1 ignored" in out


def test_an_ignore_entry_that_matches_nothing_is_noted():
    pages = {"https://pypi.org/pypi/flask/3.1.3/json": release_page()}
    code, out = run([("Flask", "3.1.3")], pages, acknowledged={"ghsa-gone-gone-gone": "fixed long ago"})
    assert code == 0
    assert "note: the ignore file's entry ghsa-gone-gone-gone matches no advisory" in out


@pytest.mark.parametrize("line", ["GHSA-aaaa-bbbb-cccc", "GHSA-aaaa-bbbb-cccc   #   ", "GHSA-a GHSA-b  # two ids"])
def test_an_ignore_entry_needs_one_id_and_a_reason(line):
    with pytest.raises(ValueError, match="line 2: expected `ADVISORY-ID  # why it is acceptable`"):
        da.parse_ignore_file(f"# header\n{line}\n")


def test_the_shipped_ignore_file_parses_and_is_empty():
    assert da.parse_ignore_file(da.DEFAULT_IGNORE_FILE.read_text()) == {}


def test_a_bad_ignore_file_stops_the_audit_before_any_lookup(tmp_path, capsys):
    bad = tmp_path / "ignore.txt"
    bad.write_text("GHSA-aaaa-bbbb-cccc\n")
    assert da.main(["--ignore-file", str(bad)]) == 2
    assert "cannot use the ignore file" in capsys.readouterr().err


def test_a_yanked_release_is_a_finding_and_fails_only_with_strict():
    pages = {"https://pypi.org/pypi/flask/3.1.3/json": release_page(yanked=True, yanked_reason="broken wheel"),
             "https://pypi.org/pypi/redis/json": project_page("7.4.1", releases={"7.4.1": [{"yanked": True, "yanked_reason": None}]})}
    code, out = run([("Flask", "3.1.3"), ("redis", "7.4.1")], pages)
    assert code == 0
    assert "YANKED      Flask==3.1.3  this release was withdrawn from PyPI: broken wheel" in out
    assert "YANKED      redis==7.4.1  this release was withdrawn from PyPI: no reason given" in out
    assert "2 yanked" in out
    code, out = run([("Flask", "3.1.3"), ("redis", "7.4.1")], pages, strict=True)
    assert code == 1
    assert "--strict: 2 yanked release(s) installed" in out


def test_a_withdrawn_advisory_does_not_count():
    withdrawn = {**CVE_ADVISORY, "withdrawn": "2099-02-01T00:00:00Z"}
    code, out = run([("Jinja2", "3.1.4")], {"https://pypi.org/pypi/jinja2/3.1.4/json": release_page([withdrawn])})
    assert code == 0 and "VULNERABLE" not in out


def test_lookups_use_the_canonical_name_and_ask_the_per_version_page_first():
    fetch = FakePyPI({"https://pypi.org/pypi/flask-sqlalchemy/json": project_page("3.1.1")})
    verdict = da.check_package("Flask_SQLAlchemy", "3.1.1", fetch)
    assert fetch.calls == ["https://pypi.org/pypi/flask-sqlalchemy/3.1.1/json", "https://pypi.org/pypi/flask-sqlalchemy/json"]
    assert verdict.status == da.EXACT


def test_the_installed_distributions_include_the_tooling_but_not_the_project():
    names = {da.canonical_name(name) for name, _ in da.installed_distributions(skip=[da.project_name()])}
    assert da.project_name() == "crmkit" and "crmkit" not in names
    assert {"pip", "pytest", "flask"} <= names
