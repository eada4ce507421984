"""The infoscope CLI, run as a user runs it: through subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from diagnostics import RunReader, RunWriter

ROOT = Path(__file__).resolve().parents[1]


def infoscope(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "diagnostics.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=120,
    )


@pytest.fixture()
def runs(tmp_path):
    with RunWriter(tmp_path / "exp" / "tanh", meta={"name": "tanh"}) as w:
        for step in (0, 10, 20):
            w.log(
                step,
                {"info_plane/binning/I_XT": step / 10, "info_plane/binning/I_TY": 0.5},
                layer="l1",
            )
        w.alert(20, "compression_onset", severity="info", message="compression began")
        w.alert(20, "rank_collapse", severity="warning", message="rank falling")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.sqlite").write_text("garbage")
    return tmp_path


def test_version_and_help():
    out = infoscope("--version")
    assert out.returncode == 0 and out.stdout.startswith("infoscope ")
    out = infoscope("--help")
    assert out.returncode == 0
    for sub in ("runs", "dashboard", "export"):
        assert sub in out.stdout


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("infoscope")
    if exe is None:
        pytest.skip("the package is not installed (pip install -e .)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "infoscope" in out.stdout


def test_runs_table_and_json(runs):
    out = infoscope("runs", str(runs))
    assert out.returncode == 0, out.stderr
    assert "exp/tanh" in out.stdout and "0-20" in out.stdout and "finished" in out.stdout
    assert "broken" in out.stdout and "not an infoscope run" in out.stderr
    out = infoscope("runs", str(runs), "--json")
    records = {r["name"]: r for r in json.loads(out.stdout)}
    assert records["tanh"]["alerts"] == 2 and records["tanh"]["warnings"] == 1
    assert records["tanh"]["last_step"] == 20
    assert records["broken"]["status"] == "unreadable"


def test_runs_on_missing_folder_is_a_clear_error(tmp_path):
    out = infoscope("runs", str(tmp_path / "nope"))
    assert out.returncode == 2 and "infoscope: error: no folder" in out.stderr


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export(runs, tmp_path, fmt):
    out_dir = tmp_path / f"out-{fmt}"
    out = infoscope("export", str(runs / "exp" / "tanh"), "--format", fmt, "--out", str(out_dir))
    assert out.returncode == 0, out.stderr
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    scalars = read(out_dir / f"scalars.{fmt}")
    assert len(scalars) == 6
    assert set(scalars.metric) == {"info_plane/binning/I_XT", "info_plane/binning/I_TY"}
    assert scalars[scalars.metric == "info_plane/binning/I_XT"].value.tolist() == [0.0, 1.0, 2.0]
    alerts = read(out_dir / f"alerts.{fmt}")
    assert alerts.indicator.tolist() == ["compression_onset", "rank_collapse"]
    assert json.loads((out_dir / "meta.json").read_text())["name"] == "tanh"


def test_export_of_a_broken_run_is_a_clear_error(runs):
    out = infoscope("export", str(runs / "broken"))
    assert out.returncode == 2 and "not an infoscope run" in out.stderr
    assert "Traceback" not in out.stderr


def test_dashboard_binds_to_localhost_by_default(runs):
    out = infoscope("dashboard", str(runs), "--dry-run")
    assert out.returncode == 0, out.stderr
    cmd = out.stdout.split()
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--root") + 1] == str(runs.resolve())
    assert cmd[cmd.index("run") + 1].endswith("dashboard/asgi.py")
    out = infoscope("dashboard", str(runs), "--dry-run", "--host", "0.0.0.0", "--port", "9999")
    cmd = out.stdout.split()
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--server.port") + 1] == "9999"


SAMPLE_RUNS = ROOT / "dashboard" / "sample_runs"


def _root_of(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 0, out.stderr
    cmd = out.stdout.split()
    return cmd[cmd.index("--root") + 1]


def test_dashboard_default_root_is_runs_else_the_sample_runs(tmp_path):
    assert _root_of(infoscope("dashboard", "--dry-run", cwd=tmp_path)) == str(SAMPLE_RUNS)
    (tmp_path / "runs").mkdir()
    out = infoscope("dashboard", "--dry-run", cwd=tmp_path)
    assert _root_of(out) == str((tmp_path / "runs").resolve())
    out = infoscope("dashboard", str(tmp_path / "missing"), "--dry-run")
    assert out.returncode == 2 and "root: expected a folder" in out.stderr


def test_demo_opens_the_shipped_sample_runs_from_any_folder(tmp_path):
    (tmp_path / "runs").mkdir()  # a runs folder here changes nothing for the demo
    out = infoscope("demo", "--dry-run", "--port", "8765", cwd=tmp_path)
    assert _root_of(out) == str(SAMPLE_RUNS)
    cmd = out.stdout.split()
    assert cmd[cmd.index("run") + 1] == str(ROOT / "dashboard" / "asgi.py")
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8765"
    runs = {p.parent.name for p in SAMPLE_RUNS.glob("*/run.sqlite")}
    assert {"information-plane-tanh", "information-plane-relu", "lm-rl-baseline"} <= runs


def test_demo_help_and_its_options():
    out = infoscope("--help")
    assert out.returncode == 0 and "demo" in out.stdout and "sample runs" in out.stdout
    out = infoscope("demo", "--help")
    assert out.returncode == 0, out.stderr
    for option in ("--regenerate DIR", "--only", "--quick", "--overwrite", "--port"):
        assert option in out.stdout, option
    out = infoscope("demo", "--quick")
    assert out.returncode == 2 and "--quick: only meaningful with --regenerate" in out.stderr


def test_demo_regenerate_refuses_to_replace_runs(tmp_path):
    with RunWriter(tmp_path / "information-plane-tanh") as w:
        w.log(0, {"a": 1.0})
    before = (tmp_path / "information-plane-tanh" / "run.sqlite").read_bytes()
    out = infoscope("demo", "--regenerate", str(tmp_path), "--only", "information-plane")
    assert out.returncode == 2, out.stderr
    assert "already holds information-plane-tanh" in out.stderr and "--overwrite" in out.stderr
    assert (tmp_path / "information-plane-tanh" / "run.sqlite").read_bytes() == before
    (tmp_path / "file").write_text("")
    out = infoscope("demo", "--regenerate", str(tmp_path / "file"))
    assert out.returncode == 2 and "--regenerate: expected a folder" in out.stderr


@pytest.mark.slow
def test_demo_regenerate_records_the_sample_runs_with_progress_bars(tmp_path):
    """The shortened recording (``--quick``) of the digits pair (the cheapest group):
    what ``--regenerate`` writes is what the dashboard's first view reads (story,
    showcase)."""
    out = infoscope("demo", "--regenerate", str(tmp_path / "new"), "--quick", "--only", "digits")
    assert out.returncode == 0, out.stderr[-2000:]
    stories = {"digits-mlp": "True labels", "digits-mlp-random-labels": "Random labels"}
    for name, epochs in (("digits-mlp", 101), ("digits-mlp-random-labels", 401)):
        assert f"{name} " in out.stderr and f"{epochs}/{epochs}" in out.stderr  # a full bar
        with RunReader(tmp_path / "new" / name) as r:
            assert r.status == "finished"
            assert {"repr/dsmi_y", "info_plane/binning/I_XT"} <= set(r.metrics())
            assert r.meta["showcase"] == ["representations", "compare"]
            assert r.meta["story"].startswith(stories[name])
    assert f"infoscope dashboard {tmp_path / 'new'}" in out.stdout
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == sorted(stories)


def test_dashboard_command_is_a_plugin_of_the_dashboard_package():
    """`infoscope dashboard` is registered by the dashboard package through the
    ``infoscope.commands`` entry point, not by diagnostics (which never imports it)."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["infoscope.commands"] == {
        "dashboard": "dashboard.commands",
        "demo": "dashboard.commands",
    }
    import diagnostics.cli as cli

    assert "dashboard" not in cli.BUILTIN
    import dashboard.commands  # noqa: F401

    assert {"dashboard", "demo"} <= set(cli.base.COMMANDS)
