"""Gaussian mutual information from canonical correlations: I = -1/2 sum log(1 - rho_i^2).

Source: the closed form for jointly Gaussian variables, I = 1/2 ln(det Sxx det Syy / det S),
written through the canonical correlations rho_i (Kay 1992; Borga 2001). Exact for Gaussian
data, a lower bound otherwise.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from diagnostics._validate import (
    check_base,
    check_same_n,
)
from diagnostics.estimators._common import (
    _F64,
    _device_of,
    _finish,
    _is_constant,
    _is_labels,
    _labels,
    _refuse_constant_columns,
    _samples,
    _zero,
)

__all__ = ["cca_mi"]


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
