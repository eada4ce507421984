"""Spectral diagnostics of representations.

Diffusion spectral entropy and mutual information (DSE, DSMI; Liao, Liu et al. 2023),
effective rank (Roy & Vetterli 2007; RankMe, Garrido et al. 2023), von Neumann entropy
of the trace-normalised covariance, and alpha-ReQ (Agrawal et al. 2022), the power-law
decay of the PCA eigenspectrum.

All functions take ``z`` of shape ``(n,)`` or ``(n, d)`` (torch tensor or numpy array),
compute on ``z``'s device and return 0-d tensors there. DSE and DSMI reproduce the
official implementation (``dse-dsmi`` 1.1, which reports bits) exactly in float64 when
called with ``base=2``; the default unit here is nats.

The diffusion quantities need the whole ``n x n`` kernel and a dense symmetric
eigensolver (O(n^2) memory, O(n^3) time). The kernel is built in place, straight in its
symmetric normalised form ``Deg^-1/2 G Deg^-1/2`` (no diagonal matrices, no distance
matrix), so the peak is two ``n x n`` buffers: the kernel and the eigensolver's working
copy (``torch.linalg.eigvalsh`` always copies its input). ``max_n`` bounds ``n``.
"""

from __future__ import annotations

import math
import numbers
import random
from typing import Any

import numpy as np
import torch

from diagnostics._validate import (
    ArrayLike,
    as_labels,
    as_samples,
    as_tensor,
    check_base,
    check_choice,
    check_finite,
    check_float,
    check_int,
    check_same_n,
    is_integer_dtype,
    to_base,
)

__all__ = [
    "diffusion_spectral_entropy",
    "diffusion_spectral_mutual_information",
    "cluster_reference",
    "median_sigma",
    "effective_rank",
    "von_neumann_entropy",
    "alpha_req",
]

# dse-dsmi adds numpy's float64 machine epsilon to every probability before the log.
_P_EPS = float(np.finfo(np.float64).eps)
# A batch of kernels is processed in chunks of at most this many matrix entries
# (2**24 float64 entries = 128 MiB, plus the eigensolver's copy), or one matrix if larger.
_CHUNK_ENTRIES = 1 << 24
_DTYPES = (torch.float64, torch.float32)


# --------------------------------------------------------------------------- helpers


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


def _normalized_kernel(z: torch.Tensor, sigma: float | torch.Tensor, dtype: torch.dtype):
    """Symmetric normalised Gaussian kernel ``Deg^-1/2 G Deg^-1/2``, built in place.

    ``z``: ``(..., n, d)``. ``G_ij = exp(-|z_i - z_j|^2 / (2 sigma^2))`` (dse-dsmi's
    constant factor ``1 / (sigma sqrt(2 pi))`` cancels in the normalisation),
    ``Deg = rowsum(G)``. The result has the eigenvalues of the row-stochastic diffusion
    matrix ``Deg^-1 G``. Only one ``n x n`` buffer is allocated (the Gram matrix, which
    is turned into the kernel in place); ``z`` is centred first (distances do not
    change), which keeps the Gram-matrix form of the squared distances accurate.
    """
    z = z.to(torch.float64)
    z = z - z.mean(dim=-2, keepdim=True)
    # u = z / (sqrt(2) sigma), so that the exponent -|u_i - u_j|^2 = 2 <u_i, u_j> - |u_i|^2 - |u_j|^2
    if isinstance(sigma, torch.Tensor):
        u = (z * torch.rsqrt(2 * sigma**2)).to(dtype)
    else:
        u = (z / (math.sqrt(2) * sigma)).to(dtype)
    sq = (u * u).sum(dim=-1)
    k = torch.baddbmm(-sq.unsqueeze(-2), u, u.mT, alpha=2)  # the one n x n buffer
    k.sub_(sq.unsqueeze(-1)).clamp_(max=0)  # clamped: rounding can make it > 0
    k.exp_()
    k.diagonal(dim1=-2, dim2=-1).fill_(1.0)
    d = k.sum(dim=-1).rsqrt_()
    k.mul_(d.unsqueeze(-1)).mul_(d.unsqueeze(-2))
    return k


def _spectral_entropy_nats(eigvals: torch.Tensor, t: float) -> torch.Tensor:
    """dse-dsmi's entropy of ``|lambda|^t``: ``p = |l|^t / sum |l|^t + eps``, ``-sum p ln p``."""
    lam = eigvals.to(torch.float64).abs()
    if t != 1.0:
        lam = lam.pow(t)
    p = lam / lam.sum(dim=-1, keepdim=True) + _P_EPS
    return -(p * p.log()).sum(dim=-1)


def _diffusion_entropies(z: torch.Tensor, sigma, t: float, dtype: torch.dtype) -> torch.Tensor:
    """Exact DSE (nats) of each point set in ``z`` of shape ``(b, n, d)``; returns ``(b,)``."""
    b, n = z.shape[0], z.shape[1]
    chunk = max(1, _CHUNK_ENTRIES // (n * n))
    out = []
    for start in range(0, b, chunk):
        k = _normalized_kernel(z[start : start + chunk], sigma, dtype)
        lam = torch.linalg.eigvalsh(k)
        del k
        out.append(_spectral_entropy_nats(lam, t))
    return torch.cat(out)


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


# --------------------------------------------------------------------------- DSE


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


# --------------------------------------------------------------------------- DSMI


def cluster_reference(
    reference: ArrayLike,
    *,
    n_clusters: int = 10,
    seed: int = 0,
) -> torch.Tensor:
    """Discretise a reference variable into clusters for DSMI, as dse-dsmi 1.1 does.

    * integer (or bool) ``(n,)`` / ``(n, 1)``: the values are the labels;
    * float ``(n,)`` / ``(n, 1)``: min-max scaled to ``[0, 1]`` and binned with
      ``numpy.digitize`` on ``linspace(0, 1, n_clusters + 1)[:-1]`` (labels
      ``1..n_clusters``; the maximum falls in the last bin);
    * ``(n, d)`` with ``d > 1`` (any dtype): scikit-learn's
      ``SpectralClustering(n_clusters, affinity="nearest_neighbors",
      assign_labels="cluster_qr", random_state=seed)`` on the CPU.

    Spectral clustering costs far more than a DSMI evaluation: a training run should
    cluster its fixed inputs once and pass the result as
    ``diffusion_spectral_mutual_information(z, clusters=labels)`` at every epoch (as the
    DSMI paper's training studies do).

    Returns:
        ``(n,)`` int64 tensor of labels on ``reference``'s device (CPU for numpy input).

    >>> import torch
    >>> cluster_reference(torch.tensor([0.0, 0.25, 0.5, 1.0]), n_clusters=2).tolist()
    [1, 1, 2, 2]
    """
    r = as_tensor(reference, name="reference")
    n_clusters = check_int(n_clusters, name="n_clusters", minimum=1)
    seed = check_int(seed, name="seed", minimum=0)
    if r.ndim == 2 and r.shape[1] == 1:
        r = r[:, 0]
    if r.ndim not in (1, 2):
        raise ValueError(
            f"reference: expected shape (n,) or (n, d), got a {r.ndim}-D array of shape {tuple(r.shape)}"
        )
    if r.numel() == 0:
        raise ValueError(f"reference: expected a non-empty array, got shape {tuple(r.shape)}")
    if r.is_complex():
        raise ValueError(f"reference: expected real values, got complex dtype {r.dtype}")
    if r.ndim == 1 and (is_integer_dtype(r) or r.dtype == torch.bool):
        return as_labels(r, name="reference")
    check_finite(r, name="reference")
    if r.ndim == 1:
        lo, hi = r.min(), r.max()
        if not bool(hi > lo):
            raise ValueError(
                "reference: expected a continuous reference with at least two distinct "
                f"values to bin, got a constant ({float(lo)})"
            )
        # dse-dsmi's arithmetic, in the reference's own precision
        scaled = ((r - lo) / (hi - lo)).to(torch.float64)
        edges = torch.as_tensor(np.linspace(0, 1, n_clusters + 1)[:-1], device=r.device)
        return torch.bucketize(scaled, edges, right=True)  # == numpy.digitize(scaled, edges)
    from sklearn.cluster import SpectralClustering

    op = SpectralClustering(
        n_clusters=n_clusters,
        affinity="nearest_neighbors",
        assign_labels="cluster_qr",
        random_state=seed,
    ).fit(r.cpu().numpy())
    return torch.as_tensor(np.asarray(op.labels_, dtype=np.int64), device=r.device)


def diffusion_spectral_mutual_information(
    z: ArrayLike,
    reference: ArrayLike | None = None,
    *,
    sigma: float | str | torch.Tensor = 10.0,
    t: float = 1,
    n_clusters: int = 10,
    repetitions: int = 5,
    clusters: ArrayLike | None = None,
    seed: int = 0,
    base: float = math.e,
    max_n: int | None = 10000,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Diffusion spectral mutual information (DSMI) between representations and a reference.

    Liao, Liu et al. (2023), reference code ``dse-dsmi`` 1.1. The reference ``Y`` is
    discretised into clusters ``c`` (:func:`cluster_reference`: labels as given, a
    continuous scalar binned, a vector spectrally clustered); then::

        DSMI = sum_c (n_c / n) [ mean_{r=1..R} DSE(Z_{S_r}) - DSE(Z_c) ]

    where ``Z_c`` are the ``n_c`` points of cluster ``c`` and ``S_1..S_R`` are random
    subsets of ``n_c`` of all ``n`` points (drawn with ``random.Random(seed)`` re-seeded
    for every cluster, ``R = repetitions``), so both entropies are taken at the same
    sample size. With ``base=2`` and default ``seed`` this equals
    ``dse_dsmi.diffusion_spectral_mutual_information(z, reference, ...)[0]`` to
    rounding. Per-cluster point sets larger than ``max_n`` are subsampled as DSE does
    (dse-dsmi always uses seed 0 for that inner subsample and for the spectral
    clustering; here ``seed`` drives every draw, which coincides for ``seed=0``).

    It is an information-like score in ``[-log n, log n]``, not a Shannon mutual
    information: it is positive when points of the same cluster sit on a
    lower-dimensional part of the representation than random points do. Negative
    values occur (small samples, uninformative reference). All evaluations of one size
    are batched through one batched eigensolver; a cluster's ``n_c x n_c`` kernels take
    ``O(n_c^2)`` memory each (chunked at 2**24 entries).

    Args:
        z: representations, ``(n,)`` or ``(n, d)``, ``n >= 2``.
        reference: ``(n,)`` integer labels, ``(n,)`` continuous values or ``(n, d')``
            vectors (e.g. the inputs). Ignored when ``clusters`` is given (then it may
            be ``None``).
        sigma, t, base, dtype: as in :func:`diffusion_spectral_entropy`
            (``sigma="median"`` is computed once, on ``z`` (at most 1000 rows), and used for every
            cluster and subset).
        n_clusters: clusters for a continuous ``reference``. Default 10 (dse-dsmi's).
        repetitions: random subsets per cluster. Default 5 (dse-dsmi's).
        clusters: precomputed ``(n,)`` integer cluster labels (e.g. from
            :func:`cluster_reference`), to cluster a fixed reference only once.
        seed: seed of the random subsets (and of the clustering).
        max_n: per-evaluation subsample size, as in DSE. Default 10000.

    Returns:
        0-d float64 tensor on ``z``'s device. (Reads the cluster sizes on the host: one
        device sync.)

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.arange(300) % 3
    >>> z = 3.0 * y[:, None] + torch.randn(300, 8, generator=g, dtype=torch.float64)
    >>> float(diffusion_spectral_mutual_information(z, y, sigma="median")) > 0
    True
    """
    z = as_samples(z, name="z", min_n=2)
    sigma = _check_sigma(sigma, z.device)
    t = check_float(t, name="t", positive=True)
    n_clusters = check_int(n_clusters, name="n_clusters", minimum=1)
    repetitions = check_int(repetitions, name="repetitions", minimum=1)
    seed = check_int(seed, name="seed", minimum=0)
    base = check_base(base)
    max_n = _check_max_n(max_n)
    dtype = _check_dtype(dtype)
    n = z.shape[0]

    if clusters is not None:
        labels = as_labels(clusters, name="clusters", device=z.device)
        check_same_n(z=z, clusters=labels)
    else:
        if reference is None:
            raise ValueError(
                "reference: expected the reference variable (labels, values or vectors), "
                "got None; pass reference or clusters="
            )
        ref = as_tensor(reference, name="reference")
        if ref.ndim >= 1:
            check_same_n(z=z, reference=ref)
        labels = cluster_reference(ref, n_clusters=n_clusters, seed=seed).to(z.device)

    sigma = _resolve_sigma(sigma, z, seed)
    uniq, counts = torch.unique(labels, sorted=True, return_counts=True)
    sizes = counts.tolist()  # host sync: sizes drive the sampling
    order = torch.argsort(labels, stable=True)  # cluster members in their original order

    # Every DSE evaluation, grouped by matrix size: the conditional DSE of each cluster
    # (key: cluster index) and the random subsets (key: -1 - cluster size). dse-dsmi
    # re-seeds before drawing each cluster's subsets, so clusters of equal size get the
    # very same subsets: they are evaluated once per distinct size (exactly the same
    # numbers, and 4x fewer eigensolves for balanced classes).
    groups: dict[int, list[tuple[int, torch.Tensor]]] = {}
    rng = random.Random()
    start = 0
    for ci, n_c in enumerate(sizes):
        rows = order[start : start + n_c]
        start += n_c
        if max_n is not None and n_c > max_n:
            rows = rows[_index(_sample_rows(n_c, max_n, seed), z.device)]
        groups.setdefault(rows.numel(), []).append((ci, rows))
        if n_c in sizes[:ci]:
            continue  # same subsets as an earlier cluster of this size
        rng.seed(seed)
        for _ in range(repetitions):
            picked = rng.sample(range(n), n_c)
            if max_n is not None and n_c > max_n:
                rng.seed(seed)  # dse-dsmi's DSE re-seeds the shared generator
                picked = [picked[i] for i in rng.sample(range(n_c), max_n)]
            groups.setdefault(len(picked), []).append((-1 - n_c, _index(picked, z.device)))

    n_cl = len(sizes)
    h_cond = torch.zeros(n_cl, dtype=torch.float64, device=z.device)
    h_subsets: dict[int, torch.Tensor] = {}  # cluster size -> summed DSE of its subsets
    for jobs in groups.values():
        idx = torch.stack([rows for _, rows in jobs])
        h = _diffusion_entropies(z[idx], sigma, t, dtype)
        for j, (key, _) in enumerate(jobs):
            if key >= 0:
                h_cond[key] = h[j]
            else:
                h_subsets[-1 - key] = h_subsets.get(-1 - key, 0.0) + h[j]
    h_marg = torch.stack([torch.as_tensor(h_subsets[n_c]) for n_c in sizes]).to(h_cond)
    weights = counts.to(torch.float64) / n
    mi = (weights * (h_marg / repetitions - h_cond)).sum()
    return to_base(mi, base)


# --------------------------------------------------------------------------- covariance spectra


def _singular_values(z: torch.Tensor, center: bool, dtype: torch.dtype) -> torch.Tensor:
    """Singular values of ``z`` (``min(n, d)`` of them), from the eigenvalues of the
    smaller Gram matrix (about 2x faster than an SVD on the CPU). Eigenvalues below the
    rounding level ``min(n, d) * eps * lambda_max`` are zero: each singular value that
    small (relative ``< ~3e-7`` in float64) would add ``< 5e-6`` to the spectrum's
    entropy (on random and low-rank matrices the result equals ``svdvals``' to 1e-13)."""
    x = z.to(torch.float64)
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    x = x.to(dtype)
    gram = x.mT @ x if x.shape[1] <= x.shape[0] else x @ x.mT
    lam = torch.linalg.eigvalsh(gram).to(torch.float64)
    tol = lam.shape[-1] * torch.finfo(dtype).eps * lam[-1].clamp(min=0)
    return torch.where(lam > tol, lam, torch.zeros_like(lam)).sqrt().flip(-1)


def _covariance_eigvals(z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """All ``d`` eigenvalues of the centred covariance ``Z'Z / (n - 1)``, descending.

    Computed from the smaller of the ``d x d`` and ``n x n`` Gram matrices (the nonzero
    spectra agree); the remaining ``d - n`` eigenvalues are zero. Clamped at 0.
    """
    n, d = z.shape
    x = z.to(torch.float64)
    x = (x - x.mean(dim=0, keepdim=True)).to(dtype)
    gram = x.mT @ x if d <= n else x @ x.mT
    lam = torch.linalg.eigvalsh(gram).to(torch.float64).flip(-1).clamp_(min=0) / (n - 1)
    if d > n:
        lam = torch.cat([lam, lam.new_zeros(d - n)])
    return lam


def effective_rank(
    z: ArrayLike, *, center: bool = False, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Effective rank of ``z`` (Roy & Vetterli 2007), a.k.a. RankMe (Garrido et al. 2023).

    With the singular values ``s_k`` of ``Z`` (``n x d``)::

        p_k = s_k / sum_j s_j,   erank = exp(-sum_k p_k ln p_k)    (0 ln 0 = 0)

    a continuous rank in ``[1, min(n, d)]``: exactly ``r`` for a rank-``r`` matrix with
    equal nonzero singular values, and invariant to scaling, rotations of either side
    and permutations of the samples. ``Z`` is *not* centred by default, as in Roy &
    Vetterli and RankMe (which embeds the mean direction as one more dimension);
    ``center=True`` measures the rank of the centred cloud (the covariance's
    square-root spectrum) instead. RankMe adds ``1e-7`` to every ``p_k``; this does not
    (a difference below ``1e-6 * min(n, d)`` in relative terms). A zero matrix gets 0.

    Cost: one symmetric eigensolve of the smaller Gram matrix of ``Z`` in ``dtype``.

    >>> import torch
    >>> round(float(effective_rank(torch.eye(5)[:, :3])), 6)
    3.0
    """
    z = as_samples(z, name="z", min_n=2)
    dtype = _check_dtype(dtype)
    s = _singular_values(z, bool(center), dtype)
    total = s.sum()
    p = s / torch.where(total > 0, total, torch.ones_like(total))
    h = -torch.special.xlogy(p, p).sum()
    return torch.where(total > 0, h.exp(), torch.zeros_like(h))


def von_neumann_entropy(
    z: ArrayLike,
    *,
    eps: float = 1e-8,
    base: float = math.e,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """von Neumann entropy of the trace-normalised covariance of ``z``.

    ``S = Z_c' Z_c / (n - 1) + eps I`` (``Z_c`` centred, ``d x d``), ``rho = S / tr S``,
    ``H = -tr(rho log rho) = -sum lambda_i log lambda_i`` over the eigenvalues of
    ``rho``. In ``[0, log d]``: ``log r`` for a cloud spread equally over ``r``
    orthogonal directions, 0 for a collapse onto a line. ``eps`` (1e-8, absolute, as in
    the recipe in REFERENCES.md) keeps it defined for a constant ``z``; it is tied to
    ``z``'s scale, so rescale tiny features first. Equal to the matrix-based Renyi
    entropy of order 1 of the linear-kernel covariance. The spectrum comes from the
    smaller Gram matrix, so ``d >> n`` is cheap.

    >>> import torch
    >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    >>> round(float(von_neumann_entropy(z, base=2)), 6)
    1.0
    """
    z = as_samples(z, name="z", min_n=2)
    eps = check_float(eps, name="eps", minimum=0.0)
    base = check_base(base)
    dtype = _check_dtype(dtype)
    lam = _covariance_eigvals(z, dtype) + eps
    total = lam.sum()
    rho = lam / torch.where(total > 0, total, torch.ones_like(total))
    return to_base(-torch.special.xlogy(rho, rho).sum(), base)


def alpha_req(
    z: ArrayLike,
    *,
    fit_range: tuple[int, int] = (5, 100),
    return_r2: bool = False,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """alpha-ReQ: the power-law decay exponent of the PCA eigenspectrum of ``z``.

    Agrawal et al., "alpha-ReQ: Assessing Representation Quality in Self-Supervised
    Learning by measuring eigenspectrum decay" (NeurIPS 2022), fitting as Stringer et al.
    (2019): with the centred covariance's eigenvalues ``lambda_1 >= lambda_2 >= ...``,
    fit ``log lambda_i = alpha (-log i) + b`` by weighted least squares with weights
    ``1 / i`` (even weight per octave) over the 0-based index range
    ``fit_range = (lo, hi)``, i.e. ``i = lo + 1 .. hi`` (default ``(5, 100)``: skip the
    five leading components, as in the authors' code), clipped to the numerically
    nonzero eigenvalues (``lambda_i > lambda_1 * max(n, d) * 2.2e-16``).

    ``alpha`` near 1 is the 1/n spectrum the paper associates with good, well-spread
    representations; larger means faster decay (towards collapse), smaller a whiter,
    noisier spectrum. The fit quality ``r2`` (weighted coefficient of determination in
    log-log space, over the fitted range) says whether a power law describes the
    spectrum at all; read ``alpha`` only when ``r2`` is high. Scale-invariant.

    Args:
        z: samples ``(n, d)``.
        fit_range: ``(lo, hi)`` 0-based eigenvalue index range, at least 2 points.
        return_r2: also return the fit quality.
        dtype: precision of the eigensolver.

    Returns:
        ``alpha`` (0-d float64 tensor on ``z``'s device), or ``(alpha, r2)`` when
        ``return_r2`` is true. (Reads the number of nonzero eigenvalues on the host.)

    >>> import torch
    >>> lam = torch.arange(1, 21, dtype=torch.float64) ** -1.5
    >>> q = torch.linalg.qr(torch.randn(40, 20, dtype=torch.float64)).Q
    >>> z = torch.cat([q, -q]) * (39 * lam / 2).sqrt()  # covariance eigenvalues = lam
    >>> alpha, r2 = alpha_req(z, fit_range=(0, 20), return_r2=True)
    >>> round(float(alpha), 6), round(float(r2), 6)
    (1.5, 1.0)
    """
    z = as_samples(z, name="z", min_n=2)
    dtype = _check_dtype(dtype)
    if (
        not isinstance(fit_range, (tuple, list))
        or len(fit_range) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in fit_range)
        or fit_range[0] < 0
        or fit_range[1] < fit_range[0] + 2
    ):
        raise ValueError(
            f"fit_range: expected (lo, hi) integers with 0 <= lo and hi >= lo + 2, got {fit_range!r}"
        )
    lam = _covariance_eigvals(z, dtype)
    tol = lam[0] * max(z.shape) * float(np.finfo(np.float64).eps)
    n_pos = int((lam > tol).sum())  # host sync: the fit range depends on the rank
    lo, hi = int(fit_range[0]), min(int(fit_range[1]), n_pos)
    if hi - lo < 2:
        raise ValueError(
            f"fit_range: expected at least 2 nonzero eigenvalues in {tuple(fit_range)}, "
            f"but z has only {n_pos} nonzero covariance eigenvalues"
        )
    i = torch.arange(lo + 1, hi + 1, dtype=torch.float64, device=lam.device)
    x = -i.log()
    y = lam[lo:hi].log()
    w = 1.0 / i
    w = w / w.sum()
    xm, ym = (w * x).sum(), (w * y).sum()
    sxx = (w * (x - xm) ** 2).sum()
    sxy = (w * (x - xm) * (y - ym)).sum()
    syy = (w * (y - ym) ** 2).sum()
    alpha = sxy / sxx
    if not return_r2:
        return alpha
    resid = (w * (y - ym - alpha * (x - xm)) ** 2).sum()
    r2 = torch.where(syy > 0, 1.0 - resid / torch.where(syy > 0, syy, 1.0), torch.ones_like(syy))
    return alpha, r2
