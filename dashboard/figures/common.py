"""What the figure builders share: units (nats and bits), series colours, min/max ("M4")
downsampling (of one series or of a path through several), TensorBoard's EMA smoothing,
CSV export and small plotly helpers."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

LN2 = math.log(2.0)

#: Colours for series, cycled (plotly's D3 palette followed by its Alphabet palette).
PALETTE: tuple[str, ...] = tuple(qualitative.D3) + tuple(qualitative.Alphabet)

# metrics that are information quantities (stored in nats; shown in bits or nats)
_INFO_PREFIXES = ("info_plane/", "lm/token_entropy", "rl/completion_entropy", "rl/answer_entropy")
_INFO_EXACT = {
    "repr/dse",
    "repr/dsmi_y",
    "repr/dsmi_x",
    "repr/von_neumann",
    "lm/topk_entropy",
    "lm/topk_entropy_renorm",
}


def is_information_metric(metric: str) -> bool:
    """Whether ``metric`` is an entropy or mutual information (stored in nats).

    Normalised entropies (``attn/entropy_norm``), counts (effective rank) and
    probabilities are not.

    >>> is_information_metric("info_plane/binning/I_XT"), is_information_metric("repr/effective_rank")
    (True, False)
    """
    if metric.startswith(_INFO_PREFIXES) or metric in _INFO_EXACT:
        return True
    return metric == "attn/entropy" or metric.startswith("attn/entropy/h")


def convert_units(values, metric: str, unit: str):
    """``values`` (nats) in ``unit`` (``"bits"`` or ``"nats"``) if ``metric`` is an
    information quantity, else unchanged."""
    if unit not in ("bits", "nats"):
        raise ValueError(f"unit: expected 'bits' or 'nats', got {unit!r}")
    if unit == "bits" and is_information_metric(metric):
        return values / LN2
    return values


def unit_suffix(metric: str, unit: str) -> str:
    """`` (bits)`` or `` (nats)`` for an axis title if ``metric`` is an information
    quantity, else nothing."""
    return f" ({unit})" if is_information_metric(metric) else ""


# ---------------------------------------------------------- downsampling, smoothing
def minmax_indices(y: Sequence[float] | np.ndarray, max_points: int) -> np.ndarray:
    """Indices of ``y`` to draw so that a long series keeps its spikes.

    The series is cut into ``max_points // 4`` buckets of consecutive points; each bucket
    keeps its first, last, minimum and maximum point (the "M4" rule), so every
    extreme value survives while the number of points is at most ``max_points``.
    NaN and infinite values are never chosen as extremes but a bucket's first and last
    points are kept whatever they hold (so gaps stay visible).

    >>> y = np.zeros(1000); y[517] = 9.0
    >>> idx = minmax_indices(y, 40)
    >>> len(idx) <= 40, 517 in idx
    (True, True)
    """
    return path_extremes_indices([y], max_points)


def path_extremes_indices(columns: Sequence, max_points: int) -> np.ndarray:
    """Indices to draw of a path through several series at once (a trajectory such as
    ``(I_XT(t), I_TY(t))``): :func:`minmax_indices` for ``k`` columns of equal length.

    The points are cut into ``max_points // (2 + 2k)`` buckets of consecutive points;
    each keeps its first and last point and, for every column, its minimum and maximum,
    so each column's extremes (a trajectory's turning points) survive and at most
    ``max_points`` points are kept.

    >>> x = np.sin(np.linspace(0, 3, 500)); y = np.linspace(0, 1, 500)
    >>> idx = path_extremes_indices([x, y], 60)
    >>> len(idx) <= 60, int(np.argmax(x)) in idx, 0 in idx and 499 in idx
    (True, True, True)
    """
    cols = [np.asarray(c, dtype=np.float64) for c in columns]
    n = cols[0].size if cols else 0
    if any(c.size != n for c in cols):
        raise ValueError(f"columns: expected equal lengths, got {[c.size for c in cols]}")
    per_bucket = 2 + 2 * len(cols)
    if max_points < per_bucket:
        raise ValueError(f"max_points: expected an integer >= {per_bucket}, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    n_buckets = max_points // per_bucket
    size = -(-n // n_buckets)  # ceil
    n_buckets = -(-n // size)
    offsets = np.arange(n_buckets) * size
    keep = [offsets, np.minimum(offsets + size - 1, n - 1)]
    for c in cols:
        padded = np.full(n_buckets * size, np.nan)
        padded[:n] = c
        finite = np.isfinite(padded)
        keep.append(offsets + np.argmin(np.where(finite, padded, np.inf).reshape(-1, size), 1))
        keep.append(offsets + np.argmax(np.where(finite, padded, -np.inf).reshape(-1, size), 1))
    idx = np.unique(np.concatenate(keep))
    return idx[idx < n]


def trajectory_indices(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """At most ``max_points`` indices of a trajectory ``(x[t], y[t])`` to draw: half the
    budget evenly spaced in time (first and last kept), half on the extremes of x and y
    per stretch of time (:func:`path_extremes_indices`), so a turning point (the peak of
    I(X;T) before compression, the lowest entropy) is never skipped.

    >>> x = np.r_[np.linspace(0, 1, 501), np.linspace(1, 0, 500)[1:]]; x[333] = 2.0
    >>> idx = trajectory_indices(x, np.zeros(1000), 40)
    >>> len(idx) <= 40, 333 in idx, 500 in idx
    (True, True, True)
    """
    n = len(x)
    if max_points < 12:
        raise ValueError(f"max_points: expected an integer >= 12, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    even = np.linspace(0, n - 1, max_points - max_points // 2).round().astype(int)
    return np.union1d(even, path_extremes_indices([x, y], max_points // 2))


def smooth_ema(y: Sequence[float] | np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average of ``y``.

    ``s_t = w s_{t-1} + (1 - w) y_t`` started at 0 and divided by ``1 - w^k`` (``k``
    finite points seen so far), so the first point is not pulled towards zero.
    Non-finite points are skipped (the output is NaN there) and do not disturb the
    average. ``weight`` in [0, 1); 0 returns ``y`` unchanged.

    >>> smooth_ema([1.0, 1.0, 1.0], 0.9).tolist()
    [1.0, 1.0, 1.0]
    """
    y = np.asarray(y, dtype=np.float64)
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"weight: expected a number in [0, 1), got {weight}")
    if weight == 0.0 or y.size == 0:
        return y.copy()
    out = np.full(y.shape, np.nan)
    finite = np.isfinite(y)
    v = y[finite]
    if v.size == 0:
        return out
    from scipy.signal import lfilter

    ema = lfilter([1.0 - weight], [1.0, -weight], v)
    debias = 1.0 - weight ** np.arange(1, v.size + 1)
    out[finite] = ema / debias
    return out


def to_csv(frame: pd.DataFrame) -> bytes:
    """``frame`` as UTF-8 CSV bytes (what a chart shows, for download)."""
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")


# ------------------------------------------------------------ plotly helpers
def series_color(i: int) -> str:
    """The ``i``-th series colour (:data:`PALETTE`, cycled)."""
    return PALETTE[i % len(PALETTE)]


def rgba(color: str, alpha: float) -> str:
    """``#rrggbb`` as a CSS ``rgba(...)`` with opacity ``alpha``."""
    color = color.lstrip("#")
    r, g, b = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def empty_figure(message: str) -> go.Figure:
    """A small blank figure that says ``message`` (what a builder returns for no data)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=200, margin=dict(l=10, r=10, t=30, b=10))
    return fig


def axis_type(log: bool) -> str:
    """Plotly's axis type for a log toggle."""
    return "log" if log else "linear"


def compact_steps(x: np.ndarray) -> np.ndarray:
    """Integer steps as int32 when they fit (half the bytes on the wire)."""
    if x.dtype.kind in "iu" and x.size and np.abs(x).max() < 2**31:
        return x.astype(np.int32)
    return x


def series_order(col: pd.Series) -> list:
    """Distinct values of ``col`` in first-seen order (a categorical's own order)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        present = set(col.dropna().unique())
        return [c for c in col.cat.categories if c in present]
    return list(pd.unique(col.dropna()))


def step_color(steps: np.ndarray) -> np.ndarray:
    """Marker colour values for steps: ``log10(step + 1)``, so early steps stay apart."""
    return np.log10(np.maximum(steps.astype(np.float64), 0) + 1.0)


#: the per-layer representation metrics the Representations page and the report show, in
#: their order (then any other metric under :data:`REPRESENTATION_PREFIXES`)
REPRESENTATION_METRICS = (
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
)
REPRESENTATION_PREFIXES = ("repr/", "act/", "grad/", "weight/")
