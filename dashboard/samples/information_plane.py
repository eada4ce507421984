"""Reproduce the information plane of the 12-bit task: tanh compresses, ReLU does not.

It records the sample runs ``information-plane-tanh`` and ``-relu`` (``infoscope demo
--regenerate``). By hand:

    python examples/information_plane.py --activation tanh --epochs 4000 --out runs/ip-tanh
    infoscope reproduce information-plane --activation relu --epochs 4000 --out runs/ip-relu
    python -m dashboard.samples.information_plane --out runs/ip-tanh   # from a wheel

Shwartz-Ziv & Tishby (2017) trained a 12-10-7-5-4-3-2 tanh network on a 12-bit task and
saw every layer's binned I(X; T) rise (fitting) and then fall (compression) while
I(T; Y) kept rising; Saxe et al. (2018) showed that the same network with ReLU does
not compress: the compression comes from tanh saturation, not from SGD as such.

Recipe (the papers'; deviations marked):

- data: :func:`diagnostics.tishby_dataset` -- all 4096 patterns of 12 bits, label from a
  documented spherically symmetric rule (generated; the stored set's rule is
  unpublished). A fixed, seeded 80% / 20% train / validation split (the IDNNs code
  trains on a fraction of the patterns; the information plane is computed on all 4096).
- network: 12-10-7-5-4-3-2, tanh or ReLU hidden layers, softmax output; weights from a
  normal of std 1/sqrt(fan_in) truncated at 2 std, biases 0.
- training: Adam, lr 4e-4, mini-batches of 256, cross-entropy, thousands of epochs.
  ``--full-batch`` with a larger ``--lr`` (the shortened run of the tests: 500 epochs,
  lr 1e-2) is a deviation that keeps the phenomenon at a fraction of the cost.
- recording: the activations of every layer (the hidden layers after their
  nonlinearity, the softmax output) on all 4096 inputs at ``--points`` log-spaced
  epochs, recorded by :class:`probes.Monitor` in probe mode (:func:`build_monitor`:
  exact cadence, ``budget=None``; no row subsampling, ``max_rows=None``).
- estimation: :func:`diagnostics.information_plane` with the binning estimator --
  tanh: 30 edges on [-1, 1] (Shwartz-Ziv & Tishby exactly); ReLU: Saxe et al.'s
  ``bin_size=0.07`` (``floor(t / 0.07)``, unbounded layers need no range; the softmax
  layer is binned the same way in that run).

The run log gets ``info_plane/binning/I_XT`` and ``info_plane/binning/I_TY`` per layer
(nats) at the recorded epochs, ``train/loss``, ``train/acc``, ``val/acc`` and
``probe/seconds`` (the monitor's capture + estimation time); step = epoch. The script prints its wall
time and the share spent in estimation vs training.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from diagnostics import tishby_dataset
from probes import Monitor
from probes.cadence import Steps

SIZES = (12, 10, 7, 5, 4, 3, 2)
ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
#: binning options per activation (see the module docstring)
BINNING = {"tanh": {"bins": 30, "value_range": (-1.0, 1.0)}, "relu": {"bin_size": 0.07}}
#: the one line the dashboard's Runs page shows for each run (meta ``story``), and the
#: dashboard pages that open on it when no run is picked (meta ``showcase``)
STORIES = {
    "tanh": "tanh network on the 12-bit task: the layers fit (I(X;T) and I(T;Y) rise), "
    "then compress (I(X;T) falls) - Shwartz-Ziv & Tishby (2017).",
    "relu": "The same network with ReLU: the layers fit but do not compress - Saxe et al. (2018).",
}
SHOWCASE = ["runs", "information-plane"]


@dataclass
class Config:
    activation: str = "tanh"
    epochs: int = 4000
    lr: float = 4e-4
    batch_size: int = 256
    full_batch: bool = False
    train_fraction: float = 0.8
    points: int = 100
    log_every: int = 10
    seed: int = 0
    data_seed: int = 0
    binning: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.epochs < 1 or self.points < 2 or self.log_every < 1:
            raise ValueError(
                f"epochs >= 1, points >= 2 and log_every >= 1 expected, got epochs={self.epochs}, "
                f"points={self.points}, log_every={self.log_every}"
            )
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction: expected (0, 1], got {self.train_fraction}")
        if not self.binning:
            self.binning = dict(BINNING[self.activation])


@dataclass
class Result:
    planes: pd.DataFrame  # epoch, layer, I_XT, I_TY (nats)
    history: pd.DataFrame  # epoch, train_loss, train_acc, val_acc
    seconds: dict  # total, training, probes (capture + estimation + writing), logging


def build_network(activation: str, *, seed: int = 0) -> torch.nn.Sequential:
    """12-10-7-5-4-3-2 MLP; ``layer1..layer5`` = Linear + activation, ``output`` = Linear.

    Weights ~ normal(0, 1/sqrt(fan_in)) truncated at 2 std (as TensorFlow's
    ``truncated_normal`` of the IDNNs code), biases 0. The softmax is applied to the
    logits by the loss and by the probes (:data:`OUTPUTS`).
    """
    gen = torch.Generator().manual_seed(seed)
    blocks: OrderedDict[str, torch.nn.Module] = OrderedDict()
    for i in range(len(SIZES) - 1):
        fan_in, fan_out = SIZES[i], SIZES[i + 1]
        lin = torch.nn.Linear(fan_in, fan_out)
        std = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            w = torch.empty(fan_out, fan_in)
            torch.nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std, generator=gen)
            lin.weight.copy_(w)
            lin.bias.zero_()
        last = i == len(SIZES) - 2
        blocks["output" if last else f"layer{i + 1}"] = (
            lin if last else torch.nn.Sequential(lin, ACTIVATIONS[activation]())
        )
    return torch.nn.Sequential(blocks)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=1)


#: the recorded layers (``build_network``'s blocks) and what is recorded of each: the
#: hidden blocks' outputs (after the nonlinearity) and the softmax of the logits
LAYERS = ("layer1", "layer2", "layer3", "layer4", "layer5", "output")
OUTPUTS = {"output": _softmax}


def build_monitor(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: list[int],
    binning: dict,
    run=None,
    **kwargs,
) -> Monitor:
    """The probes of the reproduction: every block of ``model`` on all of ``x`` (probe
    mode, no subsampling) at exactly ``epochs`` (``budget=None``), the binned information
    plane with the options ``binning``; ``kwargs`` go to :class:`probes.Monitor`."""
    cadence = Steps(epochs)
    return Monitor(
        model,
        run,
        layers=list(LAYERS),
        probe_inputs=x,
        probe_labels=y,
        every=cadence,
        slow_every=cadence,
        metrics={"info_plane": {"every": cadence, "method": "binning", **binning}},
        max_rows=None,
        output=OUTPUTS,
        budget=None,
        collapse=True,  # compression onset of the hidden layers (the output is skipped)
        **kwargs,
    )


def _plane_rows(recorded: dict, epoch: int, layers) -> list[dict]:
    """One ``epoch, layer, I_XT, I_TY`` row per layer from what ``Monitor.step`` returned;
    a layer whose estimate failed (the monitor warns and logs ``probe_failure``) raises."""
    rows = []
    for layer in layers:
        try:
            i_xt = recorded[("info_plane/binning/I_XT", layer)]
            i_ty = recorded[("info_plane/binning/I_TY", layer)]
        except KeyError:
            raise RuntimeError(
                f"the information plane of {layer} was not recorded at epoch {epoch} "
                "(see the warning and the run log's probe_failure events)"
            ) from None
        rows.append({"epoch": epoch, "layer": layer, "I_XT": i_xt, "I_TY": i_ty})
    return rows


def recorded_epochs(epochs: int, points: int) -> list[int]:
    """Epoch 0 and about ``points`` log-spaced epochs up to ``epochs`` (duplicates merged)."""
    grid = np.unique(np.round(np.logspace(0, math.log10(epochs), points - 1)).astype(int))
    return sorted({0, *grid.tolist(), epochs})


def run(
    config: Config,
    *,
    out: str | Path | None = None,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    overwrite: bool = False,
    verbose: bool = True,
    progress: Callable[[int], object] | None = None,
) -> Result:
    """Train, record and estimate; write a run to ``out`` (none if ``None``).

    ``data``: optional ``(x, y)`` to use instead of :func:`diagnostics.tishby_dataset`
    (e.g. the stored ``var_u.mat``). An existing run at ``out`` is refused unless
    ``overwrite`` (then its ``run.sqlite`` is replaced). ``progress``: called with 1
    after each of the ``config.epochs + 1`` epochs (e.g. a tqdm bar's ``update``).
    """
    t_start = time.perf_counter()
    if out is not None:
        db = Path(out) / "run.sqlite"
        if db.exists() and not overwrite:
            raise FileExistsError(f"out: {out} already holds a run; pass --overwrite to replace it")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    torch.manual_seed(config.seed)
    if data is None:
        x, y = tishby_dataset(seed=config.data_seed)
    else:
        x, y = data
        x = torch.as_tensor(x, dtype=torch.float32)
        y = torch.as_tensor(y, dtype=torch.int64).reshape(-1)
    n = x.shape[0]
    split_gen = torch.Generator().manual_seed(config.data_seed + 1)
    perm = torch.randperm(n, generator=split_gen)
    n_train = max(1, int(round(config.train_fraction * n)))
    train_idx, val_idx = perm[:n_train], perm[n_train:]
    x_train, y_train = x[train_idx], y[train_idx]
    model = build_network(config.activation, seed=config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    shuffle_gen = torch.Generator().manual_seed(config.seed + 2)
    batch = n_train if config.full_batch else min(config.batch_size, n_train)

    epochs = recorded_epochs(config.epochs, config.points)
    monitor = build_monitor(
        model,
        x,
        y,
        epochs=epochs,
        binning=config.binning,
        run=out,
        name=None if out is None else Path(out).name,
        config={**asdict(config), "recipe": "dashboard/samples/information_plane.py"},
        meta={
            "model_summary": str(model),
            "story": STORIES[config.activation],
            "showcase": SHOWCASE,
        },
    )
    record = set(epochs)
    planes: list[dict] = []
    history: list[dict] = []
    sec = {"training": 0.0, "probes": 0.0, "logging": 0.0}
    epoch_loss = float("nan")
    with monitor:
        for epoch in range(config.epochs + 1):
            if epoch in record or epoch % config.log_every == 0:
                t0 = time.perf_counter()
                with torch.no_grad():
                    logits = model(x)
                    pred = logits.argmax(1)
                    train_loss = torch.nn.functional.cross_entropy(
                        logits[train_idx], y_train
                    ).item()
                    train_acc = (pred[train_idx] == y_train).double().mean().item()
                    val_acc = (
                        (pred[val_idx] == y[val_idx]).double().mean().item()
                        if len(val_idx)
                        else float("nan")
                    )
                row = {
                    "epoch": epoch,
                    "train_loss": train_loss if epoch == 0 else epoch_loss,
                    "train_acc": train_acc,
                    "val_acc": val_acc,
                }
                history.append(row)
                monitor.log_scalars(
                    epoch,
                    {"train/loss": row["train_loss"], "train/acc": train_acc, "val/acc": val_acc},
                )
                sec["logging"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            recorded = monitor.step(epoch)  # the probes: due only at the recorded epochs
            sec["probes"] += time.perf_counter() - t0
            if epoch in record:
                planes.extend(_plane_rows(recorded, epoch, monitor.layers))
            if progress is not None:
                progress(1)
            if epoch == config.epochs:
                break
            t0 = time.perf_counter()
            order = torch.randperm(n_train, generator=shuffle_gen)
            total = 0.0
            for i in range(0, n_train, batch):
                idx = order[i : i + batch]
                loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * len(idx)
            epoch_loss = float(total) / n_train
            sec["training"] += time.perf_counter() - t0
    sec["total"] = time.perf_counter() - t_start
    result = Result(
        planes=pd.DataFrame(planes, columns=["epoch", "layer", "I_XT", "I_TY"]),
        history=pd.DataFrame(history),
        seconds=sec,
    )
    if verbose:
        print(summary(result, config))
    return result


def summary(result: Result, config: Config) -> str:
    """Wall time, the estimation share, and each layer's I(X;T) start / max / end (bits)."""
    s = result.seconds
    est = s["probes"]
    lines = [
        f"information plane, {config.activation}: {config.epochs} epochs, "
        f"{result.planes.epoch.nunique()} recorded epochs",
        f"wall time {s['total']:.1f} s: training {s['training']:.1f} s, estimation "
        f"{est:.1f} s (probes: capture + binning + run-log writes), "
        f"logging/eval {s['logging']:.1f} s",
        f"estimation / training = {est / max(s['training'], 1e-9):.2f}; estimation share of "
        f"training + estimation = {est / max(s['training'] + est, 1e-9):.0%}",
        f"final train acc {result.history.train_acc.iloc[-1]:.3f}, "
        f"val acc {result.history.val_acc.iloc[-1]:.3f}",
        "layer     I(X;T) bits: start -> max (epoch) -> end    I(T;Y) bits: start -> end",
    ]
    ln2 = math.log(2)
    for layer, g in result.planes.groupby("layer", sort=False):
        g = g.sort_values("epoch")
        imax = g.I_XT.idxmax()
        lines.append(
            f"{layer:8s}  {g.I_XT.iloc[0] / ln2:6.2f} -> {g.I_XT.max() / ln2:6.2f} "
            f"({int(g.epoch[imax]):5d}) -> {g.I_XT.iloc[-1] / ln2:6.2f}"
            f"          {g.I_TY.iloc[0] / ln2:5.2f} -> {g.I_TY.iloc[-1] / ln2:5.2f}"
        )
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command-line options (shared with ``infoscope reproduce information-plane``)."""
    d = Config()
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default=d.activation)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--out", type=Path, help="run directory to write (none: print only)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run at --out")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate ({d.lr})")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument(
        "--full-batch", action="store_true", help="one full-batch step per epoch (a deviation)"
    )
    p.add_argument("--points", type=int, default=d.points, help="log-spaced recorded epochs")
    p.add_argument("--log-every", type=int, default=d.log_every, help="epochs between scalars")
    p.add_argument("--seed", type=int, default=d.seed, help="network init and shuffling")
    p.add_argument("--data-seed", type=int, default=d.data_seed, help="label rule and split")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is fastest for this net)"
    )


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(
        activation=args.activation,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        full_batch=args.full_batch,
        points=args.points,
        log_every=args.log_every,
        seed=args.seed,
        data_seed=args.data_seed,
    )


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        run(config_from_args(args), out=args.out, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as exc:
        p.error(str(exc))
    if args.out is not None:
        print(f"run written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
