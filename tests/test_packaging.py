"""The wheel as ``pip install infoscope`` would get it: built here (from a copy of the
checkout, so the build leaves nothing behind) and read back: the dashboard with its pages
and figures, the sample runs as package data, ``py.typed``, the license and the metadata a
package index expects. (CI installs it into a clean venv and serves the demo from it:
``.ci/wheel_smoke.py``.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("diagnostics", "probes", "dashboard")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"):
        shutil.copy2(ROOT / name, src / name)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (path,) = (tmp / "dist").glob("infoscope-*-py3-none-any.whl")
    with zipfile.ZipFile(path) as z:
        yield z


def test_the_wheel_holds_every_module_and_the_dashboard(wheel):
    files = set(wheel.namelist())
    for pkg in PACKAGES:
        for src in (ROOT / pkg).rglob("*.py"):
            assert src.relative_to(ROOT).as_posix() in files, src
        assert f"{pkg}/py.typed" in files
    pages = {f for f in files if f.startswith("dashboard/app_pages/")}
    assert {"dashboard/app_pages/information_plane.py", "dashboard/app_pages/runs.py"} <= pages
    assert "dashboard/app.py" in files and "dashboard/figures/info_plane.py" in files
    # only the packages: no tests, examples, benchmarks or the checkout's app.py shim
    tops = {f.split("/")[0] for f in files}
    assert tops == {*PACKAGES, "infoscope-0.1.0.dist-info"}, tops


def test_the_wheel_ships_the_sample_runs_as_package_data(wheel):
    shipped = {
        i.filename: i.file_size
        for i in wheel.infolist()
        if i.filename.startswith("dashboard/sample_runs/")
    }
    checkout = {
        p.relative_to(ROOT).as_posix(): p.stat().st_size
        for p in (ROOT / "dashboard" / "sample_runs").rglob("*")
        if p.is_file()
    }
    assert shipped == checkout  # every run, byte for byte the size it has here
    assert len(shipped) == 7 and all(f.endswith("/run.sqlite") for f in shipped)


def test_the_wheel_metadata(wheel):
    info = "infoscope-0.1.0.dist-info"
    meta = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
    assert meta["License-Expression"] == "MIT"
    assert f"{info}/licenses/LICENSE" in wheel.namelist()
    assert "MIT License" in wheel.read(f"{info}/licenses/LICENSE").decode()
    classifiers = meta.get_all("Classifier")
    assert (
        "Typing :: Typed" in classifiers and "Intended Audience :: Science/Research" in classifiers
    )
    assert any(r.startswith("tqdm") for r in meta.get_all("Requires-Dist"))
    for url in meta.get_all("Project-URL") or []:  # none is better than a made-up one
        assert "example" not in url and "TODO" not in url and "<" not in url, url
    entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert "infoscope = diagnostics.cli:main" in entry_points
    assert "demo = dashboard.commands" in entry_points
    assert "dashboard = dashboard.commands" in entry_points
