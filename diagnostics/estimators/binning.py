"""Discrete (plug-in) entropy and the binning estimator of the information plane.

Source: Shwartz-Ziv & Tishby (2017, IDNNs): activations binned on ``linspace(-1, 1, 30)``,
each unique row of a layer one value of T, I(X;T) = H(T), I(T;Y) = H(T) - sum_y p(y) H(T|y);
Saxe et al. (2018) for the ``floor(t / bin_size)`` variant of unbounded activations.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from diagnostics._validate import (
    as_samples,
    as_tensor,
    check_base,
    check_float,
    check_int,
    check_same_n,
)
from diagnostics.estimators._common import _F64, _device_of, _discrete, _finish, _labels

__all__ = ["discrete_entropy", "discretize", "binning_entropy", "binning_mi"]


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
    is ``H(T) - H(T|Y)``. Pass the inputs as integers (bit patterns, or sample ids
    ``torch.arange(n)``): float inputs would be binned with the layer's edges too.
    Units: nats (the IDNNs code reports bits: ``base=2``).

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
