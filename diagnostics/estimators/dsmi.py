"""Diffusion spectral mutual information (DSMI) between a representation and labels or inputs.

Source: Liao, Liu et al. (2023) and ``dse-dsmi`` 1.1 (reproduced exactly in float64): for each
cluster i of the reference, MI_i = mean DSE of random subsets of size |Z_i| - DSE(Z_i), and
DSMI = sum_i |Z_i| / N MI_i; clusters are the labels, digitised 1-D values, or a spectral
clustering of a multi-dimensional reference (``cluster_reference``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import numpy as np
import torch

from diagnostics._validate import (
    ArrayLike,
    as_labels,
    as_samples,
    as_tensor,
    check_base,
    check_finite,
    check_float,
    check_int,
    check_same_n,
    is_integer_dtype,
    to_base,
)
from diagnostics.estimators.diffusion import (
    _check_dtype,
    _check_max_n,
    _check_sigma,
    _diffusion_entropies_groups,
    _one_thread_here,
    _resolve_sigma,
    _sample_rows,
)

__all__ = ["cluster_reference", "diffusion_spectral_mutual_information"]


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


def _dsmi_groups(
    order: list[int],
    sizes: list[int],
    *,
    repetitions: int,
    seed: int,
    max_n: int | None,
    device: torch.device,
) -> tuple[list[tuple[int, int]], Iterator[torch.Tensor], list[int], list[list[int]]]:
    """Every DSE evaluation of a DSMI, one group per distinct cluster size, the largest
    first: ``(shapes, groups, cond, marg)``.

    ``order`` lists the points cluster by cluster (members in their original order),
    ``sizes`` the cluster sizes. ``groups`` yields, for each distinct size, a
    ``(sets, points)`` index tensor (``shapes`` lists those shapes): the clusters of that
    size, then the ``repetitions`` random subsets of that size. The draws happen as the
    groups are taken (:func:`_diffusion_entropies_groups` hands each group to its workers
    before the next is drawn). dse-dsmi re-seeds before drawing each cluster's subsets, so
    the draws do not depend on the order of the clusters, and clusters of equal size get
    the very same subsets: they are evaluated once per distinct size (exactly the same
    numbers, and 4x fewer eigensolves for balanced classes). In the concatenated results,
    ``cond[c]`` is the position of cluster ``c``'s own set and ``marg[c]`` those of its
    random subsets.
    """
    n = len(order)
    starts = [0]
    for n_c in sizes:
        starts.append(starts[-1] + n_c)
    by_size: dict[int, list[int]] = {}
    for ci, n_c in enumerate(sizes):
        by_size.setdefault(n_c, []).append(ci)
    distinct = sorted(by_size, reverse=True)
    shapes: list[tuple[int, int]] = []
    cond = [0] * len(sizes)
    first: dict[int, int] = {}
    pos = 0
    for n_c in distinct:
        for ci in by_size[n_c]:
            cond[ci] = pos
            pos += 1
        first[n_c] = pos
        pos += repetitions
        m = n_c if max_n is None else min(n_c, max_n)
        shapes.append((len(by_size[n_c]) + repetitions, m))
    marg = [list(range(first[n_c], first[n_c] + repetitions)) for n_c in sizes]

    def groups() -> Iterator[torch.Tensor]:
        rng = random.Random()
        for n_c in distinct:
            sub = max_n is not None and n_c > max_n
            rows = [order[starts[ci] : starts[ci] + n_c] for ci in by_size[n_c]]
            if sub:
                keep = _sample_rows(n_c, max_n, seed)
                rows = [[r[i] for i in keep] for r in rows]
            rng.seed(seed)
            for _ in range(repetitions):
                picked = rng.sample(range(n), n_c)
                if sub:
                    rng.seed(seed)  # dse-dsmi's DSE re-seeds the shared generator
                    picked = [picked[i] for i in rng.sample(range(n_c), max_n)]
                rows.append(picked)
            yield torch.tensor(rows, dtype=torch.int64, device=device)

    return shapes, groups(), cond, marg


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
    go together (one batched eigensolver), the largest first; on a multi-core CPU the
    independent eigensolves run side by side on ``torch.get_num_threads()`` one-thread
    workers while the subsets of the next sizes are drawn (a dense eigensolve of a
    cluster's size gains little from a second thread; kept threads, a new set in a
    forked child; the points are centred and scaled once for all subsets, and this
    thread's own small operations run on one thread). A cluster's ``n_c x n_c`` kernels
    take ``O(n_c^2)`` memory each (chunked at 2**24 entries, one chunk per worker). Cost:
    ``(1 + repetitions)`` dense eigensolves per distinct cluster size, as dse-dsmi (which
    solves ``1 + repetitions`` per cluster); the eigensolves dominate.

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
        0-d float64 tensor on ``z``'s device. (Reads the cluster sizes and members on the
        host: one device sync.)

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.arange(300) % 3
    >>> z = 3.0 * y[:, None] + torch.randn(300, 8, generator=g, dtype=torch.float64)
    >>> float(diffusion_spectral_mutual_information(z, y, sigma="median")) > 0
    True
    """
    threads = torch.get_num_threads()  # the eigensolves use all of them
    with _one_thread_here():  # the small operations here: one
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

    sigma = _resolve_sigma(sigma, z, seed)  # (O(1000^2) for "median": on all threads)
    with _one_thread_here():
        uniq, counts = torch.unique(labels, sorted=True, return_counts=True)
        order = torch.argsort(labels, stable=True)  # cluster members in their original order
        host = torch.cat([counts, order]).tolist()  # one host sync: they drive the sampling
        sizes, order_list = host[: counts.numel()], host[counts.numel() :]

        shapes, groups, cond, marg = _dsmi_groups(
            order_list, sizes, repetitions=repetitions, seed=seed, max_n=max_n, device=z.device
        )
        h = _diffusion_entropies_groups(z, shapes, groups, sigma, t, dtype, threads)
        # (gathered on the device: no sync)
        h_cond = h[torch.tensor(cond, device=z.device)]
        h_marg = h[torch.tensor(marg, device=z.device)].sum(dim=-1)
        weights = counts.to(torch.float64) / n
        mi = (weights * (h_marg / repetitions - h_cond)).sum()
    return to_base(mi, base)
