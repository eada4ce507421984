"""The information plane: I(X;T) against I(T;Y) per layer over training, from run-log rows
to a side-by-side (one panel per run) figure with an optional growth animation."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.common import (
    LN2,
    empty_figure,
    rgba,
    series_color,
    series_order,
    step_color,
    trajectory_indices,
)

#: a trajectory that visits fewer distinct positions than this is drawn as points only: a
#: line through two or three positions suggests a path between them that was not measured
FEW_POSITIONS = 6


def distinct_positions(x: np.ndarray, y: np.ndarray, *, resolution: float) -> int:
    """How many distinct (x, y) positions a trajectory visits, positions closer than
    ``resolution`` on both axes counting as one."""
    if len(x) == 0:
        return 0
    grid = np.round(np.column_stack([x, y]) / max(resolution, 1e-12))
    return len(np.unique(grid[np.isfinite(grid).all(axis=1)], axis=0))


def info_plane_estimators(metrics: Iterable[str]) -> list[str]:
    """Estimators that logged both ``info_plane/{est}/I_XT`` and ``.../I_TY``."""
    metrics = set(metrics)
    out = []
    for m in sorted(metrics):
        parts = m.split("/")
        if len(parts) == 3 and parts[0] == "info_plane" and parts[2] == "I_XT":
            if f"info_plane/{parts[1]}/I_TY" in metrics:
                out.append(parts[1])
    return out


def info_plane_frame(scalars: pd.DataFrame, estimator: str, *, unit: str = "bits") -> pd.DataFrame:
    """Wide frame ``layer, step, I_XT, I_TY`` from run-log scalar rows.

    ``scalars``: rows of a run's scalar table (``step, metric, layer, value``); only
    ``info_plane/{estimator}/I_XT`` and ``I_TY`` rows are used. Values converted to
    ``unit``. Layers keep their logged order; rows with only one of the two are dropped.
    Per (layer, step), each metric's last non-missing value (rows come in id order).
    """
    xt, ty = f"info_plane/{estimator}/I_XT", f"info_plane/{estimator}/I_TY"
    is_xt, is_ty = _is_metric(scalars["metric"], xt), _is_metric(scalars["metric"], ty)
    rows = np.flatnonzero(is_xt | is_ty)
    layer = scalars["layer"]
    if isinstance(layer.dtype, pd.CategoricalDtype):
        codes, categories = layer.cat.codes.to_numpy()[rows], layer.cat.categories
    else:  # first-seen order
        codes, categories = pd.factorize(layer.to_numpy()[rows])
    values = scalars["value"].to_numpy(dtype=np.float64, na_value=np.nan)[rows]
    # the layers these rows name (missing values included), in their categories'
    # (logged) order, renumbered 0..n-1
    present = np.unique(codes[codes >= 0])
    ok = (codes >= 0) & ~np.isnan(values)
    if not ok.any():
        return pd.DataFrame(columns=["layer", "step", "I_XT", "I_TY"])
    renumber = np.full(len(categories), -1, dtype=np.int64)
    renumber[present] = np.arange(len(present))
    rows, codes, values = rows[ok], renumber[codes[ok]], values[ok]
    steps, step_values = pd.factorize(scalars["step"].to_numpy()[rows], sort=True)
    key = codes * len(step_values) + steps  # sorts as (layer, step)
    keys, last = [], []
    for mine in (is_xt[rows], is_ty[rows]):
        at = np.flatnonzero(mine)[::-1]
        # each (layer, step)'s last row (rows come in id order): its first one reversed
        uniq, first = np.unique(key[at], return_index=True)
        keys.append(uniq)
        last.append(at[first])
    both, ix, iy = np.intersect1d(keys[0], keys[1], assume_unique=True, return_indices=True)
    scale = 1 / LN2 if unit == "bits" else 1.0
    return pd.DataFrame(
        {
            "layer": pd.Categorical.from_codes(
                both // len(step_values), categories=categories[present]
            ),
            "step": step_values[both % len(step_values)],
            "I_XT": values[last[0][ix]] * scale,
            "I_TY": values[last[1][iy]] * scale,
        }
    )


def _is_metric(col: pd.Series, name: str) -> np.ndarray:
    """Which rows of a metric column are ``name`` (by its code, for a categorical)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = col.cat.categories
        if name not in cats:
            return np.zeros(len(col), dtype=bool)
        return col.cat.codes.to_numpy() == cats.get_loc(name)
    return (col == name).to_numpy(dtype=bool, na_value=False)


#: trajectories the information-plane page draws until the reader picks layers (evenly
#: spaced, first and last included): every step-coloured trajectory costs each draw
DEFAULT_LAYERS = 6

#: markers drawn per trajectory at most (Plotly thins them out evenly over the plot; the
#: line and the hover keep every point): SVG markers are what a browser draws slowest
MAX_MARKERS = 24


def info_plane_figure(
    panels: Mapping[str, pd.DataFrame],
    *,
    unit: str = "bits",
    max_points: int = 60,
    animate: bool = False,
    max_frames: int = 40,
    height: int = 520,
) -> go.Figure:
    """The information plane: I(X;T) (x) against I(T;Y) (y), one trajectory per layer.

    ``panels``: panel title (a run) -> frame from :func:`info_plane_frame`. One subplot
    per panel side by side with shared axes (e.g. tanh vs ReLU), titled with its key when
    there are several. Lines are coloured per layer; markers by step (log-scaled colour,
    one colour bar). A trajectory with fewer than :data:`FEW_POSITIONS` distinct positions
    (at 1% of the axes' span) is drawn as markers only, with a layer-coloured outline.
    Each trajectory is strided down to ``max_points`` points (first and last kept; SVG
    markers are what a browser draws slowest, about 0.2 ms each). ``animate`` adds a play
    button and a step slider that grow the trajectories (at most ``max_frames`` frames).
    """
    panels = {k: v for k, v in panels.items()}
    if not panels or all(v.empty for v in panels.values()):
        return empty_figure("no information-plane data")
    n = len(panels)
    cols = min(n, 3)
    rows = -(-n // cols)
    all_steps = np.concatenate([v["step"].to_numpy() for v in panels.values() if not v.empty])
    spans = [
        np.nanmax(v[c].to_numpy(dtype=np.float64)) - np.nanmin(v[c].to_numpy(dtype=np.float64))
        for v in panels.values()
        if not v.empty
        for c in ("I_XT", "I_TY")
    ]
    resolution = 0.01 * max([s for s in spans if np.isfinite(s)] + [1e-9])
    cmin, cmax = step_color(np.array([all_steps.min(), all_steps.max()]))
    cmax = cmax if cmax > cmin else cmin + 1
    lo, hi = int(all_steps.min()), int(all_steps.max())
    decades = [d for d in range(0, int(math.log10(max(hi, 1))) + 2) if lo <= 10**d <= hi * 10]
    # every trace carries the step colour scale itself (the first one draws the colour
    # bar): with a shared layout.coloraxis, Plotly's legend reads the first step value as
    # a colour and warns about it once per trace and redraw
    colorbar = dict(
        title=dict(text="step"),
        tickvals=[math.log10(10**d + 1) for d in decades],
        ticktext=[f"{10**d:g}" for d in decades],
    )
    layer_index: dict[str, int] = {}
    traces_meta = []  # (layer, steps, x, y) per trace, for the animation frames
    traces = []  # plain dicts: the figure is assembled once, without Plotly's validation
    for p, (title, df) in enumerate(panels.items()):
        if df.empty:
            continue
        xaxis, yaxis = _panel_axes(p)
        order = series_order(df["layer"])
        codes = pd.Categorical(df["layer"].astype(object), categories=order).codes
        sort = np.lexsort((df["step"].to_numpy(), codes))
        codes = codes[sort]
        all_s = df["step"].to_numpy()[sort]
        all_x = df["I_XT"].to_numpy(dtype=np.float64)[sort]
        all_y = df["I_TY"].to_numpy(dtype=np.float64)[sort]
        bounds = np.searchsorted(codes, np.arange(len(order) + 1))
        for k, layer in enumerate(order):
            a, b = bounds[k], bounds[k + 1]
            if b <= a:
                continue
            keep = a + trajectory_indices(all_x[a:b], all_y[a:b], max_points)
            steps, xs, ys = all_s[keep], all_x[keep], all_y[keep]
            new_layer = str(layer) not in layer_index
            li = layer_index.setdefault(str(layer), len(layer_index))
            few = distinct_positions(xs, ys, resolution=resolution) < FEW_POSITIONS
            outline = dict(color=series_color(li), width=2) if few else dict(width=0)
            marker = dict(
                color=step_color(steps),
                colorscale="Viridis",
                cmin=float(cmin),
                cmax=float(cmax),
                showscale=not traces,
                size=10 if few else 7,
                line=outline,
                maxdisplayed=MAX_MARKERS,
            )
            if not traces:
                marker["colorbar"] = colorbar
            traces.append(
                dict(
                    type="scatter",
                    x=xs,
                    y=ys,
                    xaxis=xaxis,
                    yaxis=yaxis,
                    customdata=steps,
                    mode="markers" if few else "lines+markers",
                    name=str(layer),
                    legendgroup=str(layer),
                    showlegend=new_layer,
                    line=dict(color=rgba(series_color(li), 0.55), width=1.5),
                    marker=marker,
                    hovertemplate=f"<b>{title}</b> · {layer}<br>step %{{customdata}}"
                    f"<br>I(X;T) %{{x:.6g}} {unit}<br>I(T;Y) %{{y:.6g}} {unit}<extra></extra>",
                )
            )
            traces_meta.append((str(layer), steps, xs, ys))
    # one panel: no panel title (the run is named in the hover and the sidebar)
    layout = _grid_layout(rows, cols, tuple(panels) if n > 1 else ("",))
    for key, axis in layout.items():
        if key.startswith(("xaxis", "yaxis")):
            axis["title"] = dict(text=f"I({'X;T' if key[0] == 'x' else 'T;Y'}) ({unit})")
    layout.update(
        height=height if rows == 1 else height * 0.8 * rows,
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(title=dict(text="layer"), orientation="h", y=-0.12),
        hovermode="closest",
    )
    fig = go.Figure(dict(data=traces, layout=layout), _validate=False)
    if animate and traces_meta:
        _add_growth_frames(fig, traces_meta, np.unique(all_steps), max_frames)
    return fig


def _panel_axes(p: int) -> tuple[str, str]:
    """The axes of panel ``p`` (0-based, row-major) of :func:`_grid_layout`'s grid."""
    return ("x", "y") if p == 0 else (f"x{p + 1}", f"y{p + 1}")


@functools.cache
def _grid_layout_dict(rows: int, cols: int, titles: tuple[str, ...]) -> str:
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=list(titles),
        shared_xaxes="all",
        shared_yaxes="all",
        horizontal_spacing=0.04,
        vertical_spacing=0.12,
    )
    return json.dumps(fig.to_dict()["layout"])


def _grid_layout(rows: int, cols: int, titles: tuple[str, ...]) -> dict:
    """The layout of a ``rows x cols`` grid of panels with shared axes and ``titles``
    (Plotly's ``make_subplots``, made once per grid: it is slower than the rest of the
    figure); a new dict on every call."""
    return json.loads(_grid_layout_dict(rows, cols, titles))


def _add_growth_frames(fig: go.Figure, traces_meta, steps: np.ndarray, max_frames: int) -> None:
    if len(steps) > max_frames:
        steps = steps[np.unique(np.linspace(0, len(steps) - 1, max_frames).round().astype(int))]
    frames = []
    for s in steps:
        data = []
        for _, st, xs, ys in traces_meta:
            upto = st <= s
            data.append(
                go.Scatter(
                    x=xs[upto],
                    y=ys[upto],
                    customdata=st[upto],
                    marker=dict(color=step_color(st[upto])),
                )
            )
        frames.append(go.Frame(data=data, name=str(int(s))))
    fig.frames = frames
    fig.update_layout(
        updatemenus=[
            dict(
                type="buttons",
                showactive=False,
                x=0,
                y=1.12,
                xanchor="left",
                buttons=[
                    dict(
                        label="▶ play",
                        method="animate",
                        args=[None, dict(frame=dict(duration=150, redraw=True), fromcurrent=False)],
                    ),
                    dict(
                        label="❚❚",
                        method="animate",
                        args=[[None], dict(mode="immediate", frame=dict(duration=0))],
                    ),
                ],
            )
        ],
        sliders=[
            dict(
                currentvalue=dict(prefix="step ≤ "),
                pad=dict(t=40),
                steps=[
                    dict(
                        label=str(int(s)),
                        method="animate",
                        args=[[str(int(s))], dict(mode="immediate", frame=dict(duration=0))],
                    )
                    for s in steps
                ],
                active=len(steps) - 1,
            )
        ],
    )


def onset_points(frame: pd.DataFrame, alerts: pd.DataFrame, estimator: str) -> pd.DataFrame:
    """Where each compression-onset alert sits on its layer's trajectory.

    ``frame``: one run's :func:`info_plane_frame`; ``alerts``: that run's alert rows
    (``step, indicator, layer, message, evidence``). Keeps the ``compression_onset``
    alerts of ``estimator`` (as the evidence names it: ``estimator``, or the
    ``info_plane/{estimator}/...`` metric; alerts that name none count for every
    estimator) whose layer is in ``frame`` and whose step is within its records. Returns
    ``layer, step, I_XT, I_TY, message``: the trajectory's point at the alert's step (the
    last record at or before it).
    """
    cols = ["layer", "step", "I_XT", "I_TY", "message"]
    if frame.empty or alerts.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for _, a in alerts[alerts["indicator"] == "compression_onset"].iterrows():
        ev = a["evidence"] if isinstance(a["evidence"], Mapping) else {}
        named = ev.get("estimator")
        if not isinstance(named, str):
            metric = ev.get("metric") or ev.get("series")
            parts = metric.split("/") if isinstance(metric, str) else []
            named = parts[1] if len(parts) == 3 and parts[0] == "info_plane" else None
        if named is not None and named != estimator:
            continue
        rows = frame[frame["layer"] == a["layer"]]
        steps = rows["step"].to_numpy()
        if not len(steps) or a["step"] > steps.max() or a["step"] < steps.min():
            continue
        at = rows.iloc[int(np.searchsorted(steps, a["step"], side="right")) - 1]
        out.append((str(a["layer"]), int(a["step"]), at["I_XT"], at["I_TY"], str(a["message"])))
    return pd.DataFrame(out, columns=cols)


def add_onset_markers(
    fig: go.Figure, onsets: Mapping[str, pd.DataFrame], panels: Iterable[str], *, unit: str
) -> go.Figure:
    """Mark compression onsets on an :func:`info_plane_figure`: a red star per alert at
    its point of the trajectory (``onsets``: panel title -> :func:`onset_points`), in the
    panel of that title (``panels``: the titles in the figure's order), hover text with
    the step and the alert's message. Returns ``fig``."""
    titles = list(panels)
    shown = False
    for p, title in enumerate(titles):
        pts = onsets.get(title)
        if pts is None or pts.empty:
            continue
        xaxis, yaxis = _panel_axes(p)
        fig.add_trace(
            go.Scatter(
                x=pts["I_XT"].to_numpy(dtype=np.float64),
                y=pts["I_TY"].to_numpy(dtype=np.float64),
                customdata=np.stack(
                    [pts["layer"].astype(str), pts["step"].astype(str), pts["message"]], axis=-1
                ),
                mode="markers",
                name="compression onset",
                legendgroup="compression onset",
                showlegend=not shown,
                marker=dict(
                    symbol="star", size=18, color="#d62728", line=dict(color="white", width=1.5)
                ),
                hovertemplate=f"<b>compression onset</b> · {title} · %{{customdata[0]}}"
                f"<br>step %{{customdata[1]}}<br>I(X;T) %{{x:.6g}} {unit}<br>I(T;Y) "
                f"%{{y:.6g}} {unit}<br>%{{customdata[2]}}<extra></extra>",
                xaxis=xaxis,
                yaxis=yaxis,
            )
        )
        shown = True
    return fig
