"""Language-model detectors over token-level series: token-entropy collapse in RL fine-tuning,
likelihood over-optimisation (top-k entropy and mass) and positive entropy-advantage
covariance dominance; ``detect_lm_collapse`` runs every LM detector on a scalars table.

Sources: Cui et al. 2025 (arXiv:2505.22617, token entropy collapse and the covariance
mechanism in RL for reasoning LMs); Shi et al. 2024 (arXiv:2410.11677, likelihood
over-optimisation in direct alignment).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from diagnostics.detectors._series import (
    ATTN_ENTROPY_NORM,
    COV_MEAN,
    COV_POS_SHARE,
    TOKEN_ENTROPY,
    TOPK_ENTROPY,
    TOPK_MASS,
    _alert,
    _baseline,
    _check_float,
    _check_fraction,
    _check_int,
    _is_scalars_frame,
    _onsets,
    _series,
    _smooth,
    _window,
)
from diagnostics.detectors.attention import detect_attention_collapse, detect_entropic_overload


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
    :func:`diagnostics.estimators.rl.entropy_advantage_covariance` computes it), and that this
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
