"""LM detectors (token entropy, over-optimisation, covariance, attention) over recorded series,
through their functional forms and the run-log replay."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from diagnostics.detectors import Alert
from diagnostics.lm_collapse import (
    detect_attention_collapse,
    detect_entropic_overload,
    detect_lm_collapse,
    detect_over_optimisation,
    detect_positive_covariance,
    detect_token_entropy_collapse,
)
from diagnostics.schema import INDICATORS, SEVERITIES

RNG = np.random.default_rng(0)


def _check_alerts(alerts, indicator):
    for a in alerts:
        assert isinstance(a, Alert)
        assert a.indicator == indicator and indicator in INDICATORS
        assert a.severity in SEVERITIES
        assert isinstance(a.step, int) and a.message
        ev = a.evidence
        assert {"metric", "steps", "values", "threshold", "direction", "rule"} <= set(ev)
        assert len(ev["steps"]) == len(ev["values"]) > 0 and ev["steps"][-1] == a.step
        json.dumps(a.to_dict(), allow_nan=False)  # storable in the run log as JSON
    return alerts


def _scalars(series: dict[str, pd.Series], layer=None) -> pd.DataFrame:
    rows = [
        {"step": int(step), "metric": metric, "layer": layer, "value": float(v)}
        for metric, s in series.items()
        for step, v in s.items()
    ]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# token entropy collapse
# --------------------------------------------------------------------------------------


def _collapsing_entropy(steps=600, every=10):
    t = np.arange(0, steps, every)
    h = 1.5 * np.exp(-t / 80.0) + 0.02 + RNG.normal(0, 0.02, t.size)
    return pd.Series(h, index=t)


def _healthy_entropy(steps=600, every=10):
    t = np.arange(0, steps, every)
    h = 1.5 - 0.25 * t / steps + RNG.normal(0, 0.05, t.size)  # slow 17% decline, noisy
    return pd.Series(h, index=t)


def test_token_entropy_collapse_fires_on_a_collapsing_run():
    s = _collapsing_entropy()
    alerts = _check_alerts(detect_token_entropy_collapse(s), "token_entropy_collapse")
    sev = [a.severity for a in alerts]
    assert sev == ["warning", "critical"]
    warn, coll = alerts
    # a 50% drop of exp(-t/80) happens near t = 80 * ln 2 = 55 (plus smoothing lag)
    assert 40 <= warn.step <= 120 and warn.step <= 200
    assert warn.evidence["smoothed"] <= warn.evidence["threshold"]
    assert coll.step > warn.step and coll.evidence["smoothed"] <= 0.1 * coll.evidence["initial"]
    # a scalars DataFrame (run-log layout) gives the same alerts
    frame = _scalars({"lm/token_entropy/mean": s, "train/loss": s * 0 + 1})
    assert detect_token_entropy_collapse(frame) == alerts
    # replayed from a run log, the entropy of an RL run is judged (it records rl/*) ...
    rl = _scalars({"lm/token_entropy/mean": s, "rl/reward": s * 0 + 0.5})
    assert detect_lm_collapse(rl) == alerts
    # ... and the same fall in pretraining, where the model learns, is not
    assert detect_lm_collapse(frame) == []


def test_token_entropy_collapse_silent_on_healthy_and_slow_runs():
    assert detect_token_entropy_collapse(_healthy_entropy()) == []
    # a slow decline to 30% over 5000 steps is not a fast early drop and not exhausted
    t = np.arange(0, 5000, 50)
    slow = pd.Series(1.0 - 0.7 * t / 5000, index=t)
    assert detect_token_entropy_collapse(slow) == []
    assert detect_token_entropy_collapse([1.0, 0.1]) == []  # too short to judge


# --------------------------------------------------------------------------------------
# over-optimisation
# --------------------------------------------------------------------------------------


def test_over_optimisation_fires_when_both_indicators_fall():
    t = np.arange(0, 200, 5)
    ent = pd.Series(2.0 * np.exp(-t / 100) + RNG.normal(0, 0.02, t.size), index=t)
    mass = pd.Series(0.95 - 0.3 * t / 200 + RNG.normal(0, 0.005, t.size), index=t)
    alerts = _check_alerts(detect_over_optimisation(ent, mass), "over_optimisation")
    assert [a.severity for a in alerts][-1] == "warning"
    warn = alerts[-1]
    assert warn.evidence["related"]["lm/topk_mass"]["values"]
    assert warn.evidence["mass_threshold"] < 0.95
    frame = _scalars({"lm/topk_entropy": ent, "lm/topk_mass": mass})
    assert detect_over_optimisation(frame) == alerts
    # entropy alone: only an info alert
    only = detect_over_optimisation(ent)
    assert [a.severity for a in only] == ["info"]
    flat_mass = pd.Series(0.9 + RNG.normal(0, 0.003, t.size), index=t)
    assert [a.severity for a in detect_over_optimisation(ent, flat_mass)] == ["info"]


def test_over_optimisation_silent_on_healthy():
    t = np.arange(0, 200, 5)
    ent = pd.Series(2.0 + RNG.normal(0, 0.05, t.size), index=t)
    mass = pd.Series(0.9 + RNG.normal(0, 0.01, t.size), index=t)
    assert detect_over_optimisation(ent, mass) == []


# --------------------------------------------------------------------------------------
# positive covariance dominance
# --------------------------------------------------------------------------------------


def test_positive_covariance_warns_only_while_it_drives_entropy_down():
    t = np.arange(100)
    pos = pd.Series(0.02 + RNG.normal(0, 0.01, 100), index=t)  # almost always > 0
    share = pd.Series(0.6 + RNG.normal(0, 0.03, 100), index=t)
    falling = pd.Series(1.2 * np.exp(-t / 60.0), index=t)
    alerts = detect_positive_covariance(pos, share, entropy=falling)
    _check_alerts(alerts, "positive_covariance")
    assert [(a.step, a.severity) for a in alerts] == [(19, "warning")]  # the first full window
    ev = alerts[0].evidence
    assert ev["positive_fraction"] >= 0.9 and ev["entropy_falling"] is True
    assert set(ev["related"]) == {"rl/cov/pos_share", "lm/token_entropy/mean"}
    frame = _scalars(
        {"rl/cov/mean": pos, "rl/cov/pos_share": share, "lm/token_entropy/mean": falling}
    )
    assert detect_positive_covariance(frame) == alerts
    # the Clip-Cov sample run: covariance positive, entropy held above where it started
    # (it rose, then eased back by 15%): info, not a warning
    held = pd.Series(
        np.r_[np.linspace(1.2, 2.2, 20), np.linspace(2.2, 1.87, 20), np.full(60, 1.87)], index=t
    )
    got = detect_positive_covariance(pos, share, entropy=held)
    assert [a.severity for a in got] == ["info"] and got[0].evidence["entropy_falling"] is False
    # without an entropy series the covariance alone is info
    assert [a.severity for a in detect_positive_covariance(pos, share)] == ["info"]
    # zero-mean covariance with a balanced share: silent
    noise = pd.Series(RNG.normal(0, 0.01, 100), index=t)
    balanced = pd.Series(0.5 + RNG.normal(0, 0.02, 100), index=t) - 0.05
    assert detect_positive_covariance(noise, balanced) == []
    assert detect_positive_covariance(noise) == []
    # positive mean but a minority of positive tokens: the share condition holds it back
    assert detect_positive_covariance(pos, balanced) == []


# --------------------------------------------------------------------------------------
# attention: collapse in deep layers, overload in early layers
# --------------------------------------------------------------------------------------


def _attn_frame(per_layer_heads, steps, per_head=True):
    """per_layer_heads: layer -> function(step array) -> (heads, steps) normalised entropy."""
    rows = []
    for layer, fn in per_layer_heads.items():
        vals = fn(steps)
        for i, step in enumerate(steps):
            if per_head:
                for h in range(vals.shape[0]):
                    rows.append(
                        {
                            "step": int(step),
                            "metric": f"attn/entropy_norm/h{h}",
                            "layer": layer,
                            "value": vals[h, i],
                        }
                    )
            rows.append(
                {
                    "step": int(step),
                    "metric": "attn/entropy_norm",
                    "layer": layer,
                    "value": vals[:, i].mean(),
                }
            )
            rows.append({"step": int(step), "metric": "attn/entropy", "layer": layer, "value": 1.0})
    rows += [{"step": int(s), "metric": "train/loss", "layer": None, "value": 1.0} for s in steps]
    return pd.DataFrame(rows)


def _healthy_heads(steps, n=4):
    # heads specialise from ~1 to a spread of 0.35..0.7
    target = np.linspace(0.35, 0.7, n)[:, None]
    return (
        target
        + (1.0 - target) * np.exp(-steps / 500.0)[None, :]
        + RNG.normal(0, 0.01, (n, steps.size))
    )


def _collapsing_heads(steps, n=4):
    target = np.array([0.02, 0.03, 0.05, 0.6])[:, None]  # three of four heads collapse
    return target + (1.0 - target) * np.exp(-steps / 300.0)[None, :]


def _overloaded_heads(steps, n=4):
    return np.clip(0.97 + RNG.normal(0, 0.01, (n, steps.size)), 0, 1)


LAYERS = [f"model.layers.{i}.self_attn" for i in (0, 1, 2, 10)]  # natural order: 10 is deepest


def test_attention_collapse_in_deep_layers():
    steps = np.arange(0, 3000, 100)
    spec = {
        LAYERS[0]: _healthy_heads,
        LAYERS[1]: _healthy_heads,
        LAYERS[2]: _healthy_heads,
        LAYERS[3]: _collapsing_heads,
    }
    frame = _attn_frame(spec, steps)
    alerts = _check_alerts(detect_attention_collapse(frame), "attention_collapse")
    assert [a.layer for a in alerts] == [LAYERS[3]]
    a = alerts[0]
    assert a.severity == "warning" and a.evidence["fraction"] >= 0.5  # 3 of 4 heads
    assert 2 <= len(a.evidence["heads"]) and set(a.evidence["heads"]) <= {"h0", "h1", "h2"}
    assert a.evidence["depth"] == "4/4"
    # the same collapse in the *first* layer is not a deep-layer collapse
    early = {
        LAYERS[0]: _collapsing_heads,
        LAYERS[1]: _healthy_heads,
        LAYERS[2]: _healthy_heads,
        LAYERS[3]: _healthy_heads,
    }
    assert detect_attention_collapse(_attn_frame(early, steps)) == []
    # healthy everywhere: silent; layer means only (no per-head rows): the mean 0.175 < 0.2
    assert detect_attention_collapse(_attn_frame({k: _healthy_heads for k in LAYERS}, steps)) == []
    means = _attn_frame(spec, steps, per_head=False)
    assert detect_attention_collapse(means) == []  # mean of the layer stays above 0.1
    assert [a.layer for a in detect_attention_collapse(means, threshold=0.2)] == [LAYERS[3]]
    # a wide DataFrame of layer means and an explicit depth order
    wide = pd.DataFrame({"a": np.full(10, 0.8), "b": np.linspace(0.8, 0.01, 10)})
    got = detect_attention_collapse(wide, layers=["a", "b"])
    assert [(x.layer, x.severity) for x in got] == [("b", "critical")]  # its only "head"
    assert detect_attention_collapse(wide, layers=["b", "a"]) == []


def test_entropic_overload_in_early_layers():
    steps = np.arange(0, 3000, 100)
    spec = {
        LAYERS[0]: _overloaded_heads,
        LAYERS[1]: _healthy_heads,
        LAYERS[2]: _healthy_heads,
        LAYERS[3]: _overloaded_heads,
    }
    frame = _attn_frame(spec, steps)
    alerts = _check_alerts(detect_entropic_overload(frame), "entropic_overload")
    assert [a.layer for a in alerts] == [LAYERS[0]]  # the deep overloaded layer is not "early"
    assert alerts[0].step == 1000 and alerts[0].severity == "info"
    assert len(alerts[0].evidence["heads"]) == 4
    healthy = _attn_frame({k: _healthy_heads for k in LAYERS}, steps)
    assert detect_entropic_overload(healthy) == []
    # early training is near-uniform everywhere: nothing before the warm-up
    assert detect_entropic_overload(frame, warmup_steps=10_000) == []


def test_detect_lm_collapse_runs_what_is_present():
    s = _collapsing_entropy()
    frame = pd.concat(
        [
            _scalars({"lm/token_entropy/mean": s, "rl/reward": s * 0}),
            _attn_frame(
                {LAYERS[0]: _healthy_heads, LAYERS[3]: _collapsing_heads}, np.arange(0, 3000, 100)
            ),
        ],
        ignore_index=True,
    )
    alerts = detect_lm_collapse(frame)
    kinds = {a.indicator for a in alerts}
    assert kinds == {"token_entropy_collapse", "attention_collapse"}
    assert [a.step for a in alerts] == sorted(a.step for a in alerts)
    strict = detect_lm_collapse(frame, token_entropy_collapse={"floor_fraction": 0.001})
    assert [a.severity for a in strict if a.indicator == "token_entropy_collapse"] == ["warning"]


# --------------------------------------------------------------------------------------
# errors, purity
# --------------------------------------------------------------------------------------


def test_bad_input_names_the_argument():
    s = _collapsing_entropy()
    cases = [
        (lambda: detect_token_entropy_collapse(s, floor_fraction=1.5), "floor_fraction"),
        (lambda: detect_token_entropy_collapse(s, early_drop=0), "early_drop"),
        (lambda: detect_token_entropy_collapse(s, window=0), "window"),
        (lambda: detect_token_entropy_collapse(np.ones((3, 2))), "entropy"),
        (lambda: detect_token_entropy_collapse(pd.DataFrame({"x": [1]})), "entropy"),
        (lambda: detect_token_entropy_collapse(_scalars({"train/loss": s})), "entropy"),
        (lambda: detect_token_entropy_collapse(pd.Series(["a", "b"])), "entropy"),
        (lambda: detect_over_optimisation(s, mass_drop=2), "mass_drop"),
        (lambda: detect_positive_covariance(), "cov_mean"),
        (lambda: detect_positive_covariance(s, share_threshold=-1), "share_threshold"),
        (lambda: detect_attention_collapse({"a": s}, threshold=0), "threshold"),
        (lambda: detect_attention_collapse({"a": s}, layers=["zz"]), "layers"),
        (lambda: detect_attention_collapse(_scalars({"train/loss": s}, layer="x")), "data"),
        (lambda: detect_entropic_overload({"a": s}, warmup_steps=-1), "warmup_steps"),
        (lambda: detect_lm_collapse(pd.DataFrame({"x": [1]})), "scalars"),
        (lambda: detect_lm_collapse(_scalars({"a": s}), nope={}), "settings"),
        (lambda: detect_attention_collapse({"a": s}, layers=["a", "zz"]), "layers"),
    ]
    for fn, name in cases:
        with pytest.raises(ValueError, match=rf"^{name}:"):
            fn()
    with pytest.raises(TypeError, match=r"^entropy:"):
        detect_token_entropy_collapse("entropy")
    with pytest.raises(TypeError, match=r"^data:"):
        detect_attention_collapse(42)


def test_no_torch_import_and_doctests():
    code = "import sys, diagnostics.lm_collapse; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    from diagnostics.detectors import online, replay

    attempted = 0
    for module in (online, replay):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted >= 5
