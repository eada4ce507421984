"""The labelled detector suite at test size: the shipped sample runs plus short runs of real
training recorded here with the probes, each labelled with the indicators that must fire and
those that must not. Fails on any false alarm (warning or worse) on a healthy run and on any
missed pathology (benchmarks/detectors.py prints the same table at full size)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "benchmarks"))  # after the packages: benchmarks/dashboard.py

import detector_suite as S  # noqa: E402

from diagnostics.cli.base import sample_runs  # noqa: E402
from diagnostics.detectors import Context  # noqa: E402

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    recorded = tmp_path_factory.mktemp("detector-suite")
    S.record(recorded, small=True, log=lambda *_: None)
    samples = sample_runs()
    return samples, recorded, S.evaluate(S.CASES, samples, recorded, S.detector_alerts)


@pytest.mark.slow
def test_every_case_was_scored(suite):
    _, _, outcomes = suite
    assert {o.case for o in outcomes} == {c.name for c in S.CASES}
    # the suite covers every indicator with a labelled run and has healthy runs of each kind
    labelled = {e.indicator for c in S.CASES for e in c.fire}
    from diagnostics.schema import INDICATORS

    assert labelled == set(INDICATORS)
    assert sum(o.healthy for o in outcomes) >= 6


@pytest.mark.slow
def test_no_false_alarm_and_every_pathology_detected(suite):
    _, _, outcomes = suite
    ok, problems = S.goal_met(outcomes)
    assert ok, "\n".join(problems)


@pytest.mark.slow
def test_the_hand_written_anchor_is_scored_alike_and_does_worse(suite):
    samples, recorded, ours = suite
    anchor = S.evaluate(S.CASES, samples, recorded, lambda path, case: S.anchor_alerts(path))
    ours_t, anchor_t = S.table(ours), S.table(anchor)
    assert list(ours_t["indicator"]) == list(anchor_t["indicator"])
    assert ours_t["FP on healthy"].sum() == 0
    assert anchor_t["FP on healthy"].sum() > 0  # what a fixed fraction of the start gives


def test_judge_counts_early_stray_and_forbidden_alerts():
    from diagnostics.detectors import Alert

    case = S.Case(
        "x", "story", "recorded",
        fire=(S.Expect("saturation", 10, "warning", ("a",)),),
        allow=("rank_collapse",), forbid=("compression_onset",),
    )  # fmt: skip

    def alert(step, indicator, severity, layer=None):
        return Alert(step=step, indicator=indicator, severity=severity, message="m", layer=layer)

    out = S.judge(
        case,
        [
            alert(5, "saturation", "warning", "a"),  # before the onset: a false alarm
            alert(12, "saturation", "warning", "a"),  # detected, 2 steps late
            alert(13, "rank_collapse", "critical"),  # allowed
            alert(14, "entropy_collapse", "info"),  # an info note, not an alarm
            alert(15, "loss_divergence", "warning"),  # stray
            alert(16, "compression_onset", "info"),  # forbidden even as info
        ],
    )
    assert out.detected == {"saturation": (True, 2)}
    assert out.false_alarms == [
        "saturation:warning@5[a]",
        "loss_divergence:warning@15[None]",
        "compression_onset:info@16[None]",
    ]
    assert out.info_notes == 2
    # the labelled layer must be among the hits
    missed = S.judge(case, [alert(12, "saturation", "critical", "b")])
    assert missed.detected == {"saturation": (False, None)}
    assert Context() == S.Case("y", "", "recorded").context


def _stored(run):
    from diagnostics import open_run

    with open_run(run) as r:
        return r.alerts(), r.scalars(), Context.from_meta(r.meta)


@pytest.mark.parametrize(
    ("name", "needs", "may"),
    [
        ("digits-mlp", set(), set()),
        ("digits-mlp-random-labels", {("memorisation", "warning")}, set()),
        ("information-plane-tanh", {("compression_onset", "info")}, set()),
        ("information-plane-relu", set(), set()),
        ("lm-pretrain", set(), set()),
        (
            "lm-rl-baseline",
            {("token_entropy_collapse", "warning"), ("token_entropy_collapse", "critical")},
            {("positive_covariance", "info"), ("positive_covariance", "warning"),
             ("over_optimisation", "info")},
        ),
        ("lm-rl-clipcov", set(), {("positive_covariance", "info")}),
    ],
)  # fmt: skip
def test_the_shipped_runs_carry_the_alerts_their_story_needs(name, needs, may):
    """Written online by the probes while the sample runs were recorded, the same alerts a
    replay of the run gives: tanh compresses on its compressing layers and ReLU does not,
    random labels are memorised, RL without intervention collapses, Clip-Cov warns of
    nothing."""
    from diagnostics.detectors import detect_collapse

    alerts, scalars, context = _stored(sample_runs() / name)
    got = set(zip(alerts["indicator"], alerts["severity"]))
    assert needs <= got and got <= needs | may, got
    if name == "information-plane-tanh":
        assert set(alerts["layer"]) == {"layer4", "layer5"}  # its compressing hidden layers
    replayed = detect_collapse(scalars, context=context)
    stored = [
        (int(s), i, v, lay if isinstance(lay, str) else None)
        for s, i, v, lay in zip(
            alerts["step"], alerts["indicator"], alerts["severity"], alerts["layer"]
        )
    ]
    assert stored == [(a.step, a.indicator, a.severity, a.layer) for a in replayed]
