"""Train a small MLP on scikit-learn's digits with ``probes.Monitor`` attached, with the
true labels and with random labels (memorisation): the sample runs ``digits-mlp*``.

    python examples/digits_probes.py                # both runs -> dashboard/sample_runs/
    python examples/digits_probes.py --root runs --epochs 1000
    python examples/digits_probes.py --labels random      # one run only
    python -m dashboard.samples.digits --root runs  # the same from an installed wheel

Writes ``ROOT/digits-mlp`` (true labels) and ``ROOT/digits-mlp-random-labels`` and
prints, per layer, the first and last DSMI with the labels, DSE and effective rank, and
the alerts of the online collapse detectors.

What it shows (Liao, Liu et al. 2023, "diffusion spectral entropy"): DSMI between a
layer's representation and the labels rises while the network learns a generalisable
rule, and stays flat (here: falls) while it memorises random labels, although the
training loss falls in both runs. The ``memorisation`` detector
(:mod:`diagnostics.detectors`) watches exactly that pair of series.

Recipe (choices, not the paper's exact setup):

- data: ``load_digits`` (1797 8x8 images, pixels / 16 in [0, 1]); a fixed, seeded split:
  360 held-out digits form the probe batch (with their *true* labels in both runs),
  the other 1437 are the training set. The random-label run replaces the training
  labels by a seeded uniform draw over 0..9 -- the probe labels stay true, so DSMI
  measures what the representation knows about the digit classes, which is what a
  memorising network does not learn.
- network: 64-128-64-32-10, ReLU hidden layers (``act1..act3``), logits ``out``;
  PyTorch's default initialisation (seeded).
- training: full-batch Adam (one step per epoch), cross-entropy, no regularisation;
  lr 3e-3. Random labels need many more epochs to be memorised than true labels to be
  learnt, hence the separate defaults (``--epochs``).
- probes (``probes.Monitor`` in probe mode on the held-out batch, layers ``act1``,
  ``act2``, ``act3``, ``out``): ``act_stats``, ``grad_norm``, ``weight_norm``,
  ``effective_rank``, ``von_neumann``, ``dse``, ``dsmi`` (labels) and ``info_plane``
  (binning, Saxe et al.'s ``bin_size=0.07`` for the unbounded ReLU/logit layers), all at
  the same cadence: about ``--points`` records per run (``budget=None``: the time budget
  would otherwise postpone the estimators, which here cost more than the tiny training
  step). The online collapse detectors run with their default thresholds.
- DSE/DSMI kernel width: ``sigma="median"`` (the median pairwise distance of the layer's
  probe activations at that record, :func:`diagnostics.median_sigma`). dse-dsmi's fixed
  ``sigma=10`` is scale-blind: ReLU activations of this net have pairwise distances of
  order 1-10 that grow as the weights grow, so a fixed width mostly tracks the
  activation scale (near rank-one kernel early, near-identity later). The median width
  makes every record scale-free, so the series shows changes of *shape*, not of scale.
  Measured with ``sigma=10`` instead: DSE and DSMI start near 0 in every layer (the
  initial activations are small next to 10) and DSMI *rises* in the random-label run
  too (act2 0.003 -> 0.34 nats), i.e. it follows the weight growth, not the labels.
- information in nats.

What the default runs show (seed 0; DSMI / DSE in nats, first -> last record):

- true labels, 600 epochs: val acc 0.96; DSMI ``out`` 0.41 -> 0.94, ``act3`` 0.43 -> 0.93;
  DSE falls (``out`` 1.85 -> 1.53) as the probe points gather in ten class clusters;
  effective rank of ``act1`` 48 -> 19 and of ``act2`` 26 -> 10: supervised learning narrows
  the representation toward the classes on purpose, and the detectors, which know the
  number of classes from the probe labels, raise no alert (the rank a layer should keep is
  about ``n_classes - 1 = 9``).
- random labels, 3000 epochs: train acc 1.0, val acc 0.09; DSMI does not rise, it falls
  in the deep layers (``out`` 0.41 -> 0.03, ``act3`` 0.43 -> 0.15) while DSE stays ~2.1;
  ``memorisation`` warnings on all four layers at step 255 (loss 2.2 -> 1.04), and once more
  on ``out`` later, after its DSMI had wobbled.
- the ``memorisation`` rule needs DSMI to have stayed below a 25% gain over its first
  record (``memorisation_learned_gain``): with that, the true-label run, whose DSMI rose
  0.4 -> 0.9 and then plateaus while the small loss keeps shrinking, raises no
  memorisation alert.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from sklearn.datasets import load_digits

from diagnostics import RunReader
from probes import Monitor

SIZES = (64, 128, 64, 32, 10)
LAYERS = ("act1", "act2", "act3", "out")
RUN_NAMES = {"true": "digits-mlp", "random": "digits-mlp-random-labels"}
DEFAULT_EPOCHS = {"true": 600, "random": 3000}
#: the one line the dashboard's Runs page shows for each run (meta ``story``), and the
#: dashboard pages that open on it when no run is picked (meta ``showcase``)
STORIES = {
    "true": "True labels: DSMI with the labels rises as the MLP learns the digits "
    "(compare with the random-label run).",
    "random": "Random labels: the MLP memorises them; DSMI with the true labels does not "
    "rise and the memorisation detector fires.",
}
SHOWCASE = {"true": ["representations", "compare"], "random": ["representations", "compare"]}
#: where ``main`` writes by default: the sample runs shipped with the dashboard
SAMPLE_RUNS = Path(__file__).resolve().parents[1] / "sample_runs"


@dataclass
class Config:
    labels: str = "true"  # "true" or "random" training labels
    epochs: int = 0  # 0: DEFAULT_EPOCHS[labels]
    lr: float = 3e-3
    points: int = 60  # recorded steps (about)
    n_probe: int = 360
    sigma: str | float = "median"
    info_plane: bool = True
    seed: int = 0
    data_seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.labels not in RUN_NAMES:
            raise ValueError(f"labels: expected 'true' or 'random', got {self.labels!r}")
        if self.epochs == 0:
            self.epochs = DEFAULT_EPOCHS[self.labels]
        if self.epochs < 1 or self.points < 2:
            raise ValueError(
                f"epochs >= 1 and points >= 2 expected, got {self.epochs}, {self.points}"
            )

    @property
    def every(self) -> int:
        return max(1, math.ceil(self.epochs / (self.points - 1)))


def load_data(config: Config):
    """``(x_train, y_train, x_probe, y_probe)``: the seeded split (random training labels
    when ``config.labels == "random"``; the probe labels are always the true ones)."""
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    g = torch.Generator().manual_seed(config.data_seed)
    perm = torch.randperm(len(x), generator=g)
    probe, train = perm[: config.n_probe], perm[config.n_probe :]
    y_train = y[train]
    if config.labels == "random":
        y_train = torch.randint(0, 10, y_train.shape, generator=g)
    return x[train], y_train, x[probe], y[probe]


def build_network(seed: int = 0) -> torch.nn.Sequential:
    """64-128-64-32-10 MLP: ``fc1, act1, ..., fc3, act3`` (Linear + ReLU), logits ``out``."""
    torch.manual_seed(seed)
    blocks: OrderedDict[str, torch.nn.Module] = OrderedDict()
    for i in range(len(SIZES) - 2):
        blocks[f"fc{i + 1}"] = torch.nn.Linear(SIZES[i], SIZES[i + 1])
        blocks[f"act{i + 1}"] = torch.nn.ReLU()
    blocks["out"] = torch.nn.Linear(SIZES[-2], SIZES[-1])
    return torch.nn.Sequential(blocks)


def metrics(config: Config) -> dict:
    """The Monitor's metrics: every one at the same cadence (``config.every``)."""
    spectral = {"every": config.every, "sigma": config.sigma}
    out = {
        "act_stats": {},
        "grad_norm": {},
        "weight_norm": {},
        "effective_rank": {},
        "von_neumann": {},
        "dse": dict(spectral),
        "dsmi": dict(spectral),
    }
    if config.info_plane:
        out["info_plane"] = {"every": config.every, "method": "binning", "bin_size": 0.07}
    return out


def run(
    config: Config,
    out: str | Path | None,
    *,
    overwrite: bool = False,
    verbose: bool = True,
    progress: Callable[[int], object] | None = None,
):
    """Train and probe; write the run to ``out`` (``None``: nothing written). Returns
    ``(monitor, seconds)``; ``monitor.alerts`` holds the detectors' alerts.

    ``progress``: called with 1 after each of the ``config.epochs + 1`` epochs (e.g. a
    tqdm bar's ``update``)."""
    t0 = time.perf_counter()
    if out is not None:
        db = Path(out) / "run.sqlite"
        if db.exists() and not overwrite:
            raise FileExistsError(f"out: {out} already holds a run; pass --overwrite to replace it")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    x_train, y_train, x_probe, y_probe = (t.to(config.device) for t in load_data(config))
    model = build_network(config.seed).to(config.device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    monitor = Monitor(
        model,
        out,
        layers=list(LAYERS),
        probe_inputs=x_probe,
        probe_labels=y_probe,
        every=config.every,
        metrics=metrics(config),
        max_rows=None,
        budget=None,
        seed=config.seed,
        name=RUN_NAMES[config.labels] if out is None else Path(out).name,
        config={**asdict(config), "recipe": "dashboard/samples/digits.py"},
        meta={"story": STORIES[config.labels], "showcase": SHOWCASE[config.labels]},
    )
    with monitor:
        for epoch in range(config.epochs + 1):
            opt.zero_grad(set_to_none=True)
            logits = model(x_train)
            loss = torch.nn.functional.cross_entropy(logits, y_train)
            loss.backward()
            if epoch % config.every == 0 or epoch == config.epochs:
                with torch.no_grad():
                    val = model(x_probe).argmax(1)
                    monitor.log_scalars(
                        epoch,
                        {
                            "train/acc": (logits.argmax(1) == y_train).float().mean(),
                            "val/acc": (val == y_probe).float().mean(),
                        },
                    )
            # the gradient of this epoch is still there when the monitor records
            monitor.step(epoch, loss=loss.detach())
            if epoch == config.epochs and epoch % config.every:
                monitor.record(epoch)  # the final state, off the cadence
            if epoch < config.epochs:
                opt.step()
            if progress is not None:
                progress(1)
    seconds = time.perf_counter() - t0
    if verbose:
        print(f"{RUN_NAMES[config.labels]}: {config.epochs} epochs in {seconds:.1f} s")
    return monitor, seconds


def summary(run_dir: str | Path) -> str:
    """First and last DSMI / DSE / effective rank per layer, final accuracies, alerts."""
    reader = RunReader(run_dir)
    try:
        df = reader.scalars()
        alerts = reader.alerts()
    finally:
        reader.close()
    lines = [f"{Path(run_dir).name}:"]
    for name in ("train/loss", "train/acc", "val/acc"):
        s = df[(df.metric == name) & df.layer.isna()].sort_values("step")
        if len(s):
            lines.append(f"  {name:10s} {s.value.iloc[0]:.3f} -> {s.value.iloc[-1]:.3f}")
    lines.append("  layer  DSMI_y first->last     DSE first->last      erank first->last")
    for layer in LAYERS:
        cells = []
        for name in ("repr/dsmi_y", "repr/dse", "repr/effective_rank"):
            s = df[(df.metric == name) & (df.layer == layer)].sort_values("step")
            cells.append(
                f"{s.value.iloc[0]:7.3f} -> {s.value.iloc[-1]:7.3f}" if len(s) else "   (none)"
            )
        lines.append(f"  {layer:5s}  " + "   ".join(cells))
    lines.append(f"  alerts: {len(alerts)}")
    for a in alerts.itertuples():
        lines.append(f"    step {a.step:5d} {a.indicator} {a.severity} [{a.layer}]: {a.message}")
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    p.add_argument(
        "--root", type=Path, default=SAMPLE_RUNS, help="parent of the runs (the sample runs)"
    )
    p.add_argument("--labels", choices=["both", "true", "random"], default="both")
    p.add_argument("--epochs", type=int, default=0, help="0: 600 (true), 3000 (random)")
    p.add_argument("--points", type=int, default=Config.points, help="recorded steps")
    p.add_argument("--lr", type=float, default=Config.lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-info-plane", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace existing runs")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    kinds = ["true", "random"] if args.labels == "both" else [args.labels]
    for kind in kinds:
        cfg = Config(
            labels=kind,
            epochs=args.epochs,
            lr=args.lr,
            points=args.points,
            seed=args.seed,
            info_plane=not args.no_info_plane,
            device=args.device,
        )
        out = args.root / RUN_NAMES[kind]
        try:
            run(cfg, out, overwrite=args.overwrite)
        except FileExistsError as exc:
            p.error(str(exc))
        print(summary(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
