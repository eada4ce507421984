"""Dashboard speed on a large run, in headless Chromium.

A run with 1,000,000 scalar rows (50 layers x 20 metrics x 1000 steps) is written, the
app is started with ``streamlit run`` and Chromium (Playwright) opens the information-plane
and representations pages. For each page it prints the time from the request to a rendered
page (the script finished, no skeletons, every plotly chart drawn), cold (fresh browser
context: scripts fetched, cross-session data cache empty) and warm (another session: HTTP
and data caches warm), and the bytes the app sent over its websocket. The anchor, measured
in the same run, is Streamlit's floor: a one-chart Streamlit app served and opened the same
way; the same pages on a small run (5 layers x 14 metrics x 40 steps) are shown too.

Then 100 rows are appended to the big run (still open, so "running") and the live refresh
is timed in the page: from the fragment's rerun request leaving the browser to the chart
holding the new step.

    python benchmarks/dashboard.py [--steps 1000] [--layers 50]

Goal on this machine: < 2 s per page, < 200 ms per live refresh.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dashboard.serve import serve  # noqa: E402
from diagnostics.runlog import RunWriter, open_run  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
METRICS = [
    "info_plane/binning/I_XT",
    "info_plane/binning/I_TY",
    "repr/dse",
    "repr/dsmi_y",
    "repr/dsmi_x",
    "repr/effective_rank",
    "repr/von_neumann",
    "repr/alpha_req",
    "act/mean",
    "act/std",
    "act/dead_frac",
    "act/saturated_frac",
    "grad/norm",
    "weight/norm",
] + [f"custom/m{i}" for i in range(6)]
PAGES = {"information-plane": "Information plane", "representations": "Representations"}

RENDERED = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stSkeleton"]')) return false;
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  return charts.length >= MIN && charts.every(c => c.querySelector('.js-plotly-plot .main-svg'));
}"""
# record when the page sends websocket messages (rerun requests), in page time
INIT = """
window.__sends = []; window.__recv = [];
const __send = WebSocket.prototype.send;
WebSocket.prototype.send = function (d) {
  if (!this.__hooked) {
    this.__hooked = true;
    this.addEventListener('message', () => window.__recv.push(performance.now()));
  }
  window.__sends.push(performance.now());
  return __send.call(this, d);
};
"""
WAIT_STEP = """async (step) => {
  const has = () => {
    const el = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
    if (!el || !el._fullData) return false;
    for (const t of el._fullData) for (const x of (t.x || [])) if (x >= step) return true;
    return false;
  };
  while (!has()) await new Promise(r => requestAnimationFrame(r));
  return {t: performance.now(), sends: window.__sends.slice(), recv: window.__recv.slice()};
}"""


def write_run(path: Path, *, layers: int, steps: int, metrics: list[str], keep_open=False):
    rng = np.random.default_rng(0)
    names = [f"blocks.{i}" for i in range(layers)]
    w = RunWriter(path, batch_rows=200_000, flush_seconds=3600)
    base = np.linspace(0.5, 3.0, layers)
    for s in range(steps):
        vals = base * (1 + s / steps) + 0.05 * rng.standard_normal((len(metrics), layers))
        w.log_many(
            (s, m, lay, v) for m, row in zip(metrics, vals) for lay, v in zip(names, row.tolist())
        )
    w.flush()
    if not keep_open:
        w.close()
    return w, names


FLOOR_APP = """
import plotly.graph_objects as go
import streamlit as st
st.title("floor")
st.plotly_chart(go.Figure(go.Scatter(x=list(range(40)), y=[i * i for i in range(40)])))
"""


def visit(ctx, url: str, *, charts: int = 1) -> tuple[float, int, object]:
    """Open ``url`` in a new tab of ``ctx``: (seconds to rendered, websocket bytes, page)."""
    page = ctx.new_page()
    received = [0]
    page.on(
        "websocket",
        lambda ws: ws.on(
            "framereceived", lambda payload: received.__setitem__(0, received[0] + len(payload))
        ),
    )
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(RENDERED.replace("MIN", str(charts)), timeout=120_000, polling=50)
    dt = time.perf_counter() - t0
    if page.locator('[data-testid="stException"]').count():
        raise RuntimeError(f"exception on {url}: {page.inner_text('body')[:2000]}")
    return dt, received[0], page


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=50)
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing (apt install chromium)")
        return 1
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="infoscope_dash_bench_"))
    t = time.perf_counter()
    big, layer_names = write_run(
        tmp / "big", layers=args.layers, steps=args.steps, metrics=METRICS, keep_open=True
    )
    write_s = time.perf_counter() - t
    write_run(tmp / "small", layers=5, steps=40, metrics=METRICS[:14])
    with open_run(tmp / "big") as r:
        n_rows = r.last_id()
        t = time.perf_counter()
        r.scalars(metrics=METRICS[:2])
        q_ip = time.perf_counter() - t
        t = time.perf_counter()
        r.scalars(metrics=["repr/dse"])
        q_rep = time.perf_counter() - t
    print(
        f"run: {n_rows:,} scalar rows ({args.layers} layers x {len(METRICS)} metrics x "
        f"{args.steps} steps), written in {write_s:.1f} s"
    )
    print(f"reader alone: info-plane metrics {q_ip * 1000:.0f} ms, repr/dse {q_rep * 1000:.0f} ms")

    stop = threading.Event()

    def heartbeat() -> None:  # keep the big run "running" (not stale) while we measure
        while not stop.wait(10):
            big.set_meta(updated=time.time())

    threading.Thread(target=heartbeat, daemon=True).start()
    floor_app = tmp / "floor_app.py"
    floor_app.write_text(FLOOR_APP)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    results = {}
    with ExitStack() as stack:
        stack.callback(big.close)
        stack.callback(stop.set)
        url = stack.enter_context(serve(tmp))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            # ------------------------------------------------ anchor: Streamlit's floor
            with serve(tmp, app=floor_app) as furl:
                fctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                visit(fctx, furl)[2].close()  # first session imports plotly: not timed
                floor_cold = []
                for _ in range(2):
                    c = browser.new_context(viewport={"width": 1400, "height": 1000})
                    dt, _, pg = visit(c, furl)
                    pg.close()
                    c.close()
                    floor_cold.append(dt)
                floor_warm = min(visit(fctx, furl)[0] for _ in range(2))
                fctx.close()
            floor = min(floor_cold)
            print(f"anchor (one-chart Streamlit app): cold {floor:.2f} s, warm {floor_warm:.2f} s")
            warm_ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            warm_ctx.add_init_script(INIT)
            # the server's first session imports plotly, pandas and the pages: not timed
            _, _, page = visit(warm_ctx, f"{url}/?run=small", charts=0)
            page.close()
            print(f"\n{'page':<20}{'run':<7}{'cold s':>8}{'warm s':>8}{'ws bytes':>12}")
            for path, _title in PAGES.items():
                for run in ("small", "big"):
                    q = f"{url}/{path}?run={run}&every=1"
                    colds, warms = [], []
                    for _ in range(2):  # best of two: the machine is shared
                        cold_ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                        cold, nbytes, page = visit(cold_ctx, q)
                        page.close()
                        cold_ctx.close()
                        warm, _, page = visit(warm_ctx, q)
                        page.close()
                        colds.append(cold)
                        warms.append(warm)
                    cold, warm = min(colds), min(warms)
                    results[(path, run)] = (cold, warm, nbytes)
                    print(f"{path:<20}{run:<7}{cold:>8.2f}{warm:>8.2f}{nbytes:>12,}")
            print()
            for path in PAGES:
                cold, warm, nbytes = results[(path, "big")]
                a_cold, a_warm, _ = results[(path, "small")]
                print(
                    f"{path} (big run): cold {cold:.2f} s = {cold / floor:.2f}x anchor, warm "
                    f"{warm:.2f} s = {warm / floor_warm:.2f}x anchor; big/small "
                    f"{cold / a_cold:.2f}x; cold = {cold / 2.0:.2f} of the 2 s goal "
                    f"({'ok' if cold < 2 else 'over'}), {nbytes / 1e3:.0f} kB"
                )

            # ---------------------------------------------------------- live refresh
            print("\nlive refresh (100 rows appended, refresh every 1 s):")
            step = args.steps
            for path, metrics in (
                ("representations", ["repr/dse", "repr/effective_rank"]),
                ("information-plane", ["info_plane/binning/I_XT", "info_plane/binning/I_TY"]),
            ):
                _, _, page = visit(warm_ctx, f"{url}/{path}?run=big&every=1")
                times, server = [], []
                for _ in range(3):
                    page.wait_for_timeout(300)
                    t_before = page.evaluate("() => performance.now()")
                    big.log_many(
                        (step, m, lay, 1.0 + 0.001 * i)
                        for m in metrics
                        for i, lay in enumerate(layer_names)
                    )
                    big.flush()
                    if path == "information-plane":
                        done = page.evaluate(WAIT_STEP.replace("t.x ||", "t.customdata ||"), step)
                    else:
                        done = page.evaluate(WAIT_STEP, step)
                    sends = [s for s in done["sends"] if t_before <= s <= done["t"]]
                    if sends:
                        times.append(done["t"] - sends[-1])
                        recv = [r for r in done["recv"] if sends[-1] <= r <= done["t"]]
                        if recv:
                            server.append(recv[-1] - sends[-1])
                    step += 1
                page.close()
                print(
                    f"  {path:<20} request -> chart updated: "
                    + ", ".join(f"{x:.0f}" for x in times)
                    + f" ms (median {np.median(times):.0f} ms = {np.median(times) / 200:.2f} of "
                    "the 200 ms goal); of which request -> last message received: "
                    + ", ".join(f"{x:.0f}" for x in server)
                    + " ms"
                )
            browser.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
