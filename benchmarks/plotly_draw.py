"""Plotly's own share of a dashboard page load: each of the dashboard's figures drawn by
plotly.js alone in headless Chromium (no Streamlit), against the one-chart anchor's line.

``benchmarks/dashboard_elements.py`` says what each figure adds to a page load in
Streamlit; this one says how much of that is Plotly's drawing, and why a chart costs two
draws. The figures are those of the elements benchmark's figure cases, built by the
dashboard's figure builders from the same benchmark run (1M rows) and serialised as the
dashboard sends them (``dashboard.view.chart``: base64 arrays, no template); the anchor's
line as ``st.plotly_chart`` sends a plain figure (with Streamlit's template). Per figure,
in a fresh browser context each time (``--repeat`` times, medians):

- ``first``: ``Plotly.react`` of the figure into an empty page that has just loaded
  plotly.js, with a config like Streamlit's (a fullscreen button with its click handler):
  what a visitor's browser pays on a page load (Plotly's code is cold);
- ``mount``: the redraw that follows at once in Streamlit: right after mounting, its chart
  hands Plotly a JSON copy of the figure with the width set and a config whose fullscreen
  handler is a new function. Plotly compares configs by value, a new function differs, and
  a changed config makes ``Plotly.react`` plot the figure anew from scratch;
- ``warm``: the same first draw again in a page that has drawn it before;
- ``same config``: that redraw with the config unchanged (what the second draw would cost if
  the handler kept its identity; only Streamlit's frontend could do that).

    python benchmarks/plotly_draw.py [--repeat 7] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

_spec = importlib.util.spec_from_file_location("bench_elements", HERE / "dashboard_elements.py")
E = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(E)
BD = E.BD

ANCHOR = "anchor"
#: the elements benchmark's cases that draw one of the dashboard's figures
FIGURE_CASES = [n for n, code in E.CASES.items() if code and "def fig(" in code]

DRAW = """async (spec) => {
  // a config like the one Streamlit's chart passes: a fullscreen button whose click handler
  // is a new function each time the chart recomputes it
  const config = () => ({
    displaylogo: false, showSendToCloud: false,
    modeBarButtonsToRemove: ['lasso2d', 'select2d', 'sendChartToCloud'],
    modeBarButtonsToAdd: [{name: 'Fullscreen', title: 'Fullscreen',
      icon: {width: 600, height: 470, path: 'M0 0L1 1'}, click: () => {}}],
  });
  const copy = () => {
    const f = JSON.parse(JSON.stringify(spec));
    f.layout.width = g.getBoundingClientRect().width;
    return f;
  };
  const g = document.getElementById('g');
  let c = config();
  const t0 = performance.now();
  await Plotly.react(g, spec.data, spec.layout, c);
  const t1 = performance.now();
  const again = copy();
  await Plotly.react(g, again.data, again.layout, config());
  const t2 = performance.now();
  Plotly.purge(g);
  const t3 = performance.now();
  await Plotly.react(g, spec.data, spec.layout, (c = config()));
  const t4 = performance.now();
  const same = copy();
  await Plotly.react(g, same.data, same.layout, c);
  const t5 = performance.now();
  return {first: t1 - t0, mount: t2 - t1, warm: t4 - t3, same_config: t5 - t4};
}"""
PAGE = "<html><body><div id='g' style='width:1100px'></div></body></html>"


def plotly_js() -> Path:
    """plotly.js as the ``plotly`` package ships it."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def as_sent(fig, *, dashboard: bool = True) -> dict:
    """``fig`` as the dashboard's ``chart`` sends it (``dashboard=False``: as
    ``st.plotly_chart`` sends a plain figure, with Streamlit's default template)."""
    import plotly.io as pio
    import streamlit.elements.plotly_chart  # noqa: F401  (registers Streamlit's template)

    from dashboard.view import _Sent

    return json.loads(pio.to_json(_Sent(fig).to_dict() if dashboard else fig, validate=False))


class _Streamlit:
    """What a figure case's code calls of Streamlit: the figure it draws goes to
    ``drawn``."""

    def __init__(self, drawn: list) -> None:
        self.drawn = drawn

    @staticmethod
    def cache_resource(f):
        return f

    def plotly_chart(self, fig, **_) -> None:
        self.drawn.append(fig)


def figures(root: Path, names: list[str]) -> dict[str, dict]:
    """The figures of the elements benchmark's cases ``names`` (and the anchor's line) on
    the benchmark run below ``root``, as sent."""
    import pandas as pd
    import plotly.graph_objects as go
    from streamlit.logger import set_log_level

    from dashboard import data as D
    from dashboard import figures as F
    from dashboard import view as V

    set_log_level("error")  # the run's caches warn that no Streamlit server runs
    line = go.Figure(go.Scatter(x=list(range(40)), y=[i * i for i in range(40)]))
    out = {ANCHOR: as_sent(line, dashboard=False)}
    for name in names:
        drawn: list = []
        ns = {"st": _Streamlit(drawn), "np": np, "pd": pd, "go": go, "D": D, "F": F, "V": V}
        ns["RUN"] = D.probe_run(root, "big")
        exec(textwrap.dedent(E.CASES[name]), ns)
        (fig,) = drawn
        out[name] = as_sent(fig)
    return out


def measure(figs: dict[str, dict], repeat: int) -> dict[str, dict[str, list[float]]]:
    """Per figure and kind, the ``repeat`` times (ms), each in a fresh browser context."""
    from playwright.sync_api import sync_playwright

    js = plotly_js().read_text()
    times: dict[str, dict[str, list[float]]] = {n: {} for n in figs}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=BD.CHROMIUM, args=BD.CHROMIUM_ARGS)
        try:
            for _ in range(repeat):
                for name, spec in figs.items():
                    ctx = browser.new_context(viewport=BD.VIEWPORT)
                    try:
                        page = ctx.new_page()
                        page.set_content(PAGE)
                        page.add_script_tag(content=js)
                        got = page.evaluate(DRAW, spec)
                    finally:
                        ctx.close()
                    for kind, ms in got.items():
                        times[name].setdefault(kind, []).append(ms)
        finally:
            browser.close()
    return times


def report(times: dict[str, dict[str, list[float]]]) -> list[str]:
    """The table: medians (ms) per figure and kind, and first + mount against the
    anchor's."""
    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    base = med[ANCHOR]["first"] + med[ANCHOR]["mount"]
    lines = [
        f"{'figure':<40}{'first':>8}{'mount':>8}{'warm':>8}{'same config':>13}"
        f"{'first+mount':>13}{'x anchor':>10}"
    ]
    for name, m in med.items():
        both = m["first"] + m["mount"]
        lines.append(
            f"{name:<40}{m['first']:>8.1f}{m['mount']:>8.1f}{m['warm']:>8.1f}"
            f"{m['same_config']:>13.1f}{both:>13.1f}{both / base:>10.2f}"
        )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=7, help="fresh contexts per figure (median)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=50)
    ap.add_argument("--only", nargs="*", help="figure cases to measure (the anchor always)")
    args = ap.parse_args()
    if not Path(BD.CHROMIUM).exists():
        print(f"{BD.CHROMIUM} is missing (apt install chromium)")
        return 1
    names = [n for n in FIGURE_CASES if not args.only or n in args.only]
    tmp = Path(tempfile.mkdtemp(prefix="infoscope_plotly_draw_"))
    BD.write_run(tmp / "big", layers=args.layers, steps=args.steps)  # written and closed
    figs = figures(tmp, names)
    print(f"load average {BD.load()} on {os.cpu_count()} cores (before)")
    times = measure(figs, args.repeat)
    print(f"load average {BD.load()} (after)\n")
    print(f"median ms of {args.repeat} fresh pages per figure (plotly.js alone, no Streamlit)")
    print("\n".join(report(times)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
