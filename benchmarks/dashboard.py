"""Dashboard speed on a 1M-row run, page by page, against a one-chart Streamlit app, in
headless Chromium, with where the time goes.

A run with 1,015,000 scalar rows is written (50 layers x 20 per-layer metrics x 1000 steps:
information plane, representation, activation, gradient and per-head attention metrics;
plus 15 whole-model language-model and RL series, a token-entropy histogram per step and a
few alerts with their evidence), the dashboard is served with ``streamlit run`` and every
page is opened on it. Per page it prints the time from the request to a rendered page (the
script finished, no skeletons, every Plotly chart drawn):

- cold: a fresh browser context (no HTTP cache, a new server session; the server's
  cross-session caches are as earlier visits left them), best of ``--repeat``;
- warm: a new tab in a context that has opened the app before (HTTP cache warm), best of
  ``--repeat``;
- first: the first visit of the page after the server started (its data not cached yet).

and, for the best cold visit, where the time went: ``boot`` (navigation start to the
page's first websocket message: HTML, scripts, websocket), ``server`` (that message to the
last message before the page was drawn: the script run and the deltas it sent), ``draw``
(last message to drawn: React and Plotly in the browser), the bytes received on the
websocket, and the CPU seconds the server process and Chromium's processes spent on the
visit (a measure of work that a loaded machine stretches less than wall time). The anchor, a one-chart Streamlit app served and opened the same way, is
measured right before each page's visits (same load), and each ratio is against the
anchor measured next to it.

Then the run, kept open ("running"), gains rows (or an alert) at a new step while each
page is open with live refresh every second: the time from the fragment's rerun request
leaving the browser to the chart holding the new step, split into server (to the arrival
of the refresh's largest message, the chart's) and draw (from there to the chart drawn).

A second reference, "anchor+sidebar" (the anchor with the dashboard's page set-up and
sidebar, measured next to each page too), shows how much of a page's time is the frame
every page carries rather than the page itself.

    python benchmarks/dashboard.py [--steps 1000] [--layers 50] [--repeat 3] [--refreshes 7]

Goal (issue 15): every page at most 1.15x the anchor, cold and warm; live refresh under
200 ms. The machine may be shared: the load average is printed before and after.
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

try:  # CPU seconds per process (optional: without it those columns read 0)
    import psutil
except ImportError:  # pragma: no cover - psutil ships with most environments
    psutil = None

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dashboard.figures import REPRESENTATION_METRICS  # noqa: E402
from dashboard.serve import CHROMIUM, CHROMIUM_ARGS, serve  # noqa: E402
from diagnostics.runlog import RunWriter, open_run  # noqa: E402

VIEWPORT = {"width": 1400, "height": 1000}
#: per-layer metrics (20)
METRICS = [
    "info_plane/binning/I_XT",
    "info_plane/binning/I_TY",
    *REPRESENTATION_METRICS,
    "attn/entropy",
    "attn/entropy_norm",
] + [f"attn/entropy/h{h}" for h in range(4)]
#: whole-model metrics (15)
WHOLE = [
    "train/loss",
    "lm/token_entropy/mean",
    *(f"lm/token_entropy/{q}" for q in ("q05", "q25", "q50", "q75", "q95")),
    "lm/topk_entropy",
    "lm/topk_entropy_renorm",
    "lm/topk_mass",
    "lm/sum_p2",
    "rl/reward",
    "rl/cov/pos_share",
    "rl/cov/mean",
    "rl/completion_entropy",
]
#: URL path -> (title, query beyond the run, per-layer metrics a live refresh appends,
#: whole-model metrics it appends, whether it appends an alert); None: no live refresh
PAGES = {
    "": ("Runs", "", None),
    "information-plane": ("Information plane", "", (METRICS[:2], [], False)),
    "representations": ("Representations", "", (["repr/dse"], [], False)),
    "language-model": ("Language model", "", ([], WHOLE, False)),
    "collapse": ("Collapse indicators", "", ([], [], True)),
    "compare": ("Compare runs", "&cmp_metric=repr/dse", (["repr/dse"], [], False)),
}

# page-time hooks: websocket sends and receives (time, bytes), and when it was drawn
INIT = """
window.__sends = []; window.__recv = [];
const __send = WebSocket.prototype.send;
WebSocket.prototype.send = function (d) {
  if (!this.__hooked) {
    this.__hooked = true;
    this.addEventListener('message', (e) => {
      const d = e.data;
      window.__recv.push([performance.now(), d.byteLength || d.size || d.length || 0]);
    });
  }
  window.__sends.push(performance.now());
  return __send.call(this, d);
};
"""
RENDERED = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stSkeleton"]')) return false;
  if (!document.querySelector('h1')) return false;
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  if (!charts.every(c => c.querySelector('.js-plotly-plot .main-svg'))) return false;
  window.__drawn = performance.now();
  return true;
}"""
TIMES = "() => ({sends: window.__sends, recv: window.__recv, drawn: window.__drawn})"
# the first chart holding step >= STEP (x, or customdata for the information plane)
WAIT_STEP = """async (step) => {
  const has = () => {
    for (const el of document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')) {
      if (!el._fullData) continue;
      for (const t of el._fullData) {
        for (const x of (t.x || [])) if (x >= step) return true;
        for (const x of (t.customdata || [])) if (typeof x === 'number' && x >= step) return true;
      }
    }
    return false;
  };
  while (!has()) await new Promise(r => requestAnimationFrame(r));
  return performance.now();
}"""

FLOOR_APP = """
import plotly.graph_objects as go
import streamlit as st
st.title("floor")
st.plotly_chart(go.Figure(go.Scatter(x=list(range(40)), y=[i * i for i in range(40)])))
"""
#: the anchor with the dashboard's own page set-up and sidebar (what every page carries)
SIDEBAR_APP = """
import plotly.graph_objects as go
import streamlit as st
from dashboard import app
st.set_page_config(page_title="infoscope", layout="wide")
app.sidebar("runs")  # the sidebar as the Runs page draws it
st.title("floor")
st.plotly_chart(go.Figure(go.Scatter(x=list(range(40)), y=[i * i for i in range(40)])))
"""


def write_run(path: Path, *, layers: int, steps: int, keep_open: bool = False):
    """The benchmark run; returns the writer (open if ``keep_open``) and the layer names."""
    rng = np.random.default_rng(0)
    names = [f"blocks.{i}" for i in range(layers)]
    w = RunWriter(path, batch_rows=200_000, flush_seconds=3600, meta={"name": path.name})
    base = np.linspace(0.5, 3.0, layers)
    edges = np.linspace(0.0, 8.0, 31)
    for s in range(steps):
        vals = base * (1 + s / steps) + 0.05 * rng.standard_normal((len(METRICS), layers))
        w.log_many(
            (s, m, lay, v) for m, row in zip(METRICS, vals) for lay, v in zip(names, row.tolist())
        )
        h = 0.3 + 2.2 * np.exp(-s / (steps / 4))
        w.log_many(
            (s, m, None, h * (1 + 0.1 * i) + 0.01 * rng.standard_normal())
            for i, m in enumerate(WHOLE)
        )
        counts = np.histogram(rng.gamma(1.2, h / 1.2, 500), bins=edges)[0]
        w.log_distribution(s, "lm/token_entropy", edges=edges, counts=counts)
    onset = steps * 2 // 5
    w.alert(
        onset,
        "compression_onset",
        severity="info",
        layer=names[layers // 5],
        message=f"compression phase: I(X;T) of {names[layers // 5]} fell below 90% of its peak",
        evidence={
            "metric": METRICS[0],
            "layer": names[layers // 5],
            "steps": list(range(onset - 39, onset + 1)),
            "values": (2.0 - np.linspace(0, 0.3, 40)).tolist(),
            "threshold": 1.8,
            "direction": "below",
            "rule": "I_XT <= (1 - compression_drop) * peak",
            "related": {
                METRICS[1]: {
                    "steps": list(range(onset - 39, onset + 1)),
                    "values": [0.6] * 40,
                }
            },
        },
    )
    w.alert(
        steps // 2,
        "token_entropy_collapse",
        severity="critical",
        message="token entropy fell below 20% of its initial value",
        evidence={"metric": WHOLE[1], "threshold": 0.5, "direction": "below"},
    )
    for i in range(0, layers, 10):
        w.alert(
            steps * 3 // 4,
            "rank_collapse",
            severity="warning",
            layer=names[i],
            message=f"effective rank of {names[i]} fell",
            evidence={"metric": "repr/effective_rank", "threshold": 1.0, "direction": "below"},
        )
    w.flush()
    if not keep_open:
        w.close()
    return w, names


_KINDS: dict[int, str | None] = {}


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) used so far by each of this benchmark's child processes
    of a kind we measure: ``server:PORT`` (a Streamlit server) or ``browser`` (Chromium's
    processes), by process id."""
    out: dict[int, tuple[str, float]] = {}
    if psutil is None:
        return out
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.pid not in _KINDS:
                cmd = proc.cmdline()
                kind = None
                if any("streamlit" in c for c in cmd) and "--server.port" in cmd:
                    kind = f"server:{cmd[cmd.index('--server.port') + 1]}"
                elif cmd and "chrom" in Path(cmd[0]).name:
                    kind = "browser"
                _KINDS[proc.pid] = kind
            if _KINDS[proc.pid] is not None:
                t = proc.cpu_times()
                out[proc.pid] = (_KINDS[proc.pid], t.user + t.system)
        except psutil.Error:
            continue
    return out


def cpu_used(before: dict, after: dict, kind: str) -> float:
    """CPU seconds processes of ``kind`` used between two :func:`cpu_seconds` snapshots
    (a process that started in between counts from zero; one that ended is missed)."""
    return sum(t - before.get(pid, (kind, 0.0))[1] for pid, (k, t) in after.items() if k == kind)


def visit(ctx, url: str) -> tuple[dict, object]:
    """Open ``url`` in a new tab of ``ctx``; return the timings (s), the bytes received and
    the CPU seconds its server and the browser used, and the page."""
    port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
    page = ctx.new_page()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(RENDERED, timeout=180_000, polling=20)
    total = time.perf_counter() - t0
    cpu1 = cpu_seconds()
    if page.locator('[data-testid="stException"]').count():
        raise RuntimeError(f"exception on {url}: {page.inner_text('body')[:2000]}")
    t = page.evaluate(TIMES)
    first = t["sends"][0] if t["sends"] else 0.0
    received = [(at, n) for at, n in t["recv"] if at <= t["drawn"]]
    last = received[-1][0] if received else first
    server = f"server:{port}"
    return {
        "total": total,
        "boot": first / 1000,
        "server": (last - first) / 1000,
        "draw": (t["drawn"] - last) / 1000,
        "bytes": sum(n for _, n in received),
        "server_cpu": cpu_used(cpu0, cpu1, server),
        "browser_cpu": cpu_used(cpu0, cpu1, "browser"),
    }, page


def timed(ctx_factory, url: str) -> dict:
    ctx = ctx_factory()
    try:
        t, page = visit(ctx, url)
        page.close()
        return t
    finally:
        ctx.close()


def best(visits: list[dict]) -> dict:
    return min(visits, key=lambda v: v["total"])


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3, help="visits per page and kind (best)")
    ap.add_argument("--pages", nargs="*", help="URL paths to measure (default: all)")
    ap.add_argument(
        "--refreshes", type=int, default=7, help="live refreshes per page (the median counts)"
    )
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing (apt install chromium)")
        return 1
    from playwright.sync_api import sync_playwright

    pages = {p: v for p, v in PAGES.items() if not args.pages or p in args.pages}
    tmp = Path(tempfile.mkdtemp(prefix="infoscope_dash_bench_"))
    t = time.perf_counter()
    big, layer_names = write_run(tmp / "big", layers=args.layers, steps=args.steps, keep_open=True)
    write_s = time.perf_counter() - t
    with open_run(tmp / "big") as r:
        n_rows = r.last_id()
    print(
        f"run: {n_rows:,} scalar rows ({args.layers} layers x {len(METRICS)} metrics x "
        f"{args.steps} steps + {len(WHOLE)} whole-model series), a histogram per step, "
        f"written in {write_s:.1f} s"
    )
    stop = threading.Event()

    def heartbeat() -> None:  # keep the big run "running" (not stale) while we measure
        while not stop.wait(10):
            big.set_meta(updated=time.time())

    threading.Thread(target=heartbeat, daemon=True).start()
    floor_app = tmp / "floor_app.py"
    floor_app.write_text(FLOOR_APP)
    sidebar_app = tmp / "sidebar_app.py"
    sidebar_app.write_text(SIDEBAR_APP)
    print(f"load average {load()} on {os.cpu_count()} cores (before)")
    rows = {}
    with ExitStack() as stack:
        stack.callback(big.close)
        stack.callback(stop.set)
        url = stack.enter_context(serve(tmp))
        furl = stack.enter_context(serve(tmp, app=floor_app))
        surl = stack.enter_context(serve(tmp, app=sidebar_app)) + "/?run=big&live=false"
        pw = stack.enter_context(sync_playwright())
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        stack.callback(browser.close)

        def fresh():
            ctx = browser.new_context(viewport=VIEWPORT)
            ctx.add_init_script(INIT)
            return ctx

        warm_ctx = fresh()
        # each server's first session imports plotly, pandas and the pages: not timed
        visit(warm_ctx, furl)[1].close()
        visit(warm_ctx, surl)[1].close()
        visit(warm_ctx, f"{url}/?run=big&live=false")[1].close()
        for path, (_title, extra, _) in pages.items():
            q = f"{url}/{path}?run=big&live=false{extra}"
            first = timed(fresh, q)
            kinds = {"anchor": furl, "anchor+sidebar": surl, "page": q}
            cold = {k: [] for k in kinds}
            warm = {k: [] for k in kinds}
            for _ in range(args.repeat):
                for kind, u in kinds.items():
                    cold[kind].append(timed(fresh, u))
                    t_w, pg = visit(warm_ctx, u)
                    pg.close()
                    warm[kind].append(t_w)
            rows[path or "runs"] = (
                {k: best(v) for k, v in cold.items()},
                {k: best(v) for k, v in warm.items()},
                first,
            )
            c, w = rows[path or "runs"][:2]
            print(
                f"  {path or 'runs':<18} cold {c['page']['total']:.2f} s "
                f"({c['page']['total'] / c['anchor']['total']:.2f}x anchor "
                f"{c['anchor']['total']:.2f} s), warm {w['page']['total']:.2f} s "
                f"({w['page']['total'] / w['anchor']['total']:.2f}x anchor "
                f"{w['anchor']['total']:.2f} s)"
            )

        print(f"\nload average {load()} (after page loads)\n")
        head = (
            f"{'page':<18}{'cold s':>7}{'x':>6}{'warm s':>7}{'x':>6}{'first s':>8} |"
            f"{'boot':>6}{'server':>7}{'draw':>6}{'kB':>6} |{'srv cpu':>8}{'brw cpu':>8}{'x':>6}"
        )
        print(" " * 53 + "best cold: where the time went | CPU s (cold)")
        print(head)
        print("-" * len(head))
        for name, (c, w, first) in rows.items():
            a_c, a_w = c["anchor"], w["anchor"]
            a_cpu = a_c["server_cpu"] + a_c["browser_cpu"]
            for label, kind in (
                (name, "page"),
                ("  anchor+sidebar", "anchor+sidebar"),
                ("  anchor", "anchor"),
            ):
                v, vw = c[kind], w[kind]
                ratios = kind != "anchor"
                cpu = v["server_cpu"] + v["browser_cpu"]
                print(
                    f"{label:<18}{v['total']:>7.2f}"
                    + (f"{v['total'] / a_c['total']:>6.2f}" if ratios else " " * 6)
                    + f"{vw['total']:>7.2f}"
                    + (f"{vw['total'] / a_w['total']:>6.2f}" if ratios else " " * 6)
                    + (f"{first['total']:>8.2f}" if kind == "page" else " " * 8)
                    + f" |{v['boot']:>6.2f}{v['server']:>7.2f}{v['draw']:>6.2f}"
                    f"{v['bytes'] / 1e3:>6.0f} |{v['server_cpu']:>8.2f}{v['browser_cpu']:>8.2f}"
                    + (f"{cpu / a_cpu:>6.2f}" if ratios and a_cpu > 0 else "")
                )
        worst_c = max(c["page"]["total"] / c["anchor"]["total"] for c, _, _ in rows.values())
        worst_w = max(w["page"]["total"] / w["anchor"]["total"] for _, w, _ in rows.values())
        print(
            f"\nworst page: cold {worst_c:.2f}x, warm {worst_w:.2f}x the anchor "
            f"(goal <= 1.15x: {'met' if max(worst_c, worst_w) <= 1.15 else 'not met'})"
        )

        # ---------------------------------------------------------------- live refresh
        print("\nlive refresh (rows at a new step appended, refresh every 1 s):")
        print(f"{'page':<18}{'median ms':>10}{'server':>8}{'draw':>6}{'kB':>6}   all (ms)")
        step = args.steps
        for path, (_title, extra, live) in pages.items():
            if live is None:
                print(f"{path or 'runs':<18}{'(no live refresh on this page)':>40}")
                continue
            per_layer, whole, alert = live
            _, page = visit(warm_ctx, f"{url}/{path}?run=big&every=1{extra}")
            totals, server, draw, nbytes = [], [], [], []
            for _ in range(args.refreshes):
                page.wait_for_timeout(400)
                t_before = page.evaluate("() => performance.now()")
                big.log_many(
                    (step, m, lay, 1.0 + 0.001 * i)
                    for m in per_layer
                    for i, lay in enumerate(layer_names)
                )
                big.log_many((step, m, None, 0.5) for m in whole)
                if alert:
                    big.alert(
                        step, "saturation", severity="warning", message="bench", layer="blocks.0"
                    )
                big.flush()
                done = page.evaluate(WAIT_STEP, step)
                t = page.evaluate(TIMES)
                sends = [s for s in t["sends"] if t_before <= s <= done]
                if sends:
                    recv = [(at, n) for at, n in t["recv"] if sends[-1] <= at <= done]
                    totals.append(done - sends[-1])
                    # the chart's message: the largest (smaller ones, such as a caption
                    # sent after the chart, can arrive after it while it is being drawn)
                    chart = max(recv, key=lambda r: r[1])[0] if recv else sends[-1]
                    server.append(chart - sends[-1])
                    draw.append(done - chart)
                    nbytes.append(sum(n for _, n in recv))
                step += 1
            page.close()
            print(
                f"{path:<18}{np.median(totals):>10.0f}{np.median(server):>8.0f}"
                f"{np.median(draw):>6.0f}{np.median(nbytes) / 1e3:>6.0f}   "
                + ", ".join(f"{x:.0f}" for x in totals)
            )
        print(f"\nload average {load()} (end)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
