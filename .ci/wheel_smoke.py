"""CI: build the wheel, install it into a clean virtual environment, and check from outside
the checkout that what a user installs works: ``infoscope demo`` answers HTTP 200 and its
Information-plane page renders in headless Chromium with the sample runs selected.

    python .ci/wheel_smoke.py [--keep]

Prints the wheel's size and contents summary; exits non-zero, saying why, on any failure.
The venv is a real one (no system site-packages); torch comes from the CPU wheel on this
machine's disk (``pip install torch==2.13.0`` first), everything else from the package
index. Playwright runs in this (the CI) interpreter and drives the venv's server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RUNS = (
    "digits-mlp",
    "digits-mlp-random-labels",
    "information-plane-relu",
    "information-plane-tanh",
    "lm-pretrain",
    "lm-rl-baseline",
    "lm-rl-clipcov",
)
#: files the wheel must hold (besides every module of the three packages)
REQUIRED = [
    "dashboard/app.py",
    "dashboard/commands.py",
    "dashboard/app_pages/information_plane.py",
    "dashboard/figures/info_plane.py",
    "dashboard/samples/regenerate.py",
    "diagnostics/py.typed",
    "probes/py.typed",
    "dashboard/py.typed",
    *(f"dashboard/sample_runs/{name}/run.sqlite" for name in SAMPLE_RUNS),
]
RENDERED = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stSkeleton"]')) return false;
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  return charts.length > 0 && charts.every(c => c.querySelector('.js-plotly-plot .main-svg'));
}"""
PANELS = """() => {
  const el = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  return {
    titles: (el.layout.annotations || []).map(a => a.text),
    axes: [...new Set(el._fullData.map(t => t.xaxis))],
    traces: el._fullData.length,
  };
}"""


class SmokeError(Exception):
    """A check failed: printed as ``wheel smoke: FAILED: ...``."""


def step(msg: str) -> None:
    print(f"-- {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        raise SmokeError(
            f"{' '.join(map(str, cmd))} exited {out.returncode}:\n{out.stdout[-3000:]}\n"
            f"{out.stderr[-3000:]}"
        )
    return out


def build_wheel(out: Path) -> Path:
    """``pip wheel`` of a copy of the checkout (so the build leaves nothing in it)."""
    src = out / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.sqlite-wal", "*.sqlite-shm")
    for name in ("diagnostics", "probes", "dashboard"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"):
        shutil.copy2(REPO / name, src / name)
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out / "dist"), str(src)]
    )
    (wheel,) = (out / "dist").glob("infoscope-*.whl")
    return wheel


def check_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        files = {i.filename: i.file_size for i in z.infolist()}
    missing = [f for f in REQUIRED if f not in files]
    for pkg in ("diagnostics", "probes", "dashboard"):
        for src in (REPO / pkg).rglob("*.py"):
            rel = src.relative_to(REPO).as_posix()
            if "__pycache__" not in rel and rel not in files:
                missing.append(rel)
    if not any(f.endswith(".dist-info/licenses/LICENSE") for f in files):
        missing.append("*.dist-info/licenses/LICENSE")
    if missing:
        raise SmokeError(f"the wheel lacks {', '.join(missing)}")
    groups: dict[str, list[int]] = {}
    for name, size in files.items():
        parts = name.split("/")
        key = "/".join(parts[:2]) if parts[0] == "dashboard" and len(parts) > 2 else parts[0]
        groups.setdefault(key, []).append(size)
    mib = wheel.stat().st_size / 2**20
    print(f"wheel {wheel.name}: {mib:.2f} MiB ({wheel.stat().st_size} bytes), {len(files)} files")
    for key in sorted(groups):
        sizes = groups[key]
        print(f"  {key:42s} {len(sizes):3d} files {sum(sizes) / 1024:8.1f} KiB unpacked")


def make_venv(where: Path, wheel: Path) -> Path:
    venv = where / "venv"
    run([sys.executable, "-m", "venv", str(venv)])  # a clean one: no system site-packages
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # the CPU build on this machine's disk, before anything asks for torch
    run([str(py), "-m", "pip", "install", "-q", "torch==2.13.0"], env=env)
    run([str(py), "-m", "pip", "install", "-q", str(wheel)], env=env)
    return venv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_install(venv: Path, cwd: Path, env: dict) -> None:
    """The venv imports the installed packages, not the checkout, and the demo's dry run
    points at the installed sample runs."""
    out = run(
        [str(venv / "bin" / "python"), "-c", "import dashboard; print(dashboard.__file__)"],
        cwd=cwd,
        env=env,
    )
    where = Path(out.stdout.strip())
    if venv not in where.parents:
        raise SmokeError(f"the venv imported dashboard from {where}, not from itself")
    out = run([str(venv / "bin" / "infoscope"), "demo", "--dry-run"], cwd=cwd, env=env)
    root = out.stdout.split("--root")[-1].strip()
    if venv not in Path(root).parents or not (Path(root) / "information-plane-tanh").is_dir():
        raise SmokeError(f"infoscope demo would open {root!r}, not the installed sample runs")
    run([str(venv / "bin" / "infoscope"), "demo", "--help"], cwd=cwd, env=env)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SmokeError(f"infoscope demo exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status
        except OSError:
            time.sleep(0.5)
    raise SmokeError(f"{url} did not answer within {timeout:g} s")


def check_browser(url: str, artifacts: Path) -> None:
    from playwright.sync_api import sync_playwright

    # the checkout's settings for the headless Chromium (the CI interpreter has it installed)
    from dashboard.serve import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"{url}/information-plane")  # no run named: the page's first view
            page.get_by_role("heading", name="Information plane", exact=True).first.wait_for(
                timeout=60_000
            )
            page.wait_for_function(RENDERED, timeout=60_000, polling=250)
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "wheel_information_plane.png"), full_page=True)
            body = page.inner_text("body")
            if page.locator('[data-testid="stException"]').count() or "Traceback" in body:
                raise SmokeError(f"the Information-plane page shows an exception:\n{body[:3000]}")
            panels = page.evaluate(PANELS)
            titles = set(panels["titles"])
            want = {"information-plane-tanh", "information-plane-relu"}
            if not want <= titles or len(panels["axes"]) < 2:
                raise SmokeError(
                    f"expected the tanh and ReLU sample runs side by side, got panels "
                    f"{sorted(titles)} on axes {panels['axes']}"
                )
            print(f"information plane: panels {sorted(titles)}, {panels['traces']} traces")
        finally:
            browser.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="infoscope-wheel-"))
    proc = None
    t0 = time.monotonic()
    try:
        step("build")
        wheel = build_wheel(tmp)
        check_contents(wheel)
        step(f"install into a clean venv ({time.monotonic() - t0:.0f} s)")
        venv = make_venv(tmp, wheel)
        away = tmp / "elsewhere"  # outside the checkout: nothing of it on the path
        away.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["STREAMLIT_SERVER_HEADLESS"] = "true"  # no browser tab, no e-mail prompt
        check_install(venv, away, env)
        step(f"infoscope demo ({time.monotonic() - t0:.0f} s)")
        port = free_port()
        log = (tmp / "demo.log").open("w")
        proc = subprocess.Popen(
            [str(venv / "bin" / "infoscope"), "demo", "--port", str(port)],
            cwd=away,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: the Streamlit child stops with it
        )
        url = f"http://127.0.0.1:{port}"
        status = wait_http(url, proc)
        if status != 200:
            raise SmokeError(f"{url} answered HTTP {status}")
        print(f"{url}: HTTP {status}")
        check_browser(url, REPO / "test-artifacts")
        print(f"wheel smoke: ok ({time.monotonic() - t0:.0f} s)")
        return 0
    except SmokeError as exc:
        print(f"wheel smoke: FAILED: {exc}", file=sys.stderr)
        demo_log = tmp / "demo.log"
        if demo_log.exists():
            print(f"infoscope demo's output:\n{demo_log.read_text()[-3000:]}", file=sys.stderr)
        return 1
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
