"""Monitor: probe and live modes, cadence, metrics, failure isolation, TensorBoard."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from diagnostics import RunLogError, RunWriter, open_run
from probes import Every, Monitor, Steps, register_metric, unregister_metric
from probes.metrics import activation_stats

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ROOT = Path(__file__).resolve().parents[1]
NO_ESTIMATORS = ["act_stats", "grad_norm", "weight_norm"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny models on a shared machine: intra-op threads only add contention
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 12), nn.Tanh(), nn.Dropout(0.5), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)
    )


def data(n: int = 64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


class SGD:
    """Plain SGD (torch.optim's first step imports torch._dynamo: seconds per session)."""

    def __init__(self, params, lr):
        self.params, self.lr = list(params), lr

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        for p in self.params:
            if p.grad is not None:
                p -= self.lr * p.grad


def train_step(model, opt, x, y):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def scalars(run_dir) -> dict:
    with open_run(run_dir) as r:
        df = r.scalars()
    return {
        (int(s), m, None if isinstance(lay, float) else lay): v
        for s, m, lay, v in zip(df.step, df.metric, df.layer, df.value)
    }


@pytest.mark.parametrize("device", DEVICES)
def test_probe_mode_matches_manual_eval_forward(tmp_path, device):
    model = mlp().to(device)
    x, y = data()
    x, y = x.to(device), y.to(device)
    opt = SGD(model.parameters(), lr=0.1)
    mon = Monitor(
        model, tmp_path, layers=["1", "4"], probe_inputs=x, probe_labels=y, every=3,
        metrics=NO_ESTIMATORS,
    )  # fmt: skip
    model.train()
    for step in range(4):
        train_step(model, opt, x, y)
        out = mon.step(step)
        if step == 3:
            # the same numbers by hand: eval-mode forward of the probe batch
            model.eval()
            with torch.no_grad():
                h1 = model[1](model[0](x))
                h4 = model[4](model[3](model[2](h1)))
            model.train()
            for layer, h, mod in (("1", h1, model[1]), ("4", h4, model[4])):
                want = activation_stats(h, mod)
                for k, v in want.items():
                    assert out[(k, layer)] == pytest.approx(float(v), rel=1e-6, abs=1e-7)
            gn = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
            assert out[("grad/norm", None)] == pytest.approx(float(gn), rel=1e-6)
            wn = torch.linalg.vector_norm(torch.stack([p.norm() for p in model.parameters()]))
            assert out[("weight/norm", None)] == pytest.approx(float(wn.detach()), rel=1e-6)
            assert ("weight/norm", "1") not in out  # Tanh has no parameters
        assert model.training and model[2].training  # train mode restored
        assert hook_count(model) == 0  # no hook outside the probe forward
    mon.close()
    rows = scalars(tmp_path)
    assert {s for s, m, _ in rows if m == "act/mean"} == {0, 3}
    assert ("act/saturated_frac", "1") in {(m, lay) for _, m, lay in rows}  # tanh: bounded
    assert ("act/saturated_frac", "4") not in {(m, lay) for _, m, lay in rows}  # relu: not
    assert (3, "probe/seconds", None) in rows
    with open_run(tmp_path) as r:
        assert r.meta["status"] == "finished"
        assert r.meta["probes"]["layers"] == ["1", "4"]


def test_mixed_train_flags_restored_exactly(tmp_path):
    model = mlp()
    model.train()
    model[2].eval()  # a user who froze dropout
    x, _ = data()
    with Monitor(model, None, probe_inputs=x, every=1, metrics=["act_stats"]) as mon:
        mon.step(0)
    assert model.training and not model[2].training and model[0].training


def test_probe_does_not_touch_user_rng(tmp_path):
    model = mlp()
    x, y = data(300)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    mon = Monitor(model, None, probe_inputs=x, probe_labels=y, every=1, max_rows=50,
                  metrics=["act_stats"])  # fmt: skip
    mon.step(0)
    assert torch.equal(torch.rand(3), expected)
    assert mon._n_probe == 50
    mon.close()


def test_per_metric_cadence_and_slow_default(tmp_path):
    model = mlp()
    x, _ = data()
    seen = {}

    @register_metric("test/slow_metric", slow=True, overwrite=True)
    def _slow(z, step):
        seen.setdefault("slow", set()).add(step)
        return z.mean()

    try:
        mon = Monitor(
            model, None, layers=["1"], probe_inputs=x, every=2, budget=None,
            metrics={"act_stats": {"every": Steps([1, 5])}, "test/slow_metric": None},
        )  # fmt: skip
        recorded = {}
        for s in range(25):
            out = mon.step(s)
            for (m, _layer), _ in out.items():
                recorded.setdefault(m, set()).add(s)
        mon.close()
    finally:
        unregister_metric("test/slow_metric")
    assert recorded["act/mean"] == {1, 5}
    assert seen["slow"] == {0, 20}  # slow_every defaults to every * 10
    assert recorded["test/slow_metric"] == {0, 20}


def test_idle_steps_register_no_hooks_in_live_mode():
    model = mlp()
    x, y = data()
    opt = SGD(model.parameters(), lr=0.01)
    mon = Monitor(model, None, layers=["1", "4"], every=5, metrics=["act_stats"])
    assert mon.mode == "live"
    for s in range(11):
        armed = hook_count(model)
        train_step(model, opt, x, y)
        mon.step(s)
        # hooks only during the forward of a recorded step
        assert armed == (2 if s % 5 == 0 else 0), s
    mon.close()
    assert hook_count(model) == 0


def test_live_mode_records_the_users_forward():
    """Live capture sees the user's own (train-mode) forward: compare with a hook of ours."""
    model = mlp()
    x, y = data()
    opt = SGD(model.parameters(), lr=0.01)
    mon = Monitor(model, None, layers=["4"], every=2, metrics=["act_stats"])
    for s in range(3):
        mine = {}
        h = model[4].register_forward_hook(lambda m, a, o, mine=mine: mine.setdefault("z", o))
        loss = train_step(model, opt, x, y)
        h.remove()
        out = mon.step(s, loss=loss)
        assert bool(out) == (s % 2 == 0)
    mon.close()
    want = activation_stats(mine["z"].detach(), model[4])
    assert out[("act/mean", "4")] == pytest.approx(float(want["act/mean"]), rel=1e-6)
    assert out[("act/dead_frac", "4")] == pytest.approx(float(want["act/dead_frac"]))
    assert model.training  # live mode never switches modes


def test_live_mode_with_step_stride():
    """Steps that advance by more than one still get their forward captured."""
    model = mlp()
    x, y = data()
    opt = SGD(model.parameters(), lr=0.01)
    mon = Monitor(model, None, layers=["1"], every=20, metrics=["act_stats"])
    got = []
    for s in range(0, 50, 5):
        train_step(model, opt, x, y)
        if mon.step(s):
            got.append(s)
    mon.close()
    assert got == [0, 20, 40]


@pytest.mark.parametrize("mode", ["probe", "live"])
def test_quiet_steps_record_exactly_the_due_steps(tmp_path, mode):
    """Steps between records return early (Scheduling._quiet_after); whatever the step
    sequence (strides that change, a jump back), records happen exactly at the due steps,
    every scalar is written, and step() after close() raises."""
    model = mlp()
    x, y = data()
    opt = SGD(model.parameters(), lr=0.01)
    kw = {"probe_inputs": x, "probe_labels": y} if mode == "probe" else {}
    metrics = {"act_stats": {}, "grad_norm": {"every": Steps([13, 31, 200])}}
    mon = Monitor(model, tmp_path, layers=["1"], every=10, metrics=metrics, budget=None, **kw)
    # strides 1, 3, a jump back and a jump ahead (landing on steps that are not due: live
    # mode cannot arm for a due step it could not see coming)
    steps = [*range(0, 25), *range(26, 60, 3), *range(41, 48), *range(101, 211)]
    recorded = []
    for s in steps:
        train_step(model, opt, x, y)
        out = mon.step(s, loss=torch.tensor(float(s)), lr=0.1)
        if out:
            recorded.append(s)
            assert (("act/mean", "1") in out) == (s % 10 == 0), s
    mon.close()
    assert recorded == [s for s in steps if s % 10 == 0 or s in (13, 31, 200)]
    with open_run(tmp_path) as r:
        df = r.scalars(metrics=["train/loss", "train/lr"])
    assert len(df) == 2 * len(steps) and sorted(df[df.metric == "train/loss"].value) == sorted(
        map(float, steps)
    )
    with pytest.raises(RuntimeError, match="closed"):
        mon.step(steps[-1] + 1)
    assert hook_count(model) == 0


def test_live_labels_reach_metrics():
    model = mlp()
    x, y = data()
    seen = {}

    def needs_y(z, y):
        seen["y"] = y.clone()
        return z.shape[0]

    register_metric("test/needs_y", needs_y, overwrite=True)
    try:
        mon = Monitor(model, None, layers=["1"], every=1, metrics=["test/needs_y"])
        model(x)
        out = mon.step(0, labels=y)
        assert out[("test/needs_y", "1")] == len(y)
        assert torch.equal(seen["y"], y)
        with pytest.warns(RuntimeWarning, match="needs the labels"):
            model(x)
            out = mon.step(1)
        assert ("test/needs_y", "1") not in out
        mon.close()
    finally:
        unregister_metric("test/needs_y")


def test_user_scalars_buffered_and_written(tmp_path):
    model = mlp()
    x, y = data()
    opt = SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, tmp_path, probe_inputs=x, every=10, metrics=["act_stats"])
    losses = []
    for s in range(7):
        loss = train_step(model, opt, x, y)
        losses.append(float(loss))
        mon.step(s, loss=loss, acc=0.5)
    mon.log_scalars(6, {"val/acc": 0.75})
    mon.close()
    rows = scalars(tmp_path)
    assert [rows[(s, "train/loss", None)] for s in range(7)] == pytest.approx(losses)
    assert rows[(3, "train/acc", None)] == 0.5
    assert rows[(6, "val/acc", None)] == 0.75
    with pytest.raises(TypeError, match="expected a scalar"):
        Monitor(model, None, every=10, metrics=["act_stats"]).step(0, loss=torch.ones(3))


def test_scalars_on_quiet_steps(tmp_path):
    """Steps where nothing is due take the short path: the same checks, the buffer still
    written when full."""
    from probes.output import MAX_PENDING_SCALARS

    mon = Monitor(mlp(), tmp_path, every=Steps([]), metrics=["act_stats"])
    n = MAX_PENDING_SCALARS + 10
    for s in range(n):
        mon.step(s, loss=torch.tensor([float(s)]), lr=0.5 * s)  # a 1-element tensor, a float
    assert len(mon._pending) < MAX_PENDING_SCALARS  # written once full
    with pytest.raises(TypeError, match="loss: expected a scalar"):
        mon.step(n, loss=torch.ones(3))
    with pytest.raises(TypeError, match="lr: expected a number"):
        mon.step(n, lr="fast")  # (the step that failed is not counted as done)
    mon.close()
    rows = scalars(tmp_path)
    assert [rows[(s, "train/loss", None)] for s in range(n)] == [float(s) for s in range(n)]
    assert rows[(n - 1, "train/lr", None)] == 0.5 * (n - 1)


def test_quiet_steps_keep_values_not_tensors(tmp_path):
    """A keyword whose first value is a CPU tensor (the loss) is taken as a float on quiet
    steps without asking its device again: no tensor, and so no autograd graph, is kept
    between records; other keywords take the checked path."""
    model = mlp()
    x, y = data()
    opt = SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, tmp_path, probe_inputs=x, every=Steps([0, 50]), metrics=["act_stats"])
    losses = []
    for s in range(0, 40, 2):  # a stride of 2
        loss = train_step(model, opt, x, y)
        assert loss.requires_grad and loss.grad_fn is not None
        losses.append(loss.item())
        lr = 0.1 if s < 10 else torch.tensor(0.5)  # a float first, then a tensor
        mon.step(s, loss=loss, lr=lr)
        assert mon._last_step == s
        if s == 8:
            assert mon._cpu_scalars == {"loss": "train/loss"}  # (lr: floats so far)
    assert mon._cpu_scalars == {"loss": "train/loss", "lr": "train/lr"}
    assert mon._quiet_until >= 38 and len(mon._pending) == 2 * 19
    assert all(type(v) is float for _, _, v in mon._pending)
    with pytest.raises(TypeError, match="loss: expected a scalar"):
        mon.step(40, loss=torch.ones(2, requires_grad=True))
    assert mon._last_step == 38  # (the failed step is not counted as done)
    mon.close()
    rows = scalars(tmp_path)
    assert [rows[(s, "train/loss", None)] for s in range(0, 40, 2)] == losses
    assert rows[(8, "train/lr", None)] == 0.1 and rows[(38, "train/lr", None)] == 0.5


def test_a_scalar_off_the_cpu_is_not_taken_on_the_quiet_path():
    """Only keywords seen as CPU tensors take the quiet path's value directly (elsewhere
    ``item()`` would be a device sync); 'meta' stands in for a GPU here."""
    mon = Monitor(mlp(), None, every=Steps([]), metrics=["act_stats"])
    mon._buffer_scalars(0, {"loss": torch.tensor(1.0, device="meta"), "acc": torch.tensor(0.5)})
    assert mon._cpu_scalars == {"acc": "train/acc"}
    (_, name, kept), (_, _, acc) = mon._pending
    assert name == "train/loss" and kept.device.type == "meta" and acc == 0.5
    mon._pending.clear()
    mon.close()


def test_max_rows_and_sequence_reduction():
    torch.manual_seed(0)

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 8)
            self.block = nn.Linear(8, 8)

        def forward(self, input_ids, attention_mask=None):
            return self.block(self.emb(input_ids))

    model = Seq()
    ids = torch.randint(0, 20, (10, 7))
    mask = torch.ones(10, 7, dtype=torch.long)
    mask[:, 5:] = 0  # right padding
    seen = {}

    def rows(z, sample_index):
        seen["z"], seen["idx"] = z, sample_index
        return z.shape[0]

    register_metric("test/rows", rows, overwrite=True)
    try:
        inputs = {"input_ids": ids, "attention_mask": mask}
        for reduce, n_rows in (("mean", 10), ("last", 10), ("all", 25)):
            mon = Monitor(model, None, layers=["block"], probe_inputs=inputs, every=1,
                          metrics=["test/rows"], reduce=reduce, max_rows=25)  # fmt: skip
            out = mon.step(0)
            mon.close()
            assert out[("test/rows", "block")] == n_rows
            full = model.block(model.emb(ids)).detach()
            if reduce == "mean":
                want = full[:, :5].mean(1)
                torch.testing.assert_close(seen["z"], want)
            elif reduce == "last":
                torch.testing.assert_close(seen["z"], full[:, 4])
            else:
                # 50 real tokens subsampled to 25 rows; each row is a real token of its sample
                assert seen["idx"].shape == (25,)
                for z_row, i in zip(seen["z"], seen["idx"].tolist()):
                    assert any(torch.allclose(z_row, full[i, t]) for t in range(5))
    finally:
        unregister_metric("test/rows")


@dataclasses.dataclass
class BlockOut:
    hidden: torch.Tensor
    extra: torch.Tensor | None = None


class Block(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.kind = kind

    def forward(self, x):
        h = self.lin(x)
        if self.kind == "tuple":
            return (h, None)
        if self.kind == "dict":
            return {"attn": None, "hidden": h}
        return BlockOut(h)


@pytest.mark.parametrize("kind", ["tuple", "dict", "dataclass"])
def test_structured_outputs(kind):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block(kind)

        def forward(self, x):
            out = self.block(x)
            h = out[0] if kind == "tuple" else out["hidden"] if kind == "dict" else out.hidden
            return h.sum(-1)

    net = Net()
    x = torch.randn(9, 4)
    mon = Monitor(net, None, layers="block", probe_inputs=x, every=1, metrics=["act_stats"])
    out = mon.step(0)
    mon.close()
    want = net.block.lin(x).detach().mean()
    assert out[("act/mean", "block")] == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["probe", "live"])
def test_per_layer_output_selectors(device, mode):
    # a dict {layer: selector}: softmax of the logits for "5", the raw output elsewhere
    model = mlp().to(device).eval()
    x, _ = data(n=16)
    x = x.to(device)
    seen = {}

    def grab(z, layer):
        seen[layer] = z
        return z.shape[1]

    register_metric("test/grab", grab, overwrite=True)
    try:
        mon = Monitor(model, None, layers=["1", "5"], mode=mode,
                      probe_inputs=x if mode == "probe" else None, every=1,
                      metrics=["test/grab"], output={"5": lambda o: torch.softmax(o, 1)})  # fmt: skip
        if mode == "live":
            model(x)
        mon.step(0)
        mon.close()
    finally:
        unregister_metric("test/grab")
    with torch.no_grad():
        h1 = model[1](model[0](x))
        logits = model(x)
    torch.testing.assert_close(seen["1"], h1)
    torch.testing.assert_close(seen["5"], torch.softmax(logits, 1))
    assert seen["5"].device.type == device
    assert not torch.allclose(seen["5"], logits)
    assert hook_count(model) == 0
    with pytest.raises(ValueError, match="output: '4' not among the monitor's layers"):
        Monitor(model, None, layers=["1", "5"], probe_inputs=x, output={"4": 0})


def test_metric_failure_is_isolated(tmp_path):
    model = mlp()
    x, y = data()
    opt = SGD(model.parameters(), lr=0.1)

    def oom(z):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    register_metric("test/oom", oom, overwrite=True)
    try:
        mon = Monitor(model, tmp_path, layers=["1", "4"], probe_inputs=x, every=1,
                      metrics=["act_stats", "test/oom"], disable_after=3)  # fmt: skip
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for s in range(5):
                train_step(model, opt, x, y)
                out = mon.step(s, loss=1.0)
                assert ("act/mean", "1") in out  # the other metric still records
        mon.close()
    finally:
        unregister_metric("test/oom")
    oom_warnings = [w for w in caught if "OutOfMemoryError" in str(w.message)]
    assert len(oom_warnings) == 2  # once per layer source, not once per step
    with open_run(tmp_path) as r:
        ev = r.events()
        assert r.summary()["failures"] == 6
    fails = ev[ev.kind == "probe_failure"]
    assert len(fails) == 6  # 3 steps x 2 layers, then switched off
    assert set(fails.source) == {"test/oom:1", "test/oom:4"}
    assert all(d["oom"] for d in fails.detail)
    disabled = ev[ev.kind == "probe_disabled"]
    assert sorted(d["layer"] for d in disabled.detail) == ["1", "4"]
    assert sorted(scalars(tmp_path)) and (4, "act/mean", "1") in scalars(tmp_path)


def test_nan_activations_recorded_as_failure(tmp_path):
    model = mlp()
    x, _ = data()
    with torch.no_grad():
        model[3].weight[0, 0] = float("nan")

    from diagnostics._validate import as_samples

    def strict(z):
        return as_samples(z, name="z").std()  # estimators reject NaN at the boundary

    register_metric("test/strict", strict, overwrite=True)
    try:
        with pytest.warns(RuntimeWarning, match="NaN"):
            mon = Monitor(model, tmp_path, layers=["1", "4"], probe_inputs=x, every=1,
                          metrics=["act_stats", "test/strict"])  # fmt: skip
            out = mon.step(0)
            mon.close()
    finally:
        unregister_metric("test/strict")
    assert math.isnan(out[("act/mean", "4")])  # NaN is recorded as NaN
    assert ("test/strict", "1") in out and ("test/strict", "4") not in out
    with open_run(tmp_path) as r:
        ev = r.events()
    assert list(ev.source) == ["test/strict:4"]
    assert "NaN" in ev.message[0]


class _FullDisk(RunWriter):
    """A writer whose disk is full while ``full`` is set."""

    full = False

    def flush(self):
        if self.full:
            raise RunLogError(f"cannot write run log {self.path}: the disk is full")
        super().flush()


def test_full_disk_warns_once_and_training_continues(tmp_path):
    model = mlp()
    x, y = data()
    opt = SGD(model.parameters(), lr=0.1)
    writer = _FullDisk(tmp_path, flush_seconds=0)
    mon = Monitor(model, writer, probe_inputs=x, every=1, metrics=["act_stats"], retry_seconds=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for s in range(8):
            writer.full = 2 <= s < 5
            train_step(model, opt, x, y)
            out = mon.step(s, loss=1.0)
            assert ("act/mean", "0") in out  # still computing
        mon.close()
    assert len([w for w in caught if "disk is full" in str(w.message)]) == 1
    writer.close()
    rows = scalars(tmp_path)
    assert (0, "act/mean", "0") in rows and (7, "act/mean", "0") in rows
    with open_run(tmp_path) as r:
        ev = r.events()
    assert list(ev.kind) == ["run_log_recovered"]


@pytest.mark.slow
def test_real_full_disk_in_subprocess(tmp_path):
    """RLIMIT_FSIZE makes SQLite report a full disk; training must finish anyway."""
    script = textwrap.dedent(
        f"""
        import os, resource, signal, warnings, sys
        import torch
        from torch import nn
        from probes import Monitor
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        x = torch.randn(32, 4); y = torch.randint(0, 2, (32,))
        mon = Monitor(model, {str(tmp_path / "run")!r}, probe_inputs=x, every=1,
                      metrics=["act_stats", "weight_norm"])
        mon.writer.flush_seconds = 0
        done = []
        def train(steps):
            for step in steps:
                done.append(step)
                model.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                with torch.no_grad():
                    for p in model.parameters():
                        p -= 0.1 * p.grad
                mon.step(step, loss=loss)
        train(range(10))
        mon.flush()
        # from here on no file may grow by more than a few pages
        limit = os.path.getsize(mon.writer.path) + os.path.getsize(str(mon.writer.path) + "-wal")
        limit += 8192
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(range(10, 200))
            mon.close()
        full = [w for w in caught if "could not be written" in str(w.message)]
        print("WARNINGS", len(full), "STEPS", len(done))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNINGS 1 STEPS 200" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    # what was committed before the disk filled up is still readable
    with open_run(tmp_path / "run") as r:
        assert set(range(10)) <= set(r.scalars().step)


def test_tensorboard_mirror(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    model = mlp()
    x, _ = data()
    tb = SummaryWriter(str(tmp_path / "tb"))
    mon = Monitor(model, tmp_path / "run", layers=["1"], probe_inputs=x, every=2,
                  metrics=["act_stats"], tensorboard=tb)  # fmt: skip
    for s in range(5):
        mon.step(s, loss=float(s))
    mon.close()
    tb.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train/loss" in tags and "act/mean/1" in tags
    assert [e.step for e in acc.Scalars("act/mean/1")] == [0, 2, 4]
    assert [e.value for e in acc.Scalars("train/loss")] == [0, 1, 2, 3, 4]
    rows = scalars(tmp_path / "run")
    for e in acc.Scalars("act/mean/1"):
        assert e.value == pytest.approx(rows[(e.step, "act/mean", "1")], rel=1e-6)


def test_collapse_alerts_written_once(tmp_path):
    """A layer whose effective rank falls: the monitor writes one alert per severity."""
    # no labels: judged against the peak (warning at erank <= 2.9, critical at <= 1.38)
    series = {0: 20.0, 1: 18.0, 2: 2.5, 3: 2.4, 4: 2.4, 5: 1.2, 6: 1.1, 7: 1.1}

    def fake_rank(z, step):
        return series[step]

    register_metric("test/rank", fake_rank, outputs="repr/effective_rank", overwrite=True)
    try:
        mon = Monitor(mlp(), tmp_path, layers=["1"], probe_inputs=data()[0], every=1,
                      metrics=["test/rank"], collapse={"collapse_patience": 2})  # fmt: skip
        for s in range(8):
            mon.step(s)
        mon.close()
    finally:
        unregister_metric("test/rank")
    with open_run(tmp_path) as r:
        alerts = r.alerts()
    assert list(alerts.indicator) == ["rank_collapse", "rank_collapse"]
    assert list(alerts.severity) == ["warning", "critical"]
    assert list(alerts.step) == [3, 6]  # patience 2: the condition held twice
    ev = alerts.evidence[1]
    assert ev["metric"] == "repr/effective_rank" and ev["peak"] == 20.0 and ev["layer"] == "1"
    assert [a.severity for a in mon.alerts] == ["warning", "critical"]


def test_validation_errors(tmp_path):
    model = mlp()
    x, y = data()
    with pytest.raises(ValueError, match="closest names"):
        Monitor(model, None, layers="5.weight", probe_inputs=x)
    with pytest.raises(ValueError, match="unknown metric 'act_stat'.*'act_stats'"):
        Monitor(model, None, probe_inputs=x, metrics=["act_stat"])
    with pytest.raises(TypeError, match="unknown option"):
        Monitor(model, None, probe_inputs=x, metrics={"act_stats": {"bogus": 1}})
    with pytest.raises(ValueError, match="probe_labels: expected 64 labels"):
        Monitor(model, None, probe_inputs=x, probe_labels=y[:5])
    with pytest.raises(ValueError, match="mode"):
        Monitor(model, None, probe_inputs=x, mode="eval")
    with pytest.raises(ValueError, match="needs a probe batch"):
        Monitor(model, None, mode="probe")
    with pytest.raises(ValueError, match="every"):
        Monitor(model, None, probe_inputs=x, every=0)
    mon = Monitor(model, None, probe_inputs=x, metrics=["act_stats"])
    mon.close()
    with pytest.raises(RuntimeError, match="closed"):
        mon.step(1)


def test_context_manager_marks_failed_run(tmp_path):
    with pytest.raises(KeyError):
        with Monitor(mlp(), tmp_path, probe_inputs=data()[0], metrics=["act_stats"]) as mon:
            mon.step(0)
            raise KeyError("boom")
    with open_run(tmp_path) as r:
        assert r.meta["status"] == "failed"
        assert r.meta["probes"]["mode"] == "probe"


def test_user_owned_writer_stays_open(tmp_path):
    with RunWriter(tmp_path, meta={"name": "mine"}) as w:
        mon = Monitor(mlp(), w, probe_inputs=data()[0], every=1, metrics=["act_stats"],
                      config={"lr": 0.1})  # fmt: skip
        mon.step(0)
        mon.close()
        assert not w.closed
        w.log(1, {"train/loss": 1.0})
    with open_run(tmp_path) as r:
        assert r.meta["name"] == "mine" and r.meta["config"] == {"lr": 0.1}
        assert "act/mean" in r.metrics() and "train/loss" in r.metrics()


def test_numpy_probe_batch():
    x, y = data()
    mon = Monitor(mlp(), None, layers=["1"], probe_inputs=x.numpy(), probe_labels=y.numpy(),
                  every=1, metrics=["act_stats"])  # fmt: skip
    out = mon.step(0)
    mon.close()
    with Monitor(mlp(), None, layers=["1"], probe_inputs=x, every=1, metrics=["act_stats"]) as m2:
        same = m2.step(0)
    for key in [("act/mean", "1"), ("act/std", "1"), ("act/saturated_frac", "1")]:
        assert out[key] == same[key]


def test_every_accepts_cadences():
    mon = Monitor(mlp(), None, probe_inputs=data()[0], every="log", metrics=["act_stats"])
    got = [s for s in range(30) if mon.step(s)]
    mon.close()
    assert got == [0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25]
    mon = Monitor(mlp(), None, probe_inputs=data()[0], every=Every(4, start=2),
                  metrics=["act_stats"])  # fmt: skip
    assert [s for s in range(12) if mon.step(s)] == [2, 6, 10]


@pytest.fixture()
def fake_clock(monkeypatch):
    """``time.perf_counter`` as a list the test advances (``clock[0] += seconds``), and the
    expensive metric ``test/expensive``, which takes 0.5 s of it per call."""
    import time as time_module

    clock = [1000.0]
    monkeypatch.setattr(time_module, "perf_counter", lambda: clock[0])

    def expensive(z):
        clock[0] += 0.5
        return z.std()

    register_metric("test/expensive", expensive, expensive=True, overwrite=True)
    try:
        yield clock
    finally:
        unregister_metric("test/expensive")


def test_budget_postpones_expensive_metrics(tmp_path, fake_clock):
    """A fake clock: each training step takes 1 s, the expensive metric 0.5 s; with a 5%
    budget it runs about once per ten steps, cheap metrics every step."""
    clock = fake_clock
    mon = Monitor(mlp(), tmp_path, layers=["1"], probe_inputs=data()[0], every=1,
                  metrics=["act_stats", "test/expensive"], budget=0.05)  # fmt: skip
    ran, cheap, shares = [], [], []
    for s in range(100):
        clock[0] += 1.0  # the user's training step
        out = mon.step(s)
        cheap.append(("act/mean", "1") in out)
        if ("test/expensive", "1") in out:
            ran.append(s)
        shares.append(0.5 * len(ran) / (s + 1))  # monitor time / training time
    mon.close()
    assert all(cheap)  # cheap metrics keep their cadence
    assert ran[0] == 0  # the first expensive record runs whatever it costs
    assert 9 <= len(ran) <= 10, ran  # budget * time / cost
    # the record's expected cost counts: once the share is within the budget it stays there
    first_within = next(i for i, v in enumerate(shares) if v <= 0.05)
    assert max(shares[first_within:]) <= 0.05 + 1e-12, shares
    assert mon.deferred["test/expensive"] == 100 - len(ran)
    with open_run(tmp_path) as r:
        ev = r.events()
        assert r.meta["probes"]["budget"] == 0.05
    assert list(ev.kind) == ["probe_deferred"]  # said once, not at every postponement


def test_default_budget_leaves_room_for_what_it_cannot_time(fake_clock):
    """4% by default (Monitor docstring: ~1% of the overhead is outside the monitor's
    clock): with a fake clock the expensive metric keeps the share within 4%."""
    clock = fake_clock
    mon = Monitor(mlp(), None, layers=["1"], probe_inputs=data()[0], every=1,
                  metrics=["test/expensive"], collapse=False)  # fmt: skip
    for s in range(200):
        clock[0] += 1.0
        mon.step(s)
    mon.close()
    assert mon.budget == 0.04
    assert mon._t_monitor <= 0.04 * 200 + 1e-9
    assert mon._t_monitor / (clock[0] - 1001.0 - mon._t_monitor) > 0.035  # used, not idle


def test_budget_counts_live_hooks(fake_clock):
    """Live mode: the hooks run in the user's forward, outside step(); their time counts
    towards the monitor's share (here 0.2 s a capture on a fake clock)."""
    clock = fake_clock

    def slow_select(out):
        clock[0] += 0.2
        return out

    model = mlp()
    x, _ = data()
    mon = Monitor(model, None, layers=["1"], every=5, metrics=["act_stats"], output=slow_select,
                  collapse=False)  # fmt: skip
    recorded = []
    for s in range(20):
        model(x)
        clock[0] += 1.0
        if mon.step(s):
            recorded.append(s)
    mon.close()
    assert recorded == [0, 5, 10, 15]
    # the hooks are armed one step ahead of a record; the first forward is before the
    # first step() (not counted), the others are
    assert mon._t_monitor == pytest.approx(0.2 * 3)


def test_budget_counts_writing_a_record(fake_clock):
    """A record's expected cost includes writing it (here a TensorBoard mirror taking
    0.1 s a row): with only the metric's 0.5 s counted, the share would overshoot."""
    clock = fake_clock

    class SlowBoard:
        def add_scalar(self, tag, value, step):
            clock[0] += 0.1

        def flush(self):
            pass

    mon = Monitor(mlp(), None, layers=["1"], probe_inputs=data()[0], every=1,
                  metrics=["test/expensive"], budget=0.05, collapse=False,
                  tensorboard=SlowBoard())  # fmt: skip
    shares, t0 = [], clock[0]
    for s in range(300):
        clock[0] += 1.0  # the user's training step
        mon.step(s)
        shares.append(mon._t_monitor / (clock[0] - t0 - mon._t_monitor))
    mon.close()
    ran = 300 - mon.deferred["test/expensive"]
    assert mon._t_monitor == pytest.approx(0.7 * ran)  # the metric and its two rows
    assert 18 <= ran <= 22, ran  # budget * time / cost
    first_within = next(i for i, v in enumerate(shares) if v <= 0.05)
    assert max(shares[first_within:]) <= 0.05 + 1e-12, shares


def test_estimator_warnings_are_relayed_once():
    def noisy(z):
        warnings.warn(f"{int(z.shape[0])} values clipped", UserWarning, stacklevel=1)
        return z.mean()

    register_metric("test/noisy", noisy, overwrite=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mon = Monitor(mlp(), None, layers=["1", "4"], probe_inputs=data()[0], every=1,
                          metrics=["test/noisy"])  # fmt: skip
            for s in range(4):
                mon.step(s)
            mon.close()
    finally:
        unregister_metric("test/noisy")
    relayed = [w for w in caught if "values clipped" in str(w.message)]
    assert len(relayed) == 1 and relayed[0].category is UserWarning
    assert "test/noisy on layer 1" in str(relayed[0].message)


def test_detector_context_from_the_probe_batch_and_the_model(tmp_path):
    """The detectors know what the run is: the classes of the probe labels (a classifier's
    layers are judged against the rank C - 1 they need), their entropy, the model's output
    layer, the layer order; stored in the run so that a replay judges alike."""
    import math as _math

    from diagnostics.detectors import Context

    x, y = data()
    mon = Monitor(mlp(), tmp_path / "a", layers=["1", "4", "5"], probe_inputs=x, probe_labels=y)
    ctx = mon.collapse.context
    counts = torch.bincount(y).double() / len(y)
    assert ctx.n_classes == 3
    assert ctx.label_entropy == pytest.approx(float(-(counts * counts.log()).sum()))
    assert ctx.output_layers == ("5",) and ctx.layer_order == ("1", "4", "5")
    mon.close()
    with open_run(tmp_path / "a") as r:
        assert Context.from_meta(r.meta) == ctx
    # given fields take precedence; no labels: nothing is assumed about classes
    mon = Monitor(mlp(), None, layers=["1"], probe_inputs=x, context={"n_classes": 10, "rl": True})
    assert mon.collapse.context.n_classes == 10 and mon.collapse.context.rl is True
    assert mon.collapse.context.label_entropy is None
    mon.close()
    mon = Monitor(mlp(), None, layers=["1"], probe_inputs=x)
    assert mon.collapse.context.n_classes is None and mon.collapse.context.output_layers == ()
    mon.close()
    with pytest.raises(ValueError, match="unknown key"):
        Monitor(mlp(), None, layers=["1"], probe_inputs=x, context={"classes": 3})
    with pytest.raises(ValueError, match="unknown key"):
        Monitor(mlp(), None, layers=["1"], probe_inputs=x, collapse={"patiense": 1})
    assert _math.isfinite(ctx.label_entropy)


def test_layer_norms_count_shared_parameters_in_each_layer():
    """grad_norm / weight_norm per layer: the root of the sum of squares of that layer's
    parameters (one product for all layers), a parameter shared by two layers counted in
    both, a layer without gradients left out; the whole model counts each parameter once
    (each parameter's norm is taken in its dtype: float32 precision)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4, bias=False), nn.Linear(4, 2))
    model[2].weight = model[0].weight  # tied
    model[3].requires_grad_(False)
    model(torch.randn(8, 4)).square().sum().backward()
    mon = Monitor(model, None, every=1, metrics=["grad_norm", "weight_norm"], collapse=False)
    out = mon.step(0)

    def norm(tensors):
        return math.sqrt(sum(float(t.detach().double().square().sum()) for t in tensors))

    w0, b0, w3, b3 = model[0].weight, model[0].bias, model[3].weight, model[3].bias
    assert out[("weight/norm", "0")] == pytest.approx(norm([w0, b0]), rel=1e-6)
    assert out[("weight/norm", "2")] == pytest.approx(norm([w0]), rel=1e-6)
    assert out[("weight/norm", "3")] == pytest.approx(norm([w3, b3]), rel=1e-6)
    assert out[("weight/norm", None)] == pytest.approx(norm([w0, b0, w3, b3]), rel=1e-6)
    assert out[("grad/norm", "0")] == pytest.approx(norm([w0.grad, b0.grad]), rel=1e-6)
    assert out[("grad/norm", "2")] == pytest.approx(norm([w0.grad]), rel=1e-6)
    assert ("grad/norm", "3") not in out  # frozen: no gradient
    assert out[("grad/norm", None)] == pytest.approx(norm([w0.grad, b0.grad]), rel=1e-6)
    model[0].bias.grad = None  # another set of parameters with gradients: another plan
    out = mon.step(1)
    assert out[("grad/norm", "0")] == pytest.approx(norm([w0.grad]), rel=1e-6)
    mon.close()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_activation_std_is_the_population_std(dtype):
    """act/std equals torch.std(correction=0) to the dtype's precision, and the
    activations are left as they were (the deviations are squared in a copy)."""
    g = torch.Generator().manual_seed(0)
    for shape in [(500, 256), (64, 10), (3, 1)]:
        z = (torch.randn(shape, generator=g) * 3 + 1).tanh().to(dtype)
        before = z.clone()
        got = activation_stats(z)
        assert torch.equal(z, before)
        rel = 1e-6 if dtype == torch.float32 else 1e-12
        want = z.double().std(correction=0).item()
        assert got["act/std"].dtype == dtype
        assert got["act/std"].item() == pytest.approx(want, rel=rel)
        assert got["act/mean"].item() == pytest.approx(z.double().mean().item(), rel=rel)
