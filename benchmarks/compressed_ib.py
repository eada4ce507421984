"""Compression-based MI (Butakov et al. 2023) on images with a known MI.

    python benchmarks/compressed_ib.py [--n 4000] [--step 0.5] [--epochs 15]

For known I(X; Y) from 0 to 5 nats, ``diagnostics.synthetic_mi_images`` draws pairs of
16 x 16 images of a Gaussian bump whose 2-D position carries the information (MI split
over two coordinate pairs, random orthogonal mixing; the paper's check). Each pair is
estimated by ``diagnostics.compressed_mi``:

- ``autoencoder``: compressed to 2 latents by the small autoencoder (the paper's way);
- ``pca``: compressed to 2 principal components (the default; a 2-D linear projection
  of the curved bump manifold, so a poorer chart);
- anchor ``oracle``: the same noise + whitening + weighted KL pipeline on the true 2-D
  latents the images were drawn from (``compressor="none"``), i.e. perfect compression.

Printed per point: the estimate and its error (estimate - true) for each, the
autoencoder's error relative to the oracle's, and the seconds per estimate. Torch runs
on one thread (small matrices; on a shared machine more threads only add contention).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diagnostics import compressed_mi, synthetic_mi_images  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=4000, help="samples per point (4000)")
    p.add_argument("--step", type=float, default=0.5, help="MI grid step in nats (0.5)")
    p.add_argument("--max-mi", type=float, default=5.0, help="largest MI in nats (5)")
    p.add_argument("--epochs", type=int, default=15, help="autoencoder epochs (15)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    grid = np.round(np.arange(0.0, args.max_mi + 1e-9, args.step), 6)
    print(
        f"compressed MI on 16x16 bump images, n = {args.n}, 2 latents, k = 5, "
        "noise-to-signal 1e-3, weighted KL (nats)"
    )
    head = (
        f"{'true':>5} | {'oracle':>7} {'err':>6} | {'autoenc':>7} {'err':>6} {'s':>5} | "
        f"{'pca':>7} {'err':>6} {'s':>5}"
    )
    print(head)
    print("-" * len(head))
    errs = {"oracle": [], "autoencoder": [], "pca": []}
    t_total = time.perf_counter()
    for i, mi in enumerate(grid):
        x, y, true, (xi, eta) = synthetic_mi_images(
            args.n, float(mi), seed=args.seed + i, return_latents=True
        )
        row = {}
        for name, a, b, opts in (
            ("oracle", xi, eta, {"compressor": "none"}),
            ("autoencoder", x, y, {"compressor": "autoencoder", "ae_epochs": args.epochs}),
            ("pca", x, y, {"compressor": "pca"}),
        ):
            t0 = time.perf_counter()
            est = float(compressed_mi(a, b, dim=2, seed=args.seed, **opts))
            row[name] = (est, est - true, time.perf_counter() - t0)
            errs[name].append(est - true)
        o, a, c = row["oracle"], row["autoencoder"], row["pca"]
        print(
            f"{true:5.2f} | {o[0]:7.3f} {o[1]:+6.3f} | {a[0]:7.3f} {a[1]:+6.3f} {a[2]:5.1f} | "
            f"{c[0]:7.3f} {c[1]:+6.3f} {c[2]:5.1f}",
            flush=True,
        )
    print("-" * len(head))
    for name, e in errs.items():
        e = np.asarray(e)
        print(
            f"{name:12s} mean |error| {np.abs(e).mean():.3f} nats, max |error| "
            f"{np.abs(e).max():.3f}, mean error {e.mean():+.3f}"
        )
    ratio = np.abs(errs["autoencoder"]).mean() / max(np.abs(errs["oracle"]).mean(), 1e-12)
    print(f"autoencoder mean |error| / oracle mean |error| = {ratio:.2f}")
    print(f"total {time.perf_counter() - t_total:.0f} s")


if __name__ == "__main__":
    main()
