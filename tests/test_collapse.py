"""Online collapse detectors: each rule on synthetic series, dedupe, settings, replay."""

from __future__ import annotations

import pandas as pd
import pytest

from diagnostics import schema
from diagnostics.collapse import (
    DETECTORS,
    CollapseDetector,
    CollapseSettings,
    detect_collapse,
    settings_from_mapping,
)


def run(rows, settings=None, indicators=None):
    """rows: (step, metric, layer, value) -> alerts."""
    return detect_collapse(rows, settings, indicators=indicators)


def series(metric, values, layer="fc", start=0):
    return [(start + i, metric, layer, v) for i, v in enumerate(values)]


def test_indicator_names_are_schema_names():
    assert set(DETECTORS) <= set(schema.INDICATORS)


def test_rank_collapse_thresholds_and_dedupe():
    s = CollapseSettings(patience=1)
    # peak 11: warning at erank - 1 <= 5, collapsed at erank - 1 <= 1
    alerts = run(series("repr/effective_rank", [11, 10, 7, 6.5, 5.9, 6, 2.1, 1.9, 1.5]), s)
    assert [(a.step, a.severity) for a in alerts] == [(4, "warning"), (7, "collapsed")]
    a = alerts[1]
    assert a.indicator == "rank_collapse" and a.layer == "fc"
    assert a.evidence["peak"] == 11 and a.evidence["peak_step"] == 0
    assert a.evidence["threshold"] == s.rank_collapse
    assert a.evidence["series"] == "repr/effective_rank"
    assert a.evidence["steps"][-1] == 7 and a.evidence["values"][-1] == 1.9


def test_rank_collapse_ignores_layers_that_never_had_rank():
    # a 2-unit output layer: peak 1.8 < rank_min_peak
    assert (
        run(series("repr/effective_rank", [1.8, 1.2, 1.0, 1.0]), CollapseSettings(patience=1)) == []
    )


def test_patience_needs_consecutive_records():
    vals = [10, 2, 10, 2, 10, 2, 2]
    assert [a.step for a in run(series("repr/effective_rank", vals))] == [6]


def test_recurrence_after_recovery_is_reported_again():
    vals = [10, 3, 3, 10, 10, 3, 3]
    alerts = run(series("repr/effective_rank", vals))
    assert [(a.step, a.severity) for a in alerts] == [(2, "warning"), (6, "warning")]


def test_layers_are_independent():
    rows = series("repr/effective_rank", [10, 1, 1], layer="a") + series(
        "repr/effective_rank", [10, 9, 9], layer="b"
    )
    alerts = run(rows)
    assert [(a.layer, a.severity) for a in alerts] == [("a", "collapsed")]


def test_entropy_collapse_relative_to_peak():
    s = CollapseSettings(patience=1)
    alerts = run(series("repr/dse", [2.0, 3.0, 1.6, 1.4, 0.5, 0.29]), s)
    assert [(a.step, a.severity) for a in alerts] == [(3, "warning"), (5, "collapsed")]
    assert "repr/dse" in alerts[0].message
    assert run(series("repr/von_neumann", [1.0, 0.05]), s)[0].severity == "collapsed"


def test_saturation_on_either_series():
    s = CollapseSettings(patience=1)
    alerts = run(
        series("act/saturated_frac", [0.1, 0.55, 0.95], layer="tanh")
        + series("act/dead_frac", [0.0, 0.2, 0.4], layer="relu"),
        s,
    )
    assert [(a.layer, a.step, a.severity) for a in alerts] == [
        ("tanh", 1, "warning"),
        ("tanh", 2, "collapsed"),
    ]
    dead = run(series("act/dead_frac", [0.0, 0.92]), s)
    assert dead[0].severity == "collapsed" and "dead units" in dead[0].message


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
    alerts = run(flat, s)
    assert alerts and alerts[0].indicator == "memorisation"
    ev = alerts[0].evidence
    assert ev["loss_drop"] >= s.memorisation_loss_drop
    assert ev["dsmi_rise"] < s.memorisation_dsmi_rise
    assert len(alerts) == 1  # not repeated while it persists
    # DSMI rising with the loss: generalisable learning, no alert
    rising = _memorisation_rows([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], lambda s: 2.0 / (1 + 0.1 * s))
    assert run(rising, s) == []
    # loss flat and DSMI flat: converged, not memorising
    still = _memorisation_rows([0.3] * 6, lambda s: 1.0)
    assert run(still, s) == []


def test_compression_onset():
    s = CollapseSettings(patience=2)
    ixt = [1.0, 2.0, 3.0, 3.2, 3.1, 2.9, 2.8, 2.7]
    ity = [0.1, 0.3, 0.5, 0.6, 0.62, 0.63, 0.64, 0.64]
    rows = []
    for i, (a, b) in enumerate(zip(ixt, ity)):
        rows += [(i, "info_plane/binning/I_XT", "h1", a), (i, "info_plane/binning/I_TY", "h1", b)]
    alerts = run(rows, s)
    # 2.9 <= 0.95 * 3.2 = 3.04 from step 5; patience 2 -> reported at step 6, once
    assert [(a.step, a.severity, a.layer) for a in alerts] == [(6, "info", "h1")]
    ev = alerts[0].evidence
    assert ev["estimator"] == "binning" and ev["peak"] == 3.2 and ev["peak_step"] == 3
    # I(T;Y) falling too is not compression
    rows_bad = []
    for i, (a, b) in enumerate(zip(ixt, [0.1, 0.3, 0.5, 0.6, 0.5, 0.4, 0.3, 0.2])):
        rows_bad += [(i, "info_plane/kde/I_XT", "h1", a), (i, "info_plane/kde/I_TY", "h1", b)]
    assert run(rows_bad, s) == []


def test_nan_values_are_ignored():
    vals = [10, float("nan"), 1.0, 1.0]
    assert [a.step for a in run(series("repr/effective_rank", vals))] == [3]


def test_online_equals_offline_replay():
    rows = series("repr/effective_rank", [10, 4, 3, 1, 1]) + series("act/dead_frac", [0, 0.6, 0.7])
    rows.sort(key=lambda r: r[0])
    det = CollapseDetector()
    online = []
    for step in sorted({r[0] for r in rows}):
        online += det.update(step, [(m, lay, v) for s, m, lay, v in rows if s == step])
    frame = pd.DataFrame(rows, columns=["step", "metric", "layer", "value"])
    assert online == detect_collapse(frame)
    assert online  # the series do trigger


def test_indicator_subset_and_validation():
    rows = series("repr/effective_rank", [10, 1, 1]) + series("act/dead_frac", [0.95, 0.95])
    assert {a.indicator for a in run(rows, indicators=["saturation"])} == {"saturation"}
    with pytest.raises(ValueError, match="indicators"):
        CollapseDetector(indicators=["nope"])
    with pytest.raises(ValueError, match="patience"):
        CollapseSettings(patience=0)
    with pytest.raises(ValueError, match="rank_collapse"):
        CollapseSettings(rank_warn=0.1, rank_collapse=0.2)
    with pytest.raises(ValueError, match="saturation_warn: expected a number in"):
        CollapseSettings(saturation_warn=1.5)
    with pytest.raises(ValueError, match="unknown key"):
        settings_from_mapping({"patiense": 3})
    assert settings_from_mapping({"patience": 3}).patience == 3


def test_alert_write_to_run_log(tmp_path):
    from diagnostics import RunWriter, open_run

    alerts = run(series("repr/effective_rank", [10, 1, 1]))
    with RunWriter(tmp_path) as w:
        for a in alerts:
            a.write_to(w)
    with open_run(tmp_path) as r:
        got = r.alerts()
    assert list(got.indicator) == ["rank_collapse"] and list(got.severity) == ["collapsed"]
    assert got.evidence[0]["peak"] == 10
