"""Accuracy, API and bad-input tests of diagnostics.mi.

Accuracy tolerances at n = 5000 (closed-form ground truth), and why:

- KSG, bivariate Gaussian: 0.05 nats. Its standard deviation at n = 5000 is ~0.015
  nats (error of 6 seeds: -0.019..+0.027 for rho in {0.5, 0.75, 0.9}); the bias with
  k = 3 is below 0.01 in 2-D. 0.05 is ~3 sd.
- KSG, 5x5 dense correlation (10-D joint): 0.08 nats; 10x10 (20-D joint): KSG is
  biased low in high dimensions (about -0.1 nats at MI ~0.5-0.9), so the test asserts
  an underestimate within 0.2 nats (documented weakness, not a bug).
- Gaussian (CCA) MI: exact for Gaussians up to sampling: sd ~ rho / sqrt(n) <= 0.013
  in 2-D -> 0.04; positive small-sample bias ~ dx dy / (2n) in d dimensions -> 0.03
  (5x5) and 0.06 (10x10).
- Kozachenko-Leonenko entropy: sd ~0.02 in d <= 2 -> 0.05; at d = 5 (equicorrelated)
  the plain estimator is biased by about -0.08 -> 0.15; the weighted estimator
  (d = 6, default k = 12) -> 0.15.
- Cauchy-Schwarz QMI with a fixed sigma has a closed population value (derived in
  test_cs_matches_closed_form); the V-statistic bias is O(1/n) and sd ~0.004 -> 0.015.
- KDE bounds: for X ~ N(0, I_d), T = X, the N -> inf limits of the Kolchinsky-Tracey
  bounds are closed forms (test_kde_bounds_match_their_gaussian_limits); sd ~0.01 -> 0.03.
- Discrete cases (binning, plug-in, labels with renyi/cs/kde) are exact: 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import diagnostics
from diagnostics.mi import (
    ENTROPY_METHODS,
    MI_METHODS,
    binning_entropy,
    binning_mi,
    bsy_weights,
    cca_mi,
    cs_mi,
    discrete_entropy,
    discretize,
    entropy,
    kde_entropy,
    kde_mi,
    kl_entropy,
    ksg_mi,
    mutual_information,
    renyi_entropy,
    renyi_mi,
    weighted_kl_entropy,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
N = 5000


def gaussian_pair(n: int, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(n)
    return x[:, None], y[:, None]


def dense_gaussian(n: int, dx: int, dy: int, c: float, seed: int):
    """Equicorrelated (dense) joint Gaussian: every pair of coordinates has correlation c."""
    d = dx + dy
    cov = (1 - c) * np.eye(d) + c * np.ones((d, d))
    z = np.random.default_rng(seed).standard_normal((n, d)) @ np.linalg.cholesky(cov).T
    ld = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    mi = 0.5 * (ld(cov[:dx, :dx]) + ld(cov[dx:, dx:]) - ld(cov))
    return z[:, :dx], z[:, dx:], mi


def bivariate_mi(rho: float) -> float:
    return -0.5 * math.log(1 - rho**2)


# =========================================================================== accuracy


@pytest.mark.parametrize("rho", [0.5, 0.75, 0.9])
def test_bivariate_gaussian_ksg_and_cca(rho):
    x, y = gaussian_pair(N, rho, seed=int(rho * 100))
    truth = bivariate_mi(rho)
    assert abs(float(ksg_mi(x, y)) - truth) < 0.05
    assert abs(float(cca_mi(x, y)) - truth) < 0.04


def test_dense_gaussian_5x5():
    x, y, truth = dense_gaussian(N, 5, 5, 0.4, seed=1)
    assert abs(float(ksg_mi(x, y)) - truth) < 0.08
    assert abs(float(cca_mi(x, y)) - truth) < 0.03


@pytest.mark.slow
def test_dense_gaussian_10x10_ksg_underestimates_cca_exact():
    x, y, truth = dense_gaussian(N, 10, 10, 0.3, seed=2)
    ksg = float(ksg_mi(x, y))
    assert truth - 0.2 < ksg < truth + 0.02  # KSG's known low bias in 20 joint dimensions
    assert abs(float(cca_mi(x, y)) - truth) < 0.06


def test_invertible_transforms():
    rho = 0.75
    x, y = gaussian_pair(N, rho, seed=3)
    truth = bivariate_mi(rho)
    base = float(ksg_mi(x, y))
    # monotone nonlinear maps leave I unchanged; KSG's estimate moves only by its
    # finite-sample error (the densities become less smooth)
    assert abs(float(ksg_mi(x**3 + x, np.exp(y))) - truth) < 0.05
    # affine maps: with per-column standardisation KSG sees the same points
    assert abs(float(ksg_mi(3 * x - 2, -0.5 * y + 7)) - base) < 1e-9
    # CCA is exactly invariant to invertible affine maps of each block
    x5, y5, _ = dense_gaussian(2000, 3, 2, 0.4, seed=4)
    a = np.random.default_rng(0).standard_normal((3, 3)) + 3 * np.eye(3)
    ref = float(cca_mi(x5, y5))
    assert abs(float(cca_mi(x5 @ a + 1.0, -2.0 * y5 + 5.0)) - ref) < 1e-9


@pytest.mark.parametrize("d, tol", [(1, 0.05), (2, 0.05), (5, 0.15)])
def test_kl_entropy_gaussian(d, tol):
    cov = 0.5 * np.eye(d) + 0.5 * np.ones((d, d))
    x = np.random.default_rng(d).standard_normal((N, d)) @ np.linalg.cholesky(cov).T
    truth = 0.5 * np.linalg.slogdet(2 * math.pi * math.e * cov)[1]
    assert abs(float(kl_entropy(x)) - truth) < tol
    assert abs(float(entropy(x, method="kl", base=2)) - truth / math.log(2)) < tol / math.log(2)


def test_weighted_kl_entropy_gaussian_and_reduction():
    d = 6
    cov = 0.5 * np.eye(d) + 0.5 * np.ones((d, d))
    x = np.random.default_rng(6).standard_normal((N, d)) @ np.linalg.cholesky(cov).T
    truth = 0.5 * np.linalg.slogdet(2 * math.pi * math.e * cov)[1]
    assert abs(float(weighted_kl_entropy(x)) - truth) < 0.15
    # weights: sum to one, satisfy the bias constraint, and reduce to plain KL for d < 4
    from scipy.special import gammaln

    w = bsy_weights(12, 6)
    j = np.arange(1, 13)
    assert abs(w.sum() - 1) < 1e-12
    assert abs((w * np.exp(gammaln(j + 2 / 6) - gammaln(j))).sum()) < 1e-9
    x2 = x[:2000, :3]
    assert abs(float(weighted_kl_entropy(x2, k=4)) - float(kl_entropy(x2, k=4))) < 1e-12


def test_kl_entropy_given_labels_is_class_weighted_sum():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 3000)
    x = rng.standard_normal((3000, 2)) * (1 + y[:, None])
    parts = sum(np.mean(y == c) * float(kl_entropy(x[y == c], noise=0)) for c in range(3))
    assert abs(float(kl_entropy(x, given=y, noise=0)) - parts) < 1e-12
    # H(X|Y) for x | y ~ N(0, s^2 I_2): sum_y p(y) log(2 pi e s_y^2)
    truth = sum(np.mean(y == c) * math.log(2 * math.pi * math.e * (1 + c) ** 2) for c in range(3))
    assert abs(float(kl_entropy(x, given=y)) - truth) < 0.06


def _cs_population(cov: np.ndarray, dx: int, sigma: float) -> float:
    """Population value of the CS-QMI V-statistic with Gaussian kernels exp(-u^2/(2 sigma^2)).

    Each kernel mean is a Gaussian density at 0: E k(Z - Z') = c N(0; 0, 2 S + sigma^2 I)
    for independent Z, Z' ~ N(0, S). The joint term uses S, the marginal terms Sx, Sy,
    the cross term (x_i, y_i) against an independent x' and y'': covariance
    [[2 Sx, Sxy], [Syx, 2 Sy]]. The (2 pi)^d and kernel constants cancel in the ratio.
    """
    d = cov.shape[0]
    sx, sy, sxy = cov[:dx, :dx], cov[dx:, dx:], cov[:dx, dx:]
    cross = np.block([[2 * sx, sxy], [sxy.T, 2 * sy]])
    s2 = sigma**2
    ld = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    return (
        ld(cross + s2 * np.eye(d))
        - 0.5 * ld(2 * cov + s2 * np.eye(d))
        - 0.5 * ld(2 * sx + s2 * np.eye(dx))
        - 0.5 * ld(2 * sy + s2 * np.eye(d - dx))
    )


@pytest.mark.slow
@pytest.mark.parametrize("rho, sigma", [(0.5, 1.0), (0.9, 0.5)])
def test_cs_matches_closed_form(rho, sigma):
    x, y = gaussian_pair(N, rho, seed=5)
    cov = np.array([[1.0, rho], [rho, 1.0]])
    assert abs(float(cs_mi(x, y, sigma=sigma)) - _cs_population(cov, 1, sigma)) < 0.015
    # chunking does not change the value
    xs, ys = x[:1000], y[:1000]
    assert (
        abs(float(cs_mi(xs, ys, sigma=sigma, chunk_size=333)) - float(cs_mi(xs, ys, sigma=sigma)))
        < 1e-12
    )


@pytest.mark.slow
@pytest.mark.parametrize("d, s2", [(1, 0.1), (2, 0.1)])
def test_kde_bounds_match_their_gaussian_limits(d, s2):
    """X ~ N(0, I_d), T = X + N(0, s2 I). As N -> inf the KL upper bound tends to
    d/2 + (d/2) log(2 pi (1 + s2)) + d / (2 (1 + s2)) and the Bhattacharyya lower bound to
    the same expression at 4 s2 plus (d/2) log(1/4); the true H(T) = (d/2) log(2 pi e (1+s2))
    lies between them. I(X;T) = H(T) - (d/2)(log(2 pi s2) + 1)."""
    x = np.random.default_rng(d).standard_normal((N, d))

    def limit(v):
        return 0.5 * d + 0.5 * d * math.log(2 * math.pi * (1 + v)) + d / (2 * (1 + v))

    h_up, h_lo = limit(s2), limit(4 * s2) + 0.5 * d * math.log(0.25)
    h_true = 0.5 * d * math.log(2 * math.pi * math.e * (1 + s2))
    assert h_lo < h_true < h_up
    up, lo = (
        float(kde_entropy(x, noise_variance=s2)),
        float(kde_entropy(x, noise_variance=s2, bound="lower")),
    )
    assert abs(up - h_up) < 0.03 and abs(lo - h_lo) < 0.03
    h_noise = 0.5 * d * (math.log(2 * math.pi * s2) + 1)
    xs = x[:1000]
    h_sub = float(kde_entropy(xs, noise_variance=s2))
    assert abs(float(kde_mi(xs, xs, noise_variance=s2)) - (h_sub - h_noise)) < 1e-12


def test_kde_labels_far_apart_give_label_entropy():
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    t = np.stack([10.0 * y, -5.0 * y], axis=1)
    p = np.array([10, 20, 30, 40]) / 100
    h_y = float(-(p * np.log(p)).sum())
    for bound in ("upper", "lower"):
        assert abs(float(kde_mi(t, y, noise_variance=1e-3, bound=bound)) - h_y) < 1e-9
        assert abs(float(kde_mi(y, t, noise_variance=1e-3, bound=bound)) - h_y) < 1e-9


def test_discrete_cases_are_exact():
    # uniform over 8 symbols, as bin values of a layer
    t = np.repeat(np.linspace(-0.95, 0.95, 8), 50)[:, None]
    assert abs(float(binning_entropy(t)) - math.log(8)) < 1e-12
    # every input distinct -> I(X;T) = H(T)
    x = np.arange(400)
    assert abs(float(binning_mi(x, t)) - math.log(8)) < 1e-12
    # T determines Y (4 classes of 2 symbols): I(T;Y) = H(Y) = log 4, H(T|Y) = log 2
    y = np.repeat(np.arange(4), 100)
    assert abs(float(binning_mi(t, y)) - math.log(4)) < 1e-12
    assert abs(float(binning_entropy(t, given=y)) - math.log(2)) < 1e-12
    # independent by construction: I = 0 exactly
    a = np.tile(np.arange(4), 100)
    assert abs(float(binning_mi(a, y))) < 1e-12
    assert abs(float(discrete_entropy(np.stack([a, y], 1))) - math.log(16)) < 1e-12
    assert abs(float(discrete_entropy(a, given=y)) - math.log(4)) < 1e-12


def test_discrete_label_path_separated_classes():
    """Classes in disjoint clusters: every k-ball holds only its own class, m_i = k, so
    Ross's estimate is exactly psi(N) - <psi(N_y)> (close to H(Y))."""
    from scipy.special import digamma

    counts = np.array([300, 500, 700])
    y = np.repeat(np.arange(3), counts)
    x = 100.0 * y + np.random.default_rng(0).standard_normal(y.size)
    expected = digamma(y.size) - np.mean(digamma(counts[y]))
    assert abs(float(ksg_mi(x, y)) - expected) < 1e-12
    p = counts / counts.sum()
    assert abs(expected - float(-(p * np.log(p)).sum())) < 0.01


def test_label_kernels_are_exact():
    y = np.repeat(np.arange(3), [10, 30, 60])
    p = np.array([0.1, 0.3, 0.6])
    for alpha in (1.01, 2.0):
        s_alpha = math.log((p**alpha).sum()) / (1 - alpha)
        assert abs(float(renyi_entropy(y, alpha=alpha)) - s_alpha) < 1e-9
        assert abs(float(renyi_mi(y, y, alpha=alpha)) - s_alpha) < 1e-9
    counts = np.array([10, 30, 60])
    s2, s3 = (counts**2).sum(), (counts**3).sum()
    assert abs(float(cs_mi(y, y)) - math.log(s2**3 / s3**2)) < 1e-12


def test_renyi_and_cs_track_dependence():
    """No closed form for Shannon MI: check they order dependence and vanish-ish at 0."""
    vals = {}
    for rho in (0.0, 0.5, 0.9):
        x, y = gaussian_pair(400, rho, seed=9)
        vals[rho] = (float(renyi_mi(x, y)), float(cs_mi(x, y)))
    for j in range(2):
        assert vals[0.0][j] < vals[0.5][j] < vals[0.9][j]
        assert vals[0.0][j] < 0.3 * vals[0.5][j]
    # the default (median) width scales with the data: the value is scale invariant
    x, y = gaussian_pair(400, 0.5, seed=9)
    assert abs(float(renyi_mi(10 * x, y)) - vals[0.5][0]) < 1e-9
    assert abs(float(cs_mi(10 * x, y)) - vals[0.5][1]) < 1e-9


def test_renyi_subsamples_beyond_max_n():
    x, y = gaussian_pair(900, 0.7, seed=1)
    a = renyi_mi(x, y, max_n=300, seed=3)
    assert float(a) == float(renyi_mi(x, y, max_n=300, seed=3))
    assert abs(float(a) - float(renyi_mi(x, y, max_n=None))) < 0.3


# ========================================================================== API


def test_docstring_examples_run():
    import doctest

    from diagnostics.estimators import binning, gaussian, kde, kernel, knn, mi

    attempted = 0
    for module in (mi, knn, binning, kde, kernel, gaussian):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted > 10


def test_half_precision_inputs():
    x, y = gaussian_pair(500, 0.6, seed=2)
    for dt in (torch.float16, torch.bfloat16):
        xt, yt = torch.from_numpy(x).to(dt), torch.from_numpy(y).to(dt)
        ref = float(ksg_mi(xt.double(), yt.double()))
        assert float(ksg_mi(xt, yt)) == ref


def test_public_names_are_exported():
    for name in (
        "mutual_information", "entropy", "ksg_mi", "binning_mi", "kde_mi", "renyi_mi",
        "cs_mi", "cca_mi", "kl_entropy", "weighted_kl_entropy", "binning_entropy",
        "discrete_entropy", "kde_entropy", "renyi_entropy", "discretize",
    ):  # fmt: skip
        assert callable(getattr(diagnostics, name))


def _mi_case(method):
    x, y = gaussian_pair(400, 0.6, seed=2)
    return np.tanh(x), np.tanh(y)  # inside the default bin range of the binning estimator


@pytest.mark.parametrize("method", MI_METHODS)
def test_dispatch_matches_direct_call_and_base(method):
    x, y = _mi_case(method)
    direct = {"ksg": ksg_mi, "binning": binning_mi, "kde": kde_mi, "renyi": renyi_mi,
              "cs": cs_mi, "cca": cca_mi}[method]  # fmt: skip
    nats = float(mutual_information(x, y, method=method))
    assert nats == float(direct(x, y))
    bits = float(mutual_information(x, y, method=method, base=2))
    assert abs(bits - nats / math.log(2)) < 1e-12


@pytest.mark.parametrize("method", ENTROPY_METHODS)
def test_entropy_dispatch(method):
    x = np.tanh(np.random.default_rng(0).standard_normal((500, 2)))
    if method == "discrete":
        x = (x > 0).astype(np.int64)
    h = entropy(x, method=method)
    assert h.ndim == 0 and h.dtype == torch.float64 and math.isfinite(float(h))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", MI_METHODS)
def test_result_is_0d_on_the_input_device(device, method):
    x, y = _mi_case(method)
    xt = torch.as_tensor(x, device=device)
    yt = torch.as_tensor(y, device=device)
    out = mutual_information(xt, yt, method=method)
    assert out.ndim == 0 and out.device.type == torch.device(device).type
    lab = torch.as_tensor((y[:, 0] > 0).astype(np.int64), device=device)
    out = mutual_information(xt, lab, method=method)
    assert out.ndim == 0 and out.device.type == torch.device(device).type


@pytest.mark.parametrize("device", DEVICES[1:])
@pytest.mark.parametrize("method", MI_METHODS)
def test_accelerator_gives_the_cpu_value(device, method):
    x, y = _mi_case(method)
    cpu = float(mutual_information(x, y, method=method))
    dev = mutual_information(torch.as_tensor(x, device=device), torch.as_tensor(y, device=device),
                             method=method)  # fmt: skip
    assert abs(float(dev) - cpu) < 1e-9
    lab = (y[:, 0] > 0).astype(np.int64)
    cpu = float(mutual_information(x, lab, method=method))
    dev = mutual_information(torch.as_tensor(x, device=device), torch.as_tensor(lab, device=device),
                             method=method)  # fmt: skip
    assert abs(float(dev) - cpu) < 1e-9


@pytest.mark.parametrize("device", DEVICES[1:])
def test_accelerator_kl_entropy(device):
    x = np.random.default_rng(0).standard_normal((800, 3))
    for fn in (kl_entropy, weighted_kl_entropy):
        assert abs(float(fn(torch.as_tensor(x, device=device))) - float(fn(x))) < 1e-9


@pytest.mark.parametrize("method", MI_METHODS)
def test_float32_and_float64_inputs(method):
    x, y = _mi_case(method)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    v32 = float(mutual_information(torch.from_numpy(x32), torch.from_numpy(y32), method=method))
    # identical numbers in either dtype -> identical estimate (everything runs in float64)
    v64 = float(mutual_information(x32.astype(np.float64), y32.astype(np.float64), method=method))
    assert abs(v32 - v64) < 1e-12
    # rounding the data to float32 moves the estimate by far less than its error
    assert abs(v32 - float(mutual_information(x, y, method=method))) < 1e-3


def test_seeded_and_deterministic():
    x, y = gaussian_pair(1000, 0.5, seed=0)
    assert float(ksg_mi(x, y, seed=4)) == float(ksg_mi(x, y, seed=4))
    assert float(ksg_mi(torch.from_numpy(x), y)) == float(ksg_mi(x, torch.from_numpy(y)))


def test_labels_may_come_first():
    x, y = gaussian_pair(1000, 0.5, seed=0)
    lab = (y[:, 0] > 0).astype(np.int64)
    assert float(ksg_mi(lab, x)) == float(ksg_mi(x, lab))
    # both discrete: the plug-in MI
    a = np.tile(np.arange(2), 500)
    assert abs(float(ksg_mi(a, a)) - math.log(2)) < 1e-12


def test_discretize_edges_and_clipping():
    t = torch.tensor([[-1.0, -0.99, 0.0, 0.999, 1.0]])
    codes = discretize(t)
    edges = np.linspace(-1, 1, 30)
    assert codes.tolist() == [np.digitize(t.numpy()[0], edges).tolist()]
    with pytest.warns(RuntimeWarning, match=r"x: 2 of 4 values lie outside"):
        c = discretize(torch.tensor([[-3.0], [0.0], [0.5], [2.0]]))
    assert c[:, 0].tolist() == [1, np.digitize(0.0, edges), np.digitize(0.5, edges), 30]


# ======================================================================= bad input


def _x_y(n=50):
    rng = np.random.default_rng(0)
    return np.tanh(rng.standard_normal((n, 2))), np.tanh(rng.standard_normal((n, 1)))


@pytest.mark.parametrize("method", MI_METHODS)
def test_nonfinite_inputs_name_the_argument(method):
    x, y = _x_y()
    xb = x.copy()
    xb[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"^x: expected finite values, got 1 NaN"):
        mutual_information(xb, y, method=method)
    yb = y.copy()
    yb[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"^y: expected finite values, got 0 NaN and 1 inf"):
        mutual_information(x, yb, method=method)


def test_finite_check_is_not_fooled_by_an_overflowing_sum():
    # check_finite first looks at the sum: huge finite values overflow it (no error), and
    # a NaN or inf among them is still found and counted
    from diagnostics._validate import check_finite

    big = torch.full((4, 3), 1e308, dtype=torch.float64)
    check_finite(big, name="big")
    check_finite(big.float().nan_to_num(posinf=3e38), name="big32")
    big[1, 2], big[0, 0] = float("nan"), -float("inf")
    with pytest.raises(ValueError, match=r"^big: expected finite values, got 1 NaN and 1 inf"):
        check_finite(big, name="big")


@pytest.mark.parametrize("method", MI_METHODS)
def test_shape_errors_name_the_argument(method):
    x, y = _x_y()
    with pytest.raises(ValueError, match=r"x has 50, y has 49"):
        mutual_information(x, y[:49], method=method)
    with pytest.raises(ValueError, match=r"^x: expected a non-empty array"):
        mutual_information(np.zeros((0, 2)), y[:0], method=method)
    with pytest.raises(ValueError, match=r"^y: expected shape \(n,\) or \(n, d\), got a 3-D"):
        mutual_information(x, y.reshape(50, 1, 1), method=method)


def test_too_few_samples_for_k():
    x, y = _x_y(3)
    with pytest.raises(
        ValueError, match=r"^k: expected an integer smaller than the number of samples n = 3, got 3"
    ):
        ksg_mi(x, y, k=3)
    with pytest.raises(ValueError, match=r"^k:"):
        kl_entropy(x, k=5)
    with pytest.raises(ValueError, match=r"^k: expected an integer >= 1, got 0"):
        ksg_mi(*_x_y(), k=0)


def test_constant_columns_are_refused_where_they_break_the_estimate():
    x, y = _x_y()
    x[:, 1] = 4.0
    for fn in (kl_entropy, weighted_kl_entropy):
        with pytest.raises(ValueError, match=r"^x: column\(s\) 1 are constant"):
            fn(x)
    with pytest.raises(ValueError, match=r"^x: column\(s\) 1 are constant"):
        cca_mi(x, y)
    # a constant coordinate carries no information: the neighbour estimators ignore it
    assert abs(float(ksg_mi(x, y)) - float(ksg_mi(x[:, :1], y))) < 1e-6


def test_float_labels_are_refused_where_labels_are_needed():
    x, y = _x_y()
    yf = (y[:, 0] > 0).astype(np.float64)
    with pytest.raises(
        ValueError, match=r"^y: expected integer class labels, got dtype torch.float64"
    ):
        ksg_mi(x, yf, discrete_y=True)
    for fn in (kl_entropy, kde_entropy, binning_entropy, discrete_entropy):
        with pytest.raises(ValueError, match=r"^given: expected integer class labels"):
            fn(np.tanh(x) if fn is not discrete_entropy else (x > 0).astype(int), given=yf)
    with pytest.raises(ValueError, match=r"^x: expected integer \(discrete\) values"):
        discrete_entropy(x)


@pytest.mark.parametrize("method", MI_METHODS)
def test_constant_activations_give_zero_not_nan(method):
    x, y = _x_y()
    const = np.zeros_like(x)
    lab = (y[:, 0] > 0).astype(np.int64)
    for a, b in (
        (const, y),
        (x, np.zeros_like(y)),
        (const, lab),
        (x, np.zeros(50, dtype=np.int64)),
    ):
        v = mutual_information(a, b, method=method)
        assert float(v) == 0.0


def test_bad_options_name_the_argument():
    x, y = _x_y()
    with pytest.raises(ValueError, match=r"^method: expected one of"):
        mutual_information(x, y, method="mine")
    with pytest.raises(ValueError, match=r"^backend: expected one of"):
        ksg_mi(x, y, backend="gpu")
    with pytest.raises(ValueError, match=r"^base:"):
        ksg_mi(x, y, base=1)
    with pytest.raises(ValueError, match=r"^noise: expected a number >= 0.0"):
        ksg_mi(x, y, noise=-1.0)
    with pytest.raises(ValueError, match=r"^noise_variance: expected a number > 0"):
        kde_mi(x, y, noise_variance=0)
    with pytest.raises(ValueError, match=r"^bins:"):
        binning_mi(x, y, bins=[0.0, -1.0])
    with pytest.raises(ValueError, match=r"^weights: expected 3 finite weights summing to 1"):
        weighted_kl_entropy(x, weights=[0.5, 0.2, 0.2])
    with pytest.raises(TypeError, match=r"^x: expected a torch.Tensor or numpy.ndarray, got str"):
        ksg_mi("abc", y)
