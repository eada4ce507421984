"""The compression-based MI estimator (Butakov et al. 2023)."""

from __future__ import annotations

import math

import pytest
import torch

from diagnostics import compressed_mi, synthetic_mi_images
from diagnostics.compressed import compress

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _one_thread():
    # small matrices on a shared machine: intra-op threads only add contention (the
    # autoencoder test runs ~30x slower with 2 threads on a loaded 2-core machine)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gaussian_pairs(n, mi_per_pair, pairs, *, seed):
    """Latent pairs with known MI, embedded linearly in 64 dims (+ nothing else)."""
    g = torch.Generator().manual_seed(seed)
    rho = math.sqrt(-math.expm1(-2 * mi_per_pair))
    a = torch.randn(n, pairs, generator=g, dtype=torch.float64)
    b = rho * a + math.sqrt(1 - rho**2) * torch.randn(n, pairs, generator=g, dtype=torch.float64)
    ex = torch.randn(pairs, 64, generator=g, dtype=torch.float64)
    ey = torch.randn(pairs, 64, generator=g, dtype=torch.float64)
    return a @ ex, b @ ey, mi_per_pair * pairs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("total", [0.0, 1.0, 3.0])
def test_tracks_known_mi_of_linear_embeddings(device, total):
    # PCA is lossless here (rank-2 data in 64 dims): the error is the kNN estimator's.
    x, y, true = _gaussian_pairs(3000, total / 2, 2, seed=1)
    est = compressed_mi(x.to(device), y.to(device), dim=2)
    assert est.device.type == device and est.ndim == 0
    assert abs(float(est) - true) < 0.12, (float(est), true)


def test_labels_give_h_of_y_for_separated_classes_and_zero_for_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (2000,), generator=g)
    t = torch.randn(2000, 30, generator=g, dtype=torch.float64)
    far = t + 50.0 * y.unsqueeze(1).double()
    h_y = -sum(p * math.log(p) for p in (y.double().mean().item(), 1 - y.double().mean().item()))
    assert abs(float(compressed_mi(far, y)) - h_y) < 0.05
    assert abs(float(compressed_mi(y, far)) - h_y) < 0.05  # labels first: roles swap
    assert abs(float(compressed_mi(t, y))) < 0.05
    assert abs(float(compressed_mi(far, y, base=2)) - h_y / math.log(2)) < 0.08


def test_invariant_to_invertible_linear_maps_and_seeded():
    x, y, _ = _gaussian_pairs(1500, 0.8, 2, seed=3)
    a = float(compressed_mi(x, y, seed=5))
    assert a == float(compressed_mi(x, y, seed=5))
    g = torch.Generator().manual_seed(9)
    m = torch.randn(64, 64, generator=g, dtype=torch.float64)  # invertible a.s.
    b = float(compressed_mi(x @ m, y * 3.0 + 1.0, seed=5))
    assert abs(a - b) < 0.05


def test_constant_variable_has_zero_information():
    x = torch.randn(500, 8, dtype=torch.float64)
    assert float(compressed_mi(x, torch.ones(500, 4))) == 0.0
    assert float(compressed_mi(torch.zeros(500, 3), torch.zeros(500, dtype=torch.long))) == 0.0


def test_wide_layer_is_projected_by_randomised_pca():
    # a "wide layer": 3 latent factors spread over 4000 float32 features; above
    # max_features the randomised PCA runs (no copy of the input) and must find the
    # latent subspace, as exact PCA would
    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 3, generator=g)
    wide = z @ torch.randn(3, 4000, generator=g) + 1e-3 * torch.randn(500, 4000, generator=g)
    codes = compress(wide, dim=3, max_features=500, seed=1)
    assert codes.shape == (500, 3) and codes.dtype == torch.float64
    zc = (z - z.mean(0)).double()
    coef = torch.linalg.lstsq(codes, zc).solution  # the codes span the latent subspace
    assert float((codes @ coef - zc).norm() / zc.norm()) < 1e-3
    assert torch.equal(codes, compress(wide, dim=3, max_features=500, seed=1))  # seeded
    labels = (z[:, 0] > 0).long()
    assert float(compressed_mi(wide, labels, dim=3, max_features=500)) > 0.4


def test_bad_input():
    x = torch.randn(100, 5)
    with pytest.raises(ValueError, match="expected the same number of samples"):
        compressed_mi(x, torch.randn(99, 5))
    with pytest.raises(ValueError, match="compressor"):
        compressed_mi(x, x, compressor="umap")
    with pytest.raises(ValueError, match="dim"):
        compressed_mi(x, x, dim=0)
    with pytest.raises(TypeError, match="unexpected option"):
        compressed_mi(x, x, bins=30)
    with pytest.raises(ValueError, match="two label arrays"):
        compressed_mi(torch.zeros(100, dtype=torch.long), torch.zeros(100, dtype=torch.long))
    with pytest.raises(ValueError, match="x: expected finite"):
        compressed_mi(x.masked_fill(x > 2, float("nan")), x)


@pytest.mark.slow
def test_autoencoder_tracks_mi_of_bump_images():
    # the paper's check: 16x16 images of a Gaussian bump whose 2-D position carries a
    # known MI; the autoencoder compresses to the 2 latents. Tolerance 0.25 nats at
    # n = 2000 (the benchmark, at n = 4000, prints errors within ~0.1 up to 4 nats).
    for mi in (0.5, 2.5):
        x, y, true = synthetic_mi_images(2000, mi, seed=2)
        est = float(compressed_mi(x, y, compressor="autoencoder", ae_epochs=15))
        assert abs(est - true) < 0.25, (mi, est)
