"""Covariance-spectrum measures of a representation: effective rank, von Neumann entropy and
alpha-ReQ.

Sources: Roy & Vetterli (2007) and RankMe (Garrido et al. 2023) for erank = exp(H(s / sum s))
of the singular values; the von Neumann entropy of the trace-normalised covariance
(-sum lambda log lambda); alpha-ReQ (Agrawal et al. 2022), the power-law decay slope of the PCA
eigenspectrum.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from diagnostics._validate import (
    ArrayLike,
    as_samples,
    check_base,
    check_float,
    to_base,
)
from diagnostics.estimators.diffusion import _check_dtype

__all__ = ["effective_rank", "von_neumann_entropy", "alpha_req"]


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
