"""Generated data sets: the 12-bit task and the known-MI bump images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from diagnostics import synthetic_mi_images, tishby_dataset
from diagnostics.datasets import STORED_PROFILE, label_profile

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the clone (CI, the main checkout); a worktree one level deeper also works
VAR_U = next(
    (
        c / "shared" / "data" / "var_u.mat"
        for c in (ROOT.parent, ROOT.parent.parent)
        if (c / "shared" / "data" / "var_u.mat").is_file()
    ),
    ROOT.parent / "shared" / "data" / "var_u.mat",
)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_tishby_inputs_are_all_patterns_in_binary_order():
    x, y = tishby_dataset()
    assert x.shape == (4096, 12) and y.shape == (4096,)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(torch.unique(x, dim=0)) == 4096
    weights = 2 ** torch.arange(11, -1, -1)
    assert torch.equal((x.long() * weights).sum(1), torch.arange(4096))
    assert set(y.tolist()) == {0, 1}


def test_tishby_label_profile_resembles_the_stored_one():
    # the rule is calibrated on the 5- and 7-unit rates; the others fall out of it
    x, y = tishby_dataset()
    prof = label_profile(x, y)
    assert prof[:5] == [0.0] * 5
    assert abs(prof[5] - 0.08) < 0.01 and abs(prof[7] - 0.92) < 0.01
    assert 0.45 <= prof[6] <= 0.65  # stored 0.58
    assert all(p >= 0.98 for p in prof[8:])
    assert 0.45 <= float(y.double().mean()) <= 0.55


def test_tishby_rule_is_rotation_invariant_and_seeded():
    x, y, rule = tishby_dataset(seed=3, return_rule=True)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1)))
    rotated = torch.as_tensor(rule["points"]) @ q.to(torch.float64)
    _, y_rot = tishby_dataset(points=rotated)
    assert torch.equal(y, y_rot)  # a spherically symmetric rule: any rotation, same labels
    _, y_again = tishby_dataset(seed=3)
    _, y_other = tishby_dataset(seed=4)
    assert torch.equal(y, y_again) and not torch.equal(y, y_other)
    # the documented formula
    u = torch.as_tensor(rule["points"])
    xd = x.double()
    expected = (xd.sum(1) - rule["lam"] * (xd @ u).norm(dim=1) > rule["theta"]).long()
    assert torch.equal(y, expected)


def test_tishby_bad_input():
    with pytest.raises(ValueError, match="p5, p7"):
        tishby_dataset(p5=0.9, p7=0.2)
    with pytest.raises(ValueError, match=r"points: expected shape \(12, 3\)"):
        tishby_dataset(points=np.ones((11, 3)))
    with pytest.raises(ValueError, match="points: expected non-zero"):
        tishby_dataset(points=np.zeros((12, 3)))
    with pytest.raises(TypeError, match="seed"):
        tishby_dataset(seed=1.5)


@pytest.mark.parametrize("device", DEVICES)
def test_tishby_device(device):
    x, y = tishby_dataset(device=device)
    assert x.device.type == device and y.device.type == device


@pytest.mark.skipif(not VAR_U.is_file(), reason=f"stored data set not found at {VAR_U}")
def test_generated_profile_matches_stored_var_u_loosely():
    from scipy.io import loadmat

    data = loadmat(VAR_U)
    f = data["F"].astype(np.float64)
    y_stored = data["y"].reshape(-1).astype(np.int64)
    assert f.shape == (4096, 12)
    stored = label_profile(f, y_stored)
    assert np.allclose(stored, STORED_PROFILE, atol=0.01)  # the numbers quoted in the docs
    x, y = tishby_dataset()
    # same input order, so the profiles line up count by count
    assert np.array_equal(x.numpy(), f)
    assert np.max(np.abs(np.array(label_profile(x, y)) - np.array(stored))) < 0.08


def test_synthetic_images_shapes_range_and_determinism():
    x, y, mi = synthetic_mi_images(300, 2.5, seed=7)
    assert x.shape == (300, 256) and y.shape == (300, 256) and mi == 2.5
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    x2, y2, _ = synthetic_mi_images(300, 2.5, seed=7)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _, _ = synthetic_mi_images(300, 2.5, seed=8)
    assert not torch.equal(x, x3)
    x4, _, _ = synthetic_mi_images(10, 1.0, latent_dim=3)
    assert x4.shape == (10, 512)  # three latents -> two images side by side


def _centres(img: torch.Tensor, size: int = 16) -> torch.Tensor:
    """Centre of mass of each bump image (row, column)."""
    g = torch.arange(size, dtype=torch.float64)
    im = img.double().reshape(-1, size, size)
    mass = im.sum((1, 2))
    return torch.stack([(im.sum(2) * g).sum(1) / mass, (im.sum(1) * g).sum(1) / mass], 1)


def _latent(c: torch.Tensor, lo: float = 2.0, hi: float = 13.0) -> torch.Tensor:
    """Centre of mass -> the CDF value -> the latent (margin ``width`` = 2, spread = 2)."""
    u = ((c - lo) / (hi - lo)).clamp(1e-6, 1 - 1e-6)
    return 2.0 * math.sqrt(2.0) * torch.special.erfinv(2 * u - 1)


@pytest.mark.slow
def test_synthetic_images_carry_the_stated_mi():
    # the bump centres are an invertible function of the latents, so their Gaussian
    # MI (after undoing the CDF map) equals the stated one; check it via correlations
    n = 20000
    for mi in (0.0, 1.0, 3.0):
        x, y, _ = synthetic_mi_images(n, mi, seed=0, dtype=torch.float64)
        a, b = _latent(_centres(x)), _latent(_centres(y))
        s = torch.cov(torch.cat([a, b], 1).T)
        gauss_mi = 0.5 * math.log(float(torch.det(s[:2, :2]) * torch.det(s[2:, 2:]) / torch.det(s)))
        assert abs(gauss_mi - mi) < 0.06, (mi, gauss_mi)
    x, y, _, (xi, eta) = synthetic_mi_images(500, 1.0, return_latents=True)
    assert xi.shape == (500, 2) and eta.shape == (500, 2)
    # the images show the latents (the centre of mass is biased only where the image
    # border cuts the bump off)
    err = (_latent(_centres(x.double())) - xi).abs()
    assert float(err.median()) < 0.02 and float(err.max()) < 0.5


def test_synthetic_images_bad_input():
    with pytest.raises(ValueError, match="mi"):
        synthetic_mi_images(10, -1.0)
    with pytest.raises(ValueError, match="width"):
        synthetic_mi_images(10, 1.0, width=8.0)
    with pytest.raises(ValueError, match="n"):
        synthetic_mi_images(0, 1.0)
