"""The information-plane reproduction (``dashboard.samples.information_plane``, run by
examples/information_plane.py and ``infoscope reproduce``), shortened.

The full runs (``dashboard/sample_runs/information-plane-tanh`` and ``-relu``) use the paper's
recipe: Adam lr 4e-4, mini-batches of 256, 3000 epochs. The tests shorten it to 500
full-batch epochs at lr 1e-2 (a documented deviation that keeps the phenomenon), which
trains each network in a few seconds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dashboard.samples import information_plane as ip
from diagnostics import open_run
from diagnostics.cli import main as cli_main
from probes.capture import Capture
from probes.layers import select_layers

ROOT = Path(__file__).resolve().parents[1]
VAR_U = next(
    (
        c / "shared" / "data" / "var_u.mat"
        for c in (ROOT.parent, ROOT.parent.parent)
        if (c / "shared" / "data" / "var_u.mat").is_file()
    ),
    ROOT.parent / "shared" / "data" / "var_u.mat",
)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a 12-10-7-5-4-3-2 net: threads only add contention
    yield
    torch.set_num_threads(before)


def _short(activation: str) -> ip.Config:
    return ip.Config(activation=activation, epochs=500, lr=1e-2, full_batch=True, points=25)


def _trajectory(planes, layer):
    g = planes[planes.layer == layer].sort_values("epoch")
    return g.I_XT.to_numpy(), g.I_TY.to_numpy()


@pytest.mark.slow
def test_tanh_fits_then_compresses_and_logs_a_run(tmp_path):
    out = tmp_path / "tanh"
    res = ip.run(_short("tanh"), out=out, verbose=False)
    h_y = 0.69  # the labels are balanced to within 1%: H(Y) ~ ln 2 nats
    # Expected shape, for the two last hidden layers (4 and 3 units):
    # - fitting: I(X;T) first rises above its starting value (its maximum is not at 0);
    # - compression: at the end I(X;T) is at least 20% (4 units) / 40% (3 units) below
    #   its maximum (seeds 0-3 give 24-55% and 53-65%);
    # - I(T;Y) rises by at least 0.3 nats to within 0.05 nats of H(Y).
    for layer, min_drop in (("layer4", 0.2), ("layer5", 0.4)):
        i_xt, i_ty = _trajectory(res.planes, layer)
        peak = int(np.argmax(i_xt))
        assert 0 < peak < len(i_xt) - 1, layer
        assert i_xt[peak] > i_xt[0] + 0.1, layer
        assert i_xt[-1] < (1 - min_drop) * i_xt[peak], (layer, i_xt[peak], i_xt[-1])
        assert i_ty[-1] > i_ty[0] + 0.3 and i_ty[-1] > h_y - 0.05, layer
    # the first layer keeps (nearly) all of H(X) = ln 4096 throughout
    i_xt1, _ = _trajectory(res.planes, "layer1")
    assert (i_xt1 > 0.95 * math.log(4096)).all() and (i_xt1 <= math.log(4096) + 1e-9).all()
    assert res.history.val_acc.iloc[-1] > 0.9

    with open_run(out) as run:
        scalars = run.scalars()
        assert run.status == "finished"
    assert not (out / "run.sqlite-wal").exists()
    metrics = set(scalars.metric.astype(str))
    assert {"info_plane/binning/I_XT", "info_plane/binning/I_TY", "train/loss", "train/acc",
            "val/acc", "probe/seconds"} <= metrics  # fmt: skip
    logged = scalars[scalars.metric == "info_plane/binning/I_XT"]
    assert set(logged.layer.astype(str)) == {f"layer{i}" for i in range(1, 6)} | {"output"}
    last = logged[(logged.layer == "layer5") & (logged.step == 500)].value.item()
    assert last == pytest.approx(_trajectory(res.planes, "layer5")[0][-1])  # nats as computed


@pytest.mark.slow
def test_relu_does_not_compress():
    res = ip.run(_short("relu"), verbose=False)
    # Expected shape (Saxe et al.): the hidden layers' I(X;T) (bin size 0.07) rises and
    # stays: at the end within 15% of its maximum (seeds 0-3: within 7%), while I(T;Y)
    # still rises to H(Y). (The softmax output layer shrinks in both runs; not tested.)
    for layer in ("layer3", "layer4", "layer5"):
        i_xt, i_ty = _trajectory(res.planes, layer)
        assert i_xt[-1] > 0.85 * i_xt.max(), (layer, i_xt.max(), i_xt[-1])
        assert i_xt.max() > i_xt[0] + 1.0, layer  # fitting
        assert i_ty[-1] > i_ty[0] + 0.3, layer


def test_recorded_epochs_are_log_spaced():
    e = ip.recorded_epochs(3000, 100)
    assert e[0] == 0 and e[-1] == 3000 and e == sorted(set(e))
    assert 60 <= len(e) <= 100
    gaps = np.diff(e)
    assert gaps[-1] > 20 * gaps[1]


def test_network_recipe():
    net = ip.build_network("tanh", seed=0)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == list(
        zip(ip.SIZES[:-1], ip.SIZES[1:])
    )
    for m in linears:
        std = 1 / math.sqrt(m.in_features)
        assert torch.all(m.bias == 0)
        assert m.weight.abs().max() <= 2 * std + 1e-7  # truncated at 2 std
    # what the probes record of each block: the hidden outputs and the softmax output
    with Capture(select_layers(net, list(ip.LAYERS)), select=ip.OUTPUTS).attach() as cap:
        net(torch.zeros(5, 12))
    acts = {name: z for name, (z, _) in cap.results().items()}
    assert list(acts) == ["layer1", "layer2", "layer3", "layer4", "layer5", "output"]
    assert torch.allclose(acts["output"].sum(1), torch.ones(5))  # softmax
    # the monitor records every layer at exactly the given epochs, on every input
    x, y = torch.randint(0, 2, (8, 12)).float(), torch.arange(8) % 2
    mon = ip.build_monitor(net, x, y, epochs=[0, 3], binning=ip.BINNING["tanh"])
    assert mon.max_rows is None and mon.budget is None
    got = [mon.step(epoch) for epoch in range(5)]
    mon.close()
    assert [bool(g) for g in got] == [True, False, False, True, False]
    assert {k for k in got[3] if k[0] != "probe/seconds"} == {
        (f"info_plane/binning/{col}", layer) for col in ("I_XT", "I_TY") for layer in ip.LAYERS
    }
    assert all(len(m._forward_hooks) == 0 for m in net.modules())  # hooks removed


def test_cli_subcommand_writes_a_run_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "cli-run"
    args = ["reproduce", "information-plane", "--activation", "relu", "--epochs", "4",
            "--points", "3", "--full-batch", "--out", str(out)]  # fmt: skip
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "wall time" in printed and "estimation / training" in printed
    with open_run(out) as run:
        assert run.meta["config"]["activation"] == "relu"
        assert "info_plane/binning/I_TY" in run.metrics()
    with pytest.raises(SystemExit):
        cli_main(args)
    assert "already holds a run" in capsys.readouterr().err
    assert cli_main([*args, "--overwrite"]) == 0


@pytest.mark.skipif(not VAR_U.is_file(), reason=f"stored data set not found at {VAR_U}")
def test_pipeline_runs_on_stored_var_u():
    from scipy.io import loadmat

    data = loadmat(VAR_U)
    x = torch.as_tensor(data["F"].astype(np.float32))
    y = torch.as_tensor(data["y"].reshape(-1).astype(np.int64))
    cfg = ip.Config(activation="tanh", epochs=60, lr=1e-2, full_batch=True, points=4)
    res = ip.run(cfg, data=(x, y), verbose=False)
    assert set(res.planes.layer) == {"layer1", "layer2", "layer3", "layer4", "layer5", "output"}
    assert (res.planes.I_XT <= math.log(4096) + 1e-9).all()
    p = float(y.double().mean())
    h_y = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert (res.planes.I_TY <= h_y + 1e-9).all()
    assert (res.planes.I_TY <= res.planes.I_XT + 1e-9).all()
    # the stored labels are learnable by the same network, as the generated ones are
    assert res.history.train_acc.iloc[-1] > 0.85
