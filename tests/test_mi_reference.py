"""Same algorithm, same numbers: infoscope's estimators against reference implementations.

- KSG (algorithm 1) against npeet-plus ``mi`` (bits, converted to nats);
- Kozachenko-Leonenko (max-norm) against npeet-plus ``entropy``;
- the discrete-label (Ross 2014) path against scikit-learn ``mutual_info_classif``
  and its private kernel ``_compute_mi_cd``;
- the binning estimator against an independent numpy implementation of the IDNNs
  recipe (Shwartz-Ziv & Tishby 2017) written here;
- every neighbour backend against the others (the value may not depend on the path).

npeet-plus adds ``1e-10 * uniform[0, 1)`` noise from numpy's global RNG inside
``mi``/``entropy`` (``add_noise``). Two ways to give both sides identical inputs are
used: (1) replace ``npeet_plus.estimators.add_noise`` by the identity (monkeypatch)
and call ours with ``noise=0``; (2) seed numpy, reproduce npeet's two draws (x then
y, same shapes) ourselves, pass the noisy arrays to ours with ``noise=0``, reseed
and let npeet draw the same noise. Both agree to ~1e-15; the assertion uses 1e-6.

npeet counts marginal neighbours with ``dist <= eps - 1e-15``, KSG's strict
``dist < eps``: identical for eps < 16 (there 1e-15 exceeds half an ulp of eps), which
holds for these standard-normal data.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diagnostics.mi import binning_entropy, binning_mi, discretize, kl_entropy, ksg_mi

npeet_plus = pytest.importorskip("npeet_plus")
npeet_estimators = pytest.importorskip("npeet_plus.estimators")


def _pair(n: int, dx: int, dy: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dx))
    y = 0.8 * x[:, :1] + rng.standard_normal((n, dy))
    return x, y


@pytest.fixture
def npeet_without_noise(monkeypatch):
    monkeypatch.setattr(npeet_estimators, "add_noise", lambda x, intens=1e-10: x)
    return npeet_plus


@pytest.mark.parametrize(
    "dx, dy, k",
    [(1, 1, 3), (1, 1, 1), (3, 2, 5), (12, 12, 3)],  # (12, 12): npeet's BallTree, our brute force
)
def test_ksg_equals_npeet_without_noise(npeet_without_noise, dx, dy, k):
    x, y = _pair(1500, dx, dy, seed=dx + 10 * dy + k)
    ref = npeet_without_noise.mi(x, y, k=k) * math.log(2)  # bits -> nats
    ours = ksg_mi(x, y, k=k, noise=0, standardize=False)
    assert abs(float(ours) - ref) < 1e-6
    # the same value in bits
    assert (
        abs(float(ksg_mi(x, y, k=k, noise=0, standardize=False, base=2)) - ref / math.log(2)) < 1e-6
    )


def test_ksg_equals_npeet_with_its_noise_replicated():
    x, y = _pair(2000, 2, 1, seed=7)
    np.random.seed(123)
    xn = x + 1e-10 * np.random.random_sample(x.shape)  # npeet: add_noise(x), then add_noise(y)
    yn = y + 1e-10 * np.random.random_sample(y.shape)
    np.random.seed(123)
    ref = npeet_plus.mi(x, y, k=3) * math.log(2)
    assert abs(float(ksg_mi(xn, yn, noise=0, standardize=False)) - ref) < 1e-6


@pytest.mark.parametrize("d", [1, 3])
def test_kl_entropy_chebyshev_equals_npeet_entropy(npeet_without_noise, d):
    x = np.random.default_rng(d).standard_normal((1500, d))
    ref = npeet_without_noise.entropy(x, k=3) * math.log(2)
    assert abs(float(kl_entropy(x, k=3, metric="chebyshev", noise=0)) - ref) < 1e-6


# --------------------------------------------------------------------------- sklearn


def _labelled(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = (x + rng.standard_normal(n) > 0).astype(np.int64) + (x > 1.2).astype(np.int64)
    return x, y


@pytest.mark.parametrize("k", [3, 5])
def test_discrete_label_path_equals_sklearn_mutual_info_classif(k):
    """mutual_info_classif scales each feature by its std (scale(with_mean=False)) and
    adds 1e-10 * max(1, mean|x|) * N(0, 1) noise from RandomState(random_state). We
    apply exactly that preprocessing (with sklearn's own ``scale``), then call ours
    with noise and standardisation off, so both kernels see identical numbers.
    sklearn clips negative estimates at 0."""
    from sklearn.feature_selection import mutual_info_classif
    from sklearn.preprocessing import scale

    x, y = _labelled(2000, seed=k)
    ref = mutual_info_classif(x[:, None], y, n_neighbors=k, random_state=0)[0]
    xs = scale(x[:, None].astype(np.float64), with_mean=False)
    rng = np.random.RandomState(0)
    xs = xs + 1e-10 * np.maximum(1, np.mean(np.abs(xs), axis=0)) * rng.standard_normal((2000, 1))
    ours = ksg_mi(xs, y, k=k, noise=0, standardize=False)
    assert ref > 0.05  # a real dependence, so the clip at 0 plays no role
    assert abs(max(float(ours), 0.0) - ref) < 1e-6


def test_discrete_label_path_equals_sklearn_private_kernel():
    try:
        from sklearn.feature_selection._mutual_info import _compute_mi_cd
    except ImportError:  # private API moved
        pytest.skip("sklearn.feature_selection._mutual_info._compute_mi_cd not available")
    x, y = _labelled(1500, seed=11)
    y[:1] = 7  # a single-sample class: both drop it
    ref = _compute_mi_cd(x, y, 3)
    assert abs(float(ksg_mi(x, y, noise=0, standardize=False)) - ref) < 1e-6


# ----------------------------------------------------------------- IDNNs binning (numpy)


def _idnn_information(
    data: np.ndarray, labels: np.ndarray, bins: np.ndarray
) -> tuple[float, float]:
    """Independent numpy version of the IDNNs recipe (bits): every input is distinct,
    activations are mapped to the left edge of their bin, each distinct row of the
    layer is one value of T; I(X;T) = H(T), I(T;Y) = H(T) - sum_y p(y) H(T | y)."""
    digitized = bins[np.digitize(data.reshape(-1), bins) - 1].reshape(len(data), -1)
    rows = np.ascontiguousarray(digitized).view(
        np.dtype((np.void, digitized.dtype.itemsize * digitized.shape[1]))
    )

    def h(r):
        _, counts = np.unique(r, return_counts=True)
        p = counts / counts.sum()
        return float(-(p * np.log2(p)).sum())

    h_t = h(rows)
    h_t_given_y = sum(np.mean(labels == c) * h(rows[labels == c]) for c in np.unique(labels))
    return h_t, h_t - h_t_given_y


def _twelve_bit_task(seed: int):
    x = ((np.arange(4096)[:, None] >> np.arange(12)) & 1).astype(np.int64)
    rng = np.random.default_rng(seed)
    y = (x.sum(1) + rng.integers(0, 2, 4096) > 6).astype(np.int64)
    w1 = rng.standard_normal((12, 10)) / math.sqrt(12)
    w2 = rng.standard_normal((10, 7)) / math.sqrt(10)
    h1 = np.tanh((2 * x - 1) @ w1 * 1.5)
    h2 = np.tanh(h1 @ w2 * 2.0)
    return x, y, h1, h2


@pytest.mark.parametrize("layer", [0, 1])
def test_binning_equals_idnn_numpy_recipe(layer):
    x, y, *layers = _twelve_bit_task(seed=3)
    t = layers[layer]
    bins = np.linspace(-1, 1, 30)
    ixt, ity = _idnn_information(t, y, bins)
    assert abs(float(binning_mi(x, t, base=2)) - ixt) < 1e-9  # inputs as int rows
    assert abs(float(binning_entropy(t, base=2)) - ixt) < 1e-9
    assert abs(float(binning_mi(t, y, base=2)) - ity) < 1e-9
    h_t_given_y = float(binning_entropy(t, given=y, base=2))
    assert abs((ixt - h_t_given_y) - ity) < 1e-9
    # float32 activations on the same bins: same codes, same numbers
    assert abs(float(binning_mi(t.astype(np.float32), y, base=2)) - ity) < 1e-9


def test_binning_with_bin_size_equals_floor_recipe():
    """Saxe et al.'s variant for unbounded (ReLU) layers: code = floor(t / binsize)."""
    rng = np.random.default_rng(0)
    t = np.maximum(rng.standard_normal((3000, 5)) * 0.3, 0)
    y = rng.integers(0, 3, 3000)
    codes = np.floor(t / 0.07).astype(np.int64)
    _, inv = np.unique(codes, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    _, c = np.unique(inv, return_counts=True)
    p = c / c.sum()
    h = float(-(p * np.log(p)).sum())
    _, cj = np.unique(inv * 3 + y, return_counts=True)
    pj = cj / cj.sum()
    _, cy = np.unique(y, return_counts=True)
    py = cy / cy.sum()
    i_ty = h + float(-(py * np.log(py)).sum()) - float(-(pj * np.log(pj)).sum())
    assert torch.equal(discretize(t, bin_size=0.07), torch.from_numpy(codes))
    assert abs(float(binning_entropy(t, bin_size=0.07)) - h) < 1e-9
    assert abs(float(binning_mi(t, y, bin_size=0.07)) - i_ty) < 1e-9


# ------------------------------------------------------------------------ backends


@pytest.mark.parametrize("dx, dy", [(1, 1), (2, 3), (6, 5)])
@pytest.mark.parametrize("ties", [False, True])
def test_ksg_value_does_not_depend_on_backend(dx, dy, ties):
    rng = np.random.default_rng(dx * 7 + dy)
    n = 1200
    if ties:  # integer grid, no noise: many exact ties at eps
        x = rng.integers(0, 4, (n, dx)).astype(np.float64)
        y = (x[:, :1] + rng.integers(0, 3, (n, dy))).astype(np.float64)
        opts = dict(noise=0, standardize=False)
    else:
        x, y = _pair(n, dx, dy, seed=dx + dy)
        opts = {}
    ref = ksg_mi(x, y, backend="kdtree", **opts)
    for backend in ("brute", "torch", "auto"):
        assert abs(float(ksg_mi(x, y, backend=backend, **opts)) - float(ref)) < 1e-12, backend
    # chunking does not matter either
    assert abs(float(ksg_mi(x, y, backend="brute", chunk_size=37, **opts)) - float(ref)) < 1e-12
    assert abs(float(ksg_mi(x, y, backend="torch", chunk_size=37, **opts)) - float(ref)) < 1e-12


@pytest.mark.parametrize("dx", [1, 3])
def test_discrete_label_path_does_not_depend_on_backend(dx):
    rng = np.random.default_rng(dx)
    y = rng.integers(0, 4, 1500)
    x = y[:, None] * 0.5 + rng.standard_normal((1500, dx))
    ref = float(ksg_mi(x, y, backend="kdtree"))
    for backend in ("brute", "torch"):
        assert abs(float(ksg_mi(x, y, backend=backend)) - ref) < 1e-12


@pytest.mark.parametrize("metric", ["chebyshev", "euclidean"])
def test_kl_entropy_does_not_depend_on_backend(metric):
    x = np.random.default_rng(5).standard_normal((1500, 3))
    ref = float(kl_entropy(x, metric=metric, backend="kdtree"))
    for backend in ("brute", "torch"):
        # Euclidean sums squares in different orders (1e-16 relative); max-norm is exact
        assert abs(float(kl_entropy(x, metric=metric, backend=backend)) - ref) < 1e-12
