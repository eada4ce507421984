"""Exact nearest-neighbour kernels for the k-NN estimators (private).

Every function here returns the same numbers whichever backend computes them:

- ``"kdtree"`` (CPU): scipy's ``cKDTree`` for k-th neighbour distances; for radius
  counts an exact sort-based count in 1 dimension and scikit-learn's ``KDTree``
  (count-only queries, whole nodes counted by their bounds) above. Fast in low
  dimensions.
- ``"scipy"`` (CPU): chunked brute force with scipy's compiled ``cdist`` (it releases
  the GIL, so the row ranges of ``workers`` threads run in parallel).
- ``"torch"``: chunked brute force with ``torch.cdist`` on the tensor's own device
  (the GPU path; it also runs on the CPU, which is how the tests check it).

Exactness: distances are float64. A max-norm (Chebyshev) distance is
``max_f |a_f - b_f|``: one rounded subtraction per coordinate, then exact ``abs`` and
``max``, so every backend produces bit-identical distances, hence identical k-th
neighbour radii and identical strict ``<`` counts. (Euclidean distances are summed
in different orders by different backends and agree to ~1e-16 relative, which is all
the entropy estimators need.)

Memory: brute force holds four ``chunk x n`` blocks per worker (never an ``n x n``
matrix unless ``chunk >= n``); the trees hold O(n d).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

BACKENDS = ("auto", "kdtree", "brute", "torch")

# The CPU "auto" backend uses the trees up to kdtree_max_dim(n) dimensions (of the
# space the k-th neighbours are searched in) and brute force above. Tree cost grows
# like n^(1 + a(d)), brute force like n^2 d, so the crossover moves up with n; measured
# (CPU seconds, benchmarks/mi.py cells and a sweep of d = 3..8 per side on a 2-core
# machine): ~8-10 joint dimensions at n = 2000, ~10-11 at n = 5000, > 12 at n = 20000.


def kdtree_max_dim(n: int) -> int:
    return 8 if n < 4000 else (10 if n < 10000 else 12)


# Elements per distance block (rows = budget // n). CPU: 8 MiB float64 blocks, a few
# per worker stay in L3 (32 MiB blocks were up to 2x slower at n = 20000).
# Accelerators: 512 MiB blocks, many rows per kernel launch.
_CPU_BLOCK_ELEMENTS = 1 << 20
# Tree queries are O(n log n): below this many rows per thread, threads cost more
# than they save.
_TREE_MIN_ROWS = 5000
_DEVICE_BLOCK_ELEMENTS = 1 << 26


def resolve_backend(backend: str, device: torch.device, dim: int, n: int) -> str:
    """Map a user-facing backend name to the kernel that runs: kdtree, scipy or torch."""
    if backend == "auto":
        if device.type != "cpu":
            return "torch"
        return "kdtree" if dim <= kdtree_max_dim(n) else "scipy"
    if backend == "brute":
        return "scipy" if device.type == "cpu" else "torch"
    return backend  # "kdtree" or "torch"


def default_chunk(n: int, device: torch.device) -> int:
    budget = _CPU_BLOCK_ELEMENTS if device.type == "cpu" else _DEVICE_BLOCK_ELEMENTS
    return max(16, min(n, budget // max(n, 1)))


def default_workers() -> int:
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float64).numpy())


def _in_row_ranges(
    n: int, workers: int, body: Callable[[int, int], None], min_rows: int = 64
) -> None:
    """Run ``body(start, stop)`` on up to ``workers`` contiguous row ranges of at least
    ``min_rows`` rows each (threads; starting them is not free on a busy machine)."""
    workers = max(1, min(workers, n // min_rows))
    if workers == 1:
        body(0, n)
        return
    bounds = [round(i * n / workers) for i in range(workers + 1)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(body, bounds[i], bounds[i + 1]) for i in range(workers)]
        for f in futures:
            f.result()


def _torch_cdist(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "chebyshev":
        return torch.cdist(a, b, p=math.inf)
    # never the matmul shortcut: it loses all precision for near-duplicate points
    return torch.cdist(a, b, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")


# ------------------------------------------------------------ exact counts in 1-D


def _first_true(n: int, pred: Callable[[np.ndarray], np.ndarray], m: int) -> np.ndarray:
    """Vectorised binary search: for each of m queries the first index in [0, n] at
    which the (monotone False..True) predicate holds; ``pred(idx)`` takes one index
    per query."""
    lo = np.zeros(m, dtype=np.int64)
    hi = np.full(m, n, dtype=np.int64)
    active = lo < hi
    while active.any():
        mid = (lo + hi) // 2
        p = pred(np.minimum(mid, n - 1))
        hi = np.where(active & p, mid, hi)
        lo = np.where(active & ~p, mid + 1, lo)
        active = lo < hi
    return lo


def _window(s: np.ndarray, v: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted values ``s`` and queries (v_i, r_i): the index range [left, right) of
    the j with ``|fl(v_i - s_j)| < r_i``, under the same float64 rounding as cdist.

    ``fl(s_j - v_i)`` is non-decreasing in ``s_j`` and ``fl(v_i - s_j) = -fl(s_j - v_i)``,
    so these j form one contiguous run of the sorted order; a binary search on the
    exact predicate finds its ends.
    """
    n = s.shape[0]
    right = _first_true(n, lambda m: (s[m] - v) >= r, v.shape[0])
    left = _first_true(n, lambda m: (v - s[m]) < r, v.shape[0])
    return left, np.maximum(right, left)


def _count_1d(v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Exact ``#{j != i: |v_j - v_i| < r_i}`` in O(n log n)."""
    left, right = _window(np.sort(v), v, r)
    return right - left - (r > 0)


# --------------------------------------------------------------------------- k-NN


def knn_distances(
    z: torch.Tensor,
    k: int,
    *,
    metric: str = "chebyshev",
    backend: str = "auto",
    chunk_size: int | None = None,
    workers: int | None = None,
) -> torch.Tensor:
    """Distances from each row of ``z`` (n, d) to its 1st..k-th nearest other row.

    Returns an ``(n, k)`` float64 tensor on ``z``'s device, ascending along dim 1. The
    point itself is excluded; exact duplicates count as neighbours at distance 0.
    ``metric``: "chebyshev" (max-norm) or "euclidean". Requires ``k < n``.
    """
    n, d = z.shape
    device = z.device
    kind = resolve_backend(backend, device, d, n)
    workers = workers or default_workers()
    if kind == "kdtree":
        from scipy.spatial import cKDTree

        zn = _to_numpy(z)
        p = math.inf if metric == "chebyshev" else 2.0
        w = workers if n >= 2 * _TREE_MIN_ROWS else 1
        dist, _ = cKDTree(zn).query(zn, k=k + 1, p=p, workers=w)
        dist = np.asarray(dist).reshape(n, k + 1)
        return torch.from_numpy(np.ascontiguousarray(dist[:, 1:])).to(device)
    if kind == "scipy":
        from scipy.spatial.distance import cdist

        zn = _to_numpy(z)
        out = np.empty((n, k), dtype=np.float64)
        chunk = chunk_size or default_chunk(n, device)
        sm = "chebyshev" if metric == "chebyshev" else "euclidean"

        def body(r0: int, r1: int) -> None:
            buf = np.empty((min(chunk, r1 - r0), n))
            for s in range(r0, r1, chunk):
                e = min(s + chunk, r1)
                D = buf[: e - s]
                cdist(zn[s:e], zn, sm, out=D)
                D.partition(k, axis=1)  # columns 0..k: the k + 1 smallest (self included)
                part = np.sort(D[:, : k + 1], axis=1)
                out[s:e] = part[:, 1:]

        _in_row_ranges(n, workers, body)
        return torch.from_numpy(out).to(device)
    z = z.to(torch.float64)
    chunk = chunk_size or default_chunk(n, device)
    parts = []
    for s in range(0, n, chunk):
        D = _torch_cdist(z[s : s + chunk], z, metric)
        parts.append(torch.topk(D, k + 1, dim=1, largest=False, sorted=True).values[:, 1:])
    return torch.cat(parts, dim=0)


# ------------------------------------------------------------------- radius counts


def count_within(
    z: torch.Tensor,
    radius: torch.Tensor,
    *,
    backend: str = "auto",
    chunk_size: int | None = None,
    workers: int | None = None,
) -> torch.Tensor:
    """``#{j != i : max_f |z_jf - z_if| < radius_i}`` for every row i (max-norm).

    ``radius`` is an (n,) float64 tensor. Returns int64 counts on ``z``'s device. A row
    with ``radius_i == 0`` counts 0 (nothing is strictly closer than 0).
    """
    n, d = z.shape
    device = z.device
    kind = resolve_backend(backend, device, d, n)
    workers = workers or default_workers()
    if kind == "kdtree":
        zn = _to_numpy(z)
        r = _to_numpy(radius)
        if d == 1:
            return torch.from_numpy(_count_1d(zn[:, 0], r)).to(device)
        from sklearn.neighbors import KDTree

        # sklearn's count-only query adds whole nodes by their bounds: faster than
        # cKDTree(return_length=True) here. "d <= nextafter(r, 0)" is "d < r" exactly.
        tree = KDTree(zn, leaf_size=20, metric="chebyshev")
        r_le = np.nextafter(r, 0.0)
        out = np.empty(n, dtype=np.int64)

        def body(r0: int, r1: int) -> None:
            cnt = tree.query_radius(zn[r0:r1], r_le[r0:r1], count_only=True)
            out[r0:r1] = np.where(r[r0:r1] > 0, cnt - 1, 0)

        _in_row_ranges(n, workers, body, min_rows=_TREE_MIN_ROWS)
        return torch.from_numpy(out).to(device)
    if kind == "scipy":
        from scipy.spatial.distance import cdist

        zn = _to_numpy(z)
        r = _to_numpy(radius)
        out = np.empty(n, dtype=np.int64)
        chunk = chunk_size or default_chunk(n, device)

        def body(r0: int, r1: int) -> None:
            m = min(chunk, r1 - r0)
            buf, lt = np.empty((m, n)), np.empty((m, n), dtype=bool)
            for s in range(r0, r1, chunk):
                e = min(s + chunk, r1)
                D, L = buf[: e - s], lt[: e - s]
                cdist(zn[s:e], zn, "chebyshev", out=D)
                rr = r[s:e]
                np.less(D, rr[:, None], out=L)
                out[s:e] = np.count_nonzero(L, axis=1) - (rr > 0)

        _in_row_ranges(n, workers, body)
        return torch.from_numpy(out).to(device)
    z = z.to(torch.float64)
    radius = radius.to(device=device, dtype=torch.float64)
    chunk = chunk_size or default_chunk(n, device)
    parts = []
    for s in range(0, n, chunk):
        D = torch.cdist(z[s : s + chunk], z, p=math.inf)
        rr = radius[s : s + chunk]
        parts.append((D < rr[:, None]).sum(dim=1) - (rr > 0).to(torch.int64))
    return torch.cat(parts, dim=0)


# ------------------------------------------------------------------------- KSG


def ksg_counts(
    x: torch.Tensor,
    y: torch.Tensor,
    k: int,
    *,
    backend: str = "auto",
    chunk_size: int | None = None,
    workers: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbour counts of KSG algorithm 1 (max-norm) for float64 ``x`` (n, dx), ``y`` (n, dy).

    eps_i is the distance from (x_i, y_i) to its k-th nearest other point in the joint
    space under ``max(|x - x'|_inf, |y - y'|_inf)``; returns
    ``n_x(i) = #{j != i: |x_j - x_i|_inf < eps_i}`` and ``n_y(i)`` likewise (int64, on
    the inputs' device). Brute force computes each marginal block once per chunk and
    takes the joint distance as their maximum.
    """
    n = x.shape[0]
    device = x.device
    kind = resolve_backend(backend, device, x.shape[1] + y.shape[1], n)
    workers = workers or default_workers()
    if kind == "kdtree":
        from scipy.spatial import cKDTree

        xn, yn = _to_numpy(x), _to_numpy(y)
        z = np.hstack([xn, yn])
        w = workers if n >= 2 * _TREE_MIN_ROWS else 1
        eps = cKDTree(z).query(z, k=[k + 1], p=math.inf, workers=w)[0][:, 0]
        eps_t = torch.from_numpy(np.ascontiguousarray(eps))
        nx = count_within(torch.from_numpy(xn), eps_t, backend="kdtree", workers=workers)
        ny = count_within(torch.from_numpy(yn), eps_t, backend="kdtree", workers=workers)
        return nx.to(device), ny.to(device)
    if kind == "scipy":
        from scipy.spatial.distance import cdist

        xn, yn = _to_numpy(x), _to_numpy(y)
        nx = np.empty(n, dtype=np.int64)
        ny = np.empty(n, dtype=np.int64)
        chunk = chunk_size or default_chunk(n, device)

        def body(r0: int, r1: int) -> None:
            m = min(chunk, r1 - r0)
            bx, by, bj = np.empty((m, n)), np.empty((m, n)), np.empty((m, n))
            lt = np.empty((m, n), dtype=bool)
            for s in range(r0, r1, chunk):
                e = min(s + chunk, r1)
                dx, dy, joint, L = bx[: e - s], by[: e - s], bj[: e - s], lt[: e - s]
                cdist(xn[s:e], xn, "chebyshev", out=dx)
                cdist(yn[s:e], yn, "chebyshev", out=dy)
                np.maximum(dx, dy, out=joint)
                joint.partition(k, axis=1)  # column k: k-th neighbour (column 0 is self)
                eps = joint[:, k].copy()
                self_hit = eps > 0
                np.less(dx, eps[:, None], out=L)
                nx[s:e] = np.count_nonzero(L, axis=1) - self_hit
                np.less(dy, eps[:, None], out=L)
                ny[s:e] = np.count_nonzero(L, axis=1) - self_hit

        _in_row_ranges(n, workers, body)
        return torch.from_numpy(nx).to(device), torch.from_numpy(ny).to(device)
    x = x.to(torch.float64)
    y = y.to(torch.float64)
    chunk = chunk_size or default_chunk(n, device)
    nxs, nys = [], []
    for s in range(0, n, chunk):
        dx = torch.cdist(x[s : s + chunk], x, p=math.inf)
        dy = torch.cdist(y[s : s + chunk], y, p=math.inf)
        eps = torch.maximum(dx, dy).kthvalue(k + 1, dim=1).values
        self_hit = (eps > 0).to(torch.int64)
        nxs.append((dx < eps[:, None]).sum(dim=1) - self_hit)
        nys.append((dy < eps[:, None]).sum(dim=1) - self_hit)
    return torch.cat(nxs), torch.cat(nys)
