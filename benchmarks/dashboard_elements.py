"""What each kind of element costs a dashboard page load, one element at a time, against
the one-chart anchor of ``benchmarks/dashboard.py``, in headless Chromium.

``benchmarks/dashboard.py`` times whole pages; this benchmark says where a page's time
beyond the anchor comes from. Every case is a small Streamlit app served the way the
dashboard is (same runner options): the dashboard's page set-up and sidebar ("frame"), a
title, and then either the anchor's 40-point line with one more element (a selectbox, the
same selectbox in a popover, a segmented control, ``st.table``, a Markdown table, a
download button, a caption, a second chart) or, in place of the anchor's line, one of the
dashboard's figures built by its figure builders from the benchmark run (1M rows, the one
``benchmarks/dashboard.py`` writes). The anchor alone is measured too. The cases run
interleaved, ``--repeat`` cold visits each (a fresh browser context every time); the
median per case is printed with its difference to the frame (ms) and its ratio to the
anchor.

    python benchmarks/dashboard_elements.py [--repeat 5] [--only NAME ...]

The machine may be shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import textwrap
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

_spec = importlib.util.spec_from_file_location("bench_dashboard", HERE / "dashboard.py")
BD = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(BD)

#: what every case but the anchor starts with (the dashboard's page set-up and sidebar)
FRAME = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from dashboard import app
from dashboard import data as D
from dashboard import figures as F
from dashboard import view as V

RUN = D.probe_run(Path({root!r}), "big")
st.set_page_config(page_title="infoscope", layout="wide")
app.sidebar("runs")
st.title("element")


def anchor_chart():
    st.plotly_chart(go.Figure(go.Scatter(x=list(range(40)), y=[i * i for i in range(40)])))
"""

#: the information-plane figure as its page draws it (``MARKERS``: with its step markers)
IP = """
@st.cache_resource
def fig(markers):
    est = "binning"
    df = D.scalars(RUN, [f"info_plane/{est}/I_XT", f"info_plane/{est}/I_TY"])
    layers = D.with_layer_order(df)
    from dashboard.figures.info_plane import DEFAULT_LAYERS
    picked = V.evenly_spaced(layers, DEFAULT_LAYERS)  # as the page draws it
    frame = F.info_plane_frame(df[df["layer"].isin(picked)], est)
    f = F.info_plane_figure({"big": frame}, max_points=60)
    F.add_onset_markers(
        f, {"big": F.onset_points(frame, D.alerts(RUN), est)}, {"big": frame}, unit="bits"
    )
    if not markers:
        f.for_each_trace(lambda t: t.update(mode="lines") if t.mode == "lines+markers" else t)
    return f
st.plotly_chart(fig(MARKERS), config={"displaylogo": False})"""

#: name -> the case's code after :data:`FRAME` (None: the anchor app itself)
CASES: dict[str, str | None] = {
    "anchor": None,
    "frame": "anchor_chart()",
    "+ selectbox": """
st.selectbox("Metric", [f"metric/{i}" for i in range(40)], key="m")
anchor_chart()""",
    "+ selectbox in a popover": """
with st.popover("Metric: metric/0"):
    st.selectbox("Metric", [f"metric/{i}" for i in range(40)], key="m")
anchor_chart()""",
    "+ segmented control": """
st.segmented_control("View", ["Lines", "Heatmap", "Small multiples"], default="Lines")
anchor_chart()""",
    "+ st.table (1 row)": """
anchor_chart()
st.table(pd.DataFrame({"last step": [999], "min": [0.1], "max": [2.0]}, index=["big"]))""",
    "+ Markdown table (1 row)": """
anchor_chart()
st.markdown(V.markdown_table(
    pd.DataFrame({"last step": [999], "min": [0.1], "max": [2.0]}, index=["big"]),
    index="run"))""",
    "+ download button": """
anchor_chart()
st.download_button("Download CSV", data=lambda: "a,b", file_name="x.csv",
                   on_click="ignore", icon=":material/download:", type="tertiary")""",
    "+ caption": """
st.caption("`repr/dse`: diffusion spectral entropy (DSE), in bits")
anchor_chart()""",
    "+ a second chart": """
anchor_chart()
st.plotly_chart(go.Figure(go.Scatter(x=list(range(40)), y=[i for i in range(40)])),
                key="second")""",
    "information-plane figure": "MARKERS = True\n" + IP,
    "information-plane figure, lines only": "MARKERS = False\n" + IP,
    "representations lines (8 layers)": """
@st.cache_resource
def fig():
    df = D.scalars(RUN, ["repr/dse"])
    df = df[df["layer"].notna()]
    picked = V.evenly_spaced(list(pd.unique(df["layer"])), 8)
    df = df[df["layer"].isin(picked)].assign(series=lambda d: d["layer"].astype(str))
    return F.line_figure(df, max_points=500, y_title="repr/dse (bits)")
st.plotly_chart(fig(), config={"displaylogo": False})""",
    "compare line (1 run)": """
@st.cache_resource
def fig():
    df = D.scalars(RUN, ["repr/dse"])
    df = df[df["layer"] == "blocks.0"].assign(series="big")
    return F.line_figure(df, max_points=500, title="repr/dse · blocks.0")
st.plotly_chart(fig(), config={"displaylogo": False})""",
    "token-entropy bands": """
@st.cache_resource
def fig():
    names = [f"lm/token_entropy/{q}" for q in ("mean", *F.QUANTILE_COLUMNS)]
    df = D.scalars(RUN, names)
    wide = df.pivot_table(index="step", columns="metric", values="value", aggfunc="last")
    wide.columns = [c.rsplit("/", 1)[1] for c in wide.columns]
    return F.quantile_band_figure({"big": wide.reset_index()}, max_points=500)
st.plotly_chart(fig(), config={"displaylogo": False})""",
    "token-entropy distribution": """
@st.cache_resource
def fig():
    steps, edges, frac = F.histogram_grid(D.distributions(RUN, "lm/token_entropy"))
    return F.distribution_heatmap_figure(steps, edges, frac)
st.plotly_chart(fig(), config={"displaylogo": False})""",
    "alert timeline": """
@st.cache_resource
def fig():
    return F.alert_timeline_figure(D.alerts(RUN).assign(run="big"))
st.plotly_chart(fig(), config={"displaylogo": False})""",
    "alert explanation": """
@st.cache_resource
def fig():
    a = D.alerts(RUN).iloc[0]
    ev = F.read_evidence(a["evidence"])
    df = D.scalars(RUN, [ev["metric"], *ev["related"]])
    def hist(m):
        return df[(df["metric"] == m) & (df["layer"] == ev["layer"])][["step", "value"]]
    return F.alert_explanation_figure(
        a["evidence"], step=float(a["step"]), message=a["message"], severity=a["severity"],
        metric=ev["metric"], layer=ev["layer"], history=hist(ev["metric"]),
        related_history={m: hist(m) for m in ev["related"]})
st.plotly_chart(fig(), config={"displaylogo": False})""",
}


def case_script(name: str, root: Path) -> str:
    """The app of case ``name`` on the benchmark run below ``root``."""
    code = CASES[name]
    if code is None:
        return BD.FLOOR_APP
    return FRAME.format(repo=str(REPO), root=str(root)) + textwrap.dedent(code) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="cold visits per case (median)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=50)
    ap.add_argument("--only", nargs="*", help="cases to measure (anchor and frame always)")
    args = ap.parse_args()
    if not Path(BD.CHROMIUM).exists():
        print(f"{BD.CHROMIUM} is missing (apt install chromium)")
        return 1
    from playwright.sync_api import sync_playwright

    names = [n for n in CASES if n in ("anchor", "frame") or not args.only or n in args.only]
    tmp = Path(tempfile.mkdtemp(prefix="infoscope_dash_elements_"))
    BD.write_run(tmp / "big", layers=args.layers, steps=args.steps)  # written and closed
    print(f"load average {BD.load()} on {os.cpu_count()} cores (before)")
    with ExitStack() as stack:
        urls = {}
        for i, name in enumerate(names):
            app = tmp / f"case_{i}.py"
            app.write_text(case_script(name, tmp))
            urls[name] = stack.enter_context(BD.serve(tmp, app=app)) + "/?run=big&live=false"
        pw = stack.enter_context(sync_playwright())
        browser = pw.chromium.launch(executable_path=BD.CHROMIUM, args=BD.CHROMIUM_ARGS)
        stack.callback(browser.close)

        def fresh():
            ctx = browser.new_context(viewport=BD.VIEWPORT)
            ctx.add_init_script(BD.INIT)
            return ctx

        for url in urls.values():  # each server's first session imports and caches: untimed
            BD.timed(fresh, url)
        times: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(args.repeat):
            for name, url in urls.items():
                times[name].append(BD.timed(fresh, url)["total"])
    print(f"load average {BD.load()} (after)\n")
    med = {n: statistics.median(t) for n, t in times.items()}
    print(f"{'case':<40}{'cold s':>8}{'x anchor':>10}{'vs frame ms':>13}   all (s)")
    for name in names:
        print(
            f"{name:<40}{med[name]:>8.2f}{med[name] / med['anchor']:>10.2f}"
            f"{1000 * (med[name] - med['frame']):>+13.0f}   "
            + ", ".join(f"{t:.2f}" for t in times[name])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
