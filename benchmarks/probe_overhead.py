"""Probe overhead: training steps per second with and without a Monitor, in the same run.

    python benchmarks/probe_overhead.py [--steps 1000] [--repeats 3] [--lockstep 12]
                                        [--models cnn,mlp]

A small CNN and an MLP train on scikit-learn's digits (batch 64, Adam). Each variant
runs the same number of steps from the same initial weights, the variants interleaved
over several repeats (the median counts), and the ratio to the loop without probes
(the anchor) is printed:

- ``idle``: a Monitor whose cadence never fires, ``monitor.step(step)`` every step:
  what a step where nothing is recorded costs;
- ``default``: ``Monitor(model, run, probe_inputs=x_val, probe_labels=y_val)`` with
  every default (every=100, the default metrics, slow metrics every 1000 steps, the
  default time budget for the estimators) and ``monitor.step(step, loss=loss)``;
  ``default-live``: the same without a probe batch.

Steps per second are measured in process CPU time (one torch thread) and wall-clock
time; the ratio to the anchor is taken within each repeat (the variants of a repeat run
back to back) and its median over the repeats is printed, with the load average at the
start and the end. Whole runs seconds apart do not share the machine's speed, which on a
shared VM drifts by more than the effect measured (a 1000-step run's ratio moved between
+3.7% and +7.3% from run to run), so the figure the goal is judged on is measured in
lockstep (``--lockstep`` runs per model and variant): the same training twice in one
process, one copy with the default monitor and one without, alternating in blocks of
about 100 steps (one record each), each block clocked; the monitored copy's total time
over the other's, pooled over the runs, is the end-to-end overhead (the runs' spread is
printed beside it). Three direct measurements are printed too:

- ``in monitor``: the wall time the monitor counted as its own (what its time budget
  sees: every ``step`` call, live hooks included) over the rest of the loop, in the same
  runs (median of the repeats). The overhead beyond it is what the monitor cannot time:
  calling it (~3 us of a quiet ``step(step, loss=loss)`` right after a training step,
  when a call costs ~25x its time in a tight loop) and the training steps after a record;
- how much the training steps themselves slow down beside a default monitor (each step
  clocked outside the monitor, in both variants): what the monitor cannot time, measured;
- the cost of one idle ``monitor.step`` call (many calls, probe and live mode) as a
  fraction of a baseline step.

``probe s/run`` is the probe time the run log recorded (``probe/seconds``, summed).
Goals (issue 15): default cadence <= 5% overhead on both models, wall and CPU (the
lockstep figure; the worst is printed at the end against the goal); an idle step under
0.2% of a step.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

# run from a checkout without installing: ``python benchmarks/probe_overhead.py``
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from torch import nn  # noqa: E402

from diagnostics import open_run  # noqa: E402
from probes import Monitor, Steps  # noqa: E402


def make_model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "cnn":
        return nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(16 * 16, 64), nn.ReLU(),
            nn.Linear(64, 10),
        )  # fmt: skip
    return nn.Sequential(
        nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 128), nn.Tanh(), nn.Linear(128, 10)
    )  # fmt: skip


def load():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    x, y = x[perm], y[perm]
    return x[:1297], y[:1297], x[1297:], y[1297:]  # 500 validation rows as the probe batch


def training(kind, init_state, data, steps, batch=64):
    """The model (from ``init_state``) and its training step ``train_step(step) -> loss``
    (Adam, the same batches in every run)."""
    x, y = data[0], data[1]
    model = make_model(kind)
    model.load_state_dict(init_state)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    order = torch.randint(0, len(x), (steps, batch), generator=g)

    def train_step(step):
        idx = order[step % steps]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        return loss

    return model, train_step


def monitor(variant, model, path, data):
    """The Monitor of a variant (``none``: no monitor): ``idle``/``idle-live`` never record,
    ``default``/``default-live`` keep every default, with/without the probe batch."""
    if variant == "none":
        return None
    probe = {} if variant.endswith("-live") else {"probe_inputs": data[2], "probe_labels": data[3]}
    every = {"every": Steps([])} if variant.startswith("idle") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # estimators not installed yet: defaults shrink
        return Monitor(model, path, **probe, **every)


def run(variant, kind, init_state, data, steps):
    model, train_step = training(kind, init_state, data, steps)
    tmp = tempfile.TemporaryDirectory()
    mon = monitor(variant, model, tmp.name, data)

    # warm up outside the timed loop: first-call costs of torch and of the monitor (its
    # first record at step 0 creates the run log's names); steady state is timed
    warm = 5
    for step in range(warm):
        loss = train_step(step)
        if mon is not None:
            mon.step(step, loss=loss)
    # the timed loops are what a user writes: no clock read per step (one costs ~1 us
    # right after a training step, 0.1% of the MLP's)
    clock = time.process_time
    t_mon = 0.0 if mon is None else mon._t_monitor
    t0, c0 = time.perf_counter(), clock()
    if mon is None:
        for step in range(warm, warm + steps):
            loss = train_step(step)
    elif variant == "idle":
        for step in range(warm, warm + steps):
            loss = train_step(step)
            mon.step(step)
    else:
        for step in range(warm, warm + steps):  # records at 100, ..., 1000 (slow: 1000)
            loss = train_step(step)
            mon.step(step, loss=loss)
    wall, cpu = time.perf_counter() - t0, clock() - c0
    in_monitor = 0.0 if mon is None else mon._t_monitor - t_mon
    probe_seconds = 0.0
    budget = None
    metrics = []
    deferred = {}
    if mon is not None:
        metrics = [a.defn.name for a in mon._metrics]
        deferred = dict(mon.deferred)
        budget = mon.budget
        mon.close()
        with open_run(tmp.name) as r:
            df = r.scalars(metrics="probe/seconds")
            df = df[df.step >= warm]
            probe_seconds = float(df.value.sum()) if len(df) else 0.0
    tmp.cleanup()
    return {
        "cpu": steps / cpu,
        "wall": steps / wall,
        "attributed": in_monitor / max(wall - in_monitor, 1e-12),
        "probe_seconds": probe_seconds,
        "metrics": metrics,
        "deferred": deferred,
        "budget": budget,
    }


def training_steps_slowed(kind, init_state, data, steps, repeats=3):
    """What the training steps themselves lose to a default Monitor, measured directly: each
    training step is clocked (both variants read the clock alike, outside the monitor), and
    the default variant's steps are compared with the mean step without probes (what
    they lose: cold caches and re-allocated memory after a record, the monitor's buffers).
    Returns ``(extra seconds of training per run, the no-probe run's seconds)``, medians
    over ``repeats`` interleaved pairs."""
    extra, total = [], []
    for rep in range(repeats):
        times = {}
        for variant in ("none", "default") if rep % 2 == 0 else ("default", "none"):
            model, train_step = training(kind, init_state, data, steps)
            tmp = tempfile.TemporaryDirectory()
            mon = monitor(variant, model, tmp.name, data)
            clock, t = time.perf_counter, []
            for step in range(steps + 5):
                t0 = clock()
                loss = train_step(step)
                t.append(clock() - t0)
                if mon is not None:
                    mon.step(step, loss=loss)
            if mon is not None:
                mon.close()
            tmp.cleanup()
            times[variant] = t[5:]  # (after the warm-up steps)
        base = statistics.fmean(times["none"])
        extra.append(sum(dt - base for dt in times["default"]))
        total.append(sum(times["none"]))
    return statistics.median(extra), statistics.median(total)


def lockstep(variant, kind, init_state, data, steps, edges=None):
    """End to end, interleaved: the same training twice in one process, in lockstep, one
    copy with a Monitor (``variant``: ``default`` or ``default-live``) and one without,
    alternating in blocks of about 100 steps (which copy goes first alternates too). Each
    block is clocked (wall and process CPU time); drift of the machine's speed, which
    whole runs seconds apart do not share, cancels at the scale of one block. The block
    edges fall half way between records (records at 100, 200, ...; blocks 50-150, ...), so
    a record and the training steps right after it are in the same block.

    The monitor's time budget counts the wall time since its first step as training; the
    other copy's blocks are not its training, so they are taken out of that clock.
    Returns ``{"wall": {"plain": s, "monitored": s}, "cpu": {...}, "same_weights": bool}``:
    each copy's seconds, and whether both copies ended with equal weights (they train on
    the same batches from the same start: the monitor must not change the training)."""
    warm = 5
    if edges is None:
        edges = [warm, *range(50, warm + steps, 100), warm + steps]
    plain_model, plain_step = training(kind, init_state, data, steps)
    model, train_step = training(kind, init_state, data, steps)
    tmp = tempfile.TemporaryDirectory()
    mon = monitor(variant, model, tmp.name, data)
    for step in range(warm):
        plain_step(step)
        mon.step(step, loss=train_step(step))
    wall = {"plain": 0.0, "monitored": 0.0}
    cpu = {"plain": 0.0, "monitored": 0.0}
    clock = time.process_time
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        for which in ("plain", "monitored") if i % 2 == 0 else ("monitored", "plain"):
            t0, c0 = time.perf_counter(), clock()
            if which == "plain":
                for step in range(a, b):
                    plain_step(step)
            else:
                for step in range(a, b):
                    loss = train_step(step)
                    mon.step(step, loss=loss)
            dt, dc = time.perf_counter() - t0, clock() - c0
            wall[which] += dt
            cpu[which] += dc
            if which == "plain" and mon._t_first is not None:
                mon._t_first += dt  # not the monitored copy's training (see above)
    mon.close()
    tmp.cleanup()
    # the two copies did the same work: the monitor does not touch the training
    same = all(torch.equal(p, q) for p, q in zip(plain_model.parameters(), model.parameters()))
    return {"wall": wall, "cpu": cpu, "same_weights": same}


def idle_call_cost(kind, init_state, data, calls=20000):
    """Seconds per idle ``monitor.step`` call, measured directly."""
    model = make_model(kind)
    model.load_state_dict(init_state)
    out = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mode in ("probe", "live"):
            kw = {"probe_inputs": data[2], "probe_labels": data[3]} if mode == "probe" else {}
            mon = Monitor(model, Path(tmp) / mode, every=Steps([]), **kw)
            t0 = time.process_time()
            for s in range(calls):
                mon.step(s)
            out[mode] = (time.process_time() - t0) / calls
            mon.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000, help="training steps per timed run")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median)")
    ap.add_argument("--models", default="cnn,mlp", help="comma-separated: cnn, mlp")
    ap.add_argument(
        "--lockstep",
        type=int,
        default=12,
        help="lockstep runs per model and variant (the end-to-end figure, pooled)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("infoscope.probes").setLevel(logging.ERROR)  # no collapse alerts here
    warnings.simplefilter("ignore")  # estimator warnings (e.g. binning clipping) are not timed
    data = load()
    variants = ["none", "idle", "default", "default-live"]
    print(
        f"probe overhead: digits, batch 64, Adam, {args.steps} steps per run, "
        f"{args.repeats} interleaved repeats (median), torch threads {args.threads}, "
        f"torch {torch.__version__}; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs"
    )
    worst: dict[tuple[str, str, str], float] = {}
    for kind in args.models.split(","):
        init_state = copy.deepcopy(make_model(kind).state_dict())
        res: dict[str, list[dict]] = {v: [] for v in variants}
        for rep in range(args.repeats):
            order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
            for v in order:
                res[v].append(run(v, kind, init_state, data, args.steps))

        def med(v, key, res=res):
            return statistics.median(r[key] for r in res[v])

        def ratio(v, key, res=res):
            """Median over the repeats of (variant / anchor of the same repeat)."""
            return statistics.median(r[key] / a[key] for r, a in zip(res[v], res["none"]))

        base, wbase = med("none", "cpu"), med("none", "wall")
        print(
            f"\n[{kind}] anchor (no probes): {base:.1f} steps per CPU-second "
            f"({1e3 / base:.3f} ms/step); wall clock {wbase:.1f} steps/s"
        )
        print(
            f"  {'variant':<13}{'steps/s':>9}{'ratio':>8}{'overhead':>10}{'wall st/s':>11}"
            f"{'wall ratio':>12}{'overhead':>10}{'in monitor':>12}{'probe s/run':>13}"
        )
        for v in variants:
            r, w = med(v, "cpu"), med(v, "wall")
            rc, rw = ratio(v, "cpu"), ratio(v, "wall")
            attributed = med(v, "attributed")
            probe_s = med(v, "probe_seconds")
            print(
                f"  {v:<13}{r:9.1f}{rc:8.3f}{1 / rc - 1:10.1%}{w:11.1f}"
                f"{rw:12.3f}{1 / rw - 1:10.1%}{attributed:12.2%}{probe_s:13.3f}"
            )
        for v in ("default", "default-live"):
            print(f"  {v} metrics: {', '.join(res[v][0]['metrics'])}")
            deferred = res[v][-1]["deferred"]
            if deferred:
                text = ", ".join(f"{k} x{n}" for k, n in deferred.items())
                print(
                    f"    postponed by the {res[v][-1]['budget']:.0%} time budget "
                    f"(last repeat): {text}"
                )
        for v in ("default", "default-live"):
            runs = [lockstep(v, kind, init_state, data, args.steps) for _ in range(args.lockstep)]
            if not all(r["same_weights"] for r in runs):
                print(f"  WARNING: {v}: the monitored copy's weights differ from the other's")
            parts = []
            for key in ("wall", "cpu"):
                pooled = sum(r[key]["monitored"] for r in runs) / sum(r[key]["plain"] for r in runs)
                each = sorted(r[key]["monitored"] / r[key]["plain"] - 1 for r in runs)
                parts.append(f"{pooled - 1:+.1%} {key} (runs {each[0]:+.1%} .. {each[-1]:+.1%})")
                worst[(kind, v, key)] = pooled - 1
            print(f"  {v} end to end, lockstep, {args.lockstep} runs pooled: " + ", ".join(parts))
        extra, total = training_steps_slowed(kind, init_state, data, args.steps)
        print(
            f"  training steps slowed by the default monitor (clocked per step, outside it): "
            f"{extra * 1e3:+.1f} ms per run = {extra / total:+.2%} of the training time"
        )
        cost = idle_call_cost(kind, init_state, data)
        for mode, sec in cost.items():
            print(
                f"  idle monitor.step ({mode} mode): {sec * 1e6:.2f} us/call = "
                f"{sec * base:.3%} of a baseline step"
            )
    if worst:
        (kind, v, key), over = max(worst.items(), key=lambda kv: kv[1])
        print(
            f"\nworst end-to-end overhead (lockstep, pooled): {over:+.1%} ({kind}, {v}, {key}); "
            f"goal <= 5%: {'met' if over <= 0.05 else 'not met'}"
        )
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
