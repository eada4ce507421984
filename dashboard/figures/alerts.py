"""Collapse alerts: what each indicator means and where it comes from, the status per
indicator, and every alert on a timeline coloured by severity."""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.common import axis_type, empty_figure
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

    The hover shows the message, layer and evidence (JSON, shortened).
    """
    if alerts.empty:
        return empty_figure("no alerts raised")
    order = [i for i in INDICATOR_INFO if i in set(alerts["indicator"])]
    order += [i for i in pd.unique(alerts["indicator"]) if i not in order]
    fig = go.Figure()
    for sev in schema.SEVERITIES:
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
                    **_MARKER[sev],
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
    fig.update_xaxes(title="step", type=axis_type(log_x))
    return fig


def _short_json(obj, limit: int = 160) -> str:
    try:
        text = json.dumps(obj, default=str)
    except (TypeError, ValueError):
        text = str(obj)
    return text if len(text) <= limit else text[: limit - 1] + "…"
