"""Online detectors of representations and training: each rule on synthetic series, the one
alert type and severity scale, dedupe, settings, the run context, replay."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from diagnostics import schema
from diagnostics.detectors import (
    DETECTORS,
    Alert,
    CollapseDetector,
    CollapseSettings,
    Context,
    detect_collapse,
    settings_from_mapping,
)


def run(rows, settings=None, indicators=None, context=None):
    """rows: (step, metric, layer, value) -> alerts."""
    return detect_collapse(rows, settings, indicators=indicators, context=context)


def series(metric, values, layer="fc", start=0):
    return [(start + i, metric, layer, v) for i, v in enumerate(values)]


def test_every_indicator_has_a_detector_and_one_alert_type():
    assert set(DETECTORS) == set(schema.INDICATORS)
    assert schema.SEVERITIES == ("info", "warning", "critical")
    for name, cls in DETECTORS.items():
        assert cls.indicator == name and cls.summary  # the dashboard shows the summary
    with pytest.raises(ValueError, match="severity"):
        Alert(step=1, indicator="rank_collapse", severity="collapsed", message="old name")
    with pytest.raises(ValueError, match="indicator"):
        Alert(step=1, indicator="nope", severity="info", message="x")


def test_a_detector_that_judges_a_steps_rows_together_sees_one_row_steps_too(monkeypatch):
    # one-row steps (the per-step loss) skip observe_step only for detectors that take rows
    # one by one; a new detector overriding observe_step gets every step through it
    from diagnostics.detectors import base, online

    seen = []

    class Together(base.Detector):
        indicator = "loss_divergence"
        summary = "test"

        def watches(self, metric):
            return metric == "train/loss"

        def observe_step(self, step, rows):
            seen.append((step, len(rows)))
            return []

    monkeypatch.setitem(online.DETECTORS, "loss_divergence", Together)
    det = CollapseDetector(indicators=["loss_divergence", "rank_collapse", "compression_onset"])
    det.feed(series("train/loss", [2.3, 2.2, 2.1], layer=None))
    assert seen == [(0, 1), (1, 1), (2, 1)]
    assert [base.takes_rows_one_by_one(d) for d in det.detectors] == [False, True, False]


# ------------------------------------------------------------------ rank collapse


def test_rank_collapse_against_the_classes_the_layer_should_keep():
    s = CollapseSettings(patience=1, collapse_patience=1)
    ctx = Context(n_classes=10)
    # a classifier layer going from its width at init (48) to about the number of classes is
    # learning (neural collapse), not collapse
    healthy = series("repr/effective_rank", [48, 30, 17, 12, 9.5, 8.0, 7.6, 7.7])
    assert run(healthy, s, context=ctx) == []
    # ref = min(peak, C - 1) = 9: warning at erank - 1 <= 4, critical at erank - 1 <= 0.8
    alerts = run(series("repr/effective_rank", [48, 20, 9, 6, 4.9, 4.5, 2.0, 1.5]), s, context=ctx)
    assert [(a.step, a.severity) for a in alerts] == [(4, "warning"), (7, "critical")]
    a = alerts[1]
    assert a.indicator == "rank_collapse" and a.layer == "fc"
    ev = a.evidence
    assert ev["metric"] == "repr/effective_rank" and ev["direction"] == "below"
    assert ev["reference"] == 9 and ev["n_classes"] == 10
    assert ev["threshold"] == pytest.approx(1 + 0.1 * 8)
    assert ev["steps"][-1] == 7 and ev["values"][-1] == 1.5 and ev["peak"] == 48


def test_rank_collapse_without_classes_needs_a_deep_fall_from_the_peak():
    s = CollapseSettings(patience=1, collapse_patience=1)
    # losing two thirds of the rank is not judged without knowing what should remain
    assert run(series("repr/effective_rank", [48, 30, 17, 16]), s) == []
    # peak 11: warning at erank - 1 <= 1 (0.1), critical at erank - 1 <= 0.2 (0.02)
    alerts = run(series("repr/effective_rank", [11, 5, 1.9, 1.9, 1.15]), s)
    assert [(a.step, a.severity) for a in alerts] == [(2, "warning"), (4, "critical")]
    assert "peak" in alerts[0].message


def test_rank_collapse_ignores_layers_with_nothing_to_lose():
    s = CollapseSettings(patience=1, collapse_patience=1)
    # a 2-unit output layer: peak 1.8 < rank_min_peak
    assert run(series("repr/effective_rank", [1.8, 1.2, 1.0, 1.0]), s) == []
    # a binary classifier: C - 1 = 1, a rank-1 representation is all it needs
    rows = series("repr/effective_rank", [6, 3, 1.1, 1.0])
    assert run(rows, s, context=Context(n_classes=2)) == []


def test_patience_needs_consecutive_records():
    s = CollapseSettings(collapse_patience=2)
    vals = [10, 1.05, 10, 1.05, 10, 1.05, 1.05]
    assert [a.step for a in run(series("repr/effective_rank", vals), s)] == [6]


def test_a_collapse_is_the_loss_of_learned_structure():
    # the suite's healthy SGD run: its output's entropy dips to about one direction while the
    # loss sits at chance level, then recovers as the network learns
    dip = [1.38, 0.71, 0.31, 0.105, 0.22, 0.64, 0.91, 1.2, 1.25, 1.3]
    loss = [2.30, 2.30, 2.30, 2.29, 2.29, 2.0, 1.5, 1.0, 0.6, 0.4]
    rows = series("repr/von_neumann", dip) + series("train/loss", loss, layer=None)
    ctx = Context(n_classes=10, label_entropy=2.3)
    assert run(rows, context=ctx) == []
    # without the labels it is judged from the start: 3 records below 25% of the peak
    assert [(a.step, a.severity) for a in run(rows)] == [(4, "warning")]
    # once the network learns, a persistent fall of what it learned is a collapse
    fall = [1.38, 1.2, 1.3, 1.3, 1.35, 1.3, 0.3, 0.05, 0.04, 0.03]
    rows = series("repr/von_neumann", fall) + series("train/loss", [0.4] * 10, layer=None)
    got = run(rows, context=ctx)
    # below 25% of the peak from step 6: held 3 records at step 8; below 5% from step 7
    assert [(a.step, a.severity) for a in got] == [(8, "warning"), (9, "critical")]
    assert got[0].evidence["peak"] == 1.38


def test_recurrence_after_recovery_is_reported_again():
    s = CollapseSettings(collapse_patience=2)
    vals = [10, 1.5, 1.5, 10, 10, 1.5, 1.5]
    alerts = run(series("repr/effective_rank", vals), s)
    assert [(a.step, a.severity) for a in alerts] == [(2, "warning"), (6, "warning")]


def test_layers_are_independent():
    s = CollapseSettings(collapse_patience=2)
    rows = series("repr/effective_rank", [10, 1, 1], layer="a") + series(
        "repr/effective_rank", [10, 9, 9], layer="b"
    )
    assert [(a.layer, a.severity) for a in run(rows, s)] == [("a", "critical")]


# --------------------------------------------------------------- entropy collapse


def test_entropy_collapse_against_its_reference():
    s = CollapseSettings(patience=1, collapse_patience=1)
    # warning at 25% of the reference (here the peak, 3.0), critical at 5%
    alerts = run(series("repr/dse", [2.0, 3.0, 1.6, 0.7, 0.5, 0.14]), s)
    assert [(a.step, a.severity) for a in alerts] == [(3, "warning"), (5, "critical")]
    assert "repr/dse" in alerts[0].message and alerts[0].evidence["reference"] == 3.0
    # with 10 classes the reference is min(peak, log 9): a fall from 3.1 to 1.6 nats is what a
    # classifier's layer does (the digits sample run), and so is the halving of an output
    # layer's entropy (the suite's CNN: 1.78 -> 0.83)
    ctx = Context(n_classes=10)
    assert run(series("repr/von_neumann", [3.1, 2.0, 1.6, 1.58]), s, context=ctx) == []
    assert run(series("repr/von_neumann", [1.78, 1.2, 0.9, 0.83]), s, context=ctx) == []
    got = run(series("repr/von_neumann", [3.1, 2.0, 0.5, 0.1]), s, context=ctx)
    assert [(a.step, a.severity) for a in got] == [(2, "warning"), (3, "critical")]
    assert got[0].evidence["reference"] == pytest.approx(math.log(9))


# --------------------------------------------------------------------- saturation


def test_saturation_on_either_series():
    s = CollapseSettings(patience=1, collapse_patience=1)
    alerts = run(
        series("act/saturated_frac", [0.1, 0.55, 0.95], layer="tanh")
        + series("act/dead_frac", [0.0, 0.2, 0.4], layer="relu"),
        s,
    )
    assert [(a.layer, a.step, a.severity) for a in alerts] == [
        ("tanh", 1, "warning"),
        ("tanh", 2, "critical"),
    ]
    dead = run(series("act/dead_frac", [0.0, 0.92]), s)
    assert dead[0].severity == "critical" and "dead units" in dead[0].message
    assert dead[0].evidence["direction"] == "above" and dead[0].evidence["threshold"] == 0.9


def test_saturation_after_learning_is_a_note_and_dead_units_one_level_lower():
    s = CollapseSettings(patience=1, collapse_patience=1)
    loss = series("train/loss", [2.3, 1.0, 0.5, 0.2, 0.1], layer=None)
    late = series("act/saturated_frac", [0.1, 0.2, 0.3, 0.55, 0.6], layer="tanh")
    got = run(loss + late, s)
    # the loss is at 0.5 / 2.3 (smoothed) when the units saturate: confident, not stuck
    assert [(a.step, a.severity) for a in got] == [(3, "info")]
    assert "confident" in got[0].message and got[0].evidence["loss_first"] == 2.3
    # saturated from the start, before anything was learned: a warning
    early = series("act/saturated_frac", [0.6, 0.6, 0.6, 0.6, 0.6], layer="tanh")
    assert [a.severity for a in run(loss + early, s)] == ["warning"]
    # with the labels known, "learned" means below half the chance-level cross-entropy: an
    # inflated first loss (saturated logits) does not make a fast fall look like learning
    inflated = series("train/loss", [7.8, 4.0, 2.0, 1.9, 1.9], layer=None)
    sat = series("act/saturated_frac", [0.1, 0.2, 0.3, 0.6, 0.6], layer="tanh")
    assert [a.severity for a in run(inflated + sat, s)] == ["info"]  # 1.9 <= 0.5 * 7.8
    ctx = Context(n_classes=10, label_entropy=2.3)
    assert [a.severity for a in run(inflated + sat, s, context=ctx)] == ["warning"]
    # dead ReLUs do not come back: before the network learned, warning then critical
    dead = series("act/dead_frac", [0.1, 0.2, 0.55, 0.95, 0.95], layer="relu")
    flat = series("train/loss", [2.3, 2.3, 2.2, 2.2, 2.2], layer=None)
    assert [(a.step, a.severity) for a in run(flat + dead, s)] == [(2, "warning"), (3, "critical")]
    # ... once it learned (0.5 / 2.3 smoothed at step 3), one level lower: lost capacity in a
    # network that learns with the units left (info, then a warning), not a stuck network
    dead = series("act/dead_frac", [0.1, 0.2, 0.3, 0.55, 0.95], layer="relu")
    got = run(loss + dead, s)
    assert [(a.step, a.severity) for a in got] == [(3, "info"), (4, "warning")]
    assert "capacity lost" in got[1].message and "one level lower" in got[1].evidence["rule"]


# ------------------------------------------------------------------- memorisation


def _memorisation_rows(dsmi_values, loss_values, every=10):
    rows = []
    for i, d in enumerate(dsmi_values):
        step = i * every
        for j in range(every):  # loss logged at every step between records
            s = step - every + 1 + j
            if s >= 0:
                rows.append((s, "train/loss", None, loss_values(s)))
        rows.append((step, "repr/dsmi_y", "fc", d))
    return rows


def test_memorisation_loss_falls_dsmi_flat():
    s = CollapseSettings(patience=1, memorisation_window=4)
    flat = _memorisation_rows([0.30, 0.30, 0.301, 0.30, 0.30, 0.30], lambda s: 2.0 / (1 + 0.1 * s))
    alerts = run(flat, s, indicators=["memorisation"])
    assert alerts and alerts[0].indicator == "memorisation"
    assert alerts[0].severity == "warning"
    ev = alerts[0].evidence
    assert ev["loss_drop"] >= s.memorisation_loss_drop
    assert ev["dsmi_rise"] < s.memorisation_dsmi_rise
    assert ev["metric"] == "repr/dsmi_y" and "train/loss" in ev["related"]
    assert len(alerts) == 1  # not repeated while it persists
    # DSMI rising with the loss: generalisable learning, no alert
    rising = _memorisation_rows([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], lambda s: 2.0 / (1 + 0.1 * s))
    assert run(rising, s) == []
    # loss flat and DSMI flat: converged, not memorising
    still = _memorisation_rows([0.3] * 6, lambda s: 1.0)
    assert run(still, s) == []


def test_memorisation_ignores_a_plateau_after_learning():
    """DSMI rose (the layer learned the labels), then plateaus while the loss keeps
    shrinking: convergence, not memorisation (the digits sample run's true-label case)."""
    s = CollapseSettings(patience=1, memorisation_window=4)
    dsmi = [0.40, 0.60, 0.80, 0.90, 0.90, 0.90, 0.90, 0.90, 0.90]
    plateau = _memorisation_rows(dsmi, lambda s: 2.0 / (1 + 0.1 * s))
    assert run(plateau, s) == []
    # the same plateau without the earlier rise is flagged
    assert run(_memorisation_rows([0.9] * 9, lambda s: 2.0 / (1 + 0.1 * s)), s)
    # and the threshold is a setting
    lax = CollapseSettings(patience=1, memorisation_window=4, memorisation_learned_gain=2.0)
    assert [a.indicator for a in run(plateau, lax)][:1] == ["memorisation"]
    with pytest.raises(ValueError, match="memorisation_learned_gain"):
        CollapseSettings(memorisation_learned_gain=-1)


# -------------------------------------------------------------- compression onset


def _plane(ixt, ity, layer="h1", estimator="binning", extra=()):
    rows = []
    for i, (a, b) in enumerate(zip(ixt, ity)):
        rows += [
            (i, f"info_plane/{estimator}/I_XT", layer, a),
            (i, f"info_plane/{estimator}/I_TY", layer, b),
        ]
        # the first layer keeps all the label information (0.69 nats), as layer 1 does
        rows += [
            (i, f"info_plane/{estimator}/I_XT", "l0", 8.3),
            (i, f"info_plane/{estimator}/I_TY", "l0", 0.69),
        ]
        rows += [r for r in extra if r[0] == i]
    return rows


def test_compression_onset_after_the_layer_predicts():
    s = CollapseSettings(patience=2)
    ixt = [1.0, 2.0, 3.0, 3.2, 3.0, 2.8, 2.7, 2.6]
    ity = [0.1, 0.3, 0.5, 0.6, 0.62, 0.63, 0.64, 0.64]
    alerts = run(_plane(ixt, ity), s)
    # predicting from step 2 (0.5 >= 0.5 * 0.69); peak 3.2 at step 3; 2.8 <= 0.9 * 3.2 from
    # step 5; patience 2 -> reported at step 6, once
    assert [(a.step, a.severity, a.layer) for a in alerts] == [(6, "info", "h1")]
    ev = alerts[0].evidence
    assert ev["estimator"] == "binning" and ev["peak"] == 3.2 and ev["peak_step"] == 3
    assert ev["metric"] == "info_plane/binning/I_XT"
    assert ev["threshold"] == pytest.approx(0.9 * 3.2)
    assert ev["related"]["info_plane/binning/I_TY"]["values"][-1] == 0.64


def test_compression_onset_ignores_the_initial_transient_and_small_drifts():
    s = CollapseSettings(patience=2)
    # the ReLU sample run's first epochs: I(X;T) falls 11% while I(T;Y) is near 0
    early = run(_plane([4.7, 4.5, 4.3, 4.2, 4.2, 4.2], [0.09, 0.08, 0.07, 0.07, 0.07, 0.07]), s)
    assert early == []
    # a 5% drift of I(X;T) once the layer predicts (ReLU hidden layers) is not compression
    drift = run(_plane([6.0, 7.2, 7.1, 7.0, 6.9, 6.86, 6.85], [0.3, 0.68, 0.69] + [0.69] * 4), s)
    assert drift == []
    # I(T;Y) falling too is not compression
    bad = run(
        _plane([1, 2, 3, 3.2, 3.1, 2.5, 2.2, 2.0], [0.1, 0.3, 0.5, 0.6, 0.5, 0.4, 0.3, 0.3]), s
    )
    assert bad == []


def test_compression_onset_skips_the_output_layer_from_the_context():
    s = CollapseSettings(patience=1, collapse_patience=1)
    rows = _plane([2.0, 2.6, 2.4, 1.5, 1.0], [0.3, 0.45, 0.6, 0.66, 0.66], layer="output")
    assert [a.layer for a in run(rows, s)] == ["output"]
    assert run(rows, s, context=Context(output_layers=("output",))) == []
    keep = CollapseSettings(patience=1, compression_skip_output=False)
    assert run(rows, keep, context=Context(output_layers=("output",)))


# ---------------------------------------------------------------- loss divergence


def test_loss_divergence():
    s = CollapseSettings(patience=1, collapse_patience=1)
    healthy = series("train/loss", [2.3, 1.2, 0.5, 0.1, 0.01, 0.003, 0.009, 0.002], layer=None)
    assert run(healthy, s) == []
    exploding = series("train/loss", [2.3, 2.0, 3.0, 6.0, 8.0, 30.0, 50.0, 60.0], layer=None)
    alerts = run(exploding, s)
    # trailing medians of 5: 2.65, 3.0, 6.0 (2.6x: warning), 8.0, 30.0 (13x: critical)
    assert [(a.step, a.severity) for a in alerts] == [(5, "warning"), (7, "critical")]
    assert alerts[0].evidence["threshold"] == pytest.approx(2 * 2.3)
    nan = run(series("train/loss", [2.3, 1.0, float("nan"), float("nan")], layer=None))
    assert [(a.step, a.severity) for a in nan] == [(3, "critical")]
    assert "diverged" in nan[0].message and nan[0].evidence["threshold"] is None
    # a policy-gradient loss (values <= 0) is judged for non-finite values only
    pg = series("train/loss", [0.01, -0.2, 0.3, 0.5, 0.8, 0.9], layer=None)
    assert run(pg, s) == []


# ------------------------------------------------------------------ the machinery


def test_nan_values_are_ignored_by_the_representation_rules():
    vals = [10, float("nan"), 1.0, 1.0]
    s = CollapseSettings(collapse_patience=2)
    assert [a.step for a in run(series("repr/effective_rank", vals), s)] == [3]


def test_online_equals_offline_replay():
    rows = series("repr/effective_rank", [10, 4, 1.05, 1, 1]) + series(
        "act/dead_frac", [0, 0.6, 0.7]
    )
    rows.sort(key=lambda r: r[0])
    ctx = Context(n_classes=5)
    s = CollapseSettings(collapse_patience=2)
    det = CollapseDetector(s, context=ctx)
    online = []
    for step in sorted({r[0] for r in rows}):
        online += det.update(step, [(m, lay, v) for s, m, lay, v in rows if s == step])
    frame = pd.DataFrame(rows, columns=["step", "metric", "layer", "value"])
    assert online == detect_collapse(frame, s, context=ctx)
    assert {a.indicator for a in online} == {"rank_collapse", "saturation"}


def test_indicator_subset_settings_and_context_validation():
    rows = series("repr/effective_rank", [10, 1, 1, 1, 1]) + series("act/dead_frac", [0.95, 0.95])
    assert {a.indicator for a in run(rows)} == {"saturation", "rank_collapse"}
    assert {a.indicator for a in run(rows, indicators=["saturation"])} == {"saturation"}
    with pytest.raises(ValueError, match="indicators"):
        CollapseDetector(indicators=["nope"])
    with pytest.raises(ValueError, match="patience"):
        CollapseSettings(patience=0)
    with pytest.raises(ValueError, match="rank_critical"):
        CollapseSettings(rank_warn=0.1, rank_critical=0.2)
    with pytest.raises(ValueError, match="saturation_warn: expected a number in"):
        CollapseSettings(saturation_warn=1.5)
    with pytest.raises(ValueError, match="divergence_warn"):
        CollapseSettings(divergence_warn=20.0)
    with pytest.raises(ValueError, match="unknown key"):
        settings_from_mapping({"patiense": 3})
    assert settings_from_mapping({"patience": 3}).patience == 3
    with pytest.raises(ValueError, match="n_classes"):
        Context(n_classes=0)
    with pytest.raises(ValueError, match="unknown key"):
        Context.from_mapping({"classes": 3})
    ctx = Context(n_classes=10, label_entropy=2.3, output_layers=["out"])
    assert Context.from_meta({"detector_context": ctx.to_dict()}) == ctx
    assert Context.from_meta({}) == Context()


def test_alert_write_to_run_log(tmp_path):
    from diagnostics import RunWriter, open_run

    alerts = run(series("repr/effective_rank", [10, 1, 1, 1, 1]))
    with RunWriter(tmp_path) as w:
        for a in alerts:
            a.write_to(w)
    with open_run(tmp_path) as r:
        got = r.alerts()
    assert list(got.indicator) == ["rank_collapse"] and list(got.severity) == ["critical"]
    assert got.evidence[0]["peak"] == 10 and got.evidence[0]["metric"] == "repr/effective_rank"
