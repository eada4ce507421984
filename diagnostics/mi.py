"""Mutual-information and entropy estimators, on any torch device.

Two entry points pick an estimator by name::

    mutual_information(x, y, *, method="ksg", base=math.e, **options)
    entropy(x, *, method="kl", base=math.e, **options)

and one public function per estimator holds the options, the formula and the
references (``ksg_mi``, ``binning_mi``, ``kde_mi``, ``renyi_mi``, ``cs_mi``, ``cca_mi``;
``kl_entropy``, ``weighted_kl_entropy``, ``binning_entropy``, ``discrete_entropy``,
``kde_entropy``, ``renyi_entropy``; ``discretize`` exposes the binning step).

Conventions shared by every function here:

- ``x``, ``y``: torch tensors or numpy arrays of shape ``(n,)`` or ``(n, d)``. A 1-D
  integer (or bool) array is a *discrete label* (class ids); float arrays are
  continuous. The result is a 0-d float64 tensor on ``x``'s device (``y`` is moved
  there). Internally every estimator computes in float64.
- Units: nats; ``base=2`` gives bits (any base > 0, != 1).
- Inputs are validated once, here; errors are ``ValueError``/``TypeError`` naming the
  argument. NaN/inf, mismatched ``n``, empty and 3-D arrays are refused.
- If ``x`` or ``y`` is constant (every row identical) the mutual information is
  exactly 0 and every MI estimator returns 0 without estimating anything.
- Randomness (tie-breaking noise, subsampling) comes from ``seed``: the same inputs
  and seed give the same number on every device (the noise is drawn on the CPU).
- ``given=labels`` on the entropy functions returns the conditional entropy
  ``H(X | Y) = sum_y p(y) H(X | Y = y)`` (plug-in class weights), the term that the
  information plane's ``I(T; Y) = H(T) - H(T | Y)`` needs.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from diagnostics import _knn
from diagnostics._validate import (
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
    "MI_METHODS",
    "ENTROPY_METHODS",
    "mutual_information",
    "entropy",
    "ksg_mi",
    "binning_mi",
    "kde_mi",
    "renyi_mi",
    "cs_mi",
    "cca_mi",
    "kl_entropy",
    "weighted_kl_entropy",
    "binning_entropy",
    "discrete_entropy",
    "kde_entropy",
    "renyi_entropy",
    "discretize",
    "bsy_weights",
]

MI_METHODS = ("ksg", "binning", "kde", "renyi", "cs", "cca")
ENTROPY_METHODS = ("kl", "weighted_kl", "binning", "discrete", "kde", "renyi")

_F64 = torch.float64


# =============================================================================
# helpers (boundary validation and small shared kernels)
# =============================================================================


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


# =============================================================================
# KSG (continuous) and Ross (continuous x, discrete labels)
# =============================================================================


def ksg_mi(
    x: Any,
    y: Any,
    *,
    k: int = 3,
    standardize: bool = True,
    noise: float = 1e-10,
    seed: int = 0,
    discrete_y: bool | None = None,
    backend: str = "auto",
    chunk_size: int | None = None,
    workers: int | None = None,
    base: float = math.e,
) -> torch.Tensor:
    r"""Kraskov-Stögbauer-Grassberger mutual information (algorithm 1, max-norm).

    .. math::

        I(X;Y) = \psi(k) + \psi(N) - \langle \psi(n_x + 1) + \psi(n_y + 1) \rangle

    eps_i is the max-norm distance from (x_i, y_i) to its k-th nearest neighbour in the
    joint space (the joint norm is ``max(|dx|_inf, |dy|_inf)``); n_x(i), n_y(i) count the
    other points strictly closer than eps_i in each marginal (Kraskov et al., Phys.
    Rev. E 69, 066138, 2004). Same algorithm and numbers as NPEET's ``mi`` (nats vs
    its bits) when ``standardize=False, noise=0``.

    **Discrete y** (a 1-D integer array, or ``discrete_y=True``) switches to Ross's
    mixed estimator (PLoS ONE 9(2), 2014) as scikit-learn's ``_compute_mi_cd`` does
    it: per point, the k-th neighbour radius r_i within its own class
    (k_i = min(k, N_y - 1); points of single-sample classes are dropped), m_i = number
    of points of any class strictly closer than r_i (self included),

    .. math::

        I(X;Y) = \psi(N) + \langle\psi(k_i)\rangle - \langle\psi(N_{y_i})\rangle
                 - \langle\psi(m_i)\rangle.

    If both x and y are label arrays the plug-in discrete MI is returned.

    Parameters
    ----------
    k : int, default 3
        Neighbours (Kraskov's recommended 2-4; sklearn and NPEET default 3).
    standardize : bool, default True
        Scale each column of x and of y to zero mean, unit variance first (the max-norm
        is not scale invariant; bmi and sklearn scale too). Constant columns are left.
    noise : float, default 1e-10
        Tie-breaking noise, in units of each column's std (Kraskov's advice; sklearn
        uses 1e-10 too). ``0`` turns it off; with exact ties and no noise, counts at
        distance exactly eps are excluded (strict ``<``).
    seed : int, default 0
        Seed of the noise (drawn on the CPU, identical on every device).
    backend : {"auto", "kdtree", "brute", "torch"}
        Neighbour search: trees (CPU; scipy ``cKDTree`` for the joint k-th neighbour,
        exact sorted counts in 1-D marginals, sklearn ``KDTree`` counts above),
        chunked brute force (scipy ``cdist`` on the CPU, ``torch.cdist`` elsewhere), or
        chunked brute force in torch on any device. The value does not depend on the
        backend (exact float64 max-norm distances, tested). "auto": trees on the CPU up
        to 8 / 10 / 12 joint dimensions for n < 4000 / < 10000 / larger, brute force
        above and on accelerators.
    chunk_size : int, optional
        Rows per brute-force block (memory O(chunk_size * n) float64).
    workers : int, optional
        CPU threads (default ``torch.get_num_threads()``).

    Good at: low-to-moderate dimensions, nonlinear dependence, smooth densities.
    Bad at: large MI (it underestimates: the estimate saturates around log N and is
    biased low already for MI of a few nats), and sparse dependence in high
    dimensions (the max-norm neighbourhoods are dominated by independent
    coordinates). May be slightly negative for independent variables.

    Cost: O(n^2 (dx + dy)) time brute force, O(n * chunk_size) memory.

    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(2000, 1, generator=g, dtype=torch.float64)
    >>> y = 0.75 * x + (1 - 0.75**2) ** 0.5 * torch.randn(2000, 1, generator=g, dtype=torch.float64)
    >>> truth = -0.5 * math.log(1 - 0.75**2)
    >>> abs(float(ksg_mi(x, y)) - truth) < 0.05
    True
    """
    base = check_base(base)
    backend = check_choice(backend, name="backend", choices=_knn.BACKENDS)
    noise = check_float(noise, name="noise", minimum=0.0)
    device = _device_of(x)
    x_lab = _is_labels(x)
    y_lab = _is_labels(y) if discrete_y is None else bool(discrete_y)
    if x_lab and y_lab and discrete_y is None:
        xl, yl = _labels(x, "x", device), _labels(y, "y", device)
        check_same_n(x=xl, y=yl)
        return _finish(_plugin_mi(xl[:, None], yl[:, None]), base)
    if x_lab and not y_lab and discrete_y is None:
        # I(X;Y) is symmetric: put the labels second
        return ksg_mi(
            y, x, k=k, standardize=standardize, noise=noise, seed=seed, discrete_y=True,
            backend=backend, chunk_size=chunk_size, workers=workers, base=base,
        )  # fmt: skip
    gen = _generator(seed)
    xt = _samples(x, "x", device)
    if y_lab:
        yl = _labels(y, "y", device)
        n = check_same_n(x=xt, y=yl)
        k = _check_k(k, n)
        if _is_constant(xt) or _is_constant(yl):
            return _zero(device)
        if standardize:
            xt = _standardize(xt)
        xt = _add_noise(xt, noise, gen)
        value = _ross(xt, yl, k, backend=backend, chunk_size=chunk_size, workers=workers)
        return _finish(value, base)
    yt = _samples(y, "y", device)
    n = check_same_n(x=xt, y=yt)
    k = _check_k(k, n)
    if _is_constant(xt) or _is_constant(yt):
        return _zero(device)
    if standardize:
        xt, yt = _standardize(xt), _standardize(yt)
    xt = _add_noise(xt, noise, gen)
    yt = _add_noise(yt, noise, gen)
    nx, ny = _knn.ksg_counts(xt, yt, k, backend=backend, chunk_size=chunk_size, workers=workers)
    dg = torch.special.digamma
    value = (
        dg(torch.tensor(float(k), dtype=_F64, device=device))
        + dg(torch.tensor(float(n), dtype=_F64, device=device))
        - (dg(nx.to(_F64) + 1) + dg(ny.to(_F64) + 1)).mean()
    )
    return _finish(value, base)


def _ross(
    x: torch.Tensor, labels: torch.Tensor, k: int, *, backend: str, chunk_size, workers
) -> torch.Tensor:
    groups, counts = _group_indices(labels)
    keep_groups = [(idx, int(c)) for idx, c in zip(groups, counts.tolist()) if c > 1]
    if not keep_groups:
        raise ValueError(
            "y: every class has a single sample; the mixed KSG estimator needs repeats"
        )
    idx_all = torch.cat([idx for idx, _ in keep_groups])
    radius_parts, k_parts, ny_parts = [], [], []
    for idx, c in keep_groups:
        kc = min(k, c - 1)
        r = _knn.knn_distances(
            x[idx], kc, metric="chebyshev", backend=backend, chunk_size=chunk_size, workers=workers
        )[:, -1]
        radius_parts.append(r)
        k_parts.append(torch.full((c,), float(kc), dtype=_F64, device=x.device))
        ny_parts.append(torch.full((c,), float(c), dtype=_F64, device=x.device))
    xk = x[idx_all]
    radius = torch.cat(radius_parts)
    m = _knn.count_within(xk, radius, backend=backend, chunk_size=chunk_size, workers=workers)
    m = m + (radius > 0).to(m.dtype)  # sklearn's m_i counts the point itself
    dg = torch.special.digamma
    nk = torch.tensor(float(xk.shape[0]), dtype=_F64, device=x.device)
    return (
        dg(nk)
        + dg(torch.cat(k_parts)).mean()
        - dg(torch.cat(ny_parts)).mean()
        - dg(m.to(_F64)).mean()
    )


# =============================================================================
# Discrete (plug-in) entropy and the binning estimator
# =============================================================================


def _row_ids(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense ids of the distinct rows of an int64 (n, d) array, and their counts.

    Columns are packed into one int64 key as long as the key stays below 2**62, then
    re-densified with ``torch.unique`` (a 1-D sort, fast on every device); exact, no
    hashing, O(d / columns_per_key) sorts.
    """
    n, d = codes.shape
    c = codes - codes.min(dim=0).values
    widths = (c.max(dim=0).values + 1).tolist()
    key = torch.zeros(n, dtype=torch.int64, device=codes.device)
    bound = 1
    for j in range(d):
        w = int(widths[j])
        if bound * w >= (1 << 62):
            key = torch.unique(key, return_inverse=True)[1]
            bound = int(key.max()) + 1
        key = key * w + c[:, j]
        bound *= w
    _, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    return inverse, counts


def _entropy_from_counts(counts: torch.Tensor) -> torch.Tensor:
    c = counts.to(_F64)
    n = c.sum()
    return torch.log(n) - (c * torch.log(c)).sum() / n


def _plugin_entropy(codes: torch.Tensor) -> torch.Tensor:
    return _entropy_from_counts(_row_ids(codes)[1])


def _plugin_mi(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ia, ca = _row_ids(a)
    ib, cb = _row_ids(b)
    joint = torch.stack([ia, ib], dim=1)
    return _entropy_from_counts(ca) + _entropy_from_counts(cb) - _plugin_entropy(joint)


def _plugin_conditional(codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """H(A | Y) = H(A, Y) - H(Y) for int64 codes (n, d) and labels (n,)."""
    ia, _ = _row_ids(codes)
    joint = torch.stack([ia, labels], dim=1)
    return _plugin_entropy(joint) - _plugin_entropy(labels[:, None])


def discrete_entropy(x: Any, *, given: Any = None, base: float = math.e) -> torch.Tensor:
    r"""Plug-in (maximum-likelihood) entropy of discrete samples: each distinct row is a symbol.

    .. math:: H(X) = -\sum_x \hat p(x) \log \hat p(x),\quad \hat p(x) = \#\{i: x_i = x\} / N

    With ``given=labels`` returns ``H(X | Y) = H(X, Y) - H(Y)``. ``x`` must hold
    integers (or bools), shape (n,) or (n, d); bin continuous values with
    :func:`discretize` or use :func:`binning_entropy`.

    Exact for the empirical distribution; as an estimate of the true entropy it is
    biased low by about (number of symbols - 1) / (2N) (Miller-Madow).

    >>> float(discrete_entropy(torch.tensor([0, 0, 1, 1]), base=2))
    1.0
    """
    base = check_base(base)
    device = _device_of(x)
    codes = _discrete(x, "x", device)
    if given is None:
        return _finish(_plugin_entropy(codes), base)
    lab = _labels(given, "given", device)
    check_same_n(x=codes, given=lab)
    return _finish(_plugin_conditional(codes, lab), base)


def discretize(
    x: Any,
    *,
    bins: Any = 30,
    bin_size: float | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> torch.Tensor:
    """Bin continuous activations into int64 codes, the binning estimator's first step.

    - ``bin_size=None`` (default; Shwartz-Ziv & Tishby 2017, IDNNs): edges
      ``linspace(value_range[0], value_range[1], bins)`` (30 edges over [-1, 1] for
      tanh layers), each value mapped to the bin whose left edge is the largest edge
      <= value (``np.digitize``); a value equal to the last edge gets its own code,
      as in the IDNNs code. ``bins`` may also be an explicit increasing edge array.
      Values outside ``[edges[0], edges[-1]]`` are clipped into the first/last bin
      **with a RuntimeWarning** that says how many (the IDNNs code maps values below
      the first edge onto the last bin by negative indexing; clipping fixes that).
    - ``bin_size=s`` (Saxe et al. 2018, for unbounded activations such as ReLU):
      code ``floor(x / s)``, no range, nothing clipped.

    Integer/bool input is returned as-is (already discrete). Returns (n, d) int64 on
    ``x``'s device.

    >>> discretize(torch.tensor([[-1.0, 0.0, 0.999, 1.0]]), bins=3).tolist()
    [[1, 2, 2, 3]]
    """
    return _discretize(x, "x", bins=bins, bin_size=bin_size, value_range=value_range)


def _discretize(
    x: Any, name: str, *, bins: Any, bin_size: float | None, value_range: tuple[float, float]
) -> torch.Tensor:
    device = _device_of(x)
    t = as_tensor(x, name=name, device=device)
    if not (t.is_floating_point() or t.is_complex()) and t.ndim in (1, 2):
        return _discrete(t, name, device)
    t = as_samples(t, name=name, device=device)
    if bin_size is not None:
        s = check_float(bin_size, name="bin_size", positive=True)
        return torch.floor(t.to(_F64) / s).to(torch.int64)
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        nb = check_int(bins, name="bins", minimum=2)
        lo = check_float(value_range[0], name="value_range[0]")
        hi = check_float(value_range[1], name="value_range[1]")
        if not hi > lo:
            raise ValueError(
                f"value_range: expected (low, high) with high > low, got {value_range}"
            )
        edges = torch.linspace(lo, hi, nb, dtype=_F64, device=device)
    else:
        edges = as_tensor(bins, name="bins", device=device).to(_F64).flatten()
        if edges.numel() < 2 or not bool((edges[1:] > edges[:-1]).all()):
            raise ValueError(
                f"bins: expected an integer >= 2 or a strictly increasing array of >= 2 edges, "
                f"got {edges.numel()} values"
            )
    tf = t.to(_F64)
    outside = int(((tf < edges[0]) | (tf > edges[-1])).sum())
    if outside:
        warnings.warn(
            f"{name}: {outside} of {tf.numel()} values lie outside the bin edges "
            f"[{float(edges[0]):g}, {float(edges[-1]):g}] and were clipped into the first/last "
            "bin; pass value_range/bins that cover the activations or use bin_size",
            RuntimeWarning,
            stacklevel=3,
        )
    codes = torch.bucketize(tf, edges, right=True)  # == np.digitize(x, edges)
    return codes.clamp_(1, edges.numel())


def binning_entropy(
    x: Any,
    *,
    given: Any = None,
    bins: Any = 30,
    bin_size: float | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    base: float = math.e,
) -> torch.Tensor:
    """Entropy of binned activations (each distinct binned row is one value of T).

    ``H(T)`` of :func:`discretize` (x), or ``H(T | Y)`` with ``given=labels``. For an
    information plane with a finite input set in which every input is distinct,
    ``I(X; T) = H(T)`` and ``I(T; Y) = H(T) - H(T | Y)`` (Shwartz-Ziv & Tishby 2017).
    Depends strongly on the bin size: fine bins make every row unique (H = log N),
    coarse bins make everything one value (H = 0).

    >>> t = torch.tensor([[-0.9], [-0.9], [0.5], [0.5]])
    >>> float(binning_entropy(t, base=2))
    1.0
    """
    base = check_base(base)
    device = _device_of(x)
    codes = _discretize(x, "x", bins=bins, bin_size=bin_size, value_range=value_range)
    if given is None:
        return _finish(_plugin_entropy(codes), base)
    lab = _labels(given, "given", device)
    check_same_n(x=codes, given=lab)
    return _finish(_plugin_conditional(codes, lab), base)


def binning_mi(
    x: Any,
    y: Any,
    *,
    bins: Any = 30,
    bin_size: float | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    base: float = math.e,
) -> torch.Tensor:
    r"""Binning (plug-in) mutual information of Shwartz-Ziv & Tishby (2017).

    Float arrays are binned with :func:`discretize` (same options for x and y);
    integer arrays are taken as discrete symbols as they are. Then

    .. math:: I(X;Y) = H(X) + H(Y) - H(X, Y)

    over the distinct rows. For the information plane: ``binning_mi(inputs, layer)``
    equals ``H(T)`` when every input row is distinct, and ``binning_mi(layer, labels)``
    is ``H(T) - H(T|Y)``. Units: nats (the IDNNs code reports bits: ``base=2``).

    Good at: deterministic networks on finite input sets (the setting it was
    designed for). Bad at: anything else -- the value is a property of the bin size
    (too fine: I(X;T) = log N for every layer; too coarse: 0), not a consistent
    estimate of a continuous MI.

    >>> t = torch.tensor([[-0.9], [-0.9], [0.5], [0.5]])
    >>> float(binning_mi(t, torch.tensor([0, 0, 1, 1]), base=2))
    1.0
    """
    base = check_base(base)
    device = _device_of(x)
    cx = _discretize(x, "x", bins=bins, bin_size=bin_size, value_range=value_range)
    cy = _discretize(
        as_tensor(y, name="y", device=device),
        "y",
        bins=bins,
        bin_size=bin_size,
        value_range=value_range,
    )
    check_same_n(x=cx, y=cy)
    return _finish(_plugin_mi(cx, cy), base)


# =============================================================================
# Kozachenko-Leonenko entropy (plain and weighted)
# =============================================================================


def _log_unit_ball(d: int, metric: str) -> float:
    if metric == "chebyshev":
        return d * math.log(2.0)
    return 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)


def _prepare_kl(x: Any, k: int, noise: float, seed: int, name: str = "x"):
    device = _device_of(x)
    t = _samples(x, name, device)
    n = t.shape[0]
    k = _check_k(k, n)
    _refuse_constant_columns(
        t, name, "the differential entropy of a constant coordinate is -inf; drop those columns"
    )
    t = _add_noise(t, check_float(noise, name="noise", minimum=0.0), _generator(seed))
    return t, k, device


def _kl_from_distances(rho: torch.Tensor, n: int, d: int, metric: str, ks: torch.Tensor):
    """H_j = psi(n) - psi(j) + log V_d + d <log rho_j>, for every column j of ``rho``."""
    dg = torch.special.digamma
    nn = torch.tensor(float(n), dtype=_F64, device=rho.device)
    return dg(nn) - dg(ks) + _log_unit_ball(d, metric) + d * torch.log(rho).mean(dim=0)


def kl_entropy(
    x: Any,
    *,
    k: int = 3,
    metric: str = "euclidean",
    noise: float = 1e-10,
    seed: int = 0,
    given: Any = None,
    backend: str = "auto",
    chunk_size: int | None = None,
    workers: int | None = None,
    base: float = math.e,
) -> torch.Tensor:
    r"""Kozachenko-Leonenko k-nearest-neighbour differential entropy.

    .. math:: \hat H = \psi(N) - \psi(k) + \log V_d + \frac{d}{N} \sum_i \log \rho_{k,i}

    rho_{k,i}: distance from x_i to its k-th nearest neighbour; V_d: volume of the unit
    ball of the metric (Euclidean: pi^{d/2} / Gamma(d/2 + 1); ``metric="chebyshev"``:
    2^d, which is NPEET's ``entropy``). Kozachenko & Leonenko (1987); Kraskov et al.
    (2004) eq. 20. With ``given=labels`` returns ``sum_y p(y) H(X | Y=y)``.

    ``noise`` (default 1e-10 x column std, seeded) breaks exact duplicates, whose zero
    distance would give -inf. Columns that are constant raise ``ValueError`` (their
    differential entropy is -inf).

    Good at: low dimensions (d <= ~5), any smooth density. Bad at: higher d, where its
    bias decays slowly (use :func:`weighted_kl_entropy`), and heavy tails/compact
    supports with sharp edges.

    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(4000, 2, generator=g, dtype=torch.float64)
    >>> abs(float(kl_entropy(x)) - math.log(2 * math.pi * math.e)) < 0.05
    True
    """
    base = check_base(base)
    metric = check_choice(metric, name="metric", choices=("euclidean", "chebyshev"))
    backend = check_choice(backend, name="backend", choices=_knn.BACKENDS)
    t, k, device = _prepare_kl(x, k, noise, seed)
    ks = torch.tensor([float(k)], dtype=_F64, device=device)

    def h(part: torch.Tensor) -> torch.Tensor:
        rho = _knn.knn_distances(
            part, k, metric=metric, backend=backend, chunk_size=chunk_size, workers=workers
        )[:, -1:]
        return _kl_from_distances(rho, part.shape[0], part.shape[1], metric, ks)[0]

    if given is None:
        return _finish(h(t), base)
    lab = _labels(given, "given", device)
    check_same_n(x=t, given=lab)
    return _finish(_conditional(h, t, lab, k + 1, f"k = {k}"), base)


def bsy_weights(k: int, d: int) -> np.ndarray:
    r"""Minimum-L2-norm weights of Berrett, Samworth & Yuan (Ann. Statist. 47(1), 2019).

    w solves ``min |w|_2`` subject to ``sum_j w_j = 1`` and
    ``sum_j w_j Gamma(j + 2l/d) / Gamma(j) = 0`` for ``l = 1..floor(d/4)``, j = 1..k
    (the weight choice of their R package ``IndepTest::L2OptW``). For d < 4 this is
    (0, ..., 0, 1): the plain estimator with k neighbours.
    """
    from scipy.special import gammaln

    m = d // 4
    w = np.zeros(k)
    if m == 0:
        w[-1] = 1.0
        return w
    if k < m + 1:
        raise ValueError(
            f"k: the weighted estimator in d = {d} dimensions needs k >= {m + 1} "
            f"(floor(d/4) + 1 constraints), got {k}"
        )
    j = np.arange(1, k + 1, dtype=np.float64)
    G = np.ones((m + 1, k))
    for ell in range(1, m + 1):
        G[ell] = np.exp(gammaln(j + 2.0 * ell / d) - gammaln(j))
    rhs = np.zeros(m + 1)
    rhs[0] = 1.0
    lam = np.linalg.solve(G @ G.T, rhs)
    return G.T @ lam


def weighted_kl_entropy(
    x: Any,
    *,
    k: int | None = None,
    weights: Any = None,
    metric: str = "euclidean",
    noise: float = 1e-10,
    seed: int = 0,
    given: Any = None,
    backend: str = "auto",
    chunk_size: int | None = None,
    workers: int | None = None,
    base: float = math.e,
) -> torch.Tensor:
    r"""Weighted Kozachenko-Leonenko entropy (Berrett, Samworth & Yuan 2019).

    .. math:: \hat H_w = \sum_{j=1}^{k} w_j \hat H_j

    where H_j is :func:`kl_entropy` with j neighbours (all from one k-NN search) and
    the weights cancel the leading bias terms that make the plain estimator
    inefficient for d >= 4 (see :func:`bsy_weights`; explicit ``weights`` of length k
    summing to 1 are accepted). For d <= 3 it equals ``kl_entropy(x, k=k)``. The
    default ``k`` is ``max(5, 2 d)``: the weights need k > floor(d/4) and grow large
    (high variance) when k is close to that; at n = 5000, d = 8 (equicorrelated
    Gaussian) k = 16 gives bias ~ -0.03, sd ~ 0.1 nats, while plain k = 3 gives bias
    ~ -0.03, sd ~ 0.03 -- the weighted estimator pays off as n grows, not at small n.
    Uses psi(N) where BSY write
    log(N - 1) (an O(1/N) difference) so that it reduces exactly to the plain
    estimator. Used with k = 5 by the compression-based estimator of Butakov et al.

    Good at: moderate dimensions (d ~ 4-10) where the plain estimator is biased. Bad
    at: small N with many constraints (the weights grow and so does the variance).

    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(4000, 4, generator=g, dtype=torch.float64)
    >>> abs(float(weighted_kl_entropy(x)) - 2 * math.log(2 * math.pi * math.e)) < 0.1
    True
    """
    base = check_base(base)
    metric = check_choice(metric, name="metric", choices=("euclidean", "chebyshev"))
    backend = check_choice(backend, name="backend", choices=_knn.BACKENDS)
    n, d = _samples(x, "x", _device_of(x)).shape
    if k is None:
        k = min(max(5, 2 * d), n - 1) if weights is None else len(weights)
    t, k, device = _prepare_kl(x, k, noise, seed)
    if weights is None:
        w = bsy_weights(k, d)
    else:
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.shape[0] != k or not np.all(np.isfinite(w)) or abs(w.sum() - 1.0) > 1e-8:
            raise ValueError(
                f"weights: expected {k} finite weights summing to 1, got {w.shape[0]} "
                f"summing to {w.sum():g}"
            )
    wt = torch.as_tensor(w, dtype=_F64, device=device)
    ks = torch.arange(1, k + 1, dtype=_F64, device=device)

    def h(part: torch.Tensor) -> torch.Tensor:
        rho = _knn.knn_distances(
            part, k, metric=metric, backend=backend, chunk_size=chunk_size, workers=workers
        )
        return (wt * _kl_from_distances(rho, part.shape[0], part.shape[1], metric, ks)).sum()

    if given is None:
        return _finish(h(t), base)
    lab = _labels(given, "given", device)
    check_same_n(x=t, given=lab)
    return _finish(_conditional(h, t, lab, k + 1, f"k = {k}"), base)


# =============================================================================
# KDE bounds (Kolchinsky & Tracey; Saxe et al. 2018)
# =============================================================================


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances by the matmul expansion (clamped at 0), as ibsgd's kde.py."""
    d2 = torch.addmm((b * b).sum(1)[None, :], a, b.T, alpha=-2.0)
    return d2.add_((a * a).sum(1)[:, None]).clamp_min_(0.0)


def _kde_upper(t: torch.Tensor, s2: float, chunk: int | None) -> torch.Tensor:
    n, d = t.shape
    chunk = chunk or _knn.default_chunk(n, t.device)
    lse = torch.cat(
        [
            torch.logsumexp(_sq_dists(t[s : s + chunk], t).mul_(-0.5 / s2), dim=1)
            for s in range(0, n, chunk)
        ]
    )
    normconst = 0.5 * d * math.log(2.0 * math.pi * s2)
    lprobs = lse - math.log(n) - normconst
    return 0.5 * d - lprobs.mean()


def _kde_h(t: torch.Tensor, s2: float, bound: str, chunk: int | None) -> torch.Tensor:
    if bound == "upper":
        return _kde_upper(t, s2, chunk)
    return _kde_upper(t, 4.0 * s2, chunk) + 0.5 * t.shape[1] * math.log(0.25)


def kde_entropy(
    x: Any,
    *,
    noise_variance: float = 1e-3,
    bound: str = "upper",
    given: Any = None,
    chunk_size: int | None = None,
    base: float = math.e,
) -> torch.Tensor:
    r"""Entropy of ``T = x + N(0, s2 I)`` by the pairwise-distance bounds of Kolchinsky & Tracey.

    The noisy variable is a mixture of N Gaussians centred on the samples; its entropy
    is bounded by (Kolchinsky & Tracey, Entropy 19(7), 2017; ibsgd ``kde.py``):

    .. math::

        H_{up} = \frac{d}{2} - \frac{1}{N} \sum_i \Big[\log \sum_j
                 e^{-|t_i - t_j|^2 / (2 s_2)} - \log N - \frac{d}{2}\log(2\pi s_2)\Big]

    (KL-divergence upper bound, ``bound="upper"``), and the Bhattacharyya lower bound
    ``H_up(4 s2) + (d/2) log(1/4)`` (``bound="lower"``). With ``given=labels``: the
    class-weighted sum of per-class bounds, ``H(T | Y)``.

    ``noise_variance`` s2 defaults to 1e-3 (Saxe et al.'s value for the 12-bit task;
    they used 1e-1 for MNIST). The number is a property of s2: it is the entropy of
    the noise-smoothed layer, not of the layer itself.

    Memory: O(N * chunk_size) (the N x N kernel is never held whole). Time O(N^2 d).

    >>> x = torch.zeros(10, 2)
    >>> s2 = 0.1
    >>> gauss = math.log(2 * math.pi * math.e * s2)  # entropy of N(0, s2 I_2)
    >>> abs(float(kde_entropy(x, noise_variance=s2)) - gauss) < 1e-12
    True
    """
    base = check_base(base)
    s2 = check_float(noise_variance, name="noise_variance", positive=True)
    bound = check_choice(bound, name="bound", choices=("upper", "lower"))
    device = _device_of(x)
    t = _samples(x, "x", device)
    if given is None:
        return _finish(_kde_h(t, s2, bound, chunk_size), base)
    lab = _labels(given, "given", device)
    check_same_n(x=t, given=lab)
    return _finish(
        _conditional(lambda p: _kde_h(p, s2, bound, chunk_size), t, lab, 1, "kde_entropy"), base
    )


def kde_mi(
    x: Any,
    y: Any,
    *,
    noise_variance: float = 1e-3,
    bound: str = "upper",
    chunk_size: int | None = None,
    base: float = math.e,
) -> torch.Tensor:
    r"""Mutual information with a noisy layer, by the Kolchinsky-Tracey KDE bounds (Saxe et al. 2018).

    The layer T is made stochastic, ``T = h + N(0, s2 I)``; then (ibsgd's recipe)

    - **labels** (``y`` a 1-D integer array; or ``x``, then the roles swap):
      ``I(T; Y) = H(T) - sum_y p(y) H(T | Y = y)`` with T = x;
    - **continuous** ``y``: ``y`` is the layer h, a deterministic function of the input
      ``x``, and ``I(X; T) = H(T) - H(T | X)`` with ``H(T | X) = (d/2)(log(2 pi s2) + 1)``,
      the entropy of the added noise. The values of ``x`` are not used (only its n):
      the estimate assumes y = f(x).

    ``bound="upper"`` uses the KL upper bound for every H(T) term (Saxe et al.'s
    default), ``"lower"`` the Bhattacharyya lower bound. Units: nats.

    Good at: smooth, differentiable information-plane curves of deterministic
    networks. Bad at: being an estimate of anything but the chosen noise model -- the
    numbers move with s2 (default 1e-3).

    >>> y = torch.tensor([0, 0, 1, 1])
    >>> t = torch.tensor([[0.0], [0.0], [10.0], [10.0]])  # classes far apart: I = H(Y)
    >>> round(float(kde_mi(t, y, base=2)), 6)
    1.0
    """
    base = check_base(base)
    s2 = check_float(noise_variance, name="noise_variance", positive=True)
    bound = check_choice(bound, name="bound", choices=("upper", "lower"))
    device = _device_of(x)
    if _is_labels(x) and not _is_labels(y):
        x, y = y, x
        device = _device_of(x)
    if _is_labels(y):
        t = _samples(x, "x", device)
        lab = _labels(y, "y", device)
        check_same_n(x=t, y=lab)
        if _is_constant(t) or _is_constant(lab):
            return _zero(device)
        h = _kde_h(t, s2, bound, chunk_size)
        hc = _conditional(lambda p: _kde_h(p, s2, bound, chunk_size), t, lab, 1, "kde_mi")
        return _finish(h - hc, base)
    xt = _samples(x, "x", device)
    t = _samples(y, "y", device)
    check_same_n(x=xt, y=t)
    if _is_constant(xt) or _is_constant(t):
        return _zero(device)
    d = t.shape[1]
    h_noise = 0.5 * d * (math.log(2.0 * math.pi * s2) + 1.0)
    return _finish(_kde_h(t, s2, bound, chunk_size) - h_noise, base)


# =============================================================================
# Kernel (Gram-matrix) estimators: matrix-based Renyi and Cauchy-Schwarz QMI
# =============================================================================

_SIGMA_RULES = ("silverman", "median")


def _sigma(t: torch.Tensor, rule: Any, name: str) -> float:
    """Gaussian kernel width for samples ``t`` (n, d) by a rule or a given number."""
    if not isinstance(rule, str):
        return check_float(rule, name=name, positive=True)
    rule = check_choice(rule, name=name, choices=_SIGMA_RULES)
    n, d = t.shape
    if rule == "silverman":
        # multivariate Silverman rule with the average per-column std
        s = float(torch.sqrt((_col_std(t) ** 2).mean()))
        return s * (4.0 / ((d + 2.0) * n)) ** (1.0 / (d + 4.0))
    # median of the pairwise Euclidean distances (of at most ~2000 evenly strided rows)
    m = t[:: max(1, math.ceil(n / 2000))]
    dists = torch.cdist(m, m)
    iu = torch.triu_indices(m.shape[0], m.shape[0], 1, device=m.device)
    return float(dists[iu[0], iu[1]].median())


def _sigma_pair(sigma: Any) -> tuple[Any, Any]:
    if isinstance(sigma, (tuple, list)):
        if len(sigma) != 2:
            raise ValueError(f"sigma: expected a rule, a number or a pair (x, y), got {sigma!r}")
        return sigma[0], sigma[1]
    return sigma, sigma


def _gram_block(a: torch.Tensor, b: torch.Tensor, spec: tuple[str, float]) -> torch.Tensor:
    """Kernel block: Gaussian exp(-|a-b|^2 / (2 sigma^2)), or the delta kernel for labels."""
    kind, sigma = spec
    if kind == "delta":
        return (a[:, None] == b[None, :]).to(_F64)
    return _sq_dists(a, b).mul_(-0.5 / (sigma * sigma)).exp_()


def _kernel_var(a: Any, name: str, device: torch.device, sigma: Any):
    """(data, spec): labels use the delta kernel, continuous data a Gaussian kernel."""
    if _is_labels(a):
        return _labels(a, name, device), ("delta", 0.0)
    t = _samples(a, name, device)
    if _is_constant(t):
        return t, ("gauss", 1.0)
    return t, ("gauss", _sigma(t, sigma, f"sigma ({name})"))


def _subsample(n: int, max_n: int | None, seed: int, device: torch.device) -> torch.Tensor | None:
    if max_n is None or n <= max_n:
        return None
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randperm(n, generator=g)[:max_n].to(device)


def _eigvalsh(A: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of a symmetric matrix.

    On the CPU: scipy's LAPACK (MRRR) with BLAS limited to one thread. Threaded
    eigensolvers (torch's and OpenBLAS's) spin-wait: on a busy 2-core machine a
    2000 x 2000 problem took 15 s with 2 threads and 1.5 s with one. Accelerators use
    torch.linalg.eigvalsh.
    """
    if A.device.type == "cpu":
        from scipy.linalg import eigh
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            lam = eigh(A.numpy(), eigvals_only=True, driver="evr", check_finite=False)
        return torch.from_numpy(lam)
    return torch.linalg.eigvalsh(A)


def _renyi_of_gram(K: torch.Tensor, alpha: float) -> torch.Tensor:
    A = K / torch.trace(K)
    lam = _eigvalsh(A).clamp_min(0.0)
    if abs(alpha - 1.0) < 1e-12:
        nz = lam[lam > 0]
        return -(nz * torch.log(nz)).sum()
    return torch.log((lam**alpha).sum()) / (1.0 - alpha)


def renyi_entropy(
    x: Any,
    *,
    alpha: float = 1.01,
    sigma: Any = "median",
    max_n: int | None = 2000,
    seed: int = 0,
    base: float = math.e,
) -> torch.Tensor:
    r"""Matrix-based Rényi alpha-order entropy (Sanchez Giraldo, Rao & Principe 2015).

    .. math:: S_\alpha(A) = \frac{1}{1-\alpha} \log \sum_i \lambda_i(A)^\alpha,\qquad A = K / \mathrm{tr} K

    with the Gaussian Gram matrix ``K_ij = exp(-|x_i - x_j|^2 / (2 sigma^2))`` (the
    SJYuCNEL code writes ``exp(-d^2 / sigma)``: same family, other parametrisation).
    For integer labels K is the delta kernel ``[y_i == y_j]``, whose spectrum is the
    class proportions: S_alpha is then exactly the Rényi entropy of the label
    distribution. alpha = 1.01 (Yu et al.) by default; alpha = 1 gives von Neumann.

    **Kernel width** ``sigma``: ``"median"`` (default), the median pairwise Euclidean
    distance of the sample (the median heuristic of kernel dependence measures; at
    most ~2000 evenly strided rows are used to compute it); ``"silverman"``, the
    multivariate Silverman rule ``sigma = s (4 / ((d + 2) n))^{1/(d+4)}`` with s the
    root mean column variance; or a number. Both rules scale with the data, so the
    value is invariant to rescaling x. The value depends on sigma by construction
    (sigma -> 0: S -> log n; sigma -> inf: S -> 0). The median rule is the default
    because the Silverman width is narrow: for independent 1-D Gaussians at n = 800
    it gives I_alpha ~ 0.12 nats (vs 0.24 at rho = 0.5), the median rule ~ 0.01
    (vs 0.11).

    Needs the whole n x n Gram matrix and its eigenvalues (O(n^2) memory, O(n^3)
    time): rows beyond ``max_n`` (default 2000) are subsampled with ``seed``.

    >>> float(renyi_entropy(torch.tensor([0, 0, 1, 1]), alpha=2.0, base=2))
    1.0
    """
    base = check_base(base)
    alpha = check_float(alpha, name="alpha", positive=True)
    device = _device_of(x)
    t, spec = _kernel_var(x, "x", device, sigma)
    if max_n is not None:
        max_n = check_int(max_n, name="max_n", minimum=2)
    idx = _subsample(t.shape[0], max_n, check_int(seed, name="seed", minimum=0), device)
    if idx is not None:
        t = t[idx]
    return _finish(_renyi_of_gram(_gram_block(t, t, spec), alpha), base)


def renyi_mi(
    x: Any,
    y: Any,
    *,
    alpha: float = 1.01,
    sigma: Any = "median",
    max_n: int | None = 2000,
    seed: int = 0,
    base: float = math.e,
) -> torch.Tensor:
    r"""Matrix-based Rényi alpha-order mutual information (Yu et al. 2019).

    .. math:: I_\alpha(X;Y) = S_\alpha(A) + S_\alpha(B) - S_\alpha\Big(\frac{A \circ B}{\mathrm{tr}(A \circ B)}\Big)

    A, B: trace-normalised Gram matrices of x and y (see :func:`renyi_entropy` for
    the kernel, the documented ``sigma`` rule -- default: median pairwise distance --
    labels and ``max_n``). ``sigma`` may be one rule/number for both or a pair
    ``(sigma_x, sigma_y)``.

    Good at: differentiable, dimension-agnostic dependence measure (IB objectives,
    trends across layers). Bad at: absolute values -- it is not Shannon MI and it
    moves with sigma and alpha; O(n^3) with n capped by ``max_n``.

    >>> y = torch.tensor([0, 0, 1, 1])
    >>> float(renyi_mi(y, y, alpha=2.0, base=2))  # I(Y;Y) = S_2(Y) = 1 bit
    1.0
    """
    base = check_base(base)
    alpha = check_float(alpha, name="alpha", positive=True)
    device = _device_of(x)
    sx, sy = _sigma_pair(sigma)
    xt, specx = _kernel_var(x, "x", device, sx)
    yt, specy = _kernel_var(y, "y", device, sy)
    n = check_same_n(x=xt, y=yt)
    if _is_constant(xt) or _is_constant(yt):
        return _zero(device)
    if max_n is not None:
        max_n = check_int(max_n, name="max_n", minimum=2)
    idx = _subsample(n, max_n, check_int(seed, name="seed", minimum=0), device)
    if idx is not None:
        xt, yt = xt[idx], yt[idx]
    Kx = _gram_block(xt, xt, specx)
    Ky = _gram_block(yt, yt, specy)
    value = _renyi_of_gram(Kx, alpha) + _renyi_of_gram(Ky, alpha) - _renyi_of_gram(Kx * Ky, alpha)
    return _finish(value, base)


def cs_mi(
    x: Any,
    y: Any,
    *,
    sigma: Any = "median",
    chunk_size: int | None = None,
    base: float = math.e,
) -> torch.Tensor:
    r"""Cauchy-Schwarz quadratic mutual information (Principe; CS-IB, Yu et al. 2024).

    .. math::

        I_{CS} = \log \frac{\big(\frac{1}{N^2}\sum_{ij} K^x_{ij} K^y_{ij}\big)
                 \big(\frac{1}{N^4}\sum_{ij} K^x_{ij} \sum_{ij} K^y_{ij}\big)}
                 {\big(\frac{1}{N^3}\sum_{i} (K^x 1)_i (K^y 1)_i\big)^2}

    the CS divergence between the Parzen estimates of p(x, y) and p(x) p(y), with
    Gaussian Gram matrices ``exp(-|.|^2 / (2 sigma^2))`` (the SJYuCNEL ``loss_cs.py``
    form) and the delta kernel for integer labels. ``sigma``: as in
    :func:`renyi_entropy` (default: median pairwise distance; a pair for (x, y)). Non-negative
    by Cauchy-Schwarz, 0 iff the smoothed densities factorise.

    Memory: O(N * chunk_size) -- only row sums are kept, no N x N matrix. Time O(N^2 d).

    Good at: cheap, differentiable dependence measure. Bad at: it is not Shannon MI
    (a different divergence) and depends on sigma.

    >>> y = torch.tensor([0, 0, 1, 1, 1, 1])
    >>> abs(float(cs_mi(y, y)) - math.log(20**3 / 72**2)) < 1e-12  # closed form for labels
    True
    """
    base = check_base(base)
    device = _device_of(x)
    sx, sy = _sigma_pair(sigma)
    xt, specx = _kernel_var(x, "x", device, sx)
    yt, specy = _kernel_var(y, "y", device, sy)
    n = check_same_n(x=xt, y=yt)
    if _is_constant(xt) or _is_constant(yt):
        return _zero(device)
    chunk = chunk_size or _knn.default_chunk(n, device)
    rx, ry, joint = [], [], _zero(device)
    for s in range(0, n, chunk):
        kx = _gram_block(xt[s : s + chunk], xt, specx)
        ky = _gram_block(yt[s : s + chunk], yt, specy)
        rx.append(kx.sum(1))
        ry.append(ky.sum(1))
        joint = joint + (kx * ky).sum()
    rxs, rys = torch.cat(rx), torch.cat(ry)
    value = (
        torch.log(joint / n**2)
        + torch.log(rxs.sum() * rys.sum() / n**4)
        - 2.0 * torch.log((rxs * rys).sum() / n**3)
    )
    return _finish(value, base)


# =============================================================================
# Gaussian (canonical-correlation) MI
# =============================================================================


def _one_hot_minus_last(lab: torch.Tensor) -> torch.Tensor:
    _, inv = torch.unique(lab, return_inverse=True)
    m = int(inv.max()) + 1
    return torch.nn.functional.one_hot(inv, m)[:, : m - 1].to(_F64)


def cca_mi(x: Any, y: Any, *, base: float = math.e) -> torch.Tensor:
    r"""Gaussian mutual information from the sample covariance (canonical correlations).

    .. math:: I = \frac12 \log \frac{\det \Sigma_{xx} \det \Sigma_{yy}}{\det \Sigma}
                = -\frac12 \sum_i \log(1 - \rho_i^2)

    (rho_i: canonical correlations). Exact for jointly Gaussian variables and a lower
    bound-like baseline otherwise: it sees only linear dependence. Invariant to
    invertible affine maps of x and of y. Integer labels are one-hot encoded (last
    class dropped). Needs n > dx + dy and non-singular marginal covariances: constant
    (or collinear) columns raise ``ValueError`` naming the argument; a singular joint
    covariance (y an exact linear function of x) gives +inf.

    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(5000, 1, generator=g, dtype=torch.float64)
    >>> y = 0.9 * x + (1 - 0.81) ** 0.5 * torch.randn(5000, 1, generator=g, dtype=torch.float64)
    >>> abs(float(cca_mi(x, y)) - (-0.5 * math.log(1 - 0.81))) < 0.02
    True
    """
    base = check_base(base)
    device = _device_of(x)
    xt = _one_hot_minus_last(_labels(x, "x", device)) if _is_labels(x) else _samples(x, "x", device)
    yt = _one_hot_minus_last(_labels(y, "y", device)) if _is_labels(y) else _samples(y, "y", device)
    n = check_same_n(x=xt, y=yt)
    if _is_constant(xt) or _is_constant(yt):
        return _zero(device)
    dx, dy = xt.shape[1], yt.shape[1]
    if n <= dx + dy:
        raise ValueError(
            f"x, y: the Gaussian MI needs more samples than dimensions, got n = {n} for "
            f"dx + dy = {dx + dy}"
        )
    z = torch.cat([xt, yt], dim=1)
    z = z - z.mean(dim=0)
    S = (z.T @ z) / (n - 1)

    def logdet(M: torch.Tensor, name: str, why: str) -> torch.Tensor:
        L, info = torch.linalg.cholesky_ex(M)
        if int(info) != 0:
            if name == "joint":
                return torch.tensor(-math.inf, dtype=_F64, device=device)
            raise ValueError(f"{name}: {why}")
        return 2.0 * torch.log(torch.diagonal(L)).sum()

    _refuse_constant_columns(xt, "x", "the Gaussian MI needs a non-singular covariance")
    _refuse_constant_columns(yt, "y", "the Gaussian MI needs a non-singular covariance")
    lx = logdet(S[:dx, :dx], "x", "the covariance is singular (collinear columns)")
    ly = logdet(S[dx:, dx:], "y", "the covariance is singular (collinear columns)")
    lj = logdet(S, "joint", "")
    return _finish(0.5 * (lx + ly - lj), base)


# =============================================================================
# entry points
# =============================================================================

_MI_FUNCS = {
    "ksg": ksg_mi,
    "binning": binning_mi,
    "kde": kde_mi,
    "renyi": renyi_mi,
    "cs": cs_mi,
    "cca": cca_mi,
}

_ENTROPY_FUNCS = {
    "kl": kl_entropy,
    "weighted_kl": weighted_kl_entropy,
    "binning": binning_entropy,
    "discrete": discrete_entropy,
    "kde": kde_entropy,
    "renyi": renyi_entropy,
}


def mutual_information(
    x: Any, y: Any, *, method: str = "ksg", base: float = math.e, **options: Any
) -> torch.Tensor:
    """Mutual information I(X; Y) by the estimator ``method``, as a 0-d tensor on x's device.

    ``method``: ``"ksg"`` (:func:`ksg_mi`; Ross's mixed estimator for integer labels),
    ``"binning"`` (:func:`binning_mi`), ``"kde"`` (:func:`kde_mi`), ``"renyi"``
    (:func:`renyi_mi`), ``"cs"`` (:func:`cs_mi`), ``"cca"`` (:func:`cca_mi`).
    ``options`` go to that function (keyword-only); ``base=2`` gives bits.

    >>> y = torch.tensor([0, 1, 0, 1])
    >>> float(mutual_information(torch.tensor([[0.5], [-0.5], [0.5], [-0.5]]), y,
    ...                          method="binning", base=2))
    1.0
    """
    method = check_choice(method, name="method", choices=MI_METHODS)
    return _MI_FUNCS[method](x, y, base=base, **options)


def entropy(x: Any, *, method: str = "kl", base: float = math.e, **options: Any) -> torch.Tensor:
    """Entropy H(X) by the estimator ``method``, as a 0-d tensor on x's device.

    ``method``: ``"kl"`` (:func:`kl_entropy`), ``"weighted_kl"``
    (:func:`weighted_kl_entropy`), ``"binning"`` (:func:`binning_entropy`),
    ``"discrete"`` (:func:`discrete_entropy`), ``"kde"`` (:func:`kde_entropy`),
    ``"renyi"`` (:func:`renyi_entropy`). The continuous ones are differential
    entropies (can be negative); ``given=labels`` gives H(X | Y) where supported.

    >>> float(entropy(torch.tensor([0, 1, 2, 3]), method="discrete", base=2))
    2.0
    """
    method = check_choice(method, name="method", choices=ENTROPY_METHODS)
    return _ENTROPY_FUNCS[method](x, base=base, **options)
