"""Kernel-density bounds on entropy and mutual information of a noisy layer T = h + N(0, s2 I).

Source: Kolchinsky & Tracey (2017), pairwise-distance bounds, as used by Saxe et al. (2018)
(ibsgd ``kde.py``): H_up(T) = d/2 - mean_i[logsumexp_j(-|t_i - t_j|^2 / (2 s2)) - ln N
- (d/2) ln(2 pi s2)], the lower bound with 4 s2 plus (d/2) ln(1/4); H(T|X) = (d/2)(ln(2 pi s2) + 1).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from diagnostics._validate import (
    check_base,
    check_choice,
    check_float,
    check_same_n,
)
from diagnostics.estimators._common import (
    _conditional,
    _device_of,
    _finish,
    _is_constant,
    _is_labels,
    _labels,
    _samples,
    _zero,
)

__all__ = ["kde_entropy", "kde_mi"]


def _dense_chunk(n: int, device: torch.device) -> int:
    """Rows per block of the Gram/KDE kernels: 32 MiB float64 blocks on the CPU (few,
    large torch ops: each op pays a thread-pool round trip), 512 MiB on accelerators."""
    budget = (1 << 22) if device.type == "cpu" else (1 << 26)
    return max(16, min(n, budget // max(n, 1)))


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances by the matmul expansion (clamped at 0), as ibsgd's kde.py."""
    d2 = torch.addmm((b * b).sum(1)[None, :], a, b.T, alpha=-2.0)
    return d2.add_((a * a).sum(1)[:, None]).clamp_min_(0.0)


def _kde_upper(t: torch.Tensor, s2: float, chunk: int | None) -> torch.Tensor:
    n, d = t.shape
    chunk = chunk or _dense_chunk(n, t.device)
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
