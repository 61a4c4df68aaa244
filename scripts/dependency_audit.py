#!/usr/bin/env python3
"""Audit the installed distributions against PyPI's advisory data (`make audit`; CI runs it).

PyPI's JSON API lists the known vulnerabilities (OSV data) of a release:
  /pypi/<name>/<version>/json  those of that exact release: the answer for the installed version;
  /pypi/<name>/json            those of the project's *latest* release only.
Some networks block the per-version endpoint. Then the project page answers exactly only when the installed
version is the latest one; any other version is reported as "not auditable here" instead of being passed,
and --strict turns that into a failure. docs/operations.md ("Dependency audit") has the whole story.

Standard library only, so it depends on nothing it audits.
"""
from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

PYPI = "https://pypi.org/pypi"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IGNORE_FILE = Path(__file__).resolve().with_name("audit-ignore.txt")
TIMEOUT_SECONDS = 15
ATTEMPTS = 3
PARALLEL_LOOKUPS = 8

EXACT = "exact"
NOT_AUDITABLE = "not auditable"
LOOKUP_FAILED = "lookup failed"

JsonPage = dict[str, Any]
# fetch(url) -> (HTTP status, parsed JSON body or None); raises OSError when the server cannot be reached.
Fetch = Callable[[str], tuple[int, JsonPage | None]]
Distribution = tuple[str, str]  # (name, version)


# -- the data -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    fixed_in: tuple[str, ...]
    summary: str
    link: str

    @classmethod
    def from_pypi(cls, entry: JsonPage) -> Advisory:
        text = entry.get("summary") or entry.get("details") or ""
        first_line = next((line.strip() for line in text.splitlines() if line.strip()), "(no description)")
        return cls(id=str(entry.get("id") or "?"), aliases=tuple(entry.get("aliases") or ()),
                   fixed_in=tuple(entry.get("fixed_in") or ()), summary=first_line[:200], link=str(entry.get("link") or ""))

    def names(self) -> set[str]:
        return {name.casefold() for name in (self.id, *self.aliases)}

    def title(self) -> str:
        return f"{self.id} ({', '.join(self.aliases)})" if self.aliases else self.id

    def fix(self) -> str:
        return f"fixed in {', '.join(self.fixed_in)}" if self.fixed_in else "no fixed version listed"


@dataclass
class Verdict:
    """What PyPI can tell about one installed distribution."""
    name: str
    version: str
    status: str  # EXACT, NOT_AUDITABLE or LOOKUP_FAILED
    advisories: list[Advisory] = field(default_factory=list)  # those affecting the installed version (EXACT only)
    reason: str = ""  # why it is not auditable, or why the lookup failed
    latest_advisories: list[Advisory] = field(default_factory=list)  # the latest release's, as context when not auditable
    yanked: str | None = None  # the yank reason ("" if none was given); None when the release is not yanked

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


# -- looking up PyPI ----------------------------------------------------------------------------------------------

def fetch_json(url: str) -> tuple[int, JsonPage | None]:
    """GET a PyPI JSON page. Timeouts, connection errors and 5xx answers are retried; a 4xx is an answer."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "crmkit-dependency-audit"})
    failure = "no attempt made"
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(attempt)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code < 500:
                return exc.code, None
            failure = f"HTTP {exc.code}"
        except (OSError, http.client.HTTPException, ValueError) as exc:  # unreachable, timed out, cut off, garbled
            failure = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
    raise OSError(f"{url}: {failure} (after {ATTEMPTS} attempts)")


def canonical_name(name: str) -> str:
    """PEP 503: the name PyPI's URLs use."""
    return re.sub(r"[-_.]+", "-", name).lower()


def same_version(installed: str, published: str) -> bool:
    """Plain comparison, no PEP 440 normalisation: a spelling mismatch can only make a package "not auditable"."""
    return installed.strip().casefold() == published.strip().casefold()


def open_advisories(page: JsonPage) -> list[Advisory]:
    return [Advisory.from_pypi(entry) for entry in page.get("vulnerabilities") or () if not entry.get("withdrawn")]


def yank_reason_of_release(files: list[JsonPage] | None) -> str | None:
    """A release is yanked as a whole, so all its files carry the flag."""
    if files and all(file.get("yanked") for file in files):
        return str(files[0].get("yanked_reason") or "")
    return None


def release_files(page: JsonPage, version: str) -> list[JsonPage] | None:
    releases = page.get("releases") or {}
    return next((files for published, files in releases.items() if same_version(version, published)), None)


def verdict_from_release_page(name: str, version: str, page: JsonPage) -> Verdict:
    info = page.get("info") or {}
    yanked = str(info.get("yanked_reason") or "") if info.get("yanked") else None
    return Verdict(name, version, EXACT, advisories=open_advisories(page), yanked=yanked)


def verdict_from_project_page(name: str, version: str, release_status: int, page: JsonPage) -> Verdict:
    """The project page lists the advisories of the latest release: exact only if that is the installed one."""
    latest = str((page.get("info") or {}).get("version") or "?")
    advisories = open_advisories(page)
    yanked = yank_reason_of_release(release_files(page, version))
    if same_version(version, latest):
        return Verdict(name, version, EXACT, advisories=advisories, yanked=yanked)
    # An advisory of the latest release says nothing certain about an older one (and its fixed_in versions do not
    # say which older versions are affected), so the honest verdict is "not auditable"; the advisories are context.
    reason = f"per-version advisory lookup unavailable (HTTP {release_status}) and the installed version is not the latest ({latest})"
    return Verdict(name, version, NOT_AUDITABLE, reason=reason, latest_advisories=advisories, yanked=yanked)


def check_package(name: str, version: str, fetch: Fetch) -> Verdict:
    """Per-version page first (exact); the project page when that one is unavailable."""
    key = canonical_name(name)
    try:
        release_status, release_page = fetch(f"{PYPI}/{key}/{version}/json")
        if release_status == 200 and release_page is not None:
            return verdict_from_release_page(name, version, release_page)
        project_status, project_page = fetch(f"{PYPI}/{key}/json")
    except OSError as exc:
        return Verdict(name, version, LOOKUP_FAILED, reason=str(exc))
    if project_status != 200 or project_page is None:
        return Verdict(name, version, NOT_AUDITABLE, reason=f"no PyPI project page (HTTP {project_status}): not published on PyPI?")
    return verdict_from_project_page(name, version, release_status, project_page)


class Reachability:
    """Gives up early when PyPI is down: if the first lookups all failed, the rest would only wait out their timeouts."""

    def __init__(self, give_up_after: int):
        self.give_up_after = give_up_after
        self.failures = 0
        self.reached = False
        self.lock = threading.Lock()

    def record(self, verdict: Verdict) -> None:
        with self.lock:
            if verdict.status == LOOKUP_FAILED:
                self.failures += 1
            else:
                self.reached = True

    def given_up(self) -> bool:
        with self.lock:
            return not self.reached and self.failures >= self.give_up_after


def audit(dists: Iterable[Distribution], fetch: Fetch, jobs: int = PARALLEL_LOOKUPS) -> list[Verdict]:
    reachability = Reachability(give_up_after=jobs)

    def check(dist: Distribution) -> Verdict:
        name, version = dist
        if reachability.given_up():
            return Verdict(name, version, LOOKUP_FAILED, reason="not looked up: every earlier lookup failed")
        verdict = check_package(name, version, fetch)
        reachability.record(verdict)
        return verdict

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(check, dists))


# -- inputs -------------------------------------------------------------------------------------------------------

def installed_distributions(skip: Iterable[str] = ()) -> list[Distribution]:
    """Every distribution the running interpreter sees; for a name found twice, the first (the one imported)."""
    skipped = {canonical_name(name) for name in skip}
    found: dict[str, Distribution] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue  # a metadata folder without a name: nothing to look up
        key = canonical_name(name)
        if key not in skipped and key not in found:
            found[key] = (name, dist.version)
    return [found[key] for key in sorted(found)]


def project_name() -> str:
    """The project under audit: installed in editable mode, it is not a dependency."""
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"])


def parse_ignore_file(text: str) -> dict[str, str]:
    """`ADVISORY-ID  # reason` per line -> {id (casefolded): reason}. A line without a reason is an error."""
    acknowledged: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        entry, _, reason = line.partition("#")
        if not entry.strip():
            continue  # blank or comment line
        if not reason.strip() or len(entry.split()) != 1:
            raise ValueError(f"line {number}: expected `ADVISORY-ID  # why it is acceptable`, got {line.strip()!r}")
        acknowledged[entry.strip().casefold()] = reason.strip()
    return acknowledged


# -- the report ---------------------------------------------------------------------------------------------------

def acknowledgement(advisory: Advisory, acknowledged: dict[str, str]) -> str | None:
    return next((acknowledged[name] for name in sorted(advisory.names()) if name in acknowledged), None)


def print_advisory(label: str, verdict: Verdict, advisory: Advisory, out: TextIO) -> None:
    print(f"{label:<11} {verdict.pin}  {advisory.title()}  {advisory.fix()}", file=out)
    print(f"            {advisory.summary}", file=out)
    if advisory.link:
        print(f"            {advisory.link}", file=out)


def print_not_auditable(verdicts: list[Verdict], out: TextIO) -> None:
    print(f"not auditable here ({len(verdicts)}):", file=out)
    for verdict in verdicts:
        print(f"  {verdict.pin}: {verdict.reason}", file=out)
        for advisory in verdict.latest_advisories:
            print(f"      the latest release has {advisory.title()} ({advisory.fix()}): {advisory.summary}", file=out)


def failure_reasons(verdicts: list[Verdict], vulnerable: int, strict: bool) -> list[str]:
    exact = [v for v in verdicts if v.status == EXACT]
    failed = [v for v in verdicts if v.status == LOOKUP_FAILED]
    not_auditable = [v for v in verdicts if v.status == NOT_AUDITABLE]
    yanked = [v for v in verdicts if v.yanked is not None]
    if verdicts and len(failed) == len(verdicts):
        return [f"PyPI is unreachable: every lookup failed ({failed[0].reason})"]
    reasons = []
    if vulnerable:
        reasons.append(f"{vulnerable} known vulnerabilit{'y' if vulnerable == 1 else 'ies'} in installed versions")
    if failed:
        reasons.append(f"{len(failed)} package(s) could not be looked up")
    if verdicts and not exact:
        reasons.append("no package could be audited exactly")
    if strict and not_auditable:
        reasons.append(f"--strict: {len(not_auditable)} package(s) not auditable here")
    if strict and yanked:
        reasons.append(f"--strict: {len(yanked)} yanked release(s) installed")
    return reasons


def report(verdicts: list[Verdict], acknowledged: dict[str, str], strict: bool = False, out: TextIO | None = None) -> int:
    """Prints the findings and a summary (to stdout by default); returns the exit code (1 = fail)."""
    out = out or sys.stdout
    vulnerable = ignored = 0
    matched_acknowledgements: set[str] = set()
    for verdict in verdicts:
        for advisory in verdict.advisories:
            reason = acknowledgement(advisory, acknowledged)
            if reason is None:
                vulnerable += 1
                print_advisory("VULNERABLE", verdict, advisory, out)
            else:
                ignored += 1
                matched_acknowledgements |= advisory.names() & acknowledged.keys()
                print_advisory("IGNORED", verdict, advisory, out)
                print(f"            acknowledged in the ignore file: {reason}", file=out)
    yanked = [v for v in verdicts if v.yanked is not None]
    for verdict in yanked:
        print(f"YANKED      {verdict.pin}  this release was withdrawn from PyPI: {verdict.yanked or 'no reason given'}", file=out)
    failed = [v for v in verdicts if v.status == LOOKUP_FAILED]
    if len(failed) < len(verdicts):  # when every lookup failed, the verdict line below says it once
        for verdict in failed:
            print(f"LOOKUP FAILED {verdict.pin}: {verdict.reason}", file=out)
    not_auditable = [v for v in verdicts if v.status == NOT_AUDITABLE]
    if not_auditable:
        print_not_auditable(not_auditable, out)
    for stale in sorted(acknowledged.keys() - matched_acknowledgements):
        print(f"note: the ignore file's entry {stale} matches no advisory found for an installed version", file=out)

    exact = sum(1 for v in verdicts if v.status == EXACT)
    print(f"summary: {exact} packages audited exactly, {len(not_auditable)} not auditable here, {len(failed)} lookups failed; "
          f"{vulnerable} vulnerabilities, {ignored} ignored, {len(yanked)} yanked", file=out)
    reasons = failure_reasons(verdicts, vulnerable, strict)
    if reasons:
        print(f"dependency audit FAILED: {'; '.join(reasons)}", file=out)
        return 1
    print("dependency audit passed" + (" (see the packages not auditable here above)" if not_auditable else ""), file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strict", action="store_true",
                        help="also fail on packages that cannot be audited exactly, and on yanked releases (for networks where "
                             "PyPI's per-version pages are reachable)")
    parser.add_argument("--ignore-file", type=Path, default=DEFAULT_IGNORE_FILE,
                        help="acknowledged advisory ids, one per line with a reason (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        acknowledged = parse_ignore_file(args.ignore_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"dependency audit: cannot use the ignore file {args.ignore_file}: {exc}", file=sys.stderr)
        return 2
    project = project_name()
    dists = installed_distributions(skip=[project])
    print(f"dependency audit: {len(dists)} installed distributions ({project} itself is skipped), advisories from {PYPI}")
    started = time.monotonic()
    verdicts = audit(dists, fetch_json)
    code = report(verdicts, acknowledged, strict=args.strict)
    print(f"({time.monotonic() - started:.1f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
