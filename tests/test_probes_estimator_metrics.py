"""Metrics that call the estimators of diagnostics (spectral, MI) by name.

The probes only wire estimators up: each metric must equal the estimator called on the
same layer's activations, rows and labels. Skipped (naming the module) while an
estimator module has not landed.
"""

from __future__ import annotations

import importlib.util
import math
import warnings

import pytest
import torch
from torch import nn

from probes import Monitor, default_metrics


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 3))


def _probe():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(120, 5, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return x, y


def _acts(model, x):
    model.eval()
    with torch.no_grad():
        h1 = model[1](model[0](x))
        h3 = model[3](model[2](h1))
    model.train()
    return {"1": h1, "3": h3}


def _needs(module: str):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} has not landed yet")
    return pytest.importorskip(module)


@pytest.mark.parametrize(
    "metric, output, call",
    [
        ("effective_rank", "repr/effective_rank", lambda d, z, y: d.effective_rank(z)),
        ("von_neumann", "repr/von_neumann", lambda d, z, y: d.von_neumann_entropy(z)),
        (
            "dse",
            "repr/dse",
            lambda d, z, y: d.diffusion_spectral_entropy(z, sigma=10.0, t=1, max_n=10000, seed=0),
        ),
        (
            "dsmi",
            "repr/dsmi_y",
            lambda d, z, y: d.diffusion_spectral_mutual_information(
                z, y, sigma=10.0, t=1, max_n=10000, seed=0
            ),
        ),
    ],
)
def test_spectral_metrics_equal_the_estimator(metric, output, call):
    _needs("diagnostics.spectral")
    import diagnostics

    model = _model()
    x, y = _probe()
    mon = Monitor(model, None, layers=["1", "3"], probe_inputs=x, probe_labels=y, every=1,
                  metrics=[metric])  # fmt: skip
    out = mon.step(0)
    mon.close()
    for layer, z in _acts(model, x).items():
        want = float(call(diagnostics, z, y))
        assert math.isfinite(out[(output, layer)])
        assert out[(output, layer)] == pytest.approx(want, rel=1e-6, abs=1e-9)


def test_dsmi_x_clusters_inputs_once(monkeypatch):
    _needs("diagnostics.spectral")
    import diagnostics

    calls = []
    real = diagnostics.cluster_reference

    def counting(reference, **kw):
        calls.append(reference.shape)
        return real(reference, **kw)

    monkeypatch.setattr(diagnostics, "cluster_reference", counting)
    model = _model()
    x, y = _probe()
    mon = Monitor(model, None, layers=["3"], probe_inputs=x, every=1,
                  metrics={"dsmi_x": {"n_clusters": 4, "every": 1}}, budget=None)  # fmt: skip
    out = [mon.step(s) for s in range(3)]
    mon.close()
    assert calls == [x.shape]  # the inputs are clustered once, reused at every record
    clusters = real(x, n_clusters=4)
    z = _acts(model, x)["3"]
    want = diagnostics.diffusion_spectral_mutual_information(
        z, x, sigma=10.0, t=1, max_n=10000, seed=0, clusters=torch.as_tensor(clusters)
    )
    assert out[1][("repr/dsmi_x", "3")] == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("method", ["binning", "kde"])
def test_info_plane_metric_is_one_call_per_record(monkeypatch, method):
    _needs("diagnostics.infoplane")
    import diagnostics

    calls = []
    real = diagnostics.information_plane

    def counting(acts, x, y, **kw):
        calls.append(list(acts))
        return real(acts, x, y, **kw)

    monkeypatch.setattr(diagnostics, "information_plane", counting)
    model = _model()
    x, y = _probe()
    mon = Monitor(model, None, layers=["1", "3"], probe_inputs=x, probe_labels=y, every=1,
                  metrics={"info_plane": {"method": method, "every": 1}}, budget=None)  # fmt: skip
    out = mon.step(0)
    mon.step(1)
    mon.close()
    assert calls == [["1", "3"], ["1", "3"]]  # all layers at once, once per record
    for layer, z in _acts(model, x).items():
        # equal to the estimator called on this layer alone
        frame = real({layer: z}, x, y, method=method)
        ixt, ity = float(frame.iloc[0]["I_XT"]), float(frame.iloc[0]["I_TY"])
        assert out[(f"info_plane/{method}/I_XT", layer)] == pytest.approx(ixt, rel=1e-12)
        assert out[(f"info_plane/{method}/I_TY", layer)] == pytest.approx(ity, rel=1e-12)
        # nats: I(T;Y) <= H(Y) <= ln 3
        assert out[(f"info_plane/{method}/I_TY", layer)] <= math.log(3) + 1e-6


class _Branch(nn.Module):
    """An MLP with a side branch whose output (NaN) is captured but not used."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.hidden = nn.Sequential(nn.Linear(5, 12), nn.Tanh())
        self.side = nn.Linear(12, 4)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        h = self.hidden(x)
        self.side(h * float("nan"))
        return self.head(h)


def test_info_plane_metric_isolates_a_failing_layer(tmp_path):
    _needs("diagnostics.infoplane")
    import diagnostics
    from diagnostics import open_run

    model = _Branch()
    x, y = _probe()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mon = Monitor(model, tmp_path, layers=["hidden", "side", "head"], probe_inputs=x,
                      probe_labels=y, metrics={"info_plane": {"every": 1}},
                      budget=None)  # fmt: skip
        outs = [mon.step(s) for s in range(4)]
        mon.close()
    failures = [str(w.message) for w in caught if "info_plane:side failed" in str(w.message)]
    assert len(failures) == 1 and "expected finite" in failures[0]  # warned once
    with torch.no_grad():
        h = model.hidden(x)
        head = model.head(h)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the head's logits are clipped into the edge bins
        want = diagnostics.information_plane({"hidden": h, "head": head}, x, y)
    for out in outs[:3]:
        assert ("info_plane/binning/I_XT", "side") not in out
        assert out[("info_plane/binning/I_XT", "hidden")] == float(want.I_XT[0])
        assert out[("info_plane/binning/I_TY", "head")] == float(want.I_TY[1])
    with open_run(tmp_path) as r:
        ev = r.events()
    failed = ev[ev.kind == "probe_failure"]
    assert len(failed) == 3 and set(failed.source) == {"info_plane:side"}
    assert list(ev[ev.kind == "probe_disabled"].source) == ["info_plane:side"]  # 3 in a row
    assert ("info_plane/binning/I_XT", "hidden") in outs[3]  # the others go on


def test_layers_scope_metric_that_returns_nonsense_fails_every_layer():
    from probes import register_metric, unregister_metric

    def broken(acts):
        return [1.0]  # not {(metric, layer): value}

    register_metric("test/broken", broken, scope="layers", overwrite=True)
    try:
        model = _model()
        x, _ = _probe()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mon = Monitor(model, None, layers=["1", "3"], probe_inputs=x, every=1,
                          metrics=["test/broken", "act_stats"])  # fmt: skip
            out = mon.step(0)
            mon.close()
    finally:
        unregister_metric("test/broken")
    assert ("act/mean", "1") in out and not any(k[0] == "test/broken" for k in out)
    assert any("must return {(metric, layer): value}" in str(w.message) for w in caught)
    assert mon._fail_streak == {("test/broken", "1"): 1, ("test/broken", "3"): 1}


def test_defaults_include_estimators_that_exist():
    names = default_metrics(has_x=True, has_y=True)
    assert names[:2] == ["act_stats", "effective_rank"]
    assert {"dse", "dsmi", "info_plane"} <= set(names)
    assert "dsmi" not in default_metrics(has_x=False, has_y=False)
    model = _model()
    x, y = _probe()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mon = Monitor(model, None, probe_inputs=x, probe_labels=y)
    active = {a.defn.name for a in mon._metrics}
    mon.close()
    assert {"act_stats", "grad_norm", "weight_norm"} <= active
    have_spectral = importlib.util.find_spec("diagnostics.spectral") is not None
    have_mi = importlib.util.find_spec("diagnostics.mi") is not None
    assert ("effective_rank" in active) == have_spectral
    assert ("dse" in active) == ("dsmi" in active) == have_spectral
    assert ("info_plane" in active) == have_mi
    # a default left out says so, once per metric
    missing = [str(w.message) for w in caught if "left out of the defaults" in str(w.message)]
    assert len(missing) == (0 if have_spectral else 3) + (0 if have_mi else 1)
