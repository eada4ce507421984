"""The digits recipe (``dashboard.samples.digits``, run by examples/digits_probes.py): a
shortened true-label / random-label pair, and the shipped sample runs it wrote.

The qualitative claim (Liao, Liu et al. 2023): DSMI between a layer and the labels
rises while the network learns the digits and does not while it memorises random
labels, although the training loss falls in both. The probe batch is held out with
its true labels, so a memorising network's deep layers lose what the random
initialisation kept of the digit classes; 100 full-batch epochs suffice for the true
labels (train accuracy ~1), 400 for the random ones to fall well below ln 10.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diagnostics import RunReader

ROOT = Path(__file__).resolve().parents[1]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

EXPECTED = {
    "train/loss",
    "train/acc",
    "val/acc",
    "act/mean",
    "act/std",
    "act/dead_frac",
    "grad/norm",
    "weight/norm",
    "repr/effective_rank",
    "repr/von_neumann",
    "repr/dse",
    "repr/dsmi_y",
}


def _example():
    from dashboard.samples import digits

    return digits


def _read(run_dir: Path):
    with RunReader(run_dir) as reader:
        return reader.scalars(), reader.alerts()


def _series(df, metric, layer=None):
    sel = df.metric == metric
    sel &= df.layer.isna() if layer is None else (df.layer == layer)
    return df[sel].sort_values("step").value.to_numpy()


def _check_pair(true_dir: Path, random_dir: Path, *, info_plane: bool) -> None:
    t, _ = _read(true_dir)
    r, r_alerts = _read(random_dir)
    expected = EXPECTED | (
        {"info_plane/binning/I_XT", "info_plane/binning/I_TY"} if info_plane else set()
    )
    for df in (t, r):
        assert expected <= set(df.metric.astype(str)), expected - set(df.metric.astype(str))
        for metric in ("repr/dsmi_y", "repr/dse", "repr/effective_rank"):
            assert set(df[df.metric == metric].layer.astype(str)) == {"act1", "act2", "act3", "out"}
    # both networks fit their training labels: the loss falls by more than half
    for df in (t, r):
        loss = _series(df, "train/loss")
        assert loss[-1] < 0.5 * loss[0]
    # only the true labels generalise to the held-out probe batch
    assert _series(t, "val/acc")[-1] > 0.8
    assert _series(r, "val/acc")[-1] < 0.3
    # DSMI with the labels: rises with the true labels, does not with random labels,
    # and ends clearly higher in the deep layers of the true-label run
    for layer in ("act3", "out"):
        dt, dr = _series(t, "repr/dsmi_y", layer), _series(r, "repr/dsmi_y", layer)
        assert dt[0] == pytest.approx(dr[0])  # same network, same probe batch at step 0
        assert dt[-1] > dt[0] + 0.2
        assert dr[-1] <= dr[0]
        assert dt[-1] > dr[-1] + 0.3
    # the online memorisation detector fires on the random-label run's logits
    mem = r_alerts[r_alerts.indicator == "memorisation"]
    assert "out" in set(mem.layer.astype(str))


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_shortened_runs(tmp_path, device):
    ex = _example()
    torch.set_num_threads(1)
    dirs = {}
    for kind, epochs in (("true", 100), ("random", 400)):
        cfg = ex.Config(labels=kind, epochs=epochs, points=9, device=device)
        dirs[kind] = tmp_path / ex.RUN_NAMES[kind]
        monitor, _ = ex.run(cfg, dirs[kind], verbose=False)
        assert monitor.writer is None or monitor.writer.closed
    _check_pair(dirs["true"], dirs["random"], info_plane=True)
    for d in dirs.values():  # closed: the WAL was checkpointed away
        assert sorted(p.name for p in d.iterdir()) == ["run.sqlite"]
    text = ex.summary(dirs["random"])
    assert "memorisation" in text and "act3" in text
    with pytest.raises(FileExistsError):
        ex.run(ex.Config(labels="true", epochs=2, points=2), dirs["true"], verbose=False)


def test_sample_runs():
    root = ROOT / "dashboard" / "sample_runs"
    true_dir, random_dir = root / "digits-mlp", root / "digits-mlp-random-labels"
    _check_pair(true_dir, random_dir, info_plane=True)
    for d in (true_dir, random_dir):
        assert sorted(p.name for p in d.iterdir()) == ["run.sqlite"]
        assert (d / "run.sqlite").stat().st_size < 2 * 1024 * 1024
        s, _ = _read(d)
        steps = s[s.metric == "repr/dsmi_y"].step.nunique()
        assert 50 <= steps <= 100


def test_config_validation():
    ex = _example()
    with pytest.raises(ValueError, match="labels"):
        ex.Config(labels="noisy")
    assert ex.Config(labels="random").epochs == ex.DEFAULT_EPOCHS["random"]
    assert math.ceil(600 / 59) == ex.Config(labels="true").every


def test_the_example_script_is_a_wrapper_of_the_package_module():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "digits_probes.py"), "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT.parent,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "--labels" in out.stdout and "sample runs" in out.stdout
    assert _example().SAMPLE_RUNS == ROOT / "dashboard" / "sample_runs"
