"""Diffusion spectral entropy (DSE) of a representation, and the kernel machinery it shares
with DSMI.

Source: Liao, Liu et al. (2023), "Assessing neural network representations during training
using noise-resilient diffusion spectral entropy", and their ``dse-dsmi`` 1.1 package, which
this reproduces exactly in float64 with ``base=2``: G = exp(-D^2 / (2 sigma^2)), K = Deg^-1/2
G Deg^-1/2, p = |lambda|^t / sum |lambda|^t + eps, DSE = -sum p log p.

The diffusion quantities need the whole ``n x n`` kernel and a dense symmetric eigensolver
(O(n^2) memory, O(n^3) time). The kernel is built in place, straight in its symmetric
normalised form (no diagonal matrices, no distance matrix), so the peak is two ``n x n``
buffers: the kernel and the eigensolver's working copy. ``max_n`` bounds ``n``.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import wait
from typing import Any

import numpy as np
import torch

from diagnostics._validate import (
    ArrayLike,
    as_samples,
    check_base,
    check_choice,
    check_float,
    check_int,
    to_base,
)

__all__ = ["diffusion_spectral_entropy", "median_sigma"]


# dse-dsmi adds numpy's float64 machine epsilon to every probability before the log.
_P_EPS = float(np.finfo(np.float64).eps)
# A batch of kernels is processed in chunks of at most this many matrix entries
# (2**24 float64 entries = 128 MiB, plus the eigensolver's copy), or one matrix if larger.
_CHUNK_ENTRIES = 1 << 24
_DTYPES = (torch.float64, torch.float32)


def _check_sigma(sigma: Any, device: torch.device) -> str | float | torch.Tensor:
    if isinstance(sigma, str):
        return check_choice(sigma, name="sigma", choices=("median",))
    if isinstance(sigma, torch.Tensor):
        if sigma.numel() != 1 or not sigma.is_floating_point():
            raise ValueError(
                f"sigma: expected a number > 0, 'median' or a one-element float tensor, "
                f"got a tensor of shape {tuple(sigma.shape)} and dtype {sigma.dtype}"
            )
        s = sigma.detach().reshape(()).to(device=device, dtype=torch.float64)
        if not bool(torch.isfinite(s) & (s > 0)):  # one sync, at the boundary
            raise ValueError(f"sigma: expected a number > 0, got {float(s)}")
        return s
    return check_float(sigma, name="sigma", positive=True)


def _check_dtype(dtype: Any) -> torch.dtype:
    if dtype not in _DTYPES:
        raise ValueError(f"dtype: expected torch.float64 or torch.float32, got {dtype!r}")
    return dtype


def _check_max_n(max_n: Any) -> int | None:
    return None if max_n is None else check_int(max_n, name="max_n", minimum=2)


def _sample_rows(n: int, k: int, seed: int) -> list[int]:
    """dse-dsmi's subsample: ``random.seed(seed); random.sample(range(n), k)``.

    A private ``random.Random`` draws the same sequence without touching the global
    state of the ``random`` module.
    """
    return random.Random(seed).sample(range(n), k)


def _index(rows: list[int], device: torch.device) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64, device=device)


def _scaled_points(z: torch.Tensor, sigma: float | torch.Tensor, dtype: torch.dtype):
    """``(v, s)``: the points ``z`` (``(..., n, d)``) centred and divided by ``sigma``, in
    ``dtype``, and ``s = |v|^2 / 2`` per point (``(..., n)``), from which
    :func:`_kernel` builds the kernel of any subset of the points.

    ``z`` is centred first (distances do not change), which keeps the Gram-matrix form of
    the squared distances accurate: its rounding error is ``eps |v_i| |v_j|``, at most that
    of dse-dsmi's uncentred form. (DSMI centres all its points once, not each subset.)
    """
    z = z.to(torch.float64)
    z = z - z.mean(dim=-2, keepdim=True)
    v = (z / sigma).to(dtype)
    return v, (v * v).sum(dim=-1).mul_(0.5)


def _kernel(v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Symmetric normalised Gaussian kernel ``Deg^-1/2 G Deg^-1/2`` of the point sets ``v``
    (``(b, n, d)``, from :func:`_scaled_points`; ``s``: ``(b, n)``), built in place.

    ``G_ij = exp(-|v_i - v_j|^2 / 2)`` (dse-dsmi's constant factor
    ``1 / (sigma sqrt(2 pi))`` cancels in the normalisation), ``Deg = rowsum(G)``. The
    result has the eigenvalues of the row-stochastic diffusion matrix ``Deg^-1 G``. The
    exponent ``<v_i, v_j> - s_i - s_j``: a plain product (no copy of a broadcast term into
    the buffer first), then two subtractions in place. Only one ``n x n`` buffer is
    allocated.
    """
    k = torch.bmm(v, v.mT)  # the one n x n buffer
    k.sub_(s.unsqueeze(-1)).sub_(s.unsqueeze(-2)).clamp_(max=0)  # rounding can make it > 0
    k.exp_()
    k.diagonal(dim1=-2, dim2=-1).fill_(1.0)
    d = k.sum(dim=-1).rsqrt_()
    k.mul_(d.unsqueeze(-1)).mul_(d.unsqueeze(-2))
    return k


def _normalized_kernel(z: torch.Tensor, sigma: float | torch.Tensor, dtype: torch.dtype):
    """The whole kernel (:func:`_kernel`) of each point set in ``z`` (``(b, n, d)``)."""
    return _kernel(*_scaled_points(z, sigma, dtype))


def _spectral_entropy_nats(eigvals: torch.Tensor, t: float) -> torch.Tensor:
    """dse-dsmi's entropy of ``|lambda|^t``: ``p = |l|^t / sum |l|^t + eps``, ``-sum p ln p``."""
    lam = eigvals.to(torch.float64).abs()
    if t != 1.0:
        lam = lam.pow(t)
    p = lam / lam.sum(dim=-1, keepdim=True) + _P_EPS
    return -(p * p.log()).sum(dim=-1)


_BLAS = None  # numpy's BLAS libraries (threadpoolctl), found at the first CPU evaluation
# float64 kernels of _NUMPY_N[0] <= n < _NUMPY_N[1] points on the CPU go through numpy:
# measured on AMD EPYC (one thread), numpy's OpenBLAS syevd takes 0.55-0.9x the time of
# torch's MKL one there; below, torch's batched small ops win; above, MKL's blocked
# tridiagonalisation does (2.3x faster at n = 4000), and in float32 MKL wins throughout.
_NUMPY_N = (128, 2048)


def _numpy_blas_threads():
    """A context in which numpy's BLAS/LAPACK use ``torch.get_num_threads()`` threads (what
    the torch path would use), or a no-op without threadpoolctl."""
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController().select(user_api="blas")
        except Exception:  # pragma: no cover - threadpoolctl comes with scikit-learn
            _BLAS = False
    if _BLAS is False or not _BLAS.lib_controllers:
        return contextlib.nullcontext()
    return _BLAS.limit(limits=torch.get_num_threads())


def _scaled_entropies_numpy(v: torch.Tensor, s: torch.Tensor, t: float) -> torch.Tensor:
    """:func:`_scaled_entropies` for float64 CPU tensors, through numpy: the same arithmetic,
    batched, with LAPACK's ``syevd`` from numpy's OpenBLAS (see ``_NUMPY_N`` for when that
    is faster; ``benchmarks/spectral.py``)."""
    vv, ss = v.detach().numpy(), s.detach().numpy()
    b, n = vv.shape[0], vv.shape[1]
    chunk = max(1, _CHUNK_ENTRIES // (n * n))
    out = []
    with _numpy_blas_threads():
        for start in range(0, b, chunk):
            x, q = vv[start : start + chunk], ss[start : start + chunk]
            k = x @ x.transpose(0, 2, 1)  # the one n x n buffer per set, made the kernel in place
            k -= q[:, :, None]
            k -= q[:, None, :]
            np.minimum(k, 0, out=k)  # rounding can make it > 0
            np.exp(k, out=k)
            k.reshape(k.shape[0], -1)[:, :: n + 1] = 1.0  # the diagonals
            d = 1.0 / np.sqrt(k.sum(axis=-1))
            k *= d[:, :, None]
            k *= d[:, None, :]
            out.append(np.linalg.eigvalsh(k))
            del k
    return _spectral_entropy_nats(torch.from_numpy(np.concatenate(out)), t)


def _scaled_entropies(
    v: torch.Tensor,
    s: torch.Tensor,
    t: float,
    *,
    numpy_ok: bool = True,
    chunk_entries: int | None = None,
) -> torch.Tensor:
    """Exact DSE (nats) of each point set in ``v`` (``(b, n, d)``; ``v, s`` from
    :func:`_scaled_points`); returns ``(b,)``. ``numpy_ok=False``: torch's eigensolver even
    where numpy's is faster (``_NUMPY_N``), for the pooled workers (numpy's eigensolves do
    not run side by side). ``chunk_entries``: kernel entries built at once (default
    ``_CHUNK_ENTRIES``; at least one kernel)."""
    b, n = v.shape[0], v.shape[1]
    if (
        numpy_ok
        and v.device.type == "cpu"
        and v.dtype == torch.float64
        and _NUMPY_N[0] <= n < _NUMPY_N[1]
    ):
        return _scaled_entropies_numpy(v, s, t)
    chunk = max(1, (chunk_entries or _CHUNK_ENTRIES) // (n * n))
    out = []
    for start in range(0, b, chunk):
        k = _kernel(v[start : start + chunk], s[start : start + chunk])
        # k is symmetric: its transpose is already in LAPACK's column-major order, so the
        # eigensolver's working copy is a plain copy, not a transposing one
        lam = torch.linalg.eigvalsh(k.mT)
        del k
        out.append(_spectral_entropy_nats(lam, t))
    return torch.cat(out)


def _diffusion_entropies(z: torch.Tensor, sigma, t: float, dtype: torch.dtype) -> torch.Tensor:
    """Exact DSE (nats) of each point set in ``z`` of shape ``(b, n, d)``; returns ``(b,)``."""
    return _scaled_entropies(*_scaled_points(z, sigma, dtype), t)


def _parallel_plan(
    device: torch.device, n_jobs: int, threads: int | None = None
) -> tuple[int, int]:
    """``(workers, threads per worker)`` for ``n_jobs`` independent CPU eigensolves, or
    ``(1, 0)`` to run them in this thread.

    A dense eigensolve of a few hundred points hardly gains from a second thread (LAPACK's
    tridiagonalisation is memory-bound; measured here, 2 threads take 0.9-1.0x the wall
    time of one and twice its CPU time), but independent eigensolves run side by side on
    separate cores: 1.7-1.9x the throughput on 2 cores (``benchmarks/spectral.py``). Each
    worker sets its own OpenMP thread count (a per-thread setting), so the process uses
    ``torch.get_num_threads()`` threads in all, as a single torch call would.
    """
    if threads is None:
        threads = torch.get_num_threads()
    if device.type != "cpu" or threads < 2 or n_jobs < 2:
        return 1, 0
    workers = min(threads, n_jobs)
    return workers, max(1, threads // workers)


@contextlib.contextmanager
def _one_thread_here():
    """This thread's torch operations on one thread inside (yields the thread count before,
    restored after).

    For the small operations of a pooled evaluation in the calling thread (checks, sorting
    labels, scaling the points): on two cores, such an operation after an idle spell waited
    ~4 ms (up to 10) for OpenMP's sleeping thread, measured in a VM; one thread computes it
    in well under a millisecond. (OpenMP's count is per thread; MKL's, set too, is
    process-wide: every eigensolve sets its own.)
    """
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield threads
    finally:
        if threads > 1 or torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


_POOL: tuple[int, int, Any] | None = None  # (pid, workers, ThreadPoolExecutor)
# Python's GIL switch interval while the workers run: a worker that comes back from a torch
# op waits for the GIL until the thread holding it lets go, at the latest after the switch
# interval (default 5 ms: a worker would wait that long for each of its ~30 torch ops per
# part while this thread draws subsets in Python)
_SWITCH_INTERVAL = 1e-4
_SWITCH: list[Any] = [0, None, threading.Lock()]  # (calls inside, interval before, lock)


@contextlib.contextmanager
def _short_switch_interval():
    """Python's switch interval at most ``_SWITCH_INTERVAL`` inside, restored after the
    last of (possibly concurrent) callers."""
    with _SWITCH[2]:
        if _SWITCH[0] == 0:
            _SWITCH[1] = sys.getswitchinterval()
            sys.setswitchinterval(min(_SWITCH[1], _SWITCH_INTERVAL))
        _SWITCH[0] += 1
    try:
        yield
    finally:
        with _SWITCH[2]:
            _SWITCH[0] -= 1
            if _SWITCH[0] == 0:
                sys.setswitchinterval(_SWITCH[1])


def _pool(workers: int):
    """The eigensolver threads, kept between calls (starting threads costs ~1 ms a call);
    a new pool in a forked child (the parent's threads do not exist there)."""
    global _POOL
    pid = os.getpid()
    if _POOL is None or _POOL[0] != pid or _POOL[1] != workers:
        from concurrent.futures import ThreadPoolExecutor

        if _POOL is not None and _POOL[0] == pid:
            _POOL[2].shutdown(wait=False)
        _POOL = (pid, workers, ThreadPoolExecutor(workers, thread_name_prefix="infoscope-dse"))
    return _POOL[2]


def _diffusion_entropies_groups(
    z: torch.Tensor,
    shapes: list[tuple[int, int]],
    groups: Iterable[torch.Tensor],
    sigma,
    t: float,
    dtype: torch.dtype,
    threads: int | None = None,
) -> torch.Tensor:
    """Exact DSE (nats) of the point sets ``z[rows]`` for each row ``rows`` of each index
    tensor that ``groups`` yields, in order (``shapes[i]``: the ``(sets, points)`` shape of
    the ``i``-th); returns ``(sum of sets,)``.

    The points are centred and scaled once (:func:`_scaled_points`); the sets of one group
    go through one batched eigensolve (:func:`_scaled_entropies`).
    On a multi-core CPU each group is split into parts of about ``1 / (2 workers)`` of the
    work (groups smaller than that go whole), which are handed to a pool of threads
    (:func:`_parallel_plan`) as soon as the group is yielded: ``groups``
    may draw its sets as it goes, overlapping the workers' eigensolves (yield the largest
    first: the costliest parts start first and the workers finish together). Sets whose
    kernel is larger than the workers' share of ``_CHUNK_ENTRIES`` entries go one at a time
    in this thread, with every thread, once the workers are idle, so that all workers
    together hold no more kernel entries than the serial path does (2**24 float64 entries,
    128 MiB, plus the eigensolvers' copies).
    """
    if threads is None:
        threads = torch.get_num_threads()
    n_sets = sum(m for m, _ in shapes)
    out = torch.empty(n_sets, dtype=torch.float64, device=z.device)
    share = _CHUNK_ENTRIES // max(1, min(threads, n_sets))  # per worker
    n_small = sum(m for m, n in shapes if n * n <= share)
    workers, per_worker = _parallel_plan(z.device, n_small, threads)
    # a group goes to the workers in parts of about a (2 * workers)-th of the pooled work
    # (eigensolves: n^3 each): fewer parts of the small sets, less overhead; the workers
    # take them in turn and finish together
    target = sum(m * n**3 for m, n in shapes if n * n <= share) / (2 * workers)

    v, s = _scaled_points(z, sigma, dtype)  # once for all sets

    def solve(idx: torch.Tensor, start: int, numpy_ok: bool = True, chunk: int | None = None):
        flat = idx.reshape(-1)
        x = v.index_select(0, flat).unflatten(0, idx.shape)  # v[idx], faster
        h = _scaled_entropies(
            x, s.index_select(0, flat).view(idx.shape), t, numpy_ok=numpy_ok, chunk_entries=chunk
        )
        out[start : start + idx.shape[0]] = h

    def job(idx: torch.Tensor, start: int) -> None:
        torch.set_num_threads(per_worker)  # per thread (OpenMP); MKL's is process-wide
        # torch's eigensolver: numpy's releases the GIL but two at once took 1.1-2x the time of
        # torch's on two workers here (OpenBLAS; the kernels of DSMI-unb at N = 1000 to 4000)
        solve(idx, start, numpy_ok=False, chunk=share)

    pending: list[Any] = []
    start = 0
    with _short_switch_interval() if workers > 1 else contextlib.nullcontext():
        try:
            it = iter(groups)
            for m, n in shapes:
                idx = next(it)
                if tuple(idx.shape) != (m, n):
                    raise AssertionError(f"group of shape {tuple(idx.shape)}, expected {(m, n)}")
                if workers == 1 or n * n > share:
                    for f in pending:  # the workers idle first: the memory bound
                        f.result()
                    pending.clear()
                    torch.set_num_threads(threads)
                    solve(idx, start)
                else:
                    pool = _pool(workers)
                    k = min(m, math.ceil(m * n**3 / target))
                    cuts = [m * j // k for j in range(k + 1)]
                    pending += [
                        pool.submit(job, idx[a:b], start + a) for a, b in zip(cuts, cuts[1:])
                    ]
                start += m
            for f in pending:
                f.result()
        finally:
            if pending:
                wait(pending)  # nothing runs on after an error
                torch.set_num_threads(threads)  # MKL's process-wide count, as it was
    return out


def _diffusion_entropies_sets(
    z: torch.Tensor, sets: list[torch.Tensor], sigma, t: float, dtype: torch.dtype
) -> torch.Tensor:
    """Exact DSE (nats) of the point sets ``z[rows]`` for each ``rows`` in ``sets``: the sets
    grouped by size, the largest first, through :func:`_diffusion_entropies_groups`."""
    groups: dict[int, list[int]] = {}
    for i, rows in enumerate(sets):
        groups.setdefault(int(rows.numel()), []).append(i)
    sizes = sorted(groups, reverse=True)
    members = [i for n in sizes for i in groups[n]]
    h = _diffusion_entropies_groups(
        z,
        [(len(groups[n]), n) for n in sizes],
        (torch.stack([sets[i] for i in groups[n]]) for n in sizes),
        sigma,
        t,
        dtype,
    )
    out = torch.empty_like(h)
    out[torch.tensor(members, device=h.device)] = h
    return out


def _top_eigvals(k: torch.Tensor, top_k: int, seed: int) -> torch.Tensor:
    """Leading eigenvalues of the PSD matrix ``k`` by randomised block Krylov iteration.

    Musco & Musco (2015), "Randomized block Krylov methods for stronger and faster
    approximate singular value decomposition": an orthonormal basis ``V`` of
    ``[W, K W, K^2 W, ...]`` (random start block ``W`` of ``b`` columns, about
    ``2 top_k`` columns in all, each block orthogonalised twice against the previous
    ones), then Rayleigh-Ritz: the ``top_k`` largest eigenvalues of ``V' K V``. Cost
    about ``2 top_k`` matrix-vector products with ``k``.
    """
    n = k.shape[-1]
    b = min(max(16, top_k // 4), 128)
    steps = max(2, math.ceil(2 * top_k / b))
    gen = torch.Generator(device=k.device).manual_seed(seed)
    q = torch.randn(n, b, generator=gen, dtype=k.dtype, device=k.device)
    q = torch.linalg.qr(q).Q
    basis, images = [q], []
    for step in range(steps):
        y = k @ basis[-1]
        images.append(y)
        if step == steps - 1 or sum(v.shape[1] for v in basis) + b > n:
            break
        v = torch.cat(basis, dim=1)
        for _ in range(2):
            y = y - v @ (v.mT @ y)
        q = torch.linalg.qr(y).Q
        q = torch.linalg.qr(q - v @ (v.mT @ q)).Q  # stays orthogonal even if y ~ 0
        basis.append(q)
    v = torch.cat(basis, dim=1)
    w = torch.cat(images, dim=1)
    h = v.mT @ w
    lam = torch.linalg.eigvalsh((h + h.mT) * 0.5)
    return lam.flip(-1)[:top_k].to(torch.float64).clamp_(min=0)


def _geometric_tail(n_tail: int, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """``n_tail`` eigenvalues ``a r^j`` (``j = 0..n_tail-1``) with sum ``t1`` and squared sum ``t2``.

    ``sum r^2j / (sum r^j)^2`` falls from 1 (``r -> 0``) to ``1 / n_tail`` (``r = 1``);
    ``r`` is found by bisection (60 halvings, on the device, no host sync).
    """
    tiny = torch.finfo(torch.float64).tiny
    j = torch.arange(n_tail, dtype=torch.float64, device=t1.device)
    target = (t2 / (t1 * t1).clamp(min=tiny)).clamp(min=1.0 / n_tail, max=1.0)
    lo, hi = torch.zeros_like(t1), torch.ones_like(t1)
    for _ in range(60):
        r = 0.5 * (lo + hi)
        g = r.pow(j)
        ratio = (g * g).sum() / g.sum() ** 2
        lo = torch.where(ratio > target, r, lo)
        hi = torch.where(ratio > target, hi, r)
    g = (0.5 * (lo + hi)).pow(j)
    return t1 * g / g.sum()


def _topk_entropy_nats(z: torch.Tensor, sigma, t: float, dtype: torch.dtype, top_k: int, seed: int):
    """DSE from the leading eigenvalues plus a two-moment model of the rest.

    The kernel is PSD, so ``tr K = sum lambda`` and ``|K|_F^2 = sum lambda^2`` are exact
    and cheap. The ``n - top_k`` eigenvalues below the computed ones (sum ``T1``, sum of
    squares ``T2``) are modelled as a geometric sequence with that sum and sum of
    squares: exact for a flat tail and for an exponentially decaying one (a Gaussian
    kernel on a smooth manifold), approximate otherwise.
    """
    n = z.shape[0]
    k = _normalized_kernel(z.unsqueeze(0), sigma, dtype)[0]
    if top_k >= n - 1:
        lam = torch.linalg.eigvalsh(k)
        return _spectral_entropy_nats(lam, t)
    s1 = k.diagonal().sum().to(torch.float64)
    s2 = torch.linalg.vector_norm(k).to(torch.float64) ** 2
    lam = _top_eigvals(k, top_k, seed)
    del k
    t1 = (s1 - lam.sum()).clamp(min=0)
    t2 = (s2 - (lam * lam).sum()).clamp(min=0)
    tail = _geometric_tail(n - top_k, t1, t2)
    tail = torch.where((t1 > 0) & (t2 > 0), tail, torch.zeros_like(tail))
    return _spectral_entropy_nats(torch.cat([lam, tail]), t)


def _median_distance(z: torch.Tensor) -> torch.Tensor:
    """Median of the pairwise Euclidean distances between the rows of ``z`` (i < j)."""
    x = z.to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    sq = (x * x).sum(dim=1)
    d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (x @ x.T)).clamp_(min=0)
    i, j = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
    d = d2[i, j].sqrt_().sort().values
    m = d.numel()
    return 0.5 * (d[(m - 1) // 2] + d[m // 2])


# --------------------------------------------------------------------------- sigma


def median_sigma(z: ArrayLike, *, max_n: int | None = 1000, seed: int = 0) -> torch.Tensor:
    """Data-driven kernel width: the median pairwise Euclidean distance of the rows of ``z``.

    ``sigma = median_{i<j} |z_i - z_j|`` (the "median heuristic"; Schoelkopf & Smola 2002,
    Gretton et al. 2012), so that a typical pair gets kernel weight
    ``exp(-1/2)`` in the diffusion kernel ``exp(-|z_i - z_j|^2 / (2 sigma^2))``.

    dse-dsmi's fixed default ``sigma = 10`` is scale-blind: on data in ``[0, 1]`` every
    weight is close to 1, the kernel is nearly rank one and every eigenvalue but the
    first collapses, while on pixel values in ``[0, 255]`` the kernel is nearly the
    identity and the entropy saturates at ``log n``. The median follows the data's scale
    (it is equivariant: ``median_sigma(c * z) == c * median_sigma(z)``). The DSE and
    DSMI functions accept ``sigma="median"``; for a series over training, fixing sigma
    once (e.g. from the first epoch) keeps the values comparable across epochs.

    Args:
        z: samples, ``(n,)`` or ``(n, d)``, ``n >= 2``.
        max_n: use at most this many rows, drawn with ``random.Random(seed).sample``
            (the median of ``max_n * (max_n - 1) / 2`` pairs; ``None`` uses all rows,
            which costs O(n^2) memory).
        seed: seed of the row subsample.

    Returns:
        0-d float64 tensor on ``z``'s device.

    >>> import torch
    >>> z = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    >>> float(median_sigma(z))
    5.0
    """
    z = as_samples(z, name="z", min_n=2)
    max_n = _check_max_n(max_n)
    seed = check_int(seed, name="seed", minimum=0)
    n = z.shape[0]
    if max_n is not None and n > max_n:
        z = z[_index(_sample_rows(n, max_n, seed), z.device)]
    return _median_distance(z)


def _resolve_sigma(sigma, z: torch.Tensor, seed: int):
    if isinstance(sigma, str):  # "median"
        s = _median_distance(
            z if z.shape[0] <= 1000 else z[_index(_sample_rows(z.shape[0], 1000, 0), z.device)]
        )
        # identical points: fall back to an arbitrary positive width (the kernel is all ones)
        return torch.where(s > 0, s, torch.ones_like(s))
    return sigma


def diffusion_spectral_entropy(
    z: ArrayLike,
    *,
    sigma: float | str | torch.Tensor = 10.0,
    t: float = 1,
    max_n: int | None = 10000,
    seed: int = 0,
    base: float = math.e,
    dtype: torch.dtype = torch.float64,
    top_k: int | None = None,
) -> torch.Tensor:
    """Diffusion spectral entropy (DSE) of a set of representations.

    Liao, Liu et al., "Assessing Neural Network Representations During Training Using
    Noise-Resilient Diffusion Spectral Entropy" (2023); reference code ``dse-dsmi`` 1.1.
    With ``G_ij = exp(-|z_i - z_j|^2 / (2 sigma^2))``, ``Deg = diag(rowsum G)`` and the
    diffusion matrix ``P = Deg^-1 G`` (eigenvalues ``lambda_i``, computed from the
    symmetric ``Deg^-1/2 G Deg^-1/2``)::

        p_i = |lambda_i|^t / sum_j |lambda_j|^t + 2.22e-16,   DSE = -sum_i p_i log p_i

    (the ``+ 2.22e-16`` is dse-dsmi's). With ``base=2`` this equals
    ``dse_dsmi.diffusion_spectral_entropy(z, gaussian_kernel_sigma=sigma, t=t,
    max_N=max_n, random_seed=seed)`` to rounding (below 1e-12 bits in float64), including
    its subsample ``random.seed(seed); random.sample(range(n), max_n)`` when
    ``n > max_n``. (dse-dsmi computes in the input's precision: compare with float64
    input.)

    What it measures: the effective number of diffusion modes of the data graph, in
    ``[0, log n]``. It rises with the intrinsic dimension of the point cloud and is
    robust to small ambient noise (the paper's claims; see the tests). It depends
    strongly on ``sigma`` relative to the data's scale: the default 10 (dse-dsmi's) is
    meaningful for representations whose pairwise distances are of order 10; use
    ``sigma="median"`` (:func:`median_sigma`) for a scale-free choice. It is not a
    Shannon entropy of the data distribution, and values at different ``n`` are not
    comparable (the maximum is ``log n``).

    Cost: O(n^2 d) for the kernel, O(n^3) for the dense eigensolver; memory two
    ``n x n`` buffers of ``dtype`` (the kernel, built in place, and the eigensolver's
    working copy), hence ``max_n``.

    Faster modes (errors against the float64 exact value, measured with
    ``benchmarks/spectral.py`` and the tests):

    * ``dtype=torch.float32``: kernel and eigensolver in float32: 1.6x less CPU time at
      n = 4000 (single thread), half the memory; error 1e-8 to 1e-6 bits on blobs, MLP
      features and digits, up to 1.3e-4 bits when many eigenvalues are tiny (points on
      a 2-sphere).
    * ``top_k=k``: only the ``k`` leading eigenvalues (randomised block Krylov, about
      ``2k`` products with the kernel: O(n^2 k)); the other ``n - k`` are modelled as
      a geometric sequence matching the exact traces ``tr K = sum lambda`` and ``|K|_F^2 = sum lambda^2``. Measured at
      n = 2000 on seven data sets (Gaussian, blobs, uniform, digits pixels, MLP features
      on digits, a 2-sphere in 128-D) with ``sigma=10`` and ``"median"``: error below
      0.01 bits for ``k = 200`` in all of them (1e-12 to 1e-5 bits for the sphere,
      whose spectrum decays fast), but up to 0.37 bits when ``k`` is below the number of
      directions the data fills (Gaussian data in 128-D with ``k = 50`` or 100). Pick
      ``k`` above the representation's effective rank. At n = 4000 (10 blobs in
      128-D, ``k = 400``): 0.04 bits low, 1.9x less CPU time than exact; the gain
      grows as ``n / k``.

    Args:
        z: representations, ``(n,)`` or ``(n, d)``, ``n >= 2``.
        sigma: kernel width (> 0), ``"median"`` (median pairwise distance of the rows
            used, at most 1000 of them), or a one-element tensor (e.g. from
            :func:`median_sigma`). Default 10 (dse-dsmi's).
        t: diffusion time; the eigenvalues are raised to ``t``. Default 1 (dse-dsmi's).
        max_n: subsample to this many rows if ``n > max_n`` (dse-dsmi's rule);
            ``None`` never subsamples. Default 10000 (dse-dsmi's).
        seed: seed of the subsample (and of ``top_k``'s random start).
        base: logarithm base of the result (``math.e``: nats, 2: bits).
        dtype: precision of the kernel and the eigensolver (the entropy is always
            summed in float64).
        top_k: use the leading-eigenvalue approximation with this many eigenvalues.

    Returns:
        0-d float64 tensor on ``z``'s device.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> z = torch.randn(200, 16, generator=g, dtype=torch.float64)
    >>> h = diffusion_spectral_entropy(z, sigma="median", base=2)
    >>> 0 < float(h) < math.log2(200)
    True
    """
    z = as_samples(z, name="z", min_n=2)
    sigma = _check_sigma(sigma, z.device)
    t = check_float(t, name="t", positive=True)
    max_n = _check_max_n(max_n)
    seed = check_int(seed, name="seed", minimum=0)
    base = check_base(base)
    dtype = _check_dtype(dtype)
    if top_k is not None:
        top_k = check_int(top_k, name="top_k", minimum=1)

    n = z.shape[0]
    if max_n is not None and n > max_n:
        z = z[_index(_sample_rows(n, max_n, seed), z.device)]
    sigma = _resolve_sigma(sigma, z, seed)
    if top_k is None:
        h = _diffusion_entropies(z.unsqueeze(0), sigma, t, dtype)[0]
    else:
        h = _topk_entropy_nats(z, sigma, t, dtype, top_k, seed)
    return to_base(h, base)
