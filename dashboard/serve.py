"""Start the dashboard as a ``streamlit run`` subprocess: the command line that
``infoscope dashboard`` runs, and :func:`serve`, which serves a runs folder on a free port
for as long as a ``with`` block lasts (the benchmark, the browser tests and the wheel's smoke
test use it, with the headless Chromium settings below)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: what ``streamlit run`` starts for the dashboard (run as a file, so it works from an
#: installed wheel): :mod:`dashboard.asgi`, Streamlit's server running ``app.py``
APP = Path(__file__).resolve().with_name("asgi.py")
#: the folder that holds this ``dashboard`` package (and, in a checkout, ``diagnostics``)
PACKAGE_PARENT = APP.parent.parent
#: the recorded runs shipped with the package (``infoscope demo`` opens them)
SAMPLE_RUNS = APP.with_name("sample_runs")
#: the headless Chromium the browser checks drive (Debian's package; ``BROWSER_PATH``
#: overrides), and its flags: no sandbox as root, no GPU, and none of the background
#: connections a closed network refuses
CHROMIUM = os.environ.get("BROWSER_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def streamlit_command(
    root: str | Path,
    *,
    app: str | Path = APP,
    host: str = "127.0.0.1",
    port: int = 8501,
    headless: bool = False,
) -> list[str]:
    """``python -m streamlit run APP ... -- --root ROOT``. ``headless`` opens no browser
    and watches no files (for servers that tests and benchmarks start)."""
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", host,
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        # no page uses "magic" (bare expressions written to the page); without it a
        # session's first run compiles the scripts without rewriting them (~15 ms a visit)
        "--runner.magicEnabled", "false",
        # no full garbage collection after every script run: with the dashboard's modules
        # loaded it walks ~140,000 objects (70-120 ms) while holding the GIL, so the run's
        # last messages (a live refresh's chart among them) wait for it; Python's own
        # collector still runs as objects are allocated
        "--runner.postScriptGC", "false",
    ]  # fmt: skip
    if headless:
        cmd += ["--server.headless", "true", "--server.fileWatcherType", "none"]
    return [*cmd, "--", "--root", str(root)]


def server_env() -> dict[str, str]:
    """The environment for the server: this process's, with :data:`PACKAGE_PARENT` first
    on ``PYTHONPATH`` so that the server imports this very ``dashboard`` package (a
    checkout's, even where another copy is installed), and ``PYTHONSAFEPATH`` set: ``python
    -m streamlit`` would otherwise put the working directory ahead of it, and a
    ``dashboard`` folder there (another checkout's root) would be imported instead (Python
    3.11 and later; 3.10 ignores it)."""
    env = dict(os.environ)
    env["PYTHONSAFEPATH"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_PARENT), env.get("PYTHONPATH", "")) if p
    )
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def serve(
    root: str | Path,
    *,
    app: str | Path = APP,
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout: float = 60.0,
) -> Iterator[str]:
    """Serve ``app`` (the dashboard by default) on ``root``; yield its URL once it answers
    ``/_stcore/health``; stop it when the block ends.

    ``port``: a free one if None. Raises :class:`RuntimeError` with the end of the
    server's output if it exits or does not answer within ``timeout`` seconds.

    >>> with serve("runs") as url:  # doctest: +SKIP
    ...     urllib.request.urlopen(url).status
    200
    """
    port = free_port(host) if port is None else port
    url = f"http://{host}:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            streamlit_command(root, app=app, host=host, port=port, headless=True),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(),
        )
        try:
            _wait_healthy(proc, url, timeout, log)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(proc: subprocess.Popen, url: str, timeout: float, log) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return
        except OSError:
            if proc.poll() is not None:
                why = f"it exited with code {proc.returncode}"
            elif time.monotonic() > deadline:
                why = f"it did not answer {url}/_stcore/health within {timeout:g} s"
            else:
                time.sleep(0.2)
                continue
            log.seek(0)
            output = log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"streamlit did not start: {why}. Its output:\n{output}") from None
