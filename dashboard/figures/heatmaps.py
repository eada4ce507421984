"""Heatmaps and distributions over steps: a layer x step heatmap of one metric, and logged
histograms or quantiles re-binned on one grid and drawn as a step x value heatmap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.common import axis_type, compact_steps, empty_figure, series_order

#: tallest automatic heatmap (px): a browser draws a heatmap in time that grows with its
#: area, and beyond ~25 rows the labels thin out anyway
MAX_HEIGHT = 640


def _grid(frame: pd.DataFrame, rows: list, x: str, y: str, z: str):
    """``(xs, grid)``: the distinct ``x`` values sorted, and the ``len(rows) x len(xs)``
    grid of ``z`` (NaN where nothing was logged; a cell logged twice keeps its last row)."""
    xv = frame[x].to_numpy()
    xs = np.unique(xv)
    ri = pd.Categorical(frame[y].astype(object), categories=rows).codes
    ok = ri >= 0
    flat = (ri.astype(np.int64) * len(xs) + np.searchsorted(xs, xv))[ok]
    values = frame[z].to_numpy(dtype=np.float64)[ok]
    _, last = np.unique(flat[::-1], return_index=True)
    pick = len(flat) - 1 - last
    grid = np.full(len(rows) * len(xs), np.nan)
    grid[flat[pick]] = values[pick]
    return xs, grid.reshape(len(rows), len(xs))


def heatmap_figure(
    frame: pd.DataFrame,
    *,
    x: str = "step",
    y: str = "layer",
    z: str = "value",
    max_columns: int = 300,
    log_x: bool = False,
    title: str | None = None,
    z_title: str | None = None,
    colorscale: str = "Viridis",
    height: int | None = None,
) -> go.Figure:
    """A ``y`` x ``x`` heatmap (e.g. layer x step) of ``frame[z]``.

    More than ``max_columns`` distinct ``x`` values are averaged into equal-count
    buckets (the hover shows the bucket's step range). Rows keep their first-seen
    order (the layer order of the run). The height grows with the rows up to
    :data:`MAX_HEIGHT` unless ``height`` is given.
    """
    if frame.empty:
        return empty_figure("no data")
    rows = series_order(frame[y])
    xs, zs = _grid(frame, rows, x, y, z)
    hover_x = "step %{x}"
    n_columns = len(xs)
    if len(xs) > max_columns:
        edges = np.linspace(0, len(xs), max_columns + 1).round().astype(int)
        finite = np.isfinite(zs)
        sums = np.add.reduceat(np.where(finite, zs, 0.0), edges[:-1], axis=1)
        counts = np.add.reduceat(finite, edges[:-1], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):  # all-NaN buckets stay NaN
            zs = np.where(counts > 0, sums / counts, np.nan)
        zs = zs.astype(np.float32)  # bucket means: float32 halves the bytes on the wire
        xs = xs[edges[1:] - 1]  # each column is labelled by the last step of its bucket
        hover_x = f"steps up to %{{x}} (mean over ~{-(-n_columns // max_columns)})"
    fig = go.Figure(
        go.Heatmap(
            x=compact_steps(xs),
            y=[str(r) for r in rows],
            z=np.where(np.isfinite(zs), zs, np.nan),
            colorscale=colorscale,
            colorbar=dict(title=z_title),
            hovertemplate=f"{y} %{{y}}<br>{hover_x}<br>value %{{z:.10g}}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        height=height or min(MAX_HEIGHT, max(260, 22 * len(rows) + 120)),
        margin=dict(l=10, r=10, t=40 if title else 20, b=10),
    )
    fig.update_xaxes(title=x, type=axis_type(log_x))
    fig.update_yaxes(title=y, autorange="reversed", type="category")
    return fig


def histogram_grid(
    dists: pd.DataFrame, *, bins: int = 60, max_steps: int = 400
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distributions over steps re-binned on one common grid.

    ``dists``: distribution rows (``step``, ``kind``, ``data``) as the run reader
    returns them; ``histogram`` rows (``edges``, ``counts``) and ``quantiles`` rows
    (``q``, ``values``) both work. Each row's cumulative distribution is interpolated
    linearly at the common edges (mass spread uniformly within a source bin) and
    differenced, then normalised to fractions. Returns ``(steps, edges, fractions)``
    with ``fractions`` of shape ``(bins, len(steps))``. Steps beyond ``max_steps`` are
    subsampled evenly (first and last kept); a step logged twice keeps its last row.
    """
    if dists.empty:
        return np.zeros(0), np.zeros(0), np.zeros((0, 0))
    d = dists.sort_values(["step", "id"] if "id" in dists else ["step"]).drop_duplicates(
        "step", keep="last"
    )
    if len(d) > max_steps:
        d = d.iloc[np.unique(np.linspace(0, len(d) - 1, max_steps).round().astype(int))]
    cdfs = []
    lo, hi = np.inf, -np.inf
    for kind, data in zip(d["kind"], d["data"]):
        if kind == "histogram":
            xs = np.asarray(data["edges"], dtype=np.float64)
            counts = np.asarray(data["counts"], dtype=np.float64)
            cum = np.concatenate([[0.0], np.cumsum(counts)])
        else:
            xs = np.asarray(data["values"], dtype=np.float64)
            cum = np.asarray(data["q"], dtype=np.float64)
        total = cum[-1] - cum[0] if cum.size else 0.0
        if xs.size < 2 or not total > 0:
            cdfs.append(None)
            continue
        cdfs.append((xs, (cum - cum[0]) / total))
        lo, hi = min(lo, xs[0]), max(hi, xs[-1])
    if not np.isfinite(lo) or hi <= lo:
        hi = lo + 1.0 if np.isfinite(lo) else 1.0
        lo = lo if np.isfinite(lo) else 0.0
    edges = np.linspace(lo, hi, bins + 1)
    out = np.full((bins, len(d)), np.nan)
    for j, cdf in enumerate(cdfs):
        if cdf is None:
            continue
        xs, c = cdf
        out[:, j] = np.diff(np.interp(edges, xs, c, left=0.0, right=1.0))
    return d["step"].to_numpy(), edges, out


def distribution_heatmap_figure(
    steps: np.ndarray,
    edges: np.ndarray,
    fractions: np.ndarray,
    *,
    y_title: str = "token entropy",
    log_x: bool = False,
    log_color: bool = False,
    height: int = 380,
) -> go.Figure:
    """Step x value heatmap of a distribution over steps (output of
    :func:`histogram_grid`); colour = fraction of tokens in the bin (``log_color``: its
    log10). Shares are sent as float32, and once unless ``log_color``."""
    if len(steps) == 0:
        return empty_figure("no distributions logged")
    centres = (edges[:-1] + edges[1:]) / 2
    share = np.asarray(fractions, dtype=np.float32)  # shares: 7 digits are plenty
    if log_color:  # the colour is log10(share); the hover still shows the share
        z = np.log10(share + np.float32(1e-6))
        extra = dict(customdata=share)
        hover_share = "%{customdata:.6g}"
    else:  # the colour is the share itself: sent once
        z, extra, hover_share = share, {}, "%{z:.6g}"
    fig = go.Figure(
        go.Heatmap(
            x=compact_steps(np.asarray(steps)),
            y=centres,
            z=z,
            colorscale="Blues",
            colorbar=dict(title="log10 share" if log_color else "share"),
            hovertemplate=f"step %{{x}}<br>{y_title} %{{y:.4g}}<br>share {hover_share}"
            "<extra></extra>",
            **extra,
        )
    )
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=20, b=10))
    fig.update_xaxes(title="step", type=axis_type(log_x))
    fig.update_yaxes(title=y_title)
    return fig
