"""Line charts over steps: one line per series (layers or runs) with smoothing, min/max
downsampling, highlighting and vertical marks, and per-layer small multiples."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.common import (
    axis_type,
    compact_steps,
    empty_figure,
    minmax_indices,
    rgba,
    series_color,
    series_order,
    smooth_ema,
)


def _series_traces(
    x: np.ndarray,
    y: np.ndarray,
    *,
    name: str,
    color: str,
    smoothing: float,
    max_points: int,
    showlegend: bool = True,
    width: float = 1.8,
    faded: bool = False,
) -> list[dict]:
    """One series as Plotly trace dicts: faint raw curve under the smoothed one, both
    downsampled alike."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    shown = np.where(np.isfinite(y), y, np.nan)  # plotly cannot draw +/-inf
    idx = minmax_indices(shown, max_points)
    xs, raw = compact_steps(x[idx]), y[idx]
    line_alpha = 0.25 if faded else 1.0
    common = dict(type="scatter", x=xs, name=name, legendgroup=name)
    if smoothing > 0:
        sm = smooth_ema(y, smoothing)[idx]
        return [
            dict(
                common,
                y=shown[idx],
                mode="lines",
                showlegend=False,
                line=dict(color=rgba(color, 0.22 * line_alpha), width=1),
                hoverinfo="skip",
            ),
            dict(
                common,
                y=sm,
                customdata=raw,
                mode="lines",
                showlegend=showlegend,
                line=dict(color=rgba(color, line_alpha), width=width),
                hovertemplate=f"<b>{name}</b><br>step %{{x}}<br>smoothed %{{y:.6g}}"
                "<br>value %{customdata:.10g}<extra></extra>",
            ),
        ]
    return [
        dict(
            common,
            y=shown[idx],
            customdata=raw,
            mode="lines+markers" if len(xs) <= 60 else "lines",
            marker=dict(size=4),
            showlegend=showlegend,
            line=dict(color=rgba(color, line_alpha), width=width),
            hovertemplate=f"<b>{name}</b><br>step %{{x}}<br>value %{{customdata:.10g}}"
            "<extra></extra>",
        )
    ]


def _vline_x(step: float, log_x: bool) -> float:
    # shapes on a log axis are placed in log10 units
    return math.log10(step) if log_x and step > 0 else step


def line_figure(
    frame: pd.DataFrame,
    *,
    series: str = "series",
    x: str = "step",
    y: str = "value",
    smoothing: float = 0.0,
    log_x: bool = False,
    log_y: bool = False,
    max_points: int = 1000,
    title: str | None = None,
    y_title: str | None = None,
    highlight: Iterable[str] | None = None,
    marks: Iterable[tuple[float, str, str]] = (),
    height: int = 380,
    legend_below: bool = False,
) -> go.Figure:
    """Lines over steps, one per distinct value of ``frame[series]``.

    ``frame``: columns ``series`` (label), ``x`` (step), ``y`` (value). Series keep the
    order in which they first appear (or the categories' order for a categorical).
    ``smoothing``: EMA weight in [0, 1) (raw curve drawn faintly underneath).
    ``highlight``: series to draw thick while the others fade. ``marks``: vertical
    markers ``(step, colour, label)``, e.g. alerts. ``legend_below`` puts the legend
    under the plot (for narrow charts).
    """
    if frame.empty:
        return empty_figure("no data")
    highlight = set(highlight or ())
    labels = series_order(frame[series])
    xs_all = frame[x].to_numpy()
    ys_all = frame[y].to_numpy(dtype=np.float64)
    codes = pd.Categorical(frame[series].astype(object), categories=labels).codes
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(labels) + 1))
    traces: list[dict] = []
    for i, label in enumerate(labels):
        sel = order[bounds[i] : bounds[i + 1]]
        if sel.size == 0:
            continue
        is_hi = label in highlight
        traces += _series_traces(
            xs_all[sel],
            ys_all[sel],
            name=str(label),
            color=series_color(i),
            smoothing=smoothing,
            max_points=max_points,
            width=3.5 if is_hi else 1.8,
            faded=bool(highlight) and not is_hi,
        )
    shapes = [
        dict(
            type="line",
            xref="x",
            yref="paper",
            x0=_vline_x(step, log_x),
            x1=_vline_x(step, log_x),
            y0=0,
            y1=1,
            line=dict(color=color, width=1.5, dash="dot"),
            label=dict(text=label, textposition="end", font=dict(size=10, color=color)),
        )
        for step, color, label in marks
    ]
    layout = dict(
        height=height,
        margin=dict(l=10, r=10, t=40 if title else 20, b=10),
        hovermode="closest",
        legend=dict(orientation="h", y=-0.25, x=0) if legend_below else dict(orientation="v"),
        xaxis=dict(title=dict(text="step"), type=axis_type(log_x)),
        yaxis=dict(title=dict(text=y_title), type=axis_type(log_y)),
    )
    if title:
        layout["title"] = dict(text=title)
    if shapes:
        layout["shapes"] = shapes
    # assembled from plain dicts without Plotly's validation (what it checks is fixed
    # here; validating a few thousand points per trace cost most of a page's script time)
    return go.Figure(dict(data=traces, layout=layout), _validate=False)


def small_multiples_figure(
    frame: pd.DataFrame,
    *,
    facet: str = "layer",
    series: str = "run",
    smoothing: float = 0.0,
    log_x: bool = False,
    log_y: bool = False,
    max_points: int = 300,
    columns: int = 4,
    max_facets: int = 16,
    y_title: str | None = None,
) -> go.Figure:
    """One small panel per ``facet`` value (e.g. per layer), lines per ``series`` (run).

    At most ``max_facets`` panels (the first ones in order); shared axes.
    """
    if frame.empty:
        return empty_figure("no data")
    facets = series_order(frame[facet])[:max_facets]
    labels = series_order(frame[series])
    cols = min(columns, len(facets))
    rows = -(-len(facets) // cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[str(f) for f in facets],
        shared_xaxes="all",
        shared_yaxes="all",
        horizontal_spacing=0.03,
        vertical_spacing=min(0.08, 0.5 / max(rows, 1)),
    )
    for k, fv in enumerate(facets):
        r, c = k // cols + 1, k % cols + 1
        part = frame[frame[facet] == fv]
        for i, label in enumerate(labels):
            sub = part[part[series] == label]
            if sub.empty:
                continue
            for trace in _series_traces(
                sub["step"].to_numpy(),
                sub["value"].to_numpy(dtype=np.float64),
                name=str(label),
                color=series_color(i),
                smoothing=smoothing,
                max_points=max_points,
                showlegend=k == 0,
            ):
                fig.add_trace(trace, row=r, col=c)
    fig.update_layout(
        height=max(240, 190 * rows + 60),
        margin=dict(l=10, r=10, t=40, b=10),
        showlegend=len(labels) > 1,
    )
    fig.update_xaxes(type=axis_type(log_x))
    fig.update_yaxes(type=axis_type(log_y))
    if y_title:
        fig.update_yaxes(title=y_title, col=1)
    return fig
