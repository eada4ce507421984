"""Attention detectors: entropy collapse in deep layers and entropic overload in early layers.

Sources: Zhai et al. 2023 (ICML, attention entropy collapse); Jha & Reagen 2025
(arXiv:2501.03489, collapse in deep layers and entropic overload in early layers).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from diagnostics.detectors._series import (
    ATTN_ENTROPY_NORM,
    _alert,
    _check_fraction,
    _check_int,
    _clean,
    _is_scalars_frame,
    _onsets,
    _series,
    _smooth,
    _window,
)


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
