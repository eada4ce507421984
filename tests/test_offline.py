"""Offline analysis: snapshots saved during training -> a run the dashboard reads."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import diagnostics as d
from diagnostics import lm
from diagnostics.offline import analyze_snapshots, load_snapshot

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def snapshots(tmp_path):
    """Three snapshots of a small tanh network on the 12-bit task, plus LM logits."""
    x, y = d.tishby_dataset()
    x = x[:600].numpy() if hasattr(x, "numpy") else np.asarray(x)[:600]
    y = y[:600].numpy() if hasattr(y, "numpy") else np.asarray(y)[:600]
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(12, 6))
    paths = []
    for i, step in enumerate((0, 50, 400)):
        h1 = np.tanh(x @ w1 * (1 + i))
        h2 = np.tanh(h1 @ rng.normal(size=(6, 3)))
        logits = rng.normal(size=(2, 16, 50)).astype(np.float32) * (1 + 3 * i)
        mask = np.ones((2, 16), dtype=bool)
        mask[1, 12:] = False
        path = tmp_path / f"snap_step{step}.npz"
        np.savez(path, x=x, y=y, h1=h1, h2=h2, logits=logits, mask=mask)
        paths.append(path)
    return paths


def test_snapshot_step_from_name_or_array(tmp_path):
    np.savez(tmp_path / "a_step120.npz", h=np.zeros((3, 2)))
    np.savez(tmp_path / "b.npz", step=7, h=np.zeros((3, 2)))
    np.savez(tmp_path / "c.npz", h=np.zeros((3, 2)))
    assert load_snapshot(tmp_path / "a_step120.npz")["step"] == 120
    assert load_snapshot(tmp_path / "b.npz")["step"] == 7
    assert load_snapshot(tmp_path / "c.npz", 4)["step"] == 4
    with pytest.raises(ValueError, match=r"snapshot: expected a \.npz, \.pt, \.pth, \.safetensors"):
        load_snapshot(tmp_path / "x.txt")


def test_analysis_writes_the_estimators_values(snapshots, tmp_path):
    out = analyze_snapshots(
        snapshots, tmp_path / "run", metrics=["effective_rank", "info_plane", "act_stats"]
    )
    run = d.open_run(out)
    df = run.scalars()
    assert sorted(df.step.unique()) == [0, 50, 400]
    snap = load_snapshot(snapshots[2])
    ip = d.information_plane({"h2": snap["h2"]}, snap["x"], snap["y"]).iloc[0]
    got = df[(df.step == 400) & (df.layer == "h2")].set_index("metric")["value"]
    assert got["info_plane/binning/I_XT"] == pytest.approx(float(ip.I_XT), rel=1e-12)
    assert got["info_plane/binning/I_TY"] == pytest.approx(float(ip.I_TY), rel=1e-12)
    er = float(d.effective_rank(torch.as_tensor(snap["h2"])))
    assert got["repr/effective_rank"] == pytest.approx(er, rel=1e-12)
    # token statistics over the real tokens only
    ent = lm.token_entropy(torch.as_tensor(snap["logits"]), mask=torch.as_tensor(snap["mask"]))
    lm_rows = df[(df.step == 400) & df.layer.isna()].set_index("metric")["value"]
    assert lm_rows["lm/token_entropy/mean"] == pytest.approx(float(ent.nanmean()), rel=1e-6)
    assert {"lm/topk_mass", "lm/sum_p2", "lm/token_entropy/q95"} <= set(lm_rows.index)
    hist = run.distributions()
    assert len(hist) == 3 and sum(hist.data[0]["counts"]) == 2 * 16 - 4
    assert run.meta["config"]["source"] == "infoscope analyze"


def test_sharpening_logits_raise_an_entropy_collapse_alert(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(10):  # logits sharpen step by step: token entropy collapses
        paths.append(tmp_path / f"s_step{i * 10}.npz")
        logits = rng.normal(size=(2, 16, 50)).astype(np.float32) * (1 + 2 * i)
        np.savez(paths[-1], logits=logits, h=rng.normal(size=(32, 4)))
    out = analyze_snapshots(paths, tmp_path / "run", metrics=["act_stats"], rl=True)
    means = d.open_run(out).scalars(metrics="lm/token_entropy/mean").value
    assert means.iloc[-1] < 0.1 * means.iloc[0]
    alerts = d.open_run(out).alerts()
    assert "token_entropy_collapse" in set(alerts.indicator)
    first = alerts[alerts.indicator == "token_entropy_collapse"].iloc[0]
    assert first.step > 0 and first.evidence  # raised after the drop, with its evidence
    # not known to be RL: the same sharpening could be a model learning
    again = analyze_snapshots(paths, tmp_path / "run2", metrics=["act_stats"])
    assert "token_entropy_collapse" not in set(d.open_run(again).alerts().indicator)


def test_bad_metric_name_is_a_clear_error(snapshots, tmp_path):
    with pytest.raises(ValueError, match="metrics: expected names from"):
        analyze_snapshots(snapshots, tmp_path / "run", metrics=["rank"])


def test_cli_analyze(snapshots, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "diagnostics.cli", "analyze", *map(str, snapshots)]
    out = subprocess.run(
        [*cmd, "--out", str(tmp_path / "r"), "--metrics", "von_neumann"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    df = d.open_run(tmp_path / "r").scalars(metrics="repr/von_neumann")
    assert len(df) == 6 and not df.value.isna().any() and math.isfinite(df.value.sum())
    again = subprocess.run(
        [*cmd, "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env, timeout=300
    )
    assert again.returncode == 2 and "already holds a run" in again.stderr
