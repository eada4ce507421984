"""Language-model figures: token-entropy quantile bands, per-head attention entropy (layer x
head, animated over steps), and reward against entropy with Cui et al. (2025)'s law."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.common import (
    LN2,
    axis_type,
    empty_figure,
    minmax_indices,
    rgba,
    series_color,
    series_order,
    step_color,
    trajectory_indices,
)

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
    if not panels or all(df.empty for df in panels.values()):
        return empty_figure("no token-entropy data")
    traces: list[dict] = []
    for i, (run, df) in enumerate(panels.items()):
        if df.empty:
            continue
        df = df.sort_values("step")
        color = series_color(i)
        key = "mean" if "mean" in df else next(c for c in df.columns if c != "step")
        idx = minmax_indices(df[key].to_numpy(dtype=np.float64), max_points)
        d = df.iloc[idx]
        x = d["step"].to_numpy()
        for lo, hi, alpha in (("q05", "q95", 0.12), ("q25", "q75", 0.25)):
            if lo in d and hi in d:
                edge = dict(type="scatter", x=x, mode="lines", line=dict(width=0))
                traces.append(
                    dict(
                        edge,
                        y=d[lo].to_numpy(),
                        legendgroup=run,
                        showlegend=False,
                        hoverinfo="skip",
                    )
                )
                traces.append(
                    dict(
                        edge,
                        y=d[hi].to_numpy(),
                        fill="tonexty",
                        fillcolor=rgba(color, alpha),
                        name=f"{run} {lo}–{hi}",
                        legendgroup=run,
                        showlegend=False,
                        customdata=d[lo].to_numpy(),
                        hovertemplate=f"{run} {lo}–{hi}<br>step %{{x}}<br>"
                        "%{customdata:.6g} – %{y:.6g}<extra></extra>",
                    )
                )
        if "q50" in d:
            traces.append(
                dict(
                    type="scatter",
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
            traces.append(
                dict(
                    type="scatter",
                    x=x,
                    y=d["mean"].to_numpy(),
                    mode="lines",
                    line=dict(color=color, width=2.2),
                    name=f"{run} mean",
                    legendgroup=run,
                    hovertemplate=f"{run} mean<br>step %{{x}}<br>%{{y:.10g}}<extra></extra>",
                )
            )
    layout = dict(
        height=height,
        margin=dict(l=10, r=10, t=20, b=10),
        xaxis=dict(title=dict(text="step"), type=axis_type(log_x)),
        yaxis=dict(title=dict(text=y_title)),
    )
    # plain dicts without Plotly's validation (see dashboard.figures.lines.line_figure)
    return go.Figure(dict(data=traces, layout=layout), _validate=False)


def attention_frame(scalars: pd.DataFrame, *, normalized: bool = False) -> pd.DataFrame:
    """Per-head attention entropy rows ``step, layer, head, value`` from scalar rows
    named ``attn/entropy/h{H}`` (or ``attn/entropy_norm/h{H}`` if ``normalized``).

    Metric names are parsed once per distinct name, not once per row."""
    prefix = "attn/entropy_norm/h" if normalized else "attn/entropy/h"
    metric = pd.Categorical(scalars["metric"])
    names = pd.Series(metric.categories.astype(str))
    suffix = names.str.slice(len(prefix))
    ok = names.str.startswith(prefix) & suffix.str.isdigit()
    head_of = np.where(ok, pd.to_numeric(suffix.where(ok), errors="coerce").fillna(-1), -1)
    codes = metric.codes
    head = np.where(codes >= 0, head_of.astype(np.int64)[np.maximum(codes, 0)], -1)
    sel = (head >= 0) & scalars["layer"].notna().to_numpy()
    sub = scalars.loc[sel, ["step", "layer", "value"]].reset_index(drop=True)
    sub["head"] = head[sel]
    return sub[["step", "layer", "head", "value"]]


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
    A (step, layer, head) logged twice keeps its last row. Frames carry only what
    changes (the grid and the step in the hover).
    """
    if frame.empty:
        return empty_figure("no per-head attention entropy logged")
    layers = series_order(frame["layer"])
    heads = np.sort(frame["head"].unique())
    all_steps = np.sort(frame["step"].unique())
    steps = all_steps
    if len(steps) > max_frames:
        steps = steps[np.unique(np.linspace(0, len(steps) - 1, max_frames).round().astype(int))]
    # one (step, layer, head) cube, last row wins
    si = np.searchsorted(steps, frame["step"].to_numpy())
    keep = (si < len(steps)) & (steps[np.minimum(si, len(steps) - 1)] == frame["step"].to_numpy())
    li = pd.Categorical(frame["layer"].astype(object), categories=layers).codes
    hi = np.searchsorted(heads, frame["head"].to_numpy())
    flat = (si * len(layers) + li) * len(heads) + hi
    values = frame["value"].to_numpy(dtype=np.float64)
    flat, values = flat[keep & (li >= 0)], values[keep & (li >= 0)]
    _, last = np.unique(flat[::-1], return_index=True)
    pick = len(flat) - 1 - last
    cube = np.full(len(steps) * len(layers) * len(heads), np.nan)
    cube[flat[pick]] = values[pick]
    cube = cube.reshape(len(steps), len(layers), len(heads))
    finite = values[np.isfinite(values)]
    zmin, zmax = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)

    def hover(s):
        return f"layer %{{y}} head %{{x}}<br>step {int(s)}<br>{z_title} %{{z:.10g}}<extra></extra>"

    def heat(k):
        return go.Heatmap(
            z=cube[k],
            x=[f"h{h}" for h in heads],
            y=[str(lay) for lay in layers],
            zmin=zmin,
            zmax=zmax,
            colorscale="Viridis",
            colorbar=dict(title=z_title),
            hovertemplate=hover(steps[k]),
        )

    fig = go.Figure(heat(len(steps) - 1))
    fig.frames = [
        go.Frame(data=[dict(type="heatmap", z=cube[k], hovertemplate=hover(s))], name=str(int(s)))
        for k, s in enumerate(steps)
    ]
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
    max_points: int = 300,
    height: int = 420,
) -> go.Figure:
    """Reward against entropy, with the fitted law ``R = -a exp(H) + b``.

    ``frame``: ``step, entropy`` (nats), ``reward``. ``fit``: ``(a, b)`` as logged
    (``rl/fit/a``, ``rl/fit/b``); ``None`` fits here by least squares. The predicted
    ceiling ``-a + b`` (reward at zero entropy) is drawn as a dashed line. The x axis is
    in ``unit`` but the law is evaluated in nats. At most ``max_points`` steps are drawn
    as markers (evenly spaced plus the extremes, :func:`trajectory_indices`); the fit
    uses every pair.
    """
    d = frame.dropna(subset=["entropy", "reward"])
    if d.empty:
        return empty_figure("no (entropy, reward) pairs at common steps")
    scale = 1 / LN2 if unit == "bits" else 1.0
    d = d.sort_values("step", kind="stable")
    shown = d.iloc[trajectory_indices(d["entropy"].to_numpy(), d["reward"].to_numpy(), max_points)]
    steps = shown["step"].to_numpy()
    fig = go.Figure(
        go.Scatter(
            x=shown["entropy"].to_numpy() * scale,
            y=shown["reward"].to_numpy(),
            customdata=steps,
            mode="markers",
            name="steps",
            marker=dict(
                color=step_color(steps),
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
