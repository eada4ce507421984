"""information_plane: the estimators per layer, the Shwartz-Ziv & Tishby defaults, bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from diagnostics import information_plane, tishby_dataset
from diagnostics.mi import kde_mi, ksg_mi

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny matrices on a shared machine: intra-op threads only add contention
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def task():
    x, y = tishby_dataset()
    g = torch.Generator().manual_seed(0)
    h1 = torch.tanh(x @ torch.randn(12, 6, generator=g) + 0.1)
    h2 = torch.tanh(h1 @ (2 * torch.randn(6, 3, generator=g)))
    return x, y, {"h1": h1, "h2": h2}


def _idnns_binning(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The IDNNs recipe written out in numpy (bits): 30 edges on [-1, 1], left-edge
    values, unique rows; I(X;T) = H(T); I(T;Y) = H(T) - sum_y p(y) H(T | y)."""
    bins = np.linspace(-1, 1, 30)
    digitized = bins[np.digitize(t.ravel(), bins) - 1].reshape(t.shape)

    def h(rows: np.ndarray) -> float:
        _, counts = np.unique(rows, axis=0, return_counts=True)
        p = counts / counts.sum()
        return float(-(p * np.log2(p)).sum())

    h_t = h(digitized)
    h_ty = sum((y == c).mean() * h(digitized[y == c]) for c in np.unique(y))
    return h_t, h_t - h_ty


@pytest.mark.parametrize("device", DEVICES)
def test_binning_defaults_are_shwartz_ziv_tishby(task, device):
    x, y, acts = task
    df = information_plane(
        {k: v.to(device) for k, v in acts.items()}, x.to(device), y.to(device), base=2
    )
    assert list(df.columns) == ["layer", "I_XT", "I_TY"]
    assert df.layer.tolist() == ["h1", "h2"]
    assert df.attrs == {"method": "binning", "base": 2.0}
    for row in df.itertuples():
        i_xt, i_ty = _idnns_binning(acts[row.layer].numpy(), y.numpy())
        assert row.I_XT == pytest.approx(i_xt, abs=1e-9)
        assert row.I_TY == pytest.approx(i_ty, abs=1e-9)
    # nats by default
    nats = information_plane(acts, x, y)
    assert np.allclose(nats.I_XT * 1 / math.log(2), df.I_XT)


def test_binning_i_xt_is_h_t_only_when_inputs_are_distinct(task):
    x, y, acts = task
    distinct = information_plane(acts, x, y)
    # duplicate every input: T is still a function of X, so I(X;T) = H(T) still holds,
    # but through H(T) - H(T | X) (the H(T|X) = 0 shortcut does not apply)
    x2 = torch.cat([x, x])
    y2 = torch.cat([y, y])
    acts2 = {k: torch.cat([v, v]) for k, v in acts.items()}
    dup = information_plane(acts2, x2, y2)
    assert np.allclose(dup.I_XT, distinct.I_XT) and np.allclose(dup.I_TY, distinct.I_TY)
    # a coarse input (only the first 4 bits) that does not determine T: I(X;T) < H(T)
    coarse = information_plane(acts, x[:, :4], y)
    assert (coarse.I_XT < distinct.I_XT - 0.1).all()
    assert (coarse.I_XT <= 4 * math.log(2) + 1e-9).all()  # at most H(X) = 4 bits


def test_saxe_bin_size_and_clipping_warning(task):
    x, y, acts = task
    relu = {"r": torch.relu(acts["h1"] * 3)}
    with pytest.warns(RuntimeWarning, match=r"activations\['r'\]: \d+ of \d+ values lie outside"):
        clipped = information_plane(relu, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing clipped with a bin size
        saxe = information_plane(relu, x, y, bin_size=0.07)
        wide = information_plane(relu, x, y, value_range=(0.0, 3.0))
    assert saxe.I_XT[0] > clipped.I_XT[0]  # clipping merged bins
    codes = np.floor(relu["r"].numpy().astype(np.float64) / 0.07)
    _, counts = np.unique(codes, axis=0, return_counts=True)
    p = counts / counts.sum()
    assert saxe.I_XT[0] == pytest.approx(float(-(p * np.log(p)).sum()), abs=1e-9)
    assert wide.I_XT[0] > clipped.I_XT[0]


def test_one_unit_layers_and_constant_layers(task):
    x, y, acts = task
    df = information_plane(
        {"one": acts["h1"][:, 0], "col": acts["h1"][:, :1], "const": torch.zeros(4096, 5)}, x, y
    )
    assert df.I_XT[0] == df.I_XT[1] > 0
    assert df.I_XT[2] == 0.0 and df.I_TY[2] == 0.0
    assert (df.I_TY <= df.I_XT + 1e-12).all()


def test_kde_and_ksg_call_the_mi_estimators(task):
    x, y, acts = task
    sub = {"h2": acts["h2"][:1024]}
    xs, ys = x[:1024], y[:1024]
    kde = information_plane(sub, xs, ys, method="kde", noise_variance=1e-2)
    assert kde.I_XT[0] == pytest.approx(float(kde_mi(xs, sub["h2"], noise_variance=1e-2)))
    assert kde.I_TY[0] == pytest.approx(float(kde_mi(sub["h2"], ys, noise_variance=1e-2)))
    ksg = information_plane(sub, xs, ys, method="ksg", k=3)
    assert ksg.I_TY[0] == pytest.approx(float(ksg_mi(sub["h2"], ys, k=3)))
    assert ksg.I_XT[0] == pytest.approx(float(ksg_mi(xs, sub["h2"], k=3)))


def test_compressed_method_runs_and_reuses_x():
    g = torch.Generator().manual_seed(1)
    latent = torch.randn(1500, 2, generator=g, dtype=torch.float64)
    xc = latent @ torch.randn(2, 20, generator=g, dtype=torch.float64)  # rank-2 inputs
    noisy = latent + 0.5 * torch.randn(1500, 2, generator=g, dtype=torch.float64)
    t_info = noisy @ torch.randn(2, 40, generator=g, dtype=torch.float64)
    yc = (latent[:, 0] > 0).long()
    layers = {
        "informative": t_info,
        "noise": torch.randn(1500, 40, generator=g, dtype=torch.float64),
    }
    df = information_plane(layers, xc, yc, method="compressed")
    true_xt = 2 * 0.5 * math.log(1 + 1 / 0.25)  # two pairs, noise variance 0.25
    assert df.I_XT[0] == pytest.approx(true_xt, abs=0.15)
    assert abs(df.I_XT[1]) < 0.1 and abs(df.I_TY[1]) < 0.1
    assert df.I_TY[0] > 0.3
    again = information_plane({"informative": t_info}, xc, yc, method="compressed")
    assert again.I_XT[0] == pytest.approx(df.I_XT[0])  # seeded: same number


def test_bad_input(task):
    x, y, acts = task
    with pytest.raises(ValueError, match=r"activations\['h1'\] has 4095"):
        information_plane({"h1": acts["h1"][:-1]}, x, y)
    with pytest.raises(ValueError, match="y has 10"):
        information_plane(acts, x, y[:10])
    with pytest.raises(ValueError, match="at least one layer"):
        information_plane({}, x, y)
    with pytest.raises(TypeError, match="activations: expected a dict"):
        information_plane([acts["h1"]], x, y)
    with pytest.raises(ValueError, match="method"):
        information_plane(acts, x, y, method="mine")
    with pytest.raises(TypeError, match="unexpected option.*'noise_variance'.*binning"):
        information_plane(acts, x, y, noise_variance=0.1)
    with pytest.raises(ValueError, match="y: expected integer class labels"):
        information_plane(acts, x, y.float())
    with pytest.raises(ValueError, match=r"activations\['h1'\]: expected finite"):
        information_plane({"h1": acts["h1"].masked_fill(acts["h1"] > 0.9, float("nan"))}, x, y)
    with pytest.raises(ValueError, match="base"):
        information_plane(acts, x, y, base=1)


def test_returns_a_dataframe_of_floats(task):
    x, y, acts = task
    df = information_plane(acts, x.numpy(), y.numpy())  # numpy in works too
    assert isinstance(df, pd.DataFrame)
    assert df.I_XT.dtype == np.float64 and df.I_TY.dtype == np.float64


@pytest.fixture(scope="module")
def digits_layers():
    """Real activations: the tanh layers of a small MLP trained briefly on digits, on 600
    inputs of which 100 repeat (so that H(T | X) is computed, not skipped)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data[:500] / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target[:500])
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 8), torch.nn.Tanh(),
        torch.nn.Linear(8, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    x, y = torch.cat([x, x[:100]]), torch.cat([y, y[:100]])
    with torch.no_grad():
        h1 = net[1](net[0](x))
        h2 = net[3](net[2](h1))
    return x, y, {"h1": h1, "h2": h2, "h1_first4": h1[:, :4]}


@pytest.mark.parametrize(
    "method, options",
    [
        ("binning", {}),
        ("binning", {"bin_size": 0.3}),
        ("kde", {"noise_variance": 1e-2}),
        ("ksg", {"k": 3}),
        ("compressed", {}),
        ("compressed", {"max_features": 16}),  # h1 (32 wide) through the seeded randomised PCA
    ],
)
def test_all_layers_in_one_call_equal_one_call_per_layer(digits_layers, method, options):
    x, y, acts = digits_layers
    together = information_plane(acts, x, y, method=method, **options)
    for i, (name, z) in enumerate(acts.items()):
        alone = information_plane({name: z}, x, y, method=method, **options)
        got = together.loc[i, ["I_XT", "I_TY"]].tolist()
        want = alone.loc[0, ["I_XT", "I_TY"]].tolist()
        if method == "binning":
            assert got == want  # exactly
        else:
            assert got == pytest.approx(want, abs=1e-12, rel=0)
    assert (together.I_TY > 0).all()


def test_binning_shares_the_partitions_and_equals_the_plug_in_entropies(digits_layers):
    """The shared X and label terms give exactly the plug-in entropies of the public API."""
    from diagnostics.estimators.binning import discrete_entropy, discretize

    x, y, acts = digits_layers
    df = information_plane(acts, x, y)
    ids = torch.unique(x, dim=0, return_inverse=True)[1]
    for i, z in enumerate(acts.values()):
        codes = discretize(z)
        h_t = discrete_entropy(codes)
        assert df.I_XT[i] == float(h_t - discrete_entropy(codes, given=ids))
        assert df.I_TY[i] == float(h_t - discrete_entropy(codes, given=y))


def test_on_error_collect_keeps_the_other_layers(digits_layers):
    x, y, acts = digits_layers
    bad = acts["h2"].clone()
    bad[3, 1] = float("nan")
    layers = {"h1": acts["h1"], "bad": bad, "h2": acts["h2"]}
    with pytest.raises(ValueError, match=r"activations\['bad'\]: expected finite"):
        information_plane(layers, x, y)
    df = information_plane(layers, x, y, on_error="collect")
    assert df.layer.tolist() == ["h1", "bad", "h2"]
    assert math.isnan(df.I_XT[1]) and math.isnan(df.I_TY[1])
    assert set(df.attrs["errors"]) == {"bad"}
    assert "expected finite" in str(df.attrs["errors"]["bad"])
    good = information_plane({"h1": acts["h1"], "h2": acts["h2"]}, x, y)
    assert (
        df.loc[[0, 2], ["I_XT", "I_TY"]].to_numpy().tolist()
        == good[["I_XT", "I_TY"]].to_numpy().tolist()
    )
    # inputs and options are not a layer's failure: they raise either way
    with pytest.raises(ValueError, match="y has 10"):
        information_plane(layers, x, y[:10], on_error="collect")
    with pytest.raises(ValueError, match="on_error"):
        information_plane(layers, x, y, on_error="ignore")
