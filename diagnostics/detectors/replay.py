"""Detectors run offline: :func:`detect_collapse` replays a recorded scalar table through the
same online detectors the probes run, and the functional forms (``detect_token_entropy_collapse
(series)`` and kin) judge one series given as a Series, an array or a scalars DataFrame."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

import numpy as np
import pandas as pd

from diagnostics.detectors._series import _clean, _is_scalars_frame, _series
from diagnostics.detectors.base import Alert, Context
from diagnostics.detectors.online import CollapseDetector
from diagnostics.detectors.settings import CollapseSettings

_DEFAULTS = CollapseSettings()
_KNOWN = {f.name for f in fields(CollapseSettings)}

#: the LM indicators and, per functional form, its keyword -> setting name
LM_KEYWORDS: dict[str, dict[str, str]] = {
    "token_entropy_collapse": {
        "metric": "token_entropy_metric",
        "early_steps": "token_entropy_early_steps",
        "early_drop": "token_entropy_early_drop",
        "floor_fraction": "token_entropy_floor",
        "baseline_points": "lm_baseline_points",
        "window": "lm_window",
        "evidence_points": "evidence_points",
    },
    "over_optimisation": {
        "entropy_metric": "topk_entropy_metric",
        "mass_metric": "topk_mass_metric",
        "entropy_drop": "overopt_entropy_drop",
        "mass_drop": "overopt_mass_drop",
        "baseline_points": "lm_baseline_points",
        "window": "lm_window",
        "evidence_points": "evidence_points",
    },
    "positive_covariance": {
        "mean_metric": "cov_mean_metric",
        "share_metric": "cov_share_metric",
        "entropy_metric": "token_entropy_metric",
        "window": "cov_window",
        "min_fraction": "cov_min_fraction",
        "share_threshold": "cov_share_threshold",
        "entropy_drop": "cov_entropy_drop",
        "evidence_points": "evidence_points",
    },
    "attention_collapse": {
        "metric": "attention_metric",
        "deep_fraction": "attention_deep_fraction",
        "threshold": "attention_threshold",
        "head_fraction": "attention_head_fraction",
        "window": "attention_window",
        "evidence_points": "evidence_points",
    },
    "entropic_overload": {
        "metric": "attention_metric",
        "early_fraction": "overload_early_fraction",
        "threshold": "overload_threshold",
        "head_fraction": "overload_head_fraction",
        "warmup_steps": "overload_warmup_steps",
        "window": "attention_window",
        "evidence_points": "evidence_points",
    },
}


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _rows_of(scalars: Any, keep=None) -> list[tuple[int, str, str | None, float]]:
    """``(step, metric, layer, value)`` rows in step order; of a DataFrame only the rows of the
    metrics ``keep(metric)`` accepts (the rest is dropped before any row is built)."""
    if hasattr(scalars, "itertuples"):
        missing = [c for c in ("step", "metric", "value") if c not in scalars.columns]
        if missing:
            raise ValueError(
                "scalars: expected a DataFrame with columns step, metric, value (and layer), "
                f"got columns {list(scalars.columns)}"
            )
        if keep is not None:
            wanted = [m for m in pd.unique(scalars["metric"]) if keep(str(m))]
            scalars = scalars[scalars["metric"].isin(wanted)]
        frame = scalars.sort_values("step", kind="stable")
        layers = frame["layer"] if "layer" in frame.columns else [None] * len(frame)
        return [
            (int(s), str(m), None if _missing(lay) else str(lay), float(v))
            for s, m, lay, v in zip(frame["step"], frame["metric"], layers, frame["value"])
        ]
    return sorted(((int(s), m, lay, float(v)) for s, m, lay, v in scalars), key=lambda r: r[0])


def detect_collapse(
    scalars: Any,
    settings: CollapseSettings | None = None,
    *,
    indicators: Iterable[str] | None = None,
    context: Context | None = None,
) -> list[Alert]:
    """Replay a scalar table (``RunReader.scalars()``: columns ``step, metric, layer,
    value``; or an iterable of ``(step, metric, layer, value)``) through every detector, in
    step order (rows of one step in their given order), and return every alert.

    ``context`` should be the run's (``Context.from_meta(reader.meta)``), so that the replay
    judges as the probes did while the run was recorded.
    """
    detector = CollapseDetector(settings, indicators=indicators, context=context)
    return detector.feed(_rows_of(scalars, detector.watches))


def _settings_for(indicator: str, keywords: Mapping[str, Any], base=_DEFAULTS) -> CollapseSettings:
    table = LM_KEYWORDS[indicator]
    unknown = [k for k in keywords if k not in table]
    if unknown:
        raise TypeError(
            f"{unknown[0]}: not a setting of {indicator}; expected one of {', '.join(table)}"
        )
    values = {table[k]: v for k, v in keywords.items()}
    try:
        return replace(base, **values)
    except ValueError as exc:
        message = str(exc)
        for k, name in table.items():
            message = message.replace(f"{name}:", f"{k}:")
        raise ValueError(message) from None


def with_keywords(
    settings: CollapseSettings, keywords: Mapping[str, Mapping[str, Any]]
) -> CollapseSettings:
    """``settings`` with the functional forms' keywords applied, given per LM indicator
    (``{"token_entropy_collapse": {"floor_fraction": 0.05}}``; see :data:`LM_KEYWORDS`)."""
    unknown = sorted(set(keywords) - set(LM_KEYWORDS))
    if unknown:
        raise ValueError(
            f"settings: expected detector names from {sorted(LM_KEYWORDS)}, got {unknown}"
        )
    for indicator, kw in keywords.items():
        settings = _settings_for(indicator, kw or {}, settings)
    return settings


def _run(indicator, settings, rows, context=None) -> list[Alert]:
    det = CollapseDetector(settings, indicators=[indicator], context=context)
    return det.feed(sorted(rows, key=lambda r: r[0]))


def _whole_model_rows(series: pd.Series, metric: str):
    return [(int(s), metric, None, float(v)) for s, v in series.items()]


def _frame_or(arg, frame, *, name, metric, required):
    return _series(frame if frame is not None else arg, name=name, metric=metric, required=required)


def detect_token_entropy_collapse(entropy: Any, **keywords: Any) -> list[Alert]:
    """Token-entropy collapse (:class:`~diagnostics.detectors.lm.TokenEntropyCollapse`) of one
    series: mean token entropy per step (Series indexed by step, 1-D array, or a scalars
    DataFrame holding ``lm/token_entropy/mean``). Keywords: ``metric, early_steps,
    early_drop, floor_fraction, baseline_points, window, evidence_points``.

    The series is taken to be RL fine-tuning (whatever it records beside).

    >>> h = [2.0, 1.9, 1.2, 0.8, 0.5, 0.3, 0.15, 0.1, 0.08, 0.05]
    >>> [(a.step, a.severity) for a in detect_token_entropy_collapse(h, window=1)]
    [(3, 'warning'), (6, 'critical')]
    """
    s = _settings_for("token_entropy_collapse", keywords)
    series = _series(entropy, name="entropy", metric=s.token_entropy_metric)
    rows = _whole_model_rows(series, s.token_entropy_metric)
    return _run("token_entropy_collapse", s, rows, Context(rl=True))


def detect_over_optimisation(topk_entropy: Any, topk_mass: Any = None, **keywords) -> list[Alert]:
    """Likelihood over-optimisation (:class:`~diagnostics.detectors.lm.OverOptimisation`) from
    the top-k entropy and (optionally) top-k mass series, or a scalars DataFrame holding both.
    Keywords: ``entropy_metric, mass_metric, entropy_drop, mass_drop, baseline_points, window,
    evidence_points``.

    >>> ent = [1.0 - 0.05 * t for t in range(10)]; mass = [0.9 - 0.01 * t for t in range(10)]
    >>> [(a.step, a.severity) for a in detect_over_optimisation(ent, mass, window=1)]
    [(5, 'info'), (6, 'warning')]
    """
    s = _settings_for("over_optimisation", keywords)
    frame = topk_entropy if _is_scalars_frame(topk_entropy) else None
    ent = _series(topk_entropy, name="topk_entropy", metric=s.topk_entropy_metric)
    mass = _frame_or(
        topk_mass, frame if topk_mass is None else None, name="topk_mass",
        metric=s.topk_mass_metric, required=False,
    )  # fmt: skip
    rows = _whole_model_rows(ent, s.topk_entropy_metric)
    if mass is not None:
        rows += _whole_model_rows(mass, s.topk_mass_metric)
    return _run("over_optimisation", s, rows)


def detect_positive_covariance(
    cov_mean: Any = None, pos_share: Any = None, *, entropy: Any = None, **keywords: Any
) -> list[Alert]:
    """Positive entropy-advantage covariance
    (:class:`~diagnostics.detectors.lm.PositiveCovariance`) from the batch-mean covariance
    and/or the positive share (or a scalars DataFrame holding them); ``entropy`` (the token
    entropy series, read from the DataFrame when there) tells whether the covariance is
    driving entropy down (warning) or not (info). Keywords: ``mean_metric, share_metric,
    entropy_metric, window, min_fraction, share_threshold, entropy_drop, evidence_points``.

    >>> [(a.step, a.severity) for a in detect_positive_covariance([0.1] * 25)]
    [(19, 'info')]
    >>> h = [2.0 * 0.97**t for t in range(25)]
    >>> [(a.step, a.severity) for a in detect_positive_covariance([0.1] * 25, entropy=h)]
    [(19, 'warning')]
    """
    s = _settings_for("positive_covariance", keywords)
    frame = next((a for a in (cov_mean, pos_share) if _is_scalars_frame(a)), None)
    kw = dict(required=False)
    mean = _frame_or(cov_mean, frame, name="cov_mean", metric=s.cov_mean_metric, **kw)
    share = _frame_or(pos_share, frame, name="pos_share", metric=s.cov_share_metric, **kw)
    ent = _frame_or(entropy, frame, name="entropy", metric=s.token_entropy_metric, **kw)
    if mean is None and share is None:
        raise ValueError(
            f"cov_mean: expected the {s.cov_mean_metric!r} and/or {s.cov_share_metric!r} "
            "series, got neither"
        )
    rows = []
    for series, metric in ((mean, s.cov_mean_metric), (share, s.cov_share_metric)):
        if series is not None:
            rows += _whole_model_rows(series, metric)
    if ent is not None:
        rows += _whole_model_rows(ent, s.token_entropy_metric)
    return _run("positive_covariance", s, rows)


def _attention_rows(data: Any, metric: str) -> list[tuple[int, str, str, float]]:
    """(step, metric, layer, value) rows from a scalars frame (layer means and /hH heads), a
    wide DataFrame (one column per layer) or a dict layer -> series of layer means."""
    rows: list[tuple[int, str, str, float]] = []
    if isinstance(data, pd.DataFrame) and _is_scalars_frame(data):
        if "layer" not in data.columns:
            raise ValueError("data: expected a 'layer' column for per-layer attention metrics")
        sel = data[data["layer"].notna() & data["metric"].astype(str).str.startswith(metric)]
        sel = sel[(sel["metric"] == metric) | sel["metric"].astype(str).str.match(
            rf"^{metric}/h\d+$"
        )]  # fmt: skip
        rows = [
            (int(st), str(m), str(lay), float(v))
            for st, m, lay, v in zip(sel["step"], sel["metric"], sel["layer"], sel["value"])
            if np.isfinite(v)
        ]
    elif isinstance(data, pd.DataFrame):
        for col in data.columns:
            rows += [(s, metric, str(col), v) for s, _, _, v in _whole_model_rows(
                _clean(data[col], name="data"), metric
            )]  # fmt: skip
    elif isinstance(data, Mapping):
        for layer, series in data.items():
            clean = _series(series, name=f"data[{layer!r}]", metric=metric)
            rows += [(s, metric, str(layer), v) for s, _, _, v in _whole_model_rows(clean, metric)]
    else:
        raise TypeError(
            "data: expected a scalars DataFrame (step, metric, layer, value), a wide DataFrame "
            f"(one column per layer) or a dict layer -> series, got {type(data).__name__}"
        )
    if not rows:
        raise ValueError(f"data: no per-layer rows for metric {metric!r} (or its /h<H> heads)")
    return rows


def _attention(indicator, data, layers, keywords) -> list[Alert]:
    s = _settings_for(indicator, keywords)
    rows = _attention_rows(data, s.attention_metric)
    order: tuple[str, ...] = ()
    if layers is not None:
        order = tuple(str(x) for x in layers)
        missing = sorted({r[2] for r in rows} - set(order))
        unknown = [x for x in order if x not in {r[2] for r in rows}]
        if unknown or missing:
            raise ValueError(
                f"layers: expected every layer of the data in depth order, got unknown {unknown}"
                f" and missing {missing}"
            )
    return _run(indicator, s, rows, Context(layer_order=order))


def detect_attention_collapse(
    data: Any, *, layers: Sequence[str] | None = None, **keywords: Any
) -> list[Alert]:
    """Attention entropy collapse in deep layers
    (:class:`~diagnostics.detectors.attention.AttentionCollapse`). ``layers``: names in depth
    order (default: natural sort). Keywords: ``metric, deep_fraction, threshold,
    head_fraction, window, evidence_points``.

    >>> d = {"h.0": [0.9, 0.9, 0.9], "h.1": [0.8, 0.3, 0.05]}
    >>> [(a.step, a.layer, a.severity) for a in detect_attention_collapse(d, window=1)]
    [(2, 'h.1', 'critical')]
    """
    return _attention("attention_collapse", data, layers, keywords)


def detect_entropic_overload(
    data: Any, *, layers: Sequence[str] | None = None, **keywords: Any
) -> list[Alert]:
    """Entropic overload in early layers
    (:class:`~diagnostics.detectors.attention.EntropicOverload`). Keywords: ``metric,
    early_fraction, threshold, head_fraction, warmup_steps, window, evidence_points``.

    >>> d = {"h.0": [0.99, 0.98, 0.97], "h.1": [0.9, 0.5, 0.3]}
    >>> [(a.step, a.layer) for a in detect_entropic_overload(d, warmup_steps=1, window=1)]
    [(1, 'h.0')]
    """
    return _attention("entropic_overload", data, layers, keywords)


def detect_lm_collapse(
    scalars: pd.DataFrame, *, context: Context | None = None, **settings: Any
) -> list[Alert]:
    """Run every LM detector over a scalars DataFrame (the run log's layout).

    ``settings`` maps a detector's name (``"token_entropy_collapse"``, ``"over_optimisation"``,
    ``"positive_covariance"``, ``"attention_collapse"``, ``"entropic_overload"``) to the
    keywords of its functional form. Returns the alerts sorted by step.
    """
    if not _is_scalars_frame(scalars):
        raise ValueError(
            "scalars: expected a DataFrame with columns step, metric, value (and layer)"
        )
    base = with_keywords(_DEFAULTS, settings)
    alerts = detect_collapse(scalars, base, indicators=list(LM_KEYWORDS), context=context)
    return sorted(alerts, key=lambda a: (a.step, a.indicator, a.layer or ""))
