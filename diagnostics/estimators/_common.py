"""Shared private kernels of the MI and entropy estimators: boundary validation of samples
and labels, constant checks, standardisation, tie-breaking noise and class-conditional sums.

Conventions of every estimator in this package: ``x``, ``y`` are torch tensors or numpy arrays
of shape ``(n,)`` or ``(n, d)``; a 1-D integer (or bool) array is a discrete label. Results are
0-d float64 tensors on ``x``'s device, in nats (``base=2`` gives bits). Randomness comes from
``seed`` and is drawn on the CPU, so every device sees the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from diagnostics._validate import (
    as_labels,
    as_samples,
    as_tensor,
    check_finite,
    check_int,
    is_integer_dtype,
    to_base,
)

_F64 = torch.float64


def _is_labels(a: Any) -> bool:
    """A 1-D integer or bool array (torch or numpy) is a discrete label array."""
    if isinstance(a, torch.Tensor):
        return a.ndim == 1 and (is_integer_dtype(a) or a.dtype == torch.bool)
    if isinstance(a, np.ndarray):
        return a.ndim == 1 and (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_)
    return False


def _device_of(a: Any) -> torch.device:
    return a.device if isinstance(a, torch.Tensor) else torch.device("cpu")


# CPU fast paths. The boundary work (finiteness, constant checks, standardisation,
# noise) is O(n d); torch runs such ops over >= 32768 elements on its OpenMP pool, and
# on a busy shared 2-core machine each of those ops cost ~8 ms of barrier waiting
# (more than the whole estimate at n = 2000). numpy does them single-threaded in
# microseconds, so CPU tensors take numpy views here; other devices stay in torch.


def _samples(a: Any, name: str, device: torch.device) -> torch.Tensor:
    """Validated float64 (n, d) samples on ``device``."""
    t = as_samples(a, name=name, device=device, allow_nonfinite=True)
    if t.device.type == "cpu":
        if t.dtype not in (torch.float32, torch.float64):  # float16/bfloat16: no numpy view
            t = t.to(_F64)
        arr = t.numpy()
        if arr.dtype != np.float64:
            arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            check_finite(t, name=name)  # raises with the shared message
        return torch.from_numpy(arr)
    t = t.to(_F64)
    check_finite(t, name=name)
    return t


def _labels(a: Any, name: str, device: torch.device) -> torch.Tensor:
    return as_labels(a, name=name, device=device)


def _discrete(a: Any, name: str, device: torch.device) -> torch.Tensor:
    """Integer/bool samples (n,) or (n, d) as int64 (n, d); floats are refused."""
    t = as_tensor(a, name=name, device=device)
    if t.ndim == 1:
        t = t.unsqueeze(1)
    if t.ndim != 2:
        raise ValueError(
            f"{name}: expected shape (n,) or (n, d), got a {t.ndim}-D array of shape {tuple(t.shape)}"
        )
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex():
        raise ValueError(
            f"{name}: expected integer (discrete) values, got dtype {t.dtype}; "
            "use binning_entropy/discretize to bin continuous values first"
        )
    return t.to(torch.int64)


def _is_constant(t: torch.Tensor) -> bool:
    """True if every row equals the first (one device sync, at the boundary)."""
    if t.device.type == "cpu":
        a = t.numpy()
        return bool((a == a[:1]).all())
    return bool((t == t[:1]).all())


def _zero(device: torch.device) -> torch.Tensor:
    return torch.zeros((), dtype=_F64, device=device)


def _finish(value: torch.Tensor, base: float) -> torch.Tensor:
    return to_base(value.to(_F64), base)


def _check_k(k: Any, n: int, name: str = "k") -> int:
    k = check_int(k, name=name, minimum=1)
    if k >= n:
        raise ValueError(
            f"{name}: expected an integer smaller than the number of samples n = {n}, got {k}"
        )
    return k


def _constant_columns(t: torch.Tensor) -> list[int]:
    return torch.nonzero((t == t[:1]).all(dim=0)).flatten().tolist()


def _refuse_constant_columns(t: torch.Tensor, name: str, why: str) -> None:
    cols = _constant_columns(t)
    if cols:
        shown = ", ".join(map(str, cols[:10])) + (", ..." if len(cols) > 10 else "")
        raise ValueError(f"{name}: column(s) {shown} are constant; {why}")


def _col_std(t: torch.Tensor) -> torch.Tensor:
    """Population standard deviation of each column (float64)."""
    if t.device.type == "cpu":
        return torch.from_numpy(np.atleast_1d(t.numpy().std(axis=0)))
    return t.std(dim=0, unbiased=False) if t.shape[0] > 1 else torch.zeros_like(t[0])


def _standardize(t: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per column; constant columns are only centred."""
    if t.device.type == "cpu":
        a = t.numpy()
        std = a.std(axis=0)
        return torch.from_numpy((a - a.mean(axis=0)) / np.where(std > 0, std, 1.0))
    std = _col_std(t)
    return (t - t.mean(dim=0)) / torch.where(std > 0, std, torch.ones_like(std))


def _add_noise(t: torch.Tensor, noise: float, rng: np.random.Generator) -> torch.Tensor:
    """Add N(0, (noise * column std)^2) tie-breaking noise (constant columns untouched).

    The normal draws come from a seeded numpy generator on the CPU, so every device
    sees the same noise.
    """
    if noise == 0.0:
        return t
    z = rng.standard_normal(tuple(t.shape))
    if t.device.type == "cpu":
        a = t.numpy()
        return torch.from_numpy(a + (noise * a.std(axis=0)) * z)
    return t + noise * _col_std(t) * torch.from_numpy(z).to(t.device)


def _generator(seed: Any) -> np.random.Generator:
    seed = check_int(seed, name="seed", minimum=0)
    return np.random.default_rng(seed)


def _group_indices(labels: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Row indices of each class (sorted by class value) and the class counts."""
    values, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    groups = list(torch.split(order, counts.tolist()))
    return groups, counts


def _conditional(
    fn: Any, t: torch.Tensor, labels: torch.Tensor, min_count: int, what: str
) -> torch.Tensor:
    """sum_y p(y) fn(t[y == c]); refuses classes with fewer than ``min_count`` rows."""
    groups, counts = _group_indices(labels)
    small = [int(c) for c in counts.tolist() if c < min_count]
    if small:
        raise ValueError(
            f"given: every class needs at least {min_count} samples for {what}, "
            f"got a class with {min(small)}"
        )
    n = t.shape[0]
    total = _zero(t.device)
    for idx, c in zip(groups, counts.tolist()):
        total = total + (c / n) * fn(t[idx])
    return total
