"""The import mapping: crmkit = platform/, crmkit.apps = apps/, and the stdlib platform module wins."""
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_platform_is_the_standard_library_module_from_repo_root():
    out = subprocess.run([sys.executable, "-c", "import platform, sys; print(platform.__file__); print(platform.python_version())"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    assert not out[0].startswith(str(ROOT)), out[0]
    assert out[1] == ".".join(map(str, sys.version_info[:3]))


def test_platform_and_apps_have_no_init_file():
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert not (ROOT / "apps" / "__init__.py").exists()


def test_crmkit_maps_to_the_folders():
    runtime = importlib.import_module("crmkit.runtime")
    membership = importlib.import_module("crmkit.apps.membership")
    assert Path(runtime.__file__).resolve().parent == ROOT / "platform" / "runtime"
    assert Path(membership.__file__).resolve().parent == ROOT / "apps" / "membership"


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = {v: k for k, v in config["package-dir"].items()}
    found = set()
    for top, name in mapping.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found - listed == set(), f"add these to [tool.setuptools].packages: {sorted(found - listed)}"


def test_no_tests_inside_the_package_folders():
    stray = [p for top in ("platform", "apps") for p in (ROOT / top).rglob("test_*.py")]
    assert stray == []
