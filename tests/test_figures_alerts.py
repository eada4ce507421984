"""Figure builders that explain alerts: the evidence read in either layout, the explanation
figure (series, whole-run history, threshold, step, related series) and the compression
onsets marked on the information plane. Plain plotly, no Streamlit."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dashboard import figures as F
from diagnostics.detectors.base import Window, evidence

LN2 = math.log(2)


def new_evidence() -> dict:
    """Compression onset as the online detector writes it (diagnostics.detectors.evidence)."""
    xt, ty = Window(40), Window(40)
    for s, (a, b) in zip(
        [10, 20, 30, 40, 50], [(2.0, 0.1), (3.0, 0.3), (3.4, 0.5), (3.1, 0.6), (2.8, 0.62)]
    ):
        xt.add(s, a)
        ty.add(s, b)
    return evidence(
        "info_plane/binning/I_XT",
        "layer4",
        xt,
        threshold=0.9 * 3.4,
        direction="below",
        rule="I_XT <= (1 - compression_drop) * peak",
        settings={"compression_drop": 0.1},
        related={"info_plane/binning/I_TY": ty},
        estimator="binning",
        peak=3.4,
        peak_step=30,
    )


OLD_MEMORISATION = {  # as sample_runs/digits-mlp-random-labels holds it (before 0.2)
    "series": ["train/loss", "repr/dsmi_y"],
    "layer": "act1",
    "steps": [51, 102, 153],
    "dsmi": [0.569, 0.568, 0.565],
    "loss_drop": 0.53,
    "rule": "loss_drop >= memorisation_loss_drop and dsmi_rise < memorisation_dsmi_rise",
    "thresholds": {"memorisation_loss_drop": 0.2},
}
OLD_COVARIANCE = {  # as sample_runs/lm-rl-baseline holds it
    "series": ["rl/cov/mean", "rl/cov/pos_share"],
    "steps": [0, 1, 2],
    "values": [0.001, 0.007, 0.015],
    "threshold": 0.9,  # a share of steps, not a covariance: not drawn
    "share_steps": [0, 1, 2],
    "share_values": [0.55, 0.58, 0.6],
}


def hlines(fig) -> list[float]:
    return [s.y0 for s in fig.layout.shapes if s.xref == "x domain"]


def vlines(fig) -> list[float]:
    return [s.x0 for s in fig.layout.shapes if s.yref and s.yref.endswith("domain")]


def trace(fig, suffix):
    (t,) = [t for t in fig.data if t.name.endswith(suffix)]
    return t


# ---------------------------------------------------------------------- read_evidence
def test_read_evidence_new_layout():
    ev = F.read_evidence(new_evidence())
    assert ev["metric"] == "info_plane/binning/I_XT" and ev["layer"] == "layer4"
    np.testing.assert_array_equal(ev["steps"], [10, 20, 30, 40, 50])
    assert ev["threshold"] == 0.9 * 3.4 and ev["direction"] == "below"
    assert ev["rule"].startswith("I_XT <=") and not ev["legacy"]
    steps, values = ev["related"]["info_plane/binning/I_TY"]
    np.testing.assert_allclose(values, [0.1, 0.3, 0.5, 0.6, 0.62])
    assert (ev["peak"], ev["peak_step"]) == (3.4, 30)


def test_read_evidence_old_layouts():
    mem = F.read_evidence(OLD_MEMORISATION)
    assert mem["legacy"] and mem["metric"] == "repr/dsmi_y"  # the values kept as "dsmi"
    np.testing.assert_allclose(mem["values"], [0.569, 0.568, 0.565])
    assert mem["related"] == {"train/loss": (None, None)}  # named, no points
    assert mem["threshold"] is None
    cov = F.read_evidence(OLD_COVARIANCE)
    assert cov["metric"] == "rl/cov/mean" and cov["threshold"] is None
    np.testing.assert_allclose(cov["related"]["rl/cov/pos_share"][1], [0.55, 0.58, 0.6])


def test_read_evidence_tolerates_missing_and_broken_evidence():
    for bad in (None, {}, "text", {"metric": "a", "steps": [1, 2], "values": [1.0]}):
        ev = F.read_evidence(bad)
        assert ev["steps"] is None and ev["values"] is None and ev["threshold"] is None
    ev = F.read_evidence({"metric": "a", "threshold": float("nan"), "values": [None, 1.0]})
    assert ev["threshold"] is None


# ------------------------------------------------------------------ explanation figure
def test_explanation_new_layout_threshold_step_history_and_related():
    history = pd.DataFrame({"step": np.arange(0, 101, 5), "value": np.linspace(2.0, 2.5, 21)})
    related = {"info_plane/binning/I_TY": history.assign(value=0.3)}
    fig = F.alert_explanation_figure(
        new_evidence(),
        step=50,
        message="compression phase: I(X;T) of layer4 fell",
        severity="info",
        history=history,
        related_history=related,
        unit="bits",
    )
    assert fig.layout.title.text == "compression phase: I(X;T) of layer4 fell"
    ev = trace(fig, "I_XT · layer4 (evidence)")
    assert ev.mode == "lines+markers"
    np.testing.assert_allclose(ev.y, np.array([2.0, 3.0, 3.4, 3.1, 2.8]) / LN2)  # bits
    whole = trace(fig, "I_XT · layer4 (whole run)")
    np.testing.assert_allclose(whole.y, history["value"] / LN2)
    assert "0.45" in whole.line.color  # faint
    (thr,) = hlines(fig)
    assert thr == 0.9 * 3.4 / LN2
    label = next(a.text for a in fig.layout.annotations if a.text.startswith("threshold"))
    assert "fires below" in label and "compression_drop" in label  # labelled with the rule
    assert set(vlines(fig)) == {50.0}  # the step, on both rows
    rel = trace(fig, "I_TY (evidence)")
    assert rel.yaxis == "y2"  # second row
    np.testing.assert_allclose(rel.y, np.array([0.1, 0.3, 0.5, 0.6, 0.62]) / LN2)
    assert trace(fig, "I_TY (whole run)").yaxis == "y2"
    peak = trace(fig, "peak")
    assert list(peak.x) == [30] and peak.y[0] == 3.4 / LN2
    # the x axis opens on the evidence (steps 10-50) with a quarter of its span around it
    assert list(fig.layout.xaxis.range) == [0, 60] == list(fig.layout.xaxis2.range)
    # nats on request: the threshold stays in the series' units
    fig = F.alert_explanation_figure(new_evidence(), step=50, unit="nats")
    assert hlines(fig) == [0.9 * 3.4]


def test_explanation_old_layout_has_no_threshold_but_series_and_step():
    history = pd.DataFrame({"step": [0, 51, 102, 153, 204], "value": [0.5, 0.57, 0.57, 0.56, 0.5]})
    loss = pd.DataFrame({"step": [0, 51, 102, 153], "value": [2.3, 2.2, 1.5, 1.0]})
    fig = F.alert_explanation_figure(
        OLD_MEMORISATION,
        step=153,
        message="possible memorisation",
        history=history,
        related_history={"train/loss": loss},
        unit="nats",
    )
    assert hlines(fig) == []  # no threshold recorded in the series' units
    assert vlines(fig) == [153.0, 153.0]
    np.testing.assert_allclose(trace(fig, "dsmi_y · act1 (evidence)").y, [0.569, 0.568, 0.565])
    loss_trace = trace(fig, "train/loss (whole run)")
    assert loss_trace.yaxis == "y2" and list(loss_trace.y) == [2.3, 2.2, 1.5, 1.0]
    assert fig.layout.yaxis2.title.text == "train/loss"


def test_explanation_without_threshold_or_evidence_points():
    """An alert whose evidence names only its metric: the whole run and the step."""
    history = pd.DataFrame({"step": np.arange(10), "value": np.arange(10.0)})
    fig = F.alert_explanation_figure(
        {"metric": "act/saturated_frac"}, step=7, severity="warning", history=history
    )
    assert [t.name for t in fig.data] == ["act/saturated_frac (whole run)"]
    assert hlines(fig) == [] and vlines(fig) == [7.0]
    # nothing at all to draw: a message, not an error
    empty = F.alert_explanation_figure({}, step=3)
    assert "no series" in empty.layout.annotations[0].text


def test_explanation_downsamples_history_keeping_extremes_and_log_x():
    y = np.sin(np.arange(100_000) / 500.0)
    y[77_777] = 50.0
    history = pd.DataFrame({"step": np.arange(1, 100_001), "value": y})
    fig = F.alert_explanation_figure(
        new_evidence(), step=50, history=history, unit="nats", max_points=400, log_x=True
    )
    whole = trace(fig, "(whole run)")
    assert len(whole.x) <= 400 and 50.0 in whole.y and 77_778 in whole.x
    assert fig.layout.xaxis.type == "log"
    assert vlines(fig)[0] == math.log10(50)  # shapes on a log axis are in log10 units


# ----------------------------------------------------------------- information plane
def plane(layers=("a", "b"), steps=range(0, 100, 10)) -> pd.DataFrame:
    rows = [
        (lay, s, 1.0 + i + s / 100, 0.1 + s / 200) for i, lay in enumerate(layers) for s in steps
    ]
    frame = pd.DataFrame(rows, columns=["layer", "step", "I_XT", "I_TY"])
    frame["layer"] = pd.Categorical(frame["layer"], categories=list(layers))
    return frame


def onset_alerts(rows) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"step": s, "indicator": ind, "layer": lay, "message": f"m{s}", "evidence": ev}
            for s, ind, lay, ev in rows
        ]
    )


def test_onset_points_sit_on_the_trajectory_of_their_estimator():
    frame = plane()
    alerts = onset_alerts(
        [
            (40, "compression_onset", "b", {"estimator": "binning"}),
            (45, "compression_onset", "a", {"metric": "info_plane/binning/I_XT"}),
            (50, "compression_onset", "a", {"estimator": "kde"}),  # another estimator
            (500, "compression_onset", "a", {}),  # beyond the steps shown
            (30, "compression_onset", "zzz", {}),  # a layer not drawn
            (30, "saturation", "a", {}),
            (20, "compression_onset", "b", {"series": "info_plane/binning/I_XT"}),  # old
        ]
    )
    pts = F.onset_points(frame, alerts, "binning")
    assert list(zip(pts["layer"], pts["step"])) == [("b", 40), ("a", 45), ("b", 20)]
    b40 = frame[(frame["layer"] == "b") & (frame["step"] == 40)].iloc[0]
    assert (pts["I_XT"].iloc[0], pts["I_TY"].iloc[0]) == (b40["I_XT"], b40["I_TY"])
    a40 = frame[(frame["layer"] == "a") & (frame["step"] == 40)].iloc[0]
    assert pts["I_XT"].iloc[1] == a40["I_XT"]  # step 45 unrecorded: the record before it
    assert F.onset_points(frame, alerts.iloc[:0], "binning").empty


def test_onset_markers_in_the_right_panel():
    panels = {"tanh": plane(), "relu": plane()}
    fig = F.info_plane_figure(panels, unit="bits")
    n = len(fig.data)
    alerts = onset_alerts([(40, "compression_onset", "b", {"estimator": "binning"})])
    onsets = {"tanh": pd.DataFrame(), "relu": F.onset_points(panels["relu"], alerts, "binning")}
    F.add_onset_markers(fig, onsets, panels, unit="bits")
    assert len(fig.data) == n + 1
    star = fig.data[-1]
    assert star.name == "compression onset" and star.marker.symbol == "star"
    assert star.xaxis == "x2"  # the relu panel
    assert "m40" in star.customdata[0][2] and "compression onset" in star.hovertemplate
