"""The probe-overhead benchmark's lockstep measurement at test size: both copies of the
training are clocked in every block and do the same work (the monitor, probe or live mode,
leaves the training untouched), so their times can be compared."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "benchmarks"))  # after the packages

import probe_overhead as B  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return B.load()


@pytest.mark.parametrize("variant", ["default", "default-live"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_lockstep_clocks_both_copies_doing_the_same_work(kind, variant, data, tmp_path):
    init = copy.deepcopy(B.make_model(kind).state_dict())
    # three blocks, a record (every=100 by default) in the middle one
    out = B.lockstep(variant, kind, init, data, steps=150, edges=[5, 60, 140, 155])
    assert out["same_weights"] is True
    for key in ("wall", "cpu"):
        assert set(out[key]) == {"plain", "monitored"}
        assert out[key]["plain"] > 0 and out[key]["monitored"] > 0


def test_lockstep_notices_a_monitor_that_changes_the_training(data, monkeypatch):
    """The equal-weights check can fail: a training step that differs in the monitored copy
    (here: one more optimiser step) is caught."""
    init = copy.deepcopy(B.make_model("mlp").state_dict())
    real = B.training
    calls = []

    def training(*a, **k):
        model, step = real(*a, **k)
        calls.append(model)
        if len(calls) == 2:  # the monitored copy (made second)

            def twice(s):
                step(s)
                return step(s)

            return model, twice
        return model, step

    monkeypatch.setattr(B, "training", training)
    out = B.lockstep("default", "mlp", init, data, steps=20, edges=[5, 15, 25])
    assert out["same_weights"] is False
