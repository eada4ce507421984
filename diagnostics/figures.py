"""Figure builders: tidy pandas DataFrames in, plotly Figures out.

Plain functions, testable without Streamlit and reused by the dashboard (``app.py``) and
by static reports. No Streamlit and no torch import here.

Conventions shared by the builders:

- Input frames are *tidy*: one row per (series, step) with a ``value`` column, or the
  wide frames documented per builder. What a builder is given is what its chart shows,
  so ``to_csv(frame)`` is the "download what the chart shows" file (at full resolution;
  the chart itself may be downsampled for drawing).
- Long series are downsampled for drawing with :func:`minmax_indices` (the first, last,
  minimum and maximum point of each bucket, "M4"), which keeps spikes visible where
  plain striding would drop them.
- Smoothing is TensorBoard's debiased exponential moving average (:func:`smooth_ema`);
  the raw curve is drawn faintly underneath the smoothed one.
- Hover labels carry the exact logged value (``%{customdata:.10g}``).
- Information quantities are stored in nats; :func:`convert_units` turns them into bits
  (the information-plane convention) for display.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

__all__ = [
    "INDICATOR_INFO",
    "PALETTE",
    "SEVERITY_COLORS",
    "alert_timeline_figure",
    "attention_heatmap_figure",
    "attention_frame",
    "convert_units",
    "entropy_reward_figure",
    "fit_entropy_reward",
    "heatmap_figure",
    "histogram_grid",
    "distribution_heatmap_figure",
    "indicator_status",
    "info_plane_estimators",
    "info_plane_figure",
    "info_plane_frame",
    "is_information_metric",
    "line_figure",
    "minmax_indices",
    "quantile_band_figure",
    "small_multiples_figure",
    "smooth_ema",
    "to_csv",
]

LN2 = math.log(2.0)

#: Colours for series, cycled (plotly's D3 palette followed by its Alphabet palette).
PALETTE: tuple[str, ...] = tuple(qualitative.D3) + tuple(qualitative.Alphabet)

SEVERITY_COLORS = {"info": "#1f77b4", "warning": "#ff7f0e", "collapsed": "#d62728", "ok": "#2ca02c"}
SEVERITY_RANK = {"ok": 0, "info": 0, "warning": 1, "collapsed": 2}

#: What each collapse indicator means, where it comes from, and which logged series
#: shows it (``series``: metric names tried in order; ``*`` matches any estimator).
INDICATOR_INFO: dict[str, dict[str, object]] = {
    "rank_collapse": {
        "title": "Rank collapse",
        "text": "The effective rank of a layer's representation has fallen to a small "
        "fraction of its width: the features span only a few directions (dimensional "
        "collapse).",
        "source": "Roy & Vetterli 2007 (effective rank); Garrido et al. 2023 (RankMe).",
        "series": ("repr/effective_rank",),
    },
    "entropy_collapse": {
        "title": "Representation entropy collapse",
        "text": "The diffusion spectral entropy of a layer's representation dropped: its "
        "points lie on fewer, tighter clusters or a lower-dimensional manifold.",
        "source": "Liao, Liu et al. 2023 (diffusion spectral entropy and mutual information).",
        "series": ("repr/dse", "repr/von_neumann"),
    },
    "saturation": {
        "title": "Saturation",
        "text": "A large share of units sit at the flat ends of their nonlinearity (or are "
        "dead), so gradients through them vanish.",
        "source": "Glorot & Bengio 2010; Saxe et al. 2018 tie information-plane compression "
        "to tanh saturation.",
        "series": ("act/saturated_frac", "act/dead_frac"),
    },
    "memorisation": {
        "title": "Memorisation",
        "text": "The training fit improves while the representation's mutual information "
        "with the labels (DSMI) stays flat: the network memorises instead of learning "
        "generalisable features.",
        "source": "Liao, Liu et al. 2023 (DSMI under random labels).",
        "series": ("repr/dsmi_y",),
    },
    "compression_onset": {
        "title": "Compression onset",
        "text": "I(X;T) of a layer started to fall after the fitting phase: the "
        "compression phase of the information-plane picture.",
        "source": "Shwartz-Ziv & Tishby 2017; Saxe et al. 2018 (depends on the nonlinearity "
        "and the estimator).",
        "series": ("info_plane/*/I_XT",),
    },
    "token_entropy_collapse": {
        "title": "Token-entropy collapse",
        "text": "The policy's token entropy dropped fast during RL fine-tuning, so it "
        "explores less and the reward soon plateaus.",
        "source": "Cui et al. 2025, The Entropy Mechanism of Reinforcement Learning for "
        "Reasoning Language Models.",
        "series": ("lm/token_entropy/mean",),
    },
    "over_optimisation": {
        "title": "Likelihood over-optimisation",
        "text": "Top-k entropy and top-k probability mass are shrinking: the model is "
        "over-optimising likelihood in direct alignment, which hurts output diversity.",
        "source": "Shi et al. 2024, Understanding Likelihood Over-optimisation in Direct "
        "Alignment Algorithms.",
        "series": ("lm/topk_entropy", "lm/topk_mass"),
    },
    "positive_covariance": {
        "title": "Positive entropy-advantage covariance",
        "text": "Most tokens show positive covariance between log-probability and "
        "advantage, the term that drives policy entropy down.",
        "source": "Cui et al. 2025 (entropy dynamics; Clip-Cov / KL-Cov).",
        "series": ("rl/cov/pos_share", "rl/cov/mean"),
    },
    "attention_collapse": {
        "title": "Attention entropy collapse",
        "text": "Attention entropy of some heads is near zero: each query attends to a "
        "single key, a known precursor of training instability.",
        "source": "Zhai et al. 2023, Stabilizing Transformer Training by Preventing "
        "Attention Entropy Collapse.",
        "series": ("attn/entropy", "attn/entropy_norm"),
    },
    "entropic_overload": {
        "title": "Entropic overload",
        "text": "Many early-layer heads attend almost uniformly (near-maximal entropy) and "
        "carry little information.",
        "source": "Jha & Reagen 2024, ReLU's Revival: On the Entropic Overload in "
        "Normalization-Free Large Language Models.",
        "series": ("attn/entropy_norm", "attn/entropy"),
    },
}

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
    return f" ({unit})" if is_information_metric(metric) else ""


# ---------------------------------------------------------------------- primitives
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
    y = np.asarray(y, dtype=np.float64)
    n = y.size
    if max_points < 4:
        raise ValueError(f"max_points: expected an integer >= 4, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    n_buckets = max_points // 4
    size = -(-n // n_buckets)  # ceil
    n_buckets = -(-n // size)
    padded = np.full(n_buckets * size, np.nan)
    padded[:n] = y
    finite = np.isfinite(padded)
    lo = np.where(finite, padded, np.inf).reshape(n_buckets, size)
    hi = np.where(finite, padded, -np.inf).reshape(n_buckets, size)
    offsets = np.arange(n_buckets) * size
    first = offsets
    last = np.minimum(offsets + size - 1, n - 1)
    amin = offsets + np.argmin(lo, axis=1)
    amax = offsets + np.argmax(hi, axis=1)
    idx = np.unique(np.concatenate([first, last, amin, amax]))
    return idx[idx < n]


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


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _rgba(color: str, alpha: float) -> str:
    color = color.lstrip("#")
    r, g, b = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=200, margin=dict(l=10, r=10, t=30, b=10))
    return fig


def _axis_type(log: bool) -> str:
    return "log" if log else "linear"


def _add_series(
    fig: go.Figure,
    x: np.ndarray,
    y: np.ndarray,
    *,
    name: str,
    color: str,
    smoothing: float,
    max_points: int,
    row: int | None = None,
    col: int | None = None,
    showlegend: bool = True,
    width: float = 1.8,
    faded: bool = False,
) -> None:
    """One series: faint raw curve under the smoothed one, both downsampled alike."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    shown = np.where(np.isfinite(y), y, np.nan)  # plotly cannot draw +/-inf
    idx = minmax_indices(shown, max_points)
    xs, raw = _compact_steps(x[idx]), y[idx]
    where = {} if row is None else {"row": row, "col": col}
    line_alpha = 0.25 if faded else 1.0
    hover_raw = f"<b>{name}</b><br>step %{{x}}<br>value %{{customdata:.10g}}<extra></extra>"
    if smoothing > 0:
        sm = smooth_ema(y, smoothing)[idx]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=shown[idx],
                mode="lines",
                name=name,
                legendgroup=name,
                showlegend=False,
                line=dict(color=_rgba(color, 0.22 * line_alpha), width=1),
                hoverinfo="skip",
            ),
            **where,
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=sm,
                customdata=raw,
                mode="lines",
                name=name,
                legendgroup=name,
                showlegend=showlegend,
                line=dict(color=_rgba(color, line_alpha), width=width),
                hovertemplate=f"<b>{name}</b><br>step %{{x}}<br>smoothed %{{y:.6g}}"
                "<br>value %{customdata:.10g}<extra></extra>",
            ),
            **where,
        )
    else:
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=shown[idx],
                customdata=raw,
                mode="lines+markers" if len(xs) <= 60 else "lines",
                marker=dict(size=4),
                name=name,
                legendgroup=name,
                showlegend=showlegend,
                line=dict(color=_rgba(color, line_alpha), width=width),
                hovertemplate=hover_raw,
            ),
            **where,
        )


def _compact_steps(x: np.ndarray) -> np.ndarray:
    """Integer steps as int32 when they fit (half the bytes on the wire)."""
    if x.dtype.kind in "iu" and x.size and np.abs(x).max() < 2**31:
        return x.astype(np.int32)
    return x


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
        return _empty_figure("no data")
    fig = go.Figure()
    highlight = set(highlight or ())
    labels = _series_order(frame[series])
    xs_all = frame[x].to_numpy()
    ys_all = frame[y].to_numpy(dtype=np.float64)
    codes = pd.Categorical(frame[series].astype(object), categories=labels).codes
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(labels) + 1))
    for i, label in enumerate(labels):
        sel = order[bounds[i] : bounds[i + 1]]
        if sel.size == 0:
            continue
        is_hi = label in highlight
        _add_series(
            fig,
            xs_all[sel],
            ys_all[sel],
            name=str(label),
            color=_color(i),
            smoothing=smoothing,
            max_points=max_points,
            width=3.5 if is_hi else 1.8,
            faded=bool(highlight) and not is_hi,
        )
    for step, color, label in marks:
        fig.add_shape(
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
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=10, r=10, t=40 if title else 20, b=10),
        hovermode="closest",
        legend=dict(orientation="h", y=-0.25, x=0) if legend_below else dict(orientation="v"),
    )
    fig.update_xaxes(title="step", type=_axis_type(log_x))
    fig.update_yaxes(title=y_title, type=_axis_type(log_y))
    return fig


def _series_order(col: pd.Series) -> list:
    if isinstance(col.dtype, pd.CategoricalDtype):
        present = set(col.dropna().unique())
        return [c for c in col.cat.categories if c in present]
    return list(pd.unique(col.dropna()))


# ------------------------------------------------------------------ info plane
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
    """
    xt, ty = f"info_plane/{estimator}/I_XT", f"info_plane/{estimator}/I_TY"
    sub = scalars[scalars["metric"].isin([xt, ty]) & scalars["layer"].notna()]
    if sub.empty:
        return pd.DataFrame(columns=["layer", "step", "I_XT", "I_TY"])
    layers = _series_order(sub["layer"])
    wide = sub.pivot_table(
        index=["layer", "step"], columns="metric", values="value", aggfunc="last", observed=True
    )
    wide = wide.reindex(columns=[xt, ty]).dropna(how="any").reset_index()
    wide.columns = ["layer", "step", "I_XT", "I_TY"]
    scale = 1 / LN2 if unit == "bits" else 1.0
    wide["I_XT"] *= scale
    wide["I_TY"] *= scale
    wide["layer"] = pd.Categorical(wide["layer"].astype(object), categories=layers)
    return wide.sort_values(["layer", "step"], kind="stable").reset_index(drop=True)


def _step_color(steps: np.ndarray) -> np.ndarray:
    return np.log10(np.maximum(steps.astype(np.float64), 0) + 1.0)


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
    per panel side by side with shared axes (e.g. tanh vs ReLU). Lines are coloured per
    layer; markers by step (log-scaled colour, one colour bar). Each trajectory is strided
    down to ``max_points`` points (first and last kept; SVG markers are what a browser
    draws slowest, about 0.2 ms each). ``animate`` adds a play button
    and a step slider that grow the trajectories (at most ``max_frames`` frames).
    """
    panels = {k: v for k, v in panels.items()}
    if not panels or all(v.empty for v in panels.values()):
        return _empty_figure("no information-plane data")
    n = len(panels)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=list(panels),
        shared_xaxes="all",
        shared_yaxes="all",
        horizontal_spacing=0.04,
        vertical_spacing=0.12,
    )
    all_steps = np.concatenate([v["step"].to_numpy() for v in panels.values() if not v.empty])
    cmin, cmax = _step_color(np.array([all_steps.min(), all_steps.max()]))
    layer_index: dict[str, int] = {}
    traces_meta = []  # (layer, steps, x, y) per trace, for the animation frames
    traces, rows_of, cols_of = [], [], []
    for p, (title, df) in enumerate(panels.items()):
        if df.empty:
            continue
        order = _series_order(df["layer"])
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
            keep = np.arange(a, b)
            if b - a > max_points:
                keep = a + np.unique(np.linspace(0, b - a - 1, max_points).round().astype(int))
            steps, xs, ys = all_s[keep], all_x[keep], all_y[keep]
            new_layer = str(layer) not in layer_index
            li = layer_index.setdefault(str(layer), len(layer_index))
            traces.append(
                go.Scatter(
                    x=xs,
                    y=ys,
                    customdata=steps,
                    mode="lines+markers",
                    name=str(layer),
                    legendgroup=str(layer),
                    showlegend=new_layer,
                    line=dict(color=_rgba(_color(li), 0.55), width=1.5),
                    marker=dict(color=_step_color(steps), coloraxis="coloraxis", size=7),
                    hovertemplate=f"<b>{title}</b> · {layer}<br>step %{{customdata}}"
                    f"<br>I(X;T) %{{x:.6g}} {unit}<br>I(T;Y) %{{y:.6g}} {unit}<extra></extra>",
                )
            )
            rows_of.append(p // cols + 1)
            cols_of.append(p % cols + 1)
            traces_meta.append((str(layer), steps, xs, ys))
    fig.add_traces(traces, rows=rows_of, cols=cols_of)
    lo, hi = int(all_steps.min()), int(all_steps.max())
    decades = [d for d in range(0, int(math.log10(max(hi, 1))) + 2) if lo <= 10**d <= hi * 10]
    tickvals = [math.log10(10**d + 1) for d in decades]
    fig.update_layout(
        coloraxis=dict(
            colorscale="Viridis",
            cmin=float(cmin),
            cmax=float(cmax) if cmax > cmin else float(cmin) + 1,
            colorbar=dict(
                title="step", tickvals=tickvals, ticktext=[f"{10**d:g}" for d in decades]
            ),
        ),
        height=height if rows == 1 else height * 0.8 * rows,
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(title="layer", orientation="h", y=-0.12),
        hovermode="closest",
    )
    fig.update_xaxes(title=f"I(X;T) ({unit})")
    fig.update_yaxes(title=f"I(T;Y) ({unit})")
    if animate and traces_meta:
        _add_growth_frames(fig, traces_meta, np.unique(all_steps), max_frames)
    return fig


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
                    marker=dict(color=_step_color(st[upto])),
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


# ------------------------------------------------------------------ heatmaps
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
    order (the layer order of the run).
    """
    if frame.empty:
        return _empty_figure("no data")
    rows = _series_order(frame[y])
    wide = frame.pivot_table(index=y, columns=x, values=z, aggfunc="last", observed=True)
    wide = wide.reindex(index=rows)
    xs = wide.columns.to_numpy()
    zs = wide.to_numpy(dtype=np.float64)
    hover_x = "step %{x}"
    if len(xs) > max_columns:
        edges = np.linspace(0, len(xs), max_columns + 1).round().astype(int)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN buckets
            zs = np.stack(
                [np.nanmean(zs[:, a:b], axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1
            )
        zs = zs.astype(np.float32)  # bucket means: float32 halves the bytes on the wire
        xs = xs[edges[1:] - 1]  # each column is labelled by the last step of its bucket
        hover_x = f"steps up to %{{x}} (mean over ~{-(-len(wide.columns) // max_columns)})"
    fig = go.Figure(
        go.Heatmap(
            x=_compact_steps(xs),
            y=[str(r) for r in rows],
            z=np.where(np.isfinite(zs), zs, np.nan),
            colorscale=colorscale,
            colorbar=dict(title=z_title),
            hovertemplate=f"{y} %{{y}}<br>{hover_x}<br>value %{{z:.10g}}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        height=height or max(260, 22 * len(rows) + 120),
        margin=dict(l=10, r=10, t=40 if title else 20, b=10),
    )
    fig.update_xaxes(title=x, type=_axis_type(log_x))
    fig.update_yaxes(title=y, autorange="reversed", type="category")
    return fig


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
        return _empty_figure("no data")
    facets = _series_order(frame[facet])[:max_facets]
    labels = _series_order(frame[series])
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
            _add_series(
                fig,
                sub["step"].to_numpy(),
                sub["value"].to_numpy(dtype=np.float64),
                name=str(label),
                color=_color(i),
                smoothing=smoothing,
                max_points=max_points,
                row=r,
                col=c,
                showlegend=k == 0,
            )
    fig.update_layout(
        height=max(240, 190 * rows + 60),
        margin=dict(l=10, r=10, t=40, b=10),
        showlegend=len(labels) > 1,
    )
    fig.update_xaxes(type=_axis_type(log_x))
    fig.update_yaxes(type=_axis_type(log_y))
    if y_title:
        fig.update_yaxes(title=y_title, col=1)
    return fig


# ------------------------------------------------------------- language models
QUANTILE_COLUMNS = ("q05", "q25", "q50", "q75", "q95")


def quantile_band_figure(
    panels: Mapping[str, pd.DataFrame],
    *,
    log_x: bool = False,
    max_points: int = 1000,
    y_title: str = "token entropy",
    height: int = 400,
) -> go.Figure:
    """Mean with quantile bands over steps, one colour per run.

    ``panels``: run -> wide frame with ``step`` and any of ``mean, q05, q25, q50, q75,
    q95``. The q05-q95 band is light, q25-q75 darker, the median dashed, the mean solid.
    Points are chosen with :func:`minmax_indices` on the mean.
    """
    fig = go.Figure()
    if not panels or all(df.empty for df in panels.values()):
        return _empty_figure("no token-entropy data")
    for i, (run, df) in enumerate(panels.items()):
        if df.empty:
            continue
        df = df.sort_values("step")
        color = _color(i)
        key = "mean" if "mean" in df else next(c for c in df.columns if c != "step")
        idx = minmax_indices(df[key].to_numpy(dtype=np.float64), max_points)
        d = df.iloc[idx]
        x = d["step"].to_numpy()
        for lo, hi, alpha in (("q05", "q95", 0.12), ("q25", "q75", 0.25)):
            if lo in d and hi in d:
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=d[lo].to_numpy(),
                        mode="lines",
                        line=dict(width=0),
                        legendgroup=run,
                        showlegend=False,
                        hoverinfo="skip",
                    )
                )
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=d[hi].to_numpy(),
                        mode="lines",
                        line=dict(width=0),
                        fill="tonexty",
                        fillcolor=_rgba(color, alpha),
                        name=f"{run} {lo}–{hi}",
                        legendgroup=run,
                        showlegend=False,
                        customdata=d[lo].to_numpy(),
                        hovertemplate=f"{run} {lo}–{hi}<br>step %{{x}}<br>"
                        "%{customdata:.6g} – %{y:.6g}<extra></extra>",
                    )
                )
        if "q50" in d:
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=d["q50"].to_numpy(),
                    mode="lines",
                    line=dict(color=color, dash="dash", width=1.2),
                    name=f"{run} median",
                    legendgroup=run,
                    hovertemplate=f"{run} median<br>step %{{x}}<br>%{{y:.10g}}<extra></extra>",
                )
            )
        if "mean" in d:
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=d["mean"].to_numpy(),
                    mode="lines",
                    line=dict(color=color, width=2.2),
                    name=f"{run} mean",
                    legendgroup=run,
                    hovertemplate=f"{run} mean<br>step %{{x}}<br>%{{y:.10g}}<extra></extra>",
                )
            )
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=20, b=10))
    fig.update_xaxes(title="step", type=_axis_type(log_x))
    fig.update_yaxes(title=y_title)
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
    :func:`histogram_grid`); colour = fraction of tokens in the bin."""
    if len(steps) == 0:
        return _empty_figure("no distributions logged")
    centres = (edges[:-1] + edges[1:]) / 2
    z = np.log10(fractions + 1e-6) if log_color else fractions
    fig = go.Figure(
        go.Heatmap(
            x=steps,
            y=centres,
            z=z,
            customdata=fractions,
            colorscale="Blues",
            colorbar=dict(title="log10 share" if log_color else "share"),
            hovertemplate=f"step %{{x}}<br>{y_title} %{{y:.4g}}<br>share %{{customdata:.6g}}"
            "<extra></extra>",
        )
    )
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=20, b=10))
    fig.update_xaxes(title="step", type=_axis_type(log_x))
    fig.update_yaxes(title=y_title)
    return fig


def attention_frame(scalars: pd.DataFrame, *, normalized: bool = False) -> pd.DataFrame:
    """Per-head attention entropy rows ``step, layer, head, value`` from scalar rows
    named ``attn/entropy/h{H}`` (or ``attn/entropy_norm/h{H}`` if ``normalized``)."""
    prefix = "attn/entropy_norm/h" if normalized else "attn/entropy/h"
    m = scalars["metric"].astype(object)
    sel = m.str.startswith(prefix, na=False) & scalars["layer"].notna()
    sub = scalars.loc[sel, ["step", "layer", "value"]].copy()
    heads = m[sel].str.slice(len(prefix))
    ok = heads.str.isdigit()
    sub = sub[ok.to_numpy()]
    sub["head"] = heads[ok].astype(int).to_numpy()
    return sub.reset_index(drop=True)[["step", "layer", "head", "value"]]


def attention_heatmap_figure(
    frame: pd.DataFrame,
    *,
    max_frames: int = 60,
    z_title: str = "entropy",
    height: int | None = None,
) -> go.Figure:
    """Layer x head heatmap of attention entropy, animated over steps.

    ``frame``: rows ``step, layer, head, value`` (:func:`attention_frame`). The figure
    opens on the last step; a slider (and play button) moves through at most
    ``max_frames`` steps. The colour range is fixed over all steps so frames compare.
    """
    if frame.empty:
        return _empty_figure("no per-head attention entropy logged")
    layers = _series_order(frame["layer"])
    heads = np.sort(frame["head"].unique())
    steps = np.sort(frame["step"].unique())
    if len(steps) > max_frames:
        steps = steps[np.unique(np.linspace(0, len(steps) - 1, max_frames).round().astype(int))]
    cube = frame.pivot_table(
        index=["step", "layer"], columns="head", values="value", aggfunc="last", observed=True
    )
    finite = frame["value"][np.isfinite(frame["value"])]
    zmin, zmax = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)

    def grid(s):
        try:
            g = cube.xs(s, level="step")
        except KeyError:
            return np.full((len(layers), len(heads)), np.nan)
        g = g.reindex(index=layers, columns=heads)
        return g.to_numpy(dtype=np.float64)

    def heat(s):
        return go.Heatmap(
            z=grid(s),
            x=[f"h{h}" for h in heads],
            y=[str(lay) for lay in layers],
            zmin=zmin,
            zmax=zmax,
            colorscale="Viridis",
            colorbar=dict(title=z_title),
            hovertemplate=f"layer %{{y}} head %{{x}}<br>step {int(s)}<br>"
            f"{z_title} %{{z:.10g}}<extra></extra>",
        )

    fig = go.Figure(heat(steps[-1]))
    fig.frames = [go.Frame(data=[heat(s)], name=str(int(s))) for s in steps]
    fig.update_layout(
        height=height or max(300, 26 * len(layers) + 170),
        margin=dict(l=10, r=10, t=30, b=10),
        sliders=[
            dict(
                active=len(steps) - 1,
                currentvalue=dict(prefix="step "),
                pad=dict(t=30),
                steps=[
                    dict(
                        label=str(int(s)),
                        method="animate",
                        args=[[str(int(s))], dict(mode="immediate", frame=dict(duration=0))],
                    )
                    for s in steps
                ],
            )
        ],
        updatemenus=[
            dict(
                type="buttons",
                showactive=False,
                x=0,
                y=-0.08,
                xanchor="right",
                yanchor="top",
                buttons=[
                    dict(
                        label="▶",
                        method="animate",
                        args=[None, dict(frame=dict(duration=200, redraw=True), fromcurrent=True)],
                    )
                ],
            )
        ],
    )
    fig.update_xaxes(title="head", type="category")
    fig.update_yaxes(title="layer", autorange="reversed", type="category")
    return fig


def fit_entropy_reward(entropy: np.ndarray, reward: np.ndarray) -> tuple[float, float] | None:
    """Least-squares ``(a, b)`` of ``R = -a exp(H) + b`` (H in nats), or None when fewer
    than 3 finite points (Cui et al. 2025's empirical entropy-performance law)."""
    h = np.asarray(entropy, dtype=np.float64)
    r = np.asarray(reward, dtype=np.float64)
    ok = np.isfinite(h) & np.isfinite(r)
    if ok.sum() < 3 or np.ptp(h[ok]) == 0:
        return None
    slope, intercept = np.polyfit(np.exp(h[ok]), r[ok], 1)
    return float(-slope), float(intercept)


def entropy_reward_figure(
    frame: pd.DataFrame,
    *,
    fit: tuple[float, float] | None = None,
    fit_source: str = "logged",
    unit: str = "nats",
    height: int = 420,
) -> go.Figure:
    """Reward against entropy, with the fitted law ``R = -a exp(H) + b``.

    ``frame``: ``step, entropy`` (nats), ``reward``. ``fit``: ``(a, b)`` as logged
    (``rl/fit/a``, ``rl/fit/b``); ``None`` fits here by least squares. The predicted
    ceiling ``-a + b`` (reward at zero entropy) is drawn as a dashed line. The x axis is
    in ``unit`` but the law is evaluated in nats.
    """
    d = frame.dropna(subset=["entropy", "reward"])
    if d.empty:
        return _empty_figure("no (entropy, reward) pairs at common steps")
    scale = 1 / LN2 if unit == "bits" else 1.0
    steps = d["step"].to_numpy()
    fig = go.Figure(
        go.Scatter(
            x=d["entropy"].to_numpy() * scale,
            y=d["reward"].to_numpy(),
            customdata=steps,
            mode="markers",
            name="steps",
            marker=dict(
                color=_step_color(steps),
                colorscale="Viridis",
                size=8,
                colorbar=dict(title="log10 step"),
            ),
            hovertemplate=f"step %{{customdata}}<br>entropy %{{x:.10g}} {unit}"
            "<br>reward %{y:.10g}<extra></extra>",
        )
    )
    if fit is None:
        fit = fit_entropy_reward(d["entropy"].to_numpy(), d["reward"].to_numpy())
        fit_source = "fitted here"
    if fit is not None:
        a, b = fit
        hs = np.linspace(0.0, float(d["entropy"].max()) * 1.05, 120)
        fig.add_trace(
            go.Scatter(
                x=hs * scale,
                y=-a * np.exp(hs) + b,
                mode="lines",
                line=dict(color="#d62728", width=2),
                name=f"R = -{a:.4g}·exp(H) + {b:.4g} ({fit_source})",
                hovertemplate="H %{x:.4g}<br>R %{y:.6g}<extra>fit</extra>",
            )
        )
        ceiling = b - a
        fig.add_hline(
            y=ceiling,
            line=dict(color="#d62728", dash="dash", width=1),
            annotation_text=f"predicted ceiling {ceiling:.4g} (H = 0)",
            annotation_position="top left",
        )
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=20, b=10),
        legend=dict(orientation="h", y=-0.18),
    )
    fig.update_xaxes(title=f"entropy H ({unit})")
    fig.update_yaxes(title="reward")
    return fig


# ------------------------------------------------------------------- collapse
def indicator_status(alerts: pd.DataFrame, indicators: Iterable[str]) -> pd.DataFrame:
    """One row per indicator: ``status`` (``ok``, ``warning``, ``collapsed``: the worst
    severity raised; ``info`` alerts count as ok), alert count, first and last step with
    a warning or worse, and the last message.
    """
    rows = []
    for ind in indicators:
        sub = alerts[alerts["indicator"] == ind] if not alerts.empty else alerts
        if sub is None or sub.empty:
            rows.append((ind, "ok", 0, None, None, ""))
            continue
        rank = sub["severity"].map(SEVERITY_RANK).fillna(0)
        worst = int(rank.max())
        status = {0: "ok", 1: "warning", 2: "collapsed"}[worst]
        bad = sub[rank >= 1]
        rows.append(
            (
                ind,
                status,
                len(sub),
                None if bad.empty else int(bad["step"].min()),
                None if bad.empty else int(bad["step"].max()),
                str(sub["message"].iloc[-1]),
            )
        )
    return pd.DataFrame(
        rows, columns=["indicator", "status", "alerts", "first_step", "last_step", "last_message"]
    )


def alert_timeline_figure(
    alerts: pd.DataFrame, *, log_x: bool = False, height: int | None = None
) -> go.Figure:
    """Every alert as a marker at its step, one row per indicator, coloured by severity.

    The hover shows the message, layer and evidence (JSON, shortened).
    """
    if alerts.empty:
        return _empty_figure("no alerts raised")
    order = [i for i in INDICATOR_INFO if i in set(alerts["indicator"])]
    order += [i for i in pd.unique(alerts["indicator"]) if i not in order]
    fig = go.Figure()
    for sev in ("info", "warning", "collapsed"):
        sub = alerts[alerts["severity"] == sev]
        if sub.empty:
            continue
        ev = [_short_json(e) for e in sub["evidence"]]
        layer = [lay if isinstance(lay, str) else "—" for lay in sub["layer"]]
        run = sub["run"].astype(str).tolist() if "run" in sub else [""] * len(sub)
        fig.add_trace(
            go.Scatter(
                x=sub["step"].to_numpy(),
                y=sub["indicator"].astype(str).to_numpy(),
                mode="markers",
                name=sev,
                marker=dict(
                    color=SEVERITY_COLORS[sev],
                    size={"info": 8, "warning": 11, "collapsed": 14}[sev],
                    symbol={"info": "circle", "warning": "diamond", "collapsed": "x"}[sev],
                    line=dict(width=1, color="white"),
                ),
                customdata=np.stack(
                    [
                        sub["message"].astype(str).to_numpy(),
                        np.array(layer),
                        np.array(ev),
                        np.array(run),
                    ],
                    axis=-1,
                ),
                hovertemplate="<b>%{y}</b> (" + sev + ") at step %{x}<br>%{customdata[3]} · "
                "layer %{customdata[1]}<br>%{customdata[0]}<br><i>%{customdata[2]}</i>"
                "<extra></extra>",
            )
        )
    fig.update_layout(
        height=height or max(220, 40 * len(order) + 110),
        margin=dict(l=10, r=10, t=20, b=10),
        legend=dict(orientation="h", y=1.08),
    )
    fig.update_yaxes(categoryorder="array", categoryarray=order[::-1], type="category")
    fig.update_xaxes(title="step", type=_axis_type(log_x))
    return fig


def _short_json(obj, limit: int = 160) -> str:
    try:
        text = json.dumps(obj, default=str)
    except (TypeError, ValueError):
        text = str(obj)
    return text if len(text) <= limit else text[: limit - 1] + "…"
