"""Realistic synthetic runs for the dashboard tests, written with ``RunWriter``.

- ``ib/tanh`` and ``ib/relu``: a 5-layer MLP on the 12-bit task: information-plane
  trajectories (binning, and kde for tanh) at log-spaced epochs, where tanh layers fit
  then compress and ReLU layers do not; DSE, DSMI, effective rank, von Neumann entropy
  and activation statistics per layer; loss and accuracy; alerts.
- ``lm/grpo``: RL fine-tuning of a small LM: token-entropy mean and quantiles collapsing,
  token-entropy histograms, top-k indicators, per-head attention entropy for 4 layers x
  4 heads, reward following R = -a exp(H) + b, covariance share, the fitted law,
  alerts and a probe failure event.
- ``bad/run.sqlite``: garbage bytes. ``foreign/run.sqlite``: a SQLite file that is not a
  run.

Alerts carry the evidence layout of :mod:`diagnostics.schema` (the tanh run's compression
onset, with its I(X;T) window, threshold and I(T;Y)), or the layout of runs written before
it (``lm/grpo``'s token-entropy collapse names a ``series`` and no usable threshold).
Values are in nats like real runs. Everything is deterministic (seeded).
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np

from diagnostics.runlog import RunWriter

IB_LAYERS = [f"layers.{i}" for i in range(5)]
LM_LAYERS = [f"blocks.{i}.attn" for i in range(4)]
N_HEADS = 4
IB_STEPS = sorted({int(round(s)) for s in np.logspace(0, 4, 40)})
LM_STEPS = list(range(0, 205, 5))
H_X = math.log(4096)  # nats: all 4096 inputs distinct
H_Y = math.log(2)


def _ib_point(layer: int, step: int, tanh: bool) -> tuple[float, float]:
    """(I_XT, I_TY) in nats: fitting, then (tanh only) compression of deeper layers."""
    lt = math.log10(step + 1)
    fit = 1 - math.exp(-step / 40)
    top = H_X * (1 - 0.14 * layer)
    compress = 0.0
    if tanh:
        compress = 0.45 * (layer / 4) / (1 + math.exp(-(lt - 2.6) * 4))
    xt = top * (0.55 + 0.45 * fit) * (1 - compress)
    ty = H_Y * (1 - math.exp(-step / (60 + 40 * layer))) * (0.99 - 0.03 * layer)
    return xt, ty


def write_ib_run(path: Path, *, tanh: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    name = "tanh" if tanh else "relu"
    meta = {
        "name": f"mlp-12-10-7-5-4-3-{name}",
        "config": {"activation": name, "lr": 4e-4, "batch_size": 256, "epochs": 10000},
        "model_summary": "Linear(12,10) -> Linear(10,7) -> Linear(7,5) -> Linear(5,4) -> Linear(4,3)",
    }
    onset = 367  # where layers.4 of the tanh run has fallen 12% below its I(X;T) peak
    seen: dict[str, list] = {"steps": [], "xt": [], "ty": []}  # layers.4 up to the onset
    with RunWriter(path, meta=meta, batch_rows=2000) as w:
        for step in IB_STEPS:
            p = min(1.0, step / 2000)
            w.log(
                step,
                {
                    "train/loss": 0.69 * math.exp(-step / 800) + 0.02 + 0.01 * rng.random(),
                    "train/acc": 0.5 + 0.48 * p,
                },
            )
            for i, layer in enumerate(IB_LAYERS):
                xt, ty = _ib_point(i, step, tanh)
                values = {
                    "info_plane/binning/I_XT": xt + 0.02 * rng.standard_normal(),
                    "info_plane/binning/I_TY": ty + 0.003 * rng.standard_normal(),
                    "repr/dse": 1.5 + 2.0 * p - 0.2 * i + 0.05 * rng.standard_normal(),
                    "repr/dsmi_y": 0.05 + 0.6 * p * (1 - 0.1 * i),
                    "repr/effective_rank": (10 - 1.5 * i) * (1 - 0.3 * p * i / 4),
                    "repr/von_neumann": 1.8 - 0.25 * i + 0.3 * p,
                    "act/mean": 0.1 * rng.standard_normal(),
                    "act/std": 0.4 + 0.4 * p,
                    "act/saturated_frac": (0.6 * p * (i + 1) / 5) if tanh else 0.0,
                    "act/dead_frac": 0.0 if tanh else 0.25 * p * (i + 1) / 5,
                }
                if tanh:
                    kxt, kty = _ib_point(i, step, tanh)
                    values["info_plane/kde/I_XT"] = 0.8 * kxt
                    values["info_plane/kde/I_TY"] = 0.9 * kty
                if layer == "layers.4" and step <= onset:
                    seen["steps"].append(step)
                    seen["xt"].append(values["info_plane/binning/I_XT"])
                    seen["ty"].append(values["info_plane/binning/I_TY"])
                w.log(step, values, layer=layer)
        if tanh:  # the evidence layout of diagnostics.schema ("Alerts")
            peak = max(seen["xt"])
            w.alert(
                onset,
                "compression_onset",
                severity="info",
                layer="layers.4",
                message=f"compression phase: I(X;T) of layers.4 (binning) fell to "
                f"{seen['xt'][-1]:.3g} from its peak {peak:.3g}",
                evidence={
                    "metric": "info_plane/binning/I_XT",
                    "layer": "layers.4",
                    "steps": seen["steps"][-12:],
                    "values": seen["xt"][-12:],
                    "threshold": 0.88 * peak,
                    "direction": "below",
                    "rule": "I_XT <= (1 - compression_drop) * peak since the layer predicts",
                    "settings": {"compression_drop": 0.12},
                    "related": {
                        "info_plane/binning/I_TY": {
                            "steps": seen["steps"][-12:],
                            "values": seen["ty"][-12:],
                        }
                    },
                    "estimator": "binning",
                    "peak": peak,
                    "peak_step": seen["steps"][int(np.argmax(seen["xt"]))],
                },
            )
            w.alert(
                1000,
                "saturation",
                severity="warning",
                layer="layers.4",
                message="48% of layers.4 units saturated (|tanh| > 0.99)",
                evidence={"metric": "act/saturated_frac", "value": 0.48, "threshold": 0.4},
            )
        else:
            w.alert(
                3000,
                "rank_collapse",
                severity="warning",
                layer="layers.4",
                message="effective rank of layers.4 fell to 30% of its width",
                evidence={"metric": "repr/effective_rank", "value": 1.2, "width": 4},
            )


def write_lm_run(path: Path, *, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    a, b = 0.42, 0.95
    meta = {"name": "grpo-qwen-0.5b", "config": {"algo": "grpo", "lr": 1e-6, "top_k": 20}}
    with RunWriter(path, meta=meta, batch_rows=2000) as w:
        for step in LM_STEPS:
            h = 0.25 + 2.2 * math.exp(-step / 40)  # mean token entropy (nats)
            sample = rng.gamma(shape=1.2, scale=h / 1.2, size=4000)
            qs = np.quantile(sample, [0.05, 0.25, 0.5, 0.75, 0.95])
            reward = -a * math.exp(h) + b + 0.01 * rng.standard_normal()
            w.log(
                step,
                {
                    "lm/token_entropy/mean": float(sample.mean()),
                    "lm/token_entropy/q05": qs[0],
                    "lm/token_entropy/q25": qs[1],
                    "lm/token_entropy/q50": qs[2],
                    "lm/token_entropy/q75": qs[3],
                    "lm/token_entropy/q95": qs[4],
                    "lm/topk_mass": 1 - 0.5 * math.exp(-step / 60),
                    "lm/topk_entropy": 0.8 * h,
                    "lm/topk_entropy_renorm": 0.9 * h,
                    "lm/sum_p2": 1 - 0.7 * math.exp(-step / 50),
                    "rl/reward": reward,
                    "rl/cov/pos_share": 0.55 + 0.3 * (1 - math.exp(-step / 50)),
                    "rl/cov/mean": 0.002 * (1 + step / 100),
                },
            )
            counts, edges = np.histogram(sample, bins=30, range=(0.0, 8.0))
            w.log_distribution(step, "lm/token_entropy", edges=edges, counts=counts)
            for li, layer in enumerate(LM_LAYERS):
                depth = li / (len(LM_LAYERS) - 1)
                values = {}
                for hd in range(N_HEADS):
                    max_h = math.log(128)
                    frac = 0.9 - 0.75 * depth * (1 - math.exp(-step / 80)) - 0.05 * hd
                    ent = max(0.01, frac * max_h + 0.05 * rng.standard_normal())
                    values[f"attn/entropy/h{hd}"] = ent
                    values[f"attn/entropy_norm/h{hd}"] = ent / max_h
                values["attn/entropy"] = float(
                    np.mean([values[f"attn/entropy/h{k}"] for k in range(N_HEADS)])
                )
                w.log(step, values, layer=layer)
        w.log(LM_STEPS[-1], {"rl/fit/a": a, "rl/fit/b": b, "rl/fit/ceiling": b - a})
        w.alert(
            60,
            "positive_covariance",
            severity="warning",
            message="78% of tokens have positive entropy-advantage covariance",
            evidence={"metric": "rl/cov/pos_share", "value": 0.78, "threshold": 0.7},
        )
        w.alert(  # the evidence layout of runs written before 0.2: "series", no threshold
            120,
            "token_entropy_collapse",
            severity="critical",
            message="token entropy fell to 12% of its initial value within 120 steps",
            evidence={
                "series": "lm/token_entropy/mean",
                "steps": [100, 105, 110, 115, 120],
                "values": [0.45, 0.42, 0.40, 0.38, 0.36],
                "initial": 2.45,
                "threshold": 0.15,
            },
        )
        w.alert(
            150,
            "attention_collapse",
            severity="warning",
            layer="blocks.3.attn",
            message="2 of 4 heads in blocks.3.attn have entropy below 0.5 nats",
            evidence={"metric": "attn/entropy", "heads": [2, 3], "threshold": 0.5},
        )
        w.event(
            40,
            "probe_failure",
            "spectral probe failed on blocks.2.attn: eigendecomposition did not converge",
            source="repr/dse",
            detail={"layer": "blocks.2.attn", "exception": "LinAlgError"},
        )


def write_broken(root: Path) -> None:
    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "run.sqlite").write_bytes(b"\x00garbage, not a database\xff" * 64)
    foreign = root / "foreign"
    foreign.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(foreign / "run.sqlite")
    with conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()


def write_runs(root: Path, *, broken: bool = True) -> Path:
    """Write every synthetic run below ``root``; returns ``root``."""
    root = Path(root)
    write_ib_run(root / "ib" / "tanh", tanh=True, seed=1)
    write_ib_run(root / "ib" / "relu", tanh=False, seed=2)
    write_lm_run(root / "lm" / "grpo")
    if broken:
        write_broken(root)
    return root


if __name__ == "__main__":  # write a demo folder: python tests/synthetic_runs.py DIR
    import sys

    print(write_runs(Path(sys.argv[1] if len(sys.argv) > 1 else "demo_runs")))
