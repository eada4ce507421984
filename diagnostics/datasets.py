"""Generated data sets for information-plane studies (nothing here is downloaded).

- :func:`tishby_dataset`: the 12-bit task of Shwartz-Ziv & Tishby (2017): all 4096
  binary patterns of 12 inputs and a binary label from a documented, spherically
  symmetric rule (the original rule was never published).
- :func:`synthetic_mi_images`: the high-dimensional check of the compression-based
  estimator of Butakov et al. (2023): a pair of image-valued variables whose mutual
  information is known in closed form.
- :func:`label_profile`: P(y = 1 | number of ones), the summary by which the generated
  12-bit labels are compared with the stored data set.
"""

from __future__ import annotations

import math

import torch

from diagnostics._validate import as_labels, as_samples, check_float, check_int

__all__ = ["tishby_dataset", "synthetic_mi_images", "label_profile"]

#: P(y = 1 | number of ones) of the stored 12-bit data set (``var_u.mat``), rounded:
#: 0-4 ones -> 0, 5 -> 0.08, 6 -> 0.58, 7 -> 0.92, 8-12 -> 1.
STORED_PROFILE = (0.0, 0.0, 0.0, 0.0, 0.0, 0.08, 0.58, 0.92, 1.0, 1.0, 1.0, 1.0, 1.0)

N_BITS = 12


def _all_patterns(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """All 4096 patterns, row ``i`` = the 12 binary digits of ``i``, most significant first."""
    i = torch.arange(2**N_BITS).unsqueeze(1)
    shifts = torch.arange(N_BITS - 1, -1, -1)
    return ((i >> shifts) & 1).to(dtype)


def tishby_dataset(
    *,
    seed: int = 0,
    points=None,
    p5: float = 0.08,
    p7: float = 0.92,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    return_rule: bool = False,
):
    """The 12-bit data set of the information-plane experiments, generated.

    Inputs: all ``2**12 = 4096`` binary patterns ``x`` of 12 units, row ``i`` holding the
    binary digits of ``i`` (most significant first, the order of the stored ``var_u.mat``).

    Label rule (spherically symmetric). Unit ``i`` sits at a point ``u_i`` on the unit
    sphere S^2: the 12 points are drawn uniformly (normalised standard normals, from a
    ``torch.Generator`` seeded with ``seed``) unless ``points`` gives them. A pattern
    selects the points of its active units; with ``k(x) = sum_i x_i`` and the resultant
    ``R(x) = sum_i x_i u_i``,

        f(x) = k(x) - lam * |R(x)|,        y = 1 if f(x) > theta else 0.

    ``f`` is invariant under every rotation of the sphere (it depends only on the
    pairwise angles of the selected points): more active units push towards ``y = 1``,
    and, at equal ``k``, points spread over the sphere (small resultant) rather than
    clustered. The two constants are set from the configuration so that a fraction
    ``p5`` of the 5-unit patterns and ``p7`` of the 7-unit patterns are positive, the
    stored data set's rates (:data:`STORED_PROFILE`): with ``a`` the ``p5``-quantile of
    ``|R|`` over the 792 5-unit patterns and ``b`` the ``p7``-quantile over the 7-unit
    ones (midpoints between order statistics), ``lam = 2 / (b - a)`` and
    ``theta = 5 - lam * a``. What falls out for the other counts is then close to the
    stored profile too: 0-4 ones -> 0, 6 -> 0.54 on average (0.48-0.60 over 30 seeds,
    0.53 for ``seed=0``; stored 0.58), 8 -> 0.99-1 (stored 1), 9-12 -> 1; overall
    P(y = 1) is about 0.5.
    (Why this rule: the original set is described as "12 points on a sphere and a
    spherically symmetric function, thresholded", and its P(y = 1) depends mostly on the
    number of ones; this is the simplest rule of that kind that matches the profile.)

    Parameters
    ----------
    seed:
        Seeds the 12 points (ignored when ``points`` is given).
    points:
        Optional ``(12, 3)`` array of points (normalised to unit length here). Symmetric
        configurations (e.g. the icosahedron) give tied ``|R|`` values, and then the
        quantile rule cannot hit ``p5``/``p7`` exactly.
    p5, p7:
        Target P(y = 1) among the patterns with 5 and with 7 active units, ``0 < p5 < p7 < 1``.
    device, dtype:
        Where and as what ``x`` is returned (``y`` is int64 on the same device).
    return_rule:
        Also return a dict with ``points``, ``lam``, ``theta`` and the resulting
        ``profile`` (P(y = 1 | k) for k = 0..12).

    Returns
    -------
    ``(x, y)``: ``x`` of shape ``(4096, 12)`` with entries 0/1, ``y`` of shape ``(4096,)``;
    ``(x, y, rule)`` with ``return_rule=True``.

    >>> x, y = tishby_dataset()
    >>> tuple(x.shape), tuple(y.shape), int(y.sum()) in range(1900, 2300)
    ((4096, 12), (4096,), True)
    >>> [round(p, 2) for p in label_profile(x, y)[4:9]]
    [0.0, 0.08, 0.53, 0.92, 1.0]
    """
    seed = check_int(seed, name="seed")
    p5 = check_float(p5, name="p5", minimum=0.0, maximum=1.0)
    p7 = check_float(p7, name="p7", minimum=0.0, maximum=1.0)
    if not 0.0 < p5 < p7 < 1.0:
        raise ValueError(f"p5, p7: expected 0 < p5 < p7 < 1, got p5={p5}, p7={p7}")
    if points is None:
        gen = torch.Generator().manual_seed(seed)
        u = torch.randn(N_BITS, 3, generator=gen, dtype=torch.float64)
    else:
        u = as_samples(points, name="points", dtype=torch.float64).cpu()
        if tuple(u.shape) != (N_BITS, 3):
            raise ValueError(f"points: expected shape (12, 3), got {tuple(u.shape)}")
    norms = u.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError("points: expected non-zero vectors (they are normalised onto the sphere)")
    u = u / norms
    x = _all_patterns()
    k = x.sum(1)
    r = (x @ u).norm(dim=1)

    def quantile(values: torch.Tensor, p: float) -> float:
        s = values.sort().values
        m = min(max(round(p * len(s)), 1), len(s) - 1)  # m values below the cut
        return float(s[m - 1] + s[m]) / 2

    a = quantile(r[k == 5], p5)
    b = quantile(r[k == 7], p7)
    if not b > a:
        raise ValueError(
            "points: this configuration cannot realise the rule (the p7-quantile of |R| over "
            f"7-unit patterns, {b:.4g}, is not above the p5-quantile over 5-unit ones, {a:.4g})"
        )
    lam = 2.0 / (b - a)
    theta = 5.0 - lam * a
    y = (k - lam * r > theta).to(torch.int64)
    x_out = x.to(dtype=dtype, device=device)
    y_out = y.to(device=x_out.device)
    if not return_rule:
        return x_out, y_out
    rule = {
        "points": u.numpy(),
        "lam": lam,
        "theta": theta,
        "profile": label_profile(x, y),
    }
    return x_out, y_out, rule


def label_profile(x, y) -> list[float]:
    """P(y = 1 | number of ones in x) for 0..d ones (NaN where no pattern has that count).

    ``x``: ``(n, d)`` binary inputs; ``y``: ``(n,)`` binary labels.

    >>> x, y = tishby_dataset()
    >>> label_profile(x, y)[0], label_profile(x, y)[12]
    (0.0, 1.0)
    """
    xt = as_samples(x, name="x").cpu()
    yt = as_labels(y, name="y").cpu()
    if xt.shape[0] != yt.shape[0]:
        raise ValueError(
            f"expected the same number of samples in x, y, got: x has {xt.shape[0]}, "
            f"y has {yt.shape[0]}"
        )
    k = xt.sum(1).round().to(torch.int64)
    out = []
    for j in range(xt.shape[1] + 1):
        m = k == j
        out.append(float(yt[m].double().mean()) if bool(m.any()) else math.nan)
    return out


def synthetic_mi_images(
    n: int,
    mi: float,
    *,
    latent_dim: int = 2,
    size: int = 16,
    width: float = 2.0,
    spread: float = 2.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    return_latents: bool = False,
):
    """Two image-valued variables with a known mutual information (nats).

    The validation recipe of Butakov et al. (2023, "Information bottleneck analysis of
    deep neural networks via lossy compression"):

    1. Latents ``xi, eta`` in R^m (``m = latent_dim``), jointly Gaussian, standard normal
       marginals, coordinate pair ``(xi_j, eta_j)`` correlated with
       ``rho = sqrt(1 - exp(-2 mi / m))`` and the pairs independent, so that each pair
       carries ``mi / m`` nats and ``I(xi; eta) = mi`` exactly
       (``-1/2 ln(1 - rho^2)`` per pair).
    2. Random orthogonal mixing: ``xi <- Q_x xi``, ``eta <- Q_y eta`` with Haar-random
       orthogonal ``Q_x, Q_y`` (invertible, so the MI is unchanged; the marginals stay
       standard normal, but the information no longer sits in aligned coordinate pairs).
    3. Rendering: each latent is mapped to ``(0, 1)^m`` by ``Phi(z / spread)`` (``Phi``
       the standard normal CDF; invertible) and, for ``m = 2``, drawn as a ``size x size`` image of a Gaussian
       bump of standard deviation ``width`` pixels centred at that point of the image
       (a margin of ``width`` pixels kept free). The rendering is a smooth injective map,
       so the images carry the same MI as the latents. For ``m != 2`` the latent
       coordinates are split over ``ceil(m / 2)`` images (each with one bump, a missing
       coordinate at the centre) stacked side by side: shape ``(n, size * size * ceil(m/2))``.

    ``spread = 1`` makes the bump centres uniform over the image (the paper's choice);
    the default ``spread = 2`` concentrates them towards the middle with a density that
    fades smoothly at the borders. The true MI is the same either way, but a uniform
    distribution's hard edges bias every kNN entropy estimate (by about -0.2 nats at
    n = 5000 even on the 2-D latents themselves), which would blur what the benchmark
    is meant to show: the error added by the compression step.

    Returns ``(x, y, true_mi)``: ``x`` and ``y`` of shape ``(n, size * size)`` for ``m = 2``
    (flattened images, values in ``(0, 1]``) and the true MI in nats (``mi`` itself);
    with ``return_latents=True`` also ``(xi, eta)``, the mixed Gaussian latents (n, m)
    the images were drawn from (an oracle "compression" for benchmarks).

    >>> x, y, true_mi = synthetic_mi_images(100, 1.0)
    >>> tuple(x.shape), tuple(y.shape), true_mi
    ((100, 256), (100, 256), 1.0)
    """
    n = check_int(n, name="n", minimum=1)
    mi = check_float(mi, name="mi", minimum=0.0)
    m = check_int(latent_dim, name="latent_dim", minimum=1)
    size = check_int(size, name="size", minimum=4)
    width = check_float(width, name="width", positive=True)
    if 2 * width >= size - 1:
        raise ValueError(
            f"width: expected a bump narrower than the image (2 * width < size - 1), got "
            f"width={width} for size={size}"
        )
    spread = check_float(spread, name="spread", positive=True)
    seed = check_int(seed, name="seed")
    gen = torch.Generator().manual_seed(seed)
    rho = math.sqrt(-math.expm1(-2.0 * mi / m)) if mi > 0 else 0.0
    xi = torch.randn(n, m, generator=gen, dtype=torch.float64)
    noise = torch.randn(n, m, generator=gen, dtype=torch.float64)
    eta = rho * xi + math.sqrt(max(1.0 - rho * rho, 0.0)) * noise

    def haar(dim: int) -> torch.Tensor:
        q, r = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
        return q * torch.sign(torch.diagonal(r)).unsqueeze(0)

    xi = xi @ haar(m).T
    eta = eta @ haar(m).T
    x = _render_bumps(_normal_cdf(xi / spread), size=size, width=width)
    y = _render_bumps(_normal_cdf(eta / spread), size=size, width=width)
    x = x.to(dtype=dtype, device=device)
    y = y.to(dtype=dtype, device=x.device)
    if return_latents:
        return x, y, mi, (xi.to(x.device), eta.to(x.device))
    return x, y, mi


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-z / math.sqrt(2.0))


def _render_bumps(u: torch.Tensor, *, size: int, width: float) -> torch.Tensor:
    """Points of (0, 1)^m -> flattened images of Gaussian bumps (two coordinates per image)."""
    n, m = u.shape
    if m % 2:
        u = torch.cat([u, torch.full((n, 1), 0.5, dtype=u.dtype)], dim=1)
    grid = torch.arange(size, dtype=u.dtype)
    lo, hi = width, size - 1 - width
    images = []
    for j in range(0, u.shape[1], 2):
        cy = lo + (hi - lo) * u[:, j]
        cx = lo + (hi - lo) * u[:, j + 1]
        gy = torch.exp(-((grid.unsqueeze(0) - cy.unsqueeze(1)) ** 2) / (2 * width**2))
        gx = torch.exp(-((grid.unsqueeze(0) - cx.unsqueeze(1)) ** 2) / (2 * width**2))
        images.append((gy.unsqueeze(2) * gx.unsqueeze(1)).reshape(n, size * size))
    return torch.cat(images, dim=1)
