"""Collapse alerts: what each indicator means and where it comes from, the status per
indicator, every alert on a timeline coloured by severity, and one alert explained (the
series that fired, its threshold and the step) from the alert's evidence.

(A little over 500 lines: the indicator texts, the timeline and the explanation share the
severity scale, its colours and the evidence reader, and are read together.)"""

from __future__ import annotations

import fnmatch
import json
import math
import textwrap
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.common import (
    axis_type,
    compact_steps,
    convert_units,
    empty_figure,
    minmax_indices,
    rgba,
    unit_suffix,
)
from diagnostics import schema

SEVERITY_COLORS = {"info": "#1f77b4", "warning": "#ff7f0e", "critical": "#d62728", "ok": "#2ca02c"}

#: status -> rank: ``ok`` (nothing), then the alert severities (``info`` < ``warning`` <
#: ``critical``); rows of runs before 0.2 that say ``collapsed`` are read as ``critical``
SEVERITY_RANK = {"ok": 0, **schema.SEVERITY_RANK}
_STATUS = {rank: name for name, rank in SEVERITY_RANK.items()}
_MARKER = {
    "info": dict(size=8, symbol="circle"),
    "warning": dict(size=11, symbol="diamond"),
    "critical": dict(size=14, symbol="x"),
}


#: What each collapse indicator means, where it comes from, and which logged series
#: shows it (``series``: metric names tried in order; ``*`` matches any estimator).
INDICATOR_INFO: dict[str, dict[str, object]] = {
    "rank_collapse": {
        "title": "Rank collapse",
        "text": "The effective rank of a layer's representation fell far below the rank it "
        "should keep (about the number of classes minus one for a classifier, whose layers "
        "narrow toward it on purpose; else its own peak): the features span only a few "
        "directions (dimensional collapse).",
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
        "advantage, the term that drives policy entropy down: a warning while token entropy "
        "is falling, a note while an intervention holds it up.",
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
    "loss_divergence": {
        "title": "Loss divergence",
        "text": "The training loss rose far above where it started, or became NaN/inf: the "
        "optimisation is diverging (learning rate too large, bad initialisation).",
        "source": "Goodfellow, Bengio & Courville 2016, sec. 8.5 (learning rate and divergence).",
        "series": ("train/loss",),
    },
}


def indicator_status(alerts: pd.DataFrame, indicators: Iterable[str]) -> pd.DataFrame:
    """One row per indicator: ``status`` (``ok``, ``info``, ``warning`` or ``critical``: the
    worst severity raised), alert count, first and last step with a warning or worse, and
    the last message.
    """
    rows = []
    for ind in indicators:
        sub = alerts[alerts["indicator"] == ind] if not alerts.empty else alerts
        if sub is None or sub.empty:
            rows.append((ind, "ok", 0, None, None, ""))
            continue
        rank = sub["severity"].replace(schema.LEGACY_SEVERITIES).map(SEVERITY_RANK).fillna(0)
        worst = int(rank.max())
        status = _STATUS[worst]
        bad = sub[rank >= SEVERITY_RANK["warning"]]
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

    The hover shows the message, layer and evidence (JSON, shortened). Each marker's
    ``customdata`` is ``[message, layer, evidence, run, id]``, so a selection event names
    the alert (:func:`alert_key`).
    """
    if alerts.empty:
        return empty_figure("no alerts raised")
    order = [i for i in INDICATOR_INFO if i in set(alerts["indicator"])]
    order += [i for i in pd.unique(alerts["indicator"]) if i not in order]
    traces = []
    for sev in schema.SEVERITIES:
        sub = alerts[alerts["severity"] == sev]
        if sub.empty:
            continue
        ev = [_short_json(e) for e in sub["evidence"]]
        layer = [lay if isinstance(lay, str) else "—" for lay in sub["layer"]]
        run = sub["run"].astype(str).tolist() if "run" in sub else [""] * len(sub)
        ids = sub["id"].astype(str).tolist() if "id" in sub else [""] * len(sub)
        traces.append(
            dict(
                type="scatter",
                x=sub["step"].to_numpy(),
                y=sub["indicator"].astype(str).to_numpy(),
                mode="markers",
                name=sev,
                marker=dict(
                    color=SEVERITY_COLORS[sev],
                    **_MARKER[sev],
                    line=dict(width=1, color="white"),
                ),
                customdata=np.stack(
                    [
                        sub["message"].astype(str).to_numpy(),
                        np.array(layer),
                        np.array(ev),
                        np.array(run),
                        np.array(ids),
                    ],
                    axis=-1,
                ),
                hovertemplate="<b>%{y}</b> (" + sev + ") at step %{x}<br>%{customdata[3]} · "
                "layer %{customdata[1]}<br>%{customdata[0]}<br><i>%{customdata[2]}</i>"
                "<extra></extra>",
            )
        )
    layout = dict(
        height=height or max(220, 40 * len(order) + 110),
        margin=dict(l=10, r=10, t=20, b=10),
        legend=dict(orientation="h", y=1.08),
        yaxis=dict(categoryorder="array", categoryarray=order[::-1], type="category"),
        xaxis=dict(title=dict(text="step"), type=axis_type(log_x)),
    )
    # plain dicts without Plotly's validation (see dashboard.figures.lines.line_figure)
    return go.Figure(dict(data=traces, layout=layout), _validate=False)


def _short_json(obj, limit: int = 160) -> str:
    try:
        text = json.dumps(obj, default=str)
    except (TypeError, ValueError):
        text = str(obj)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------ one alert explained
def alert_key(run: str, alert_id) -> str:
    """The key that names one alert across runs: ``"RUN#ID"``."""
    return f"{run}#{alert_id}"


def _numbers(seq) -> np.ndarray | None:
    """A JSON list of numbers (None for NaN) as float64, or None if it is not one."""
    if not isinstance(seq, (list, tuple)) or not seq:
        return None
    if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in seq):
        return None
    return np.array([np.nan if v is None else v for v in seq], dtype=np.float64)


def _finite(x) -> float | None:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        return float(x)
    return None


def evidence_metric(alert, metric_names: Iterable[str]) -> str | None:
    """The recorded series that shows ``alert`` (a row with ``evidence`` and ``indicator``):
    the evidence's metric when the run recorded it, else the indicator's usual series
    (:data:`INDICATOR_INFO`), else whatever the evidence names."""
    names = list(metric_names)
    ev = read_evidence(alert["evidence"])
    if ev["metric"] in names:
        return ev["metric"]
    for pattern in INDICATOR_INFO.get(alert["indicator"], {}).get("series", ()):
        hits = sorted(fnmatch.filter(names, pattern))
        if hits:
            return hits[0]
    return ev["metric"]


def read_evidence(evidence) -> dict:
    """An alert's evidence in one layout, whichever layout the run wrote.

    Returns ``metric`` (the series that fired, or None), ``layer``, ``steps`` and
    ``values`` (numpy arrays or None), ``threshold`` (in the series' units, or None),
    ``direction`` (``below``/``above`` or None), ``rule`` (text or None), ``related``
    (metric -> ``(steps, values)``, both None where the evidence names the metric but
    holds no points of it) and ``legacy`` (the run predates the layout in
    :mod:`diagnostics.schema`).

    Runs written before that layout name the series ``series`` (a name, or a list whose
    first entry is the series that fired), may keep its values under another key (the
    memorisation rule's ``dsmi``) and other series as ``PREFIX_steps``/``PREFIX_values``;
    their ``threshold`` was often a fraction rather than a value of the series, so it is
    not drawn (None).

    >>> read_evidence({"series": "lm/token_entropy/mean", "steps": [1, 2], "values": [2.0, 1.0],
    ...                "threshold": 0.5})["threshold"] is None
    True
    """
    ev = evidence if isinstance(evidence, Mapping) else {}
    legacy = "metric" not in ev and "series" in ev
    named = ev.get("series") if legacy else ev.get("metric")
    names = [named] if isinstance(named, str) else [n for n in named or () if isinstance(n, str)]
    steps = _numbers(ev.get("steps"))
    values = _numbers(ev.get("values"))
    metric = names[0] if names else None
    related: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {}
    for name, part in (ev.get("related") or {}).items():
        if isinstance(part, Mapping):
            related[str(name)] = (_numbers(part.get("steps")), _numbers(part.get("values")))
    if legacy:
        if values is None and steps is not None:  # e.g. memorisation's "dsmi"
            for key, seq in ev.items():
                arr = _numbers(seq) if key != "steps" else None
                if arr is not None and len(arr) == len(steps):
                    values = arr
                    metric = next(
                        (n for n in names if n.rsplit("/", 1)[-1].startswith(key)), metric
                    )
                    break
        for key in ev:
            if not key.endswith("_steps") or key == "early_steps":
                continue
            prefix = key[: -len("_steps")]
            r_steps, r_values = _numbers(ev.get(key)), _numbers(ev.get(f"{prefix}_values"))
            if r_steps is None or r_values is None or len(r_steps) != len(r_values):
                continue
            name = next((n for n in names if prefix in n.rsplit("/", 1)[-1]), prefix)
            related[name] = (r_steps, r_values)
        for name in names:
            if name != metric:
                related.setdefault(name, (None, None))
    if steps is not None and (values is None or len(values) != len(steps)):
        steps = values = None
    direction = ev.get("direction")
    rule = ev.get("rule")
    return {
        "metric": metric,
        "layer": ev.get("layer") if isinstance(ev.get("layer"), str) else None,
        "steps": steps,
        "values": values,
        "threshold": None if legacy else _finite(ev.get("threshold")),
        "direction": direction if direction in ("below", "above") else None,
        "rule": rule if isinstance(rule, str) and rule else None,
        "related": related,
        "legacy": legacy,
        "peak": _finite(ev.get("peak")),
        "peak_step": _finite(ev.get("peak_step")),
    }


def _wrap(text: str, width: int) -> str:
    return "<br>".join(textwrap.wrap(str(text), width)) if text else ""


def _shape_x(x: float, log: bool) -> float:
    # shapes and annotations on a log axis are placed in log10 units
    return math.log10(x) if log and x > 0 else x


def _history_xy(frame: pd.DataFrame | None, metric: str, unit: str, max_points: int):
    if frame is None or frame.empty:
        return None
    order = np.argsort(frame["step"].to_numpy(), kind="stable")
    x = frame["step"].to_numpy()[order]
    y = convert_units(frame["value"].to_numpy(dtype=np.float64)[order], metric, unit)
    y = np.where(np.isfinite(y), y, np.nan)
    idx = minmax_indices(y, max_points)
    return compact_steps(x[idx]), y[idx]


def _window(ev_steps: np.ndarray, step: float, past: np.ndarray, log: bool) -> list[float]:
    """The x range that shows the evidence and the alert step with some context (a
    quarter of their span each side) inside the whole run; log10 units on a log axis."""
    pts = np.append(ev_steps[np.isfinite(ev_steps)], step).astype(np.float64)
    if log:
        pts = np.log10(pts[pts > 0]) if (pts > 0).any() else np.zeros(1)
        past = np.log10(past[past > 0]) if (past > 0).any() else pts
    lo, hi = float(pts.min()), float(pts.max())
    pad = 0.25 * (hi - lo) if hi > lo else 1.0
    return [max(lo - pad, float(np.min(past))), min(hi + pad, float(np.max(past)))]


def alert_explanation_figure(
    evidence: Mapping | None,
    *,
    step: float,
    message: str = "",
    severity: str = "warning",
    metric: str | None = None,
    layer: str | None = None,
    history: pd.DataFrame | None = None,
    related_history: Mapping[str, pd.DataFrame] | None = None,
    unit: str = "bits",
    log_x: bool = False,
    max_points: int = 1000,
    height: int = 460,
) -> go.Figure:
    """One alert explained: the series that fired, the line it crossed and when.

    ``evidence``: the alert's evidence (either layout, see :func:`read_evidence`); its
    points are drawn as a line with markers. ``history``: the whole recorded series of
    that metric and layer (``step, value``), drawn faint underneath. ``metric`` and
    ``layer`` name the series where the evidence does not. The threshold is a dashed
    horizontal line labelled with the rule, the alert ``step`` a dotted vertical line in
    the ``severity``'s colour, and a recorded peak (``peak``/``peak_step``) a star.
    ``related``: the other series the rule read (the evidence's points, or
    ``related_history[metric]``, e.g. I(T;Y) for compression onset, the loss for
    memorisation) in a second row. The title is the alert's ``message``. Information
    quantities (stored in nats) are shown in ``unit``. When both the evidence and the
    history are there, the x axis opens on the evidence window (double-click: whole run).
    """
    ev = read_evidence(evidence)
    metric = ev["metric"] or metric
    layer = ev["layer"] or layer
    related_history = dict(related_history or {})
    names = list(ev["related"]) + [m for m in related_history if m not in ev["related"]]
    related = []
    for name in names:
        r_steps, r_values = ev["related"].get(name, (None, None))
        past = _history_xy(related_history.get(name), name, unit, max_points)
        if r_steps is not None or past is not None:
            related.append((name, r_steps, r_values, past))
    main_past = _history_xy(history, metric or "", unit, max_points)
    if ev["steps"] is None and main_past is None and not related:
        return empty_figure("the alert's evidence holds no series and none is recorded")

    rows = 2 if related else 1
    if rows == 2:
        fig = make_subplots(
            rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1, row_heights=[0.68, 0.32]
        )
        top, bottom = dict(row=1, col=1), dict(row=2, col=1)
    else:  # one panel: a plain figure (make_subplots costs more than the rest together)
        fig = go.Figure()
        top = bottom = {}
    label = f"{metric or 'series'}" + (f" · {layer}" if layer else "")
    if main_past is not None:
        fig.add_trace(
            go.Scatter(
                x=main_past[0],
                y=main_past[1],
                mode="lines",
                name=f"{label} (whole run)",
                line=dict(color=rgba("#7f7f7f", 0.45), width=1.2),
                hovertemplate="step %{x}<br>%{y:.6g}<extra>whole run</extra>",
            ),
            **top,
        )
    if ev["steps"] is not None:
        fig.add_trace(
            go.Scatter(
                x=compact_steps(ev["steps"]),
                y=convert_units(ev["values"], metric or "", unit),
                mode="lines+markers",
                name=f"{label} (evidence)",
                line=dict(color="#1f77b4", width=2.2),
                marker=dict(size=6),
                hovertemplate="step %{x}<br>%{y:.6g}<extra>evidence</extra>",
            ),
            **top,
        )
    if ev["peak"] is not None and ev["peak_step"] is not None:
        fig.add_trace(
            go.Scatter(
                x=[ev["peak_step"]],
                y=[convert_units(ev["peak"], metric or "", unit)],
                mode="markers",
                name="peak",
                marker=dict(symbol="star", size=13, color="#9467bd"),
                hovertemplate="peak at step %{x}<br>%{y:.6g}<extra></extra>",
            ),
            **top,
        )
    threshold = ev["threshold"]
    if threshold is not None:
        shown = float(convert_units(threshold, metric or "", unit))
        fires = f", fires {ev['direction']}" if ev["direction"] else ""
        text = f"threshold {shown:.4g}{fires}"
        if ev["rule"]:
            text += "<br>" + _wrap(ev["rule"], 90)
        fig.add_hline(
            y=shown,
            **top,
            line=dict(color=SEVERITY_COLORS.get(severity, "#444"), width=1.5, dash="dash"),
            annotation=dict(
                text=text,
                font=dict(size=10),
                align="left",
                bgcolor="rgba(255,255,255,0.7)",
            ),
            annotation_position="top left",
        )
    colors = ("#2ca02c", "#8c564b", "#e377c2", "#17becf")
    for i, (name, r_steps, r_values, past) in enumerate(related):
        color = colors[i % len(colors)]
        if past is not None:
            fig.add_trace(
                go.Scatter(
                    x=past[0],
                    y=past[1],
                    mode="lines",
                    name=f"{name} (whole run)",
                    line=dict(color=rgba(color, 0.35), width=1.2),
                    hovertemplate="step %{x}<br>%{y:.6g}<extra>" + name + "</extra>",
                ),
                **bottom,
            )
        if r_steps is not None:
            fig.add_trace(
                go.Scatter(
                    x=compact_steps(r_steps),
                    y=convert_units(r_values, name, unit),
                    mode="lines+markers",
                    name=f"{name} (evidence)",
                    line=dict(color=color, width=2),
                    marker=dict(size=5),
                    hovertemplate="step %{x}<br>%{y:.6g}<extra>" + name + "</extra>",
                ),
                **bottom,
            )
    color = SEVERITY_COLORS.get(severity, "#444")
    x_step = _shape_x(float(step), log_x)
    fig.add_vline(x=x_step, line=dict(color=color, width=1.5, dash="dot"))
    fig.add_annotation(
        x=x_step,
        y=1,
        xref="x",
        yref="y domain",
        text=f"step {step:g} ({severity})",
        showarrow=False,
        xanchor="left",
        yanchor="bottom",
        font=dict(size=10, color=color),
    )
    fig.update_layout(
        title=dict(text=_wrap(message, 110), font=dict(size=13)),
        height=height if rows == 1 else height + 120,
        margin=dict(l=10, r=10, t=30 + 18 * max(1, _wrap(message, 110).count("<br>") + 1), b=10),
        hovermode="closest",
        legend=dict(orientation="h", y=-0.15, x=0),
    )
    fig.update_xaxes(type=axis_type(log_x))
    fig.update_xaxes(title="step", **bottom)
    if ev["steps"] is not None and main_past is not None:  # open on the evidence window
        x_range = _window(ev["steps"], step, main_past[0], log_x)
        if x_range[0] < x_range[1]:
            fig.update_xaxes(range=x_range)
    fig.update_yaxes(title=f"{metric or 'value'}{unit_suffix(metric or '', unit)}", **top)
    if related:
        first = related[0][0]
        title = first + unit_suffix(first, unit) if len(related) == 1 else "related series"
        fig.update_yaxes(title=title, **bottom)
    return fig
