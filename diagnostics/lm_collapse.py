"""Collapse indicators for language models: pure functions over recorded series.

Each detector reads metric series (as the probes record them, names from
:mod:`diagnostics.schema`) and returns a list of alert dicts::

    {"step": int, "indicator": str, "severity": "info" | "warning" | "collapsed",
     "layer": str | None, "message": str,
     "evidence": {"series": metric name(s), "steps": [...], "values": [...],
                  "threshold": ..., ...}}

``indicator`` is one of :data:`diagnostics.schema.INDICATORS`. An alert is raised at each
*onset*: the first step where a condition holds after a step where it did not (so a
condition that stays true gives one alert, not one per step). Series are smoothed with a
trailing rolling median (``window`` points) before thresholds are applied, so a single noisy
point neither raises nor hides an alert.

Inputs
------
Every detector accepts, for each series:

- a ``pandas.Series`` indexed by step;
- a 1-D array or list (steps ``0, 1, 2, ...``);
- a ``pandas.DataFrame`` in the run log's scalars layout, columns ``step``, ``metric``,
  ``value`` and optionally ``layer`` (as ``RunReader`` returns them); the detector picks the
  rows of its metric (whole-model rows, ``layer`` NULL, unless it works per layer).

Repeated steps are averaged; NaN values are dropped. Thresholds are keyword settings with
documented defaults; where a paper gives no number, the docstring says the default is ours.

Sources: Cui et al. 2025 (arXiv:2505.22617, token entropy collapse and the covariance
mechanism in RL for reasoning LMs); Shi et al. 2024 (arXiv:2410.11677, likelihood
over-optimisation in direct alignment); Zhai et al. 2023 (ICML, attention entropy collapse);
Jha & Reagen 2025 (arXiv:2501.03489, entropy collapse in deep layers and entropic overload in
early layers).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from diagnostics.schema import INDICATORS, SEVERITIES

__all__ = [
    "detect_token_entropy_collapse",
    "detect_over_optimisation",
    "detect_positive_covariance",
    "detect_attention_collapse",
    "detect_entropic_overload",
    "detect_lm_collapse",
]

TOKEN_ENTROPY = "lm/token_entropy/mean"
TOPK_ENTROPY = "lm/topk_entropy"
TOPK_MASS = "lm/topk_mass"
COV_MEAN = "rl/cov/mean"
COV_POS_SHARE = "rl/cov/pos_share"
ATTN_ENTROPY_NORM = "attn/entropy_norm"

_SCALAR_COLUMNS = ("step", "metric", "value")


# This module must not import torch (the dashboard uses it), so it cannot use
# diagnostics._validate; these two mirror its check_int / check_float messages.
def _check_int(value: Any, *, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def _check_float(value: Any, *, name: str, minimum: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not (minimum <= value <= maximum):
        raise ValueError(f"{name}: expected a number in [{minimum}, {maximum}], got {value}")
    return value


# --------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------


def _is_scalars_frame(data: Any) -> bool:
    return isinstance(data, pd.DataFrame) and all(c in data.columns for c in _SCALAR_COLUMNS)


def _clean(s: pd.Series, *, name: str) -> pd.Series:
    try:
        values = pd.to_numeric(s, errors="raise").astype(float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected numeric values, got dtype {s.dtype}") from None
    try:
        steps = pd.Index(values.index).astype(np.int64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: expected integer steps as the index, got {values.index.dtype}"
        ) from None
    values = pd.Series(values.to_numpy(), index=steps)
    values = values.groupby(level=0).mean().sort_index()
    return values[np.isfinite(values.to_numpy())]


def _frame_rows(frame: pd.DataFrame, metric: str, layer: Any = None) -> pd.DataFrame:
    rows = frame[frame["metric"] == metric]
    if "layer" in frame.columns:
        rows = rows[rows["layer"].isna()] if layer is None else rows[rows["layer"] == layer]
    return rows


def _series(data: Any, *, name: str, metric: str, required: bool = True) -> pd.Series | None:
    """Turn one input into a clean float Series indexed by int step (sorted, finite)."""
    if data is None:
        if required:
            raise ValueError(f"{name}: expected a series, got None")
        return None
    if isinstance(data, pd.DataFrame):
        if not _is_scalars_frame(data):
            raise ValueError(
                f"{name}: expected a DataFrame with columns step, metric, value (the run "
                f"log's scalars layout), got columns {list(data.columns)}"
            )
        rows = _frame_rows(data, metric)
        if rows.empty:
            if required:
                raise ValueError(f"{name}: the DataFrame has no rows for metric {metric!r}")
            return None
        s = pd.Series(rows["value"].to_numpy(dtype=float), index=rows["step"].to_numpy())
        return _clean(s, name=name)
    if isinstance(data, pd.Series):
        return _clean(data, name=name)
    if hasattr(data, "detach"):  # torch tensor
        data = data.detach().cpu().numpy()
    if isinstance(data, (np.ndarray, list, tuple)):
        arr = np.asarray(data)
        if arr.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D series, got shape {arr.shape}")
        return _clean(pd.Series(arr), name=name)
    raise TypeError(
        f"{name}: expected a pandas Series, a 1-D array or a scalars DataFrame, "
        f"got {type(data).__name__}"
    )


def _check_fraction(value: Any, *, name: str, open_low: bool = True) -> float:
    v = _check_float(value, name=name, minimum=0.0, maximum=1.0)
    if open_low and v == 0.0:
        raise ValueError(f"{name}: expected a number in (0, 1], got {v}")
    return v


def _smooth(s: pd.Series, window: int) -> pd.Series:
    return s.rolling(window, min_periods=1).median()


def _baseline(s: pd.Series, points: int) -> float:
    return float(np.median(s.to_numpy()[:points]))


def _onsets(cond: pd.Series) -> list[int]:
    """Steps where ``cond`` becomes true (the first step counts if true)."""
    c = cond.to_numpy(dtype=bool)
    prev = np.concatenate([[False], c[:-1]])
    return [int(x) for x in cond.index.to_numpy()[c & ~prev]]


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray, pd.Index)):
        return [_jsonable(v) for v in list(x)]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def _window(s: pd.Series, step: int, n: int) -> tuple[list[int], list[float]]:
    part = s.loc[:step].iloc[-n:]
    return [int(i) for i in part.index], [float(v) for v in part.to_numpy()]


def _alert(
    step: int, indicator: str, severity: str, layer: str | None, message: str, evidence: dict
) -> dict:
    assert indicator in INDICATORS and severity in SEVERITIES
    return {
        "step": int(step),
        "indicator": indicator,
        "severity": severity,
        "layer": layer,
        "message": message,
        "evidence": _jsonable(evidence),
    }


# --------------------------------------------------------------------------------------
# token entropy collapse
# --------------------------------------------------------------------------------------


def detect_token_entropy_collapse(
    entropy: Any,
    *,
    metric: str = TOKEN_ENTROPY,
    early_steps: int = 200,
    early_drop: float = 0.5,
    floor_fraction: float = 0.1,
    baseline_points: int = 3,
    window: int = 5,
    evidence_points: int = 20,
) -> list[dict]:
    """Token-entropy collapse in RL fine-tuning: a fast early drop, then near-exhaustion.

    Cui et al. (2025, arXiv:2505.22617) find that without intervention policy entropy falls
    sharply at the start of RL (about 73% of it within the first 200 steps, 1/12 of their
    runs) and keeps sliding towards 0, where the reward saturates. Two conditions, on the
    smoothed series ``H_t`` against the initial value ``H_0``:

    - ``warning`` (fast early drop): ``H_t <= (1 - early_drop) H_0`` at a step within
      ``early_steps`` training steps of the first recorded one;
    - ``collapsed``: ``H_t <= floor_fraction H_0`` at any step.

    Args:
        entropy: mean token entropy per step (``lm/token_entropy/mean``), or a scalars
            DataFrame holding it.
        metric: metric name to read from a DataFrame.
        early_steps: length of the "early" phase in training steps (default 200, the span in
            which Cui et al. report the bulk of the drop).
        early_drop: relative drop that counts as fast (default 0.5; the paper reports 0.73 in
            its runs, a milder bar catches the onset).
        floor_fraction: fraction of the initial entropy below which entropy counts as
            exhausted (default 0.1, our choice).
        baseline_points: ``H_0`` is the median of this many first points (default 3).
        window: trailing rolling-median window in points (default 5).
        evidence_points: how many points of the series go into the evidence.

    >>> h = [2.0, 1.9, 1.2, 0.8, 0.5, 0.3, 0.15, 0.1, 0.08, 0.05]
    >>> [(a["step"], a["severity"]) for a in detect_token_entropy_collapse(h, window=1)]
    [(3, 'warning'), (6, 'collapsed')]
    """
    s = _series(entropy, name="entropy", metric=metric)
    early_steps = _check_int(early_steps, name="early_steps", minimum=0)
    early_drop = _check_fraction(early_drop, name="early_drop")
    floor_fraction = _check_fraction(floor_fraction, name="floor_fraction")
    baseline_points = _check_int(baseline_points, name="baseline_points", minimum=1)
    window = _check_int(window, name="window", minimum=1)
    evidence_points = _check_int(evidence_points, name="evidence_points", minimum=1)
    if len(s) <= baseline_points:
        return []
    h0 = _baseline(s, baseline_points)
    if not h0 > 0:
        return []
    sm = _smooth(s, window)
    first = int(s.index[0])
    alerts = []
    early = (sm <= (1.0 - early_drop) * h0) & (
        sm.index.to_series(index=sm.index) - first <= early_steps
    )
    for step in _onsets(early)[:1]:
        steps, values = _window(s, step, evidence_points)
        drop = 1.0 - float(sm.loc[step]) / h0
        alerts.append(
            _alert(
                step,
                "token_entropy_collapse",
                "warning",
                None,
                f"token entropy fell by {drop:.0%} within {step - first} steps "
                f"(from {h0:.3g} to {float(sm.loc[step]):.3g} nats)",
                {
                    "series": metric,
                    "steps": steps,
                    "values": values,
                    "threshold": (1.0 - early_drop) * h0,
                    "initial": h0,
                    "smoothed": float(sm.loc[step]),
                    "early_steps": early_steps,
                    "early_drop": early_drop,
                },
            )
        )
    for step in _onsets(sm <= floor_fraction * h0):
        steps, values = _window(s, step, evidence_points)
        alerts.append(
            _alert(
                step,
                "token_entropy_collapse",
                "collapsed",
                None,
                f"token entropy is at {float(sm.loc[step]) / h0:.0%} of its initial value "
                f"({float(sm.loc[step]):.3g} of {h0:.3g} nats): exploration is exhausted",
                {
                    "series": metric,
                    "steps": steps,
                    "values": values,
                    "threshold": floor_fraction * h0,
                    "initial": h0,
                    "smoothed": float(sm.loc[step]),
                    "floor_fraction": floor_fraction,
                },
            )
        )
    return sorted(alerts, key=lambda a: a["step"])


# --------------------------------------------------------------------------------------
# over-optimisation (top-k entropy and mass)
# --------------------------------------------------------------------------------------


def detect_over_optimisation(
    topk_entropy: Any,
    topk_mass: Any = None,
    *,
    entropy_metric: str = TOPK_ENTROPY,
    mass_metric: str = TOPK_MASS,
    entropy_drop: float = 0.2,
    mass_drop: float = 0.05,
    baseline_points: int = 3,
    window: int = 5,
    evidence_points: int = 20,
) -> list[dict]:
    """Likelihood over-optimisation: falling top-k entropy together with shrinking top-k mass.

    Shi et al. (2024, arXiv:2410.11677) identify two indicators that output diversity has
    been over-optimised in direct alignment (DPO, IPO...) and performance starts to drop:
    *decreasing entropy over the top-k tokens* and *diminishing top-k probability mass*. On
    the smoothed series, relative to their initial values:

    - ``warning``: top-k entropy down by at least ``entropy_drop`` **and** top-k mass down by
      at least ``mass_drop`` (both indicators);
    - ``info``: only the top-k entropy has fallen that far (one indicator; also the most
      this detector says when no top-k mass series is given).

    The paper gives no numeric thresholds; the defaults (20% and 5% relative drops) are
    ours.

    Args:
        topk_entropy: top-k entropy per step (``lm/topk_entropy``; pass
            ``entropy_metric="lm/topk_entropy_renorm"`` for the renormalised one), or a
            scalars DataFrame holding both series.
        topk_mass: top-k probability mass per step (``lm/topk_mass``); read from the
            DataFrame when ``topk_entropy`` is one.
        entropy_drop, mass_drop: relative drops in ``(0, 1]``.
        baseline_points, window, evidence_points: as in
            :func:`detect_token_entropy_collapse`.

    >>> steps = range(10)
    >>> ent = [1.0 - 0.05 * t for t in steps]; mass = [0.9 - 0.01 * t for t in steps]
    >>> [(a["step"], a["severity"]) for a in detect_over_optimisation(ent, mass, window=1)]
    [(5, 'info'), (6, 'warning')]
    """
    frame = topk_entropy if _is_scalars_frame(topk_entropy) else None
    s_ent = _series(topk_entropy, name="topk_entropy", metric=entropy_metric)
    if frame is not None and topk_mass is None:
        s_mass = _series(frame, name="topk_mass", metric=mass_metric, required=False)
    else:
        s_mass = _series(topk_mass, name="topk_mass", metric=mass_metric, required=False)
    entropy_drop = _check_fraction(entropy_drop, name="entropy_drop")
    mass_drop = _check_fraction(mass_drop, name="mass_drop")
    baseline_points = _check_int(baseline_points, name="baseline_points", minimum=1)
    window = _check_int(window, name="window", minimum=1)
    evidence_points = _check_int(evidence_points, name="evidence_points", minimum=1)
    if len(s_ent) <= baseline_points:
        return []
    e0 = _baseline(s_ent, baseline_points)
    if not e0 > 0:
        return []
    sm_e = _smooth(s_ent, window)
    ent_down = sm_e <= (1.0 - entropy_drop) * e0
    alerts = []
    both = pd.Series(False, index=sm_e.index)
    m0 = None
    sm_m = None
    if s_mass is not None and len(s_mass) > baseline_points:
        m0 = _baseline(s_mass, baseline_points)
        sm_m = _smooth(s_mass, window)
        mass_down = (sm_m <= (1.0 - mass_drop) * m0).reindex(sm_e.index, method="ffill")
        both = ent_down & mass_down.fillna(False).astype(bool)

    def evidence(step: int) -> dict:
        steps, values = _window(s_ent, step, evidence_points)
        ev = {
            "series": [entropy_metric] + ([mass_metric] if sm_m is not None else []),
            "steps": steps,
            "values": values,
            "threshold": (1.0 - entropy_drop) * e0,
            "initial": e0,
            "smoothed": float(sm_e.loc[step]),
            "entropy_drop": entropy_drop,
        }
        if sm_m is not None:
            m_steps, m_values = _window(s_mass, step, evidence_points)
            ev.update(
                mass_steps=m_steps,
                mass_values=m_values,
                mass_threshold=(1.0 - mass_drop) * m0,
                mass_initial=m0,
                mass_drop=mass_drop,
            )
        return ev

    for step in _onsets(ent_down & ~both)[:1]:
        alerts.append(
            _alert(
                step,
                "over_optimisation",
                "info",
                None,
                f"top-k entropy fell by {1 - float(sm_e.loc[step]) / e0:.0%} from its initial "
                "value" + ("" if sm_m is not None else " (no top-k mass series to confirm)"),
                evidence(step),
            )
        )
    for step in _onsets(both):
        m_now = float(sm_m.loc[:step].iloc[-1])
        alerts.append(
            _alert(
                step,
                "over_optimisation",
                "warning",
                None,
                f"top-k entropy fell by {1 - float(sm_e.loc[step]) / e0:.0%} and top-k mass "
                f"shrank by {1 - m_now / m0:.0%}: likelihood over-optimisation",
                evidence(step),
            )
        )
    return sorted(alerts, key=lambda a: a["step"])


# --------------------------------------------------------------------------------------
# positive covariance dominance
# --------------------------------------------------------------------------------------


def detect_positive_covariance(
    cov_mean: Any = None,
    pos_share: Any = None,
    *,
    mean_metric: str = COV_MEAN,
    share_metric: str = COV_POS_SHARE,
    window: int = 20,
    min_fraction: float = 0.9,
    share_threshold: float = 0.5,
    evidence_points: int = 20,
) -> list[dict]:
    """Positive entropy-advantage covariance dominates: entropy is being driven down.

    Cui et al. (2025, arXiv:2505.22617) show the first-order entropy change of a softmax
    policy under policy gradient is ``-eta Cov(log pi, A)`` (per token, as
    :func:`diagnostics.lm.entropy_advantage_covariance` computes it), and that this
    covariance stays mostly positive through RL training, which explains the monotonic entropy
    decline. ``warning`` at the onset of a stretch where, over the last ``window`` recorded
    steps,

    - the batch-mean covariance (``rl/cov/mean``) was positive at ``>= min_fraction`` of the
      steps (defaults ``window=20``, ``min_fraction=0.9``, our choice: a zero-mean series
      passes this sign test in a given window with probability 2e-4), and
    - the mean share of tokens with positive covariance (``rl/cov/pos_share``) exceeds
      ``share_threshold`` (default 0.5: positive tokens are the majority),

    each condition applying when its series is given (at least one is required).

    >>> [(a["step"], a["severity"]) for a in detect_positive_covariance([0.1] * 25)]
    [(19, 'warning')]
    """
    frame = None
    for arg in (cov_mean, pos_share):
        if _is_scalars_frame(arg):
            frame = arg
    if frame is not None:
        s_mean = _series(frame, name="cov_mean", metric=mean_metric, required=False)
        s_share = _series(frame, name="pos_share", metric=share_metric, required=False)
    else:
        s_mean = _series(cov_mean, name="cov_mean", metric=mean_metric, required=False)
        s_share = _series(pos_share, name="pos_share", metric=share_metric, required=False)
    if s_mean is None and s_share is None:
        raise ValueError(
            f"cov_mean: expected the {mean_metric!r} and/or {share_metric!r} series, got neither"
        )
    window = _check_int(window, name="window", minimum=1)
    min_fraction = _check_fraction(min_fraction, name="min_fraction")
    share_threshold = _check_float(
        share_threshold, name="share_threshold", minimum=0.0, maximum=1.0
    )
    evidence_points = _check_int(evidence_points, name="evidence_points", minimum=1)
    index = (s_mean if s_mean is not None else s_share).index
    if s_mean is not None and s_share is not None:
        index = s_mean.index.union(s_share.index)
    cond = pd.Series(True, index=index)
    frac_pos = share_mean = None
    if s_mean is not None:
        frac_pos = (s_mean > 0).astype(float).rolling(window, min_periods=window).mean()
        cond &= (frac_pos >= min_fraction).reindex(index, method="ffill").fillna(False).astype(bool)
    if s_share is not None:
        share_mean = s_share.rolling(window, min_periods=window).mean()
        cond &= (
            (share_mean > share_threshold).reindex(index, method="ffill").fillna(False).astype(bool)
        )
    alerts = []
    for step in _onsets(cond):
        main = s_mean if s_mean is not None else s_share
        steps, values = _window(main, step, evidence_points)
        ev: dict[str, Any] = {
            "series": [
                n for n, s in ((mean_metric, s_mean), (share_metric, s_share)) if s is not None
            ],
            "steps": steps,
            "values": values,
            "threshold": min_fraction if s_mean is not None else share_threshold,
            "window": window,
        }
        parts = []
        if frac_pos is not None:
            f = float(frac_pos.loc[:step].iloc[-1])
            ev["positive_fraction"] = f
            ev["min_fraction"] = min_fraction
            parts.append(f"mean covariance positive at {f:.0%} of the last {window} steps")
        if share_mean is not None:
            sh = float(share_mean.loc[:step].iloc[-1])
            ev["pos_share_mean"] = sh
            ev["share_threshold"] = share_threshold
            if s_mean is None:
                ev["values"] = values
            else:
                ev["share_steps"], ev["share_values"] = _window(s_share, step, evidence_points)
            parts.append(f"{sh:.0%} of tokens with positive covariance")
        alerts.append(
            _alert(
                step,
                "positive_covariance",
                "warning",
                None,
                "positive entropy-advantage covariance dominates ("
                + "; ".join(parts)
                + "): policy entropy is being driven down",
                ev,
            )
        )
    return alerts


# --------------------------------------------------------------------------------------
# attention entropy: collapse in deep layers, overload in early layers
# --------------------------------------------------------------------------------------


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(name))]


def _attention_units(data: Any, metric: str) -> dict[str, dict[str | None, pd.Series]]:
    """layer -> {head label or None (layer mean): series} from the accepted inputs."""
    units: dict[str, dict[str | None, pd.Series]] = {}
    if isinstance(data, pd.DataFrame) and _is_scalars_frame(data):
        if "layer" not in data.columns:
            raise ValueError("data: expected a 'layer' column for per-layer attention metrics")
        rows = data[data["layer"].notna()]
        head_prefix = metric + "/h"
        for (layer, name), grp in rows.groupby(["layer", "metric"], sort=False):
            if name == metric:
                head = None
            elif str(name).startswith(head_prefix) and str(name)[len(head_prefix) :].isdigit():
                head = str(name)[len(metric) + 1 :]
            else:
                continue
            s = pd.Series(grp["value"].to_numpy(dtype=float), index=grp["step"].to_numpy())
            units.setdefault(str(layer), {})[head] = _clean(s, name="data")
    elif isinstance(data, pd.DataFrame):  # wide: index = step, one column per layer
        for col in data.columns:
            units[str(col)] = {None: _clean(data[col], name="data")}
    elif isinstance(data, Mapping):
        for layer, s in data.items():
            units[str(layer)] = {None: _series(s, name=f"data[{layer!r}]", metric=metric)}
    else:
        raise TypeError(
            "data: expected a scalars DataFrame (step, metric, layer, value), a wide DataFrame "
            f"(one column per layer) or a dict layer -> series, got {type(data).__name__}"
        )
    if not units:
        raise ValueError(f"data: no per-layer rows for metric {metric!r} (or its /h<H> heads)")
    return units


def _ordered_layers(units: Mapping[str, Any], layers: Sequence[str] | None) -> list[str]:
    if layers is None:
        return sorted(units, key=_natural_key)
    order = [str(x) for x in layers]
    missing = [x for x in order if x not in units]
    if missing:
        raise ValueError(f"layers: expected names present in the data, got unknown {missing}")
    return order


def _head_fraction_series(
    heads: Mapping[str | None, pd.Series], window: int, test
) -> tuple[pd.Series, pd.DataFrame, bool]:
    """Per step: fraction of units satisfying ``test`` (heads if present, else the mean)."""
    per_head = {h: s for h, s in heads.items() if h is not None}
    use = per_head if per_head else {None: heads[None]}
    wide = pd.DataFrame({h: _smooth(s, window) for h, s in use.items()}).sort_index().ffill()
    frac = test(wide).sum(axis=1) / wide.notna().sum(axis=1)
    return frac, wide, bool(per_head)


def _attention_detector(
    data: Any,
    *,
    indicator: str,
    severity: str,
    metric: str,
    layers: Sequence[str] | None,
    depth_fraction: float,
    deep: bool,
    test,
    threshold: float,
    head_fraction: float,
    window: int,
    min_step: int,
    evidence_points: int,
    describe,
) -> list[dict]:
    units = _attention_units(data, metric)
    order = _ordered_layers(units, layers)
    n_sel = max(1, math.ceil(depth_fraction * len(order)))
    selected = order[-n_sel:] if deep else order[:n_sel]
    alerts = []
    for layer in selected:
        if layer not in units:
            continue
        heads = units[layer]
        frac, wide, has_heads = _head_fraction_series(heads, window, test)
        cond = (frac >= head_fraction) & (frac.index.to_series(index=frac.index) >= min_step)
        for step in _onsets(cond):
            row = wide.loc[step]
            hits = [h for h in wide.columns if bool(test(row[[h]]).iloc[0])]
            mean_series = heads.get(None)
            if mean_series is None:
                mean_series = wide.mean(axis=1)
            steps, values = _window(mean_series, step, evidence_points)
            ev = {
                "series": metric,
                "steps": steps,
                "values": values,
                "threshold": threshold,
                "head_fraction": head_fraction,
                "fraction": float(frac.loc[step]),
                "heads": [str(h) for h in hits] if has_heads else None,
                "depth": f"{order.index(layer) + 1}/{len(order)}",
            }
            alerts.append(
                _alert(
                    step,
                    indicator,
                    severity,
                    layer,
                    describe(
                        layer, float(frac.loc[step]), has_heads, order.index(layer), len(order)
                    ),
                    ev,
                )
            )
    return sorted(alerts, key=lambda a: (a["step"], a["layer"] or ""))


def detect_attention_collapse(
    data: Any,
    *,
    metric: str = ATTN_ENTROPY_NORM,
    layers: Sequence[str] | None = None,
    deep_fraction: float = 0.5,
    threshold: float = 0.1,
    head_fraction: float = 0.5,
    window: int = 3,
    evidence_points: int = 20,
) -> list[dict]:
    """Attention entropy collapse in deep layers (``collapsed`` alerts, one per layer onset).

    Zhai et al. (2023, ICML) tie training instability to attention entropy collapse:
    attention rows concentrating on a single key, entropy near 0. Jha & Reagen (2025,
    arXiv:2501.03489) find the collapse in the *deeper* layers (and entropic overload in the
    earlier ones, :func:`detect_entropic_overload`). A layer among the last ``deep_fraction``
    of the layers (in depth order) is flagged when at least ``head_fraction`` of its heads
    have a smoothed normalised entropy (``attn/entropy_norm/h{H}``, entropy over its causal
    maximum ``log(i + 1)``) below ``threshold``; with only the layer mean
    (``attn/entropy_norm``), when that mean is below ``threshold``.

    Defaults (our choice; the papers give no cut-off): ``threshold=0.1`` (a tenth of the
    possible entropy), ``head_fraction=0.5``, ``deep_fraction=0.5``.

    Args:
        data: a scalars DataFrame (step, metric, layer, value) holding ``metric`` per layer
            and/or ``metric + "/h{H}"`` per head; or a wide DataFrame (index step, one column
            per layer) or dict layer -> series of layer means.
        layers: layer names in depth order (default: natural sort of the names, which orders
            ``h.2`` before ``h.10``).
        window, evidence_points: as in :func:`detect_token_entropy_collapse`.

    >>> d = {"h.0": [0.9, 0.9, 0.9], "h.1": [0.8, 0.3, 0.05]}
    >>> [(a["step"], a["layer"]) for a in detect_attention_collapse(d, window=1)]
    [(2, 'h.1')]
    """
    threshold = _check_fraction(threshold, name="threshold")
    head_fraction = _check_fraction(head_fraction, name="head_fraction")
    deep_fraction = _check_fraction(deep_fraction, name="deep_fraction")
    window = _check_int(window, name="window", minimum=1)
    evidence_points = _check_int(evidence_points, name="evidence_points", minimum=1)

    def describe(layer, frac, has_heads, idx, n):
        what = f"{frac:.0%} of its heads have" if has_heads else "its mean has"
        return (
            f"attention entropy collapse in layer {layer} (depth {idx + 1}/{n}): {what} "
            f"normalised entropy below {threshold:g}"
        )

    return _attention_detector(
        data,
        indicator="attention_collapse",
        severity="collapsed",
        metric=metric,
        layers=layers,
        depth_fraction=deep_fraction,
        deep=True,
        test=lambda w: w < threshold,
        threshold=threshold,
        head_fraction=head_fraction,
        window=window,
        min_step=-(2**62),
        evidence_points=evidence_points,
        describe=describe,
    )


def detect_entropic_overload(
    data: Any,
    *,
    metric: str = ATTN_ENTROPY_NORM,
    layers: Sequence[str] | None = None,
    early_fraction: float = 0.5,
    threshold: float = 0.75,
    head_fraction: float = 0.5,
    warmup_steps: int = 1000,
    window: int = 3,
    evidence_points: int = 20,
) -> list[dict]:
    """Entropic overload in early layers (``warning`` alerts, one per layer onset).

    Jha & Reagen (2025, arXiv:2501.03489) call *entropic overload* a disproportionate share
    of attention heads in the *earlier* layers staying at near-maximal entropy, attending
    almost uniformly, which under-uses multi-head attention. A layer among the first
    ``early_fraction`` of the layers is flagged when, at a step ``>= warmup_steps``, at least
    ``head_fraction`` of its heads have a smoothed normalised entropy above ``threshold``
    (with only the layer mean: when that mean is above ``threshold``). Attention is close to
    uniform at initialisation, hence the warm-up: overload means it *stays* there.

    Defaults (our choice; a setting): ``threshold=0.75`` (the top quarter of the possible
    range), ``head_fraction=0.5``, ``early_fraction=0.5``, ``warmup_steps=1000``.

    Args: as :func:`detect_attention_collapse`, plus ``warmup_steps`` (training steps before
        which nothing is flagged).

    >>> d = {"h.0": [0.99, 0.98, 0.97], "h.1": [0.9, 0.5, 0.3]}
    >>> [(a["step"], a["layer"]) for a in detect_entropic_overload(d, warmup_steps=1, window=1)]
    [(1, 'h.0')]
    """
    threshold = _check_fraction(threshold, name="threshold")
    head_fraction = _check_fraction(head_fraction, name="head_fraction")
    early_fraction = _check_fraction(early_fraction, name="early_fraction")
    warmup_steps = _check_int(warmup_steps, name="warmup_steps", minimum=0)
    window = _check_int(window, name="window", minimum=1)
    evidence_points = _check_int(evidence_points, name="evidence_points", minimum=1)

    def describe(layer, frac, has_heads, idx, n):
        what = f"{frac:.0%} of its heads stay" if has_heads else "its mean stays"
        return (
            f"entropic overload in layer {layer} (depth {idx + 1}/{n}): {what} above "
            f"{threshold:g} of the maximal attention entropy after {warmup_steps} steps"
        )

    return _attention_detector(
        data,
        indicator="entropic_overload",
        severity="warning",
        metric=metric,
        layers=layers,
        depth_fraction=early_fraction,
        deep=False,
        test=lambda w: w > threshold,
        threshold=threshold,
        head_fraction=head_fraction,
        window=window,
        min_step=warmup_steps,
        evidence_points=evidence_points,
        describe=describe,
    )


def detect_lm_collapse(scalars: pd.DataFrame, **settings: dict) -> list[dict]:
    """Run every LM detector whose metrics are present in a scalars DataFrame.

    ``settings`` maps a detector's name (``"token_entropy_collapse"``,
    ``"over_optimisation"``, ``"positive_covariance"``, ``"attention_collapse"``,
    ``"entropic_overload"``) to its keyword settings. Returns all alerts sorted by step.
    """
    if not _is_scalars_frame(scalars):
        raise ValueError(
            "scalars: expected a DataFrame with columns step, metric, value (and layer)"
        )
    known = {
        "token_entropy_collapse",
        "over_optimisation",
        "positive_covariance",
        "attention_collapse",
        "entropic_overload",
    }
    unknown = set(settings) - known
    if unknown:
        raise ValueError(
            f"settings: expected detector names from {sorted(known)}, got {sorted(unknown)}"
        )
    metrics = set(scalars["metric"].unique())
    has_layer_rows = "layer" in scalars.columns
    alerts: list[dict] = []
    if settings.get("token_entropy_collapse", {}).get("metric", TOKEN_ENTROPY) in metrics:
        alerts += detect_token_entropy_collapse(
            scalars, **settings.get("token_entropy_collapse", {})
        )
    if settings.get("over_optimisation", {}).get("entropy_metric", TOPK_ENTROPY) in metrics:
        alerts += detect_over_optimisation(scalars, **settings.get("over_optimisation", {}))
    if metrics & {COV_MEAN, COV_POS_SHARE}:
        alerts += detect_positive_covariance(scalars, **settings.get("positive_covariance", {}))
    attn = [m for m in metrics if str(m).startswith(ATTN_ENTROPY_NORM)]
    if attn and has_layer_rows:
        alerts += detect_attention_collapse(scalars, **settings.get("attention_collapse", {}))
        alerts += detect_entropic_overload(scalars, **settings.get("entropic_overload", {}))
    return sorted(alerts, key=lambda a: (a["step"], a["indicator"], a["layer"] or ""))
