"""What the dashboard's pages share besides data: view settings bound to the URL, empty
states that say what to do, charts with a CSV download, and live-refresh helpers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard import figures as F
from dashboard.data import Run, metric_names, probe_run, root, run_list, selected_runs
from dashboard.stories import mark_chosen
from diagnostics.runlog import RunLogError, open_run

#: Query-parameter binding and session persistence for every view-state widget, so a
#: URL reproduces the view and a value survives a page switch.
URL = {"bind": "query-params", "persist_state": "session"}


# ------------------------------------------------------------------- runs, empty states
def show_errors(runs: list[Run]) -> list[Run]:
    """Print one clear message per unreadable run; return the readable ones."""
    for r in runs:
        if not r.ok:
            st.error(f"**{r.rel}** cannot be shown: {r.error}", icon=":material/error:")
    return [r for r in runs if r.ok]


def require_runs() -> list[Run]:
    """The readable selected runs, or stop the page with an empty state."""
    base = root()
    if not base.is_dir():
        st.error(
            f"The runs folder **{base}** does not exist. Start the dashboard on a folder "
            "of runs: `infoscope dashboard PATH` (or `streamlit run app.py -- --root PATH`)."
        )
        st.stop()
    if not run_list(str(base)):
        no_runs_message(base)
        st.stop()
    runs = selected_runs()
    if not runs:
        st.info("Pick one or more runs in the sidebar.", icon=":material/arrow_back:")
        st.stop()
    good = show_errors(runs)
    if not good:
        st.stop()
    return good


def no_runs_message(base: Path) -> None:
    """The empty state of a root without runs: how to write one."""
    st.info(
        f"No runs below **{base}** yet. A run is a folder holding `run.sqlite`; write one "
        "from your training loop with\n\n"
        "```python\nfrom diagnostics import RunWriter\n"
        f"with RunWriter('{base}/my_run') as w:\n    w.log(step, {{'train/loss': loss}})\n```\n"
        "or attach the infoscope probes to your model. Runs appear here within seconds.",
        icon=":material/folder_open:",
    )


# ------------------------------------------------------------------- view controls
#: the sidebar's display settings (made in :mod:`dashboard.app`): session key -> (default,
#: the values it may take; None: a number from 0 to SMOOTHING_MAX)
SMOOTHING_MAX = 0.99
SETTINGS = {
    "unit": ("bits", ("bits", "nats")),
    "smooth": (0.0, None),
    "logx": (False, (False, True)),
    "logy": (False, (False, True)),
    "pts": (500, (250, 500, 1000, 2000, 5000)),  # ~2 pixels a point on a wide chart
    "live": (True, (False, True)),
    "every": (2, (1, 2, 5, 10, 30)),
}


def setting(key: str):
    """The display setting ``key`` of this session (its default until it is set)."""
    value = st.session_state.get(key)
    return SETTINGS[key][0] if value is None else value


def settings() -> dict:
    """The sidebar's shared display settings (see :mod:`dashboard.app`)."""
    return {
        "unit": setting("unit"),
        "smoothing": float(setting("smooth")),
        "log_x": bool(setting("logx")),
        "log_y": bool(setting("logy")),
        "max_points": int(setting("pts")),
    }


def run_every(runs: list[Run]) -> float | None:
    """Refresh period for fragments: only when live refresh is on and a run is running."""
    if not setting("live"):
        return None
    if any(r.live for r in runs):
        return float(setting("every"))
    return None


def _select_runs(rels: list[str]) -> None:
    st.session_state["run"] = rels
    mark_chosen()  # a pick of the reader: it stays on every page


def suggest_runs(has: Callable[[list[str]], bool], what: str, *, limit: int = 4) -> None:
    """In an empty state: offer a button that picks the runs below the root whose metrics
    satisfy ``has`` (e.g. the runs that logged an information plane)."""
    base = root()
    picked = set(st.session_state.get("run") or [])
    found = []
    for rel in run_list(str(base)):
        if rel in picked:
            continue
        run = probe_run(base, rel)
        if run.ok and has(metric_names(run)):
            found.append(rel)
        if len(found) == limit:
            break
    if found:
        st.button(
            f"Show the runs with {what}: {', '.join(found)}",
            on_click=_select_runs,
            args=(found,),
            key=f"suggest_{what}",
            icon=":material/arrow_forward:",
        )


def stop_until_new_rows(runs: list[Run]) -> None:
    """``st.stop()`` for an empty state; if a selected run is live, first start a small
    fragment that reruns the whole page as soon as that run has new rows (so a run that
    has not logged the page's metrics yet fills in by itself)."""
    every = run_every(runs)
    if every:
        seen = {r.rel: r.last_id for r in runs if r.live}

        @st.fragment(run_every=every)
        def watch() -> None:
            for r in runs:
                if r.rel not in seen:
                    continue
                try:
                    with open_run(r.path) as reader:
                        grew = reader.last_id() != seen[r.rel]
                except RunLogError:
                    continue
                if grew:
                    st.rerun()

        watch()
    st.stop()


def layer_picker(layers: list, *, default: list, key: str, help: str) -> list:
    """The layers to draw: a multiselect in a popover labelled with how many are picked
    (the chart's legend names them; the browser draws the picker only when it is opened).
    Bound to the URL like every view setting."""
    state = st.session_state
    if key in state:
        n = len(state[key] or [])
    elif key in st.query_params:
        n = len([v for v in st.query_params.get_all(key) if v in layers])
    else:
        n = len(default)
    with st.popover(f"Layers: {n} of {len(layers)}", icon=":material/layers:"):
        return st.multiselect("Layers", layers, default=default, key=key, help=help, **URL)


def picker(
    container,
    label: str,
    options: list,
    *,
    key: str,
    help: str | None = None,
    icon: str | None = None,
    width: str = "content",
    on_change: Callable[[], None] | None = None,
):
    """One of ``options``: a selectbox in a popover whose button names the current choice
    (``label: choice``). The browser draws a selectbox only when its popover is opened
    (each one drawn on the page cost a page load about 0.1 s). Bound to the URL like every
    view setting. ``container``: where the popover goes (``st`` or a column); ``width``:
    the popover button's (Streamlit's ``"content"``, ``"stretch"`` or pixels);
    ``on_change``: called when the reader picks another."""
    current = st.session_state.get(key)
    if current not in options:
        text = st.query_params.get(key)
        current = next((o for o in options if str(o) == text), options[0] if options else None)
    with container.popover(f"{label}: {current}", icon=icon, width=width):
        return st.selectbox(label, options, key=key, help=help, on_change=on_change, **URL)


def markdown_table(frame, *, index: str | None = None) -> str:
    """``frame`` as a GitHub-flavoured Markdown table (its index as the first column,
    headed ``index``, unless that is None). Cells are escaped: ``|``, backslashes,
    Markdown's emphasis and code marks, Streamlit's ``$`` (LaTeX), ``~`` and ``:`` (colours,
    icons) show as text, line breaks as spaces."""

    def cell(v) -> str:
        text = " ".join(str(v).split())
        for ch in "\\|*_`[]<>$~:":
            text = text.replace(ch, "\\" + ch)
        return text

    heads = ([index] if index is not None else []) + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cell(h) for h in heads) + " |", "|" + "---|" * len(heads)]
    for key, row in zip(frame.index, frame.itertuples(index=False)):
        cells = ([key] if index is not None else []) + list(row)
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return "\n".join(lines)


def evenly_spaced(items: list, k: int) -> list:
    if len(items) <= k:
        return list(items)
    idx = np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))
    return [items[i] for i in idx]


class _Sent(go.Figure):
    """A figure as :func:`chart` sends it: without plotly.py's default template.

    ``st.plotly_chart`` takes a figure's ``to_dict()``, which carries plotly.py's default
    template (in a Streamlit server, Streamlit's colour placeholders for every trace type).
    The browser copies and applies it at each of the chart's two draws (Streamlit draws
    every Plotly chart again right after mounting it), and Streamlit's theme, applied in
    the browser, sets the rest of the look (our figures set their own colours). Without it
    the server sends less and the browser draws the same chart sooner
    (``benchmarks/dashboard.py``). Only ``to_dict`` is used; the figure is left as it was.
    """

    def __init__(self, fig: go.Figure):  # BaseFigure's own set-up is not needed: a view
        object.__setattr__(self, "_sent", fig)

    def to_dict(self) -> dict:
        d = self._sent.to_dict()
        d.get("layout", {}).pop("template", None)
        return d


def chart(fig, data, *, key: str, file_name: str, **select):
    """Draw ``fig`` and offer ``data`` (what it shows: a DataFrame, or a function that makes
    it when the download is asked for) as a CSV download. ``select`` (``on_select``,
    ``selection_mode``) makes the chart a widget; its selection state is returned (else
    None)."""
    event = st.plotly_chart(_Sent(fig), key=key, config={"displaylogo": False}, **select)
    if callable(data) or (data is not None and not data.empty):
        frame = data if callable(data) else data.copy()
        st.download_button(
            "Download CSV",
            data=lambda: F.to_csv(frame() if callable(frame) else frame),
            file_name=file_name,
            mime="text/csv",
            key=f"{key}_csv",
            on_click="ignore",
            icon=":material/download:",
            type="tertiary",
        )
    return event if select else None


def live_caption(runs: list[Run]) -> None:
    live = [r.rel for r in runs if r.live]
    if live and run_every(runs):
        st.caption(
            f":green[●] live: {', '.join(live)} — refreshing every "
            f"{st.session_state.get('every', 2)} s (reads only new rows)"
        )


def short_json(obj) -> str:
    return json.dumps(obj, indent=2, default=str)
