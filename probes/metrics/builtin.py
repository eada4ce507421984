"""The built-in metrics: activation statistics and norms computed here, estimators by name.

Importing this module registers them (the table in :mod:`probes.metrics` lists them). The
estimators live in :mod:`diagnostics`; these wrappers only pick them by name, fill in the
probes' defaults (``sigma``, ``t``, ``max_n``, the monitor's seed) and cache what can be
computed once (the input clusters of ``dsmi_x``, the parameter -> layer map of the norms).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from probes.metrics.registry import register_metric

__all__ = ["activation_stats", "SATURATION_BOUNDS"]


def _diagnostics(name: str) -> Any:
    return getattr(importlib.import_module("diagnostics"), name)


# ---------------------------------------------------------------- activation statistics

#: Output ranges of bounded activation modules, used for ``act/saturated_frac``.
SATURATION_BOUNDS: dict[type, Callable[[nn.Module], tuple[float, float]]] = {
    nn.Tanh: lambda m: (-1.0, 1.0),
    nn.Sigmoid: lambda m: (0.0, 1.0),
    nn.Softsign: lambda m: (-1.0, 1.0),
    nn.Hardsigmoid: lambda m: (0.0, 1.0),
    nn.Hardtanh: lambda m: (float(m.min_val), float(m.max_val)),  # also ReLU6
}


def _bounds_of(module: nn.Module | None) -> tuple[float, float] | None:
    for cls, get in SATURATION_BOUNDS.items():
        if isinstance(module, cls):
            return get(module)
    return None


def activation_stats(
    z: torch.Tensor,
    module: nn.Module | None = None,
    *,
    dead_tol: float = 0.0,
    saturation_bounds: tuple[float, float] | None = None,
    saturation_tol: float = 0.01,
) -> dict[str, torch.Tensor]:
    """Activation statistics of a ``(rows, units)`` matrix (0-d tensors, no sync).

    - ``act/mean``, ``act/std``: mean and standard deviation over all entries.
    - ``act/dead_frac``: fraction of units with ``|a| <= dead_tol`` on every row (a
      ReLU unit that never fires on the batch: "dying ReLU", Lu et al. 2019).
    - ``act/saturated_frac``: fraction of entries within ``saturation_tol`` (relative
      to the output range) of either bound, for bounded activations only: the bounds
      come from the module type (``Tanh``, ``Sigmoid``, ``Softsign``, ``Hardsigmoid``,
      ``Hardtanh``/``ReLU6``; see :data:`SATURATION_BOUNDS`) or ``saturation_bounds``.
      Saturated tanh/sigmoid units pass almost no gradient (Glorot & Bengio 2010).
      Not recorded for unbounded layers, where it has no meaning.

    >>> s = activation_stats(torch.tensor([[0.0, 0.999], [0.0, -0.5]]), nn.Tanh())
    >>> float(s["act/dead_frac"]), float(s["act/saturated_frac"])
    (0.5, 0.25)
    """
    zf = z if z.dtype in (torch.float32, torch.float64) else z.float()
    if zf.ndim >= 1 and zf.shape[0] > 0:
        # a unit is dead when its largest |a| is within dead_tol: the same units as
        # ``(|a| <= dead_tol).all(dim=0)`` (NaN never dead), 5x faster on the CPU
        dead = zf.abs().amax(dim=0) <= dead_tol
    else:
        dead = (zf.abs() <= dead_tol).all(dim=0)
    mean = zf.mean()
    # the population standard deviation in two passes over the deviations from the mean
    # (as torch.std, to float precision; 2x faster on the CPU for a few thousand entries
    # and more; torch.std_mean is slower still)
    dev = zf - mean
    out = {
        "act/mean": mean,
        "act/std": dev.mul_(dev).mean().sqrt(),
        "act/dead_frac": dead.to(zf.dtype).mean(),
    }
    bounds = saturation_bounds if saturation_bounds is not None else _bounds_of(module)
    if bounds is not None:
        lo, hi = float(bounds[0]), float(bounds[1])
        margin = saturation_tol * (hi - lo)
        sat = (zf <= lo + margin) | (zf >= hi - margin)
        out["act/saturated_frac"] = sat.to(zf.dtype).mean()
    return out


register_metric(
    "act_stats",
    activation_stats,
    outputs=("act/mean", "act/std", "act/dead_frac", "act/saturated_frac"),
    description="activation mean, std, fraction of dead units and of saturated entries",
)


# ---------------------------------------------------------------- spectral estimators


def _effective_rank(z: torch.Tensor, **options: Any) -> torch.Tensor:
    """Effective rank (RankMe): exp of the entropy of the normalised singular values."""
    return _diagnostics("effective_rank")(z, **options)


def _von_neumann(z: torch.Tensor, **options: Any) -> torch.Tensor:
    """von Neumann entropy of the normalised covariance of the activations (nats)."""
    return _diagnostics("von_neumann_entropy")(z, **options)


def _alpha_req(z: torch.Tensor, **options: Any) -> torch.Tensor:
    """alpha-ReQ: power-law decay exponent of the activations' eigenspectrum."""
    return _diagnostics("alpha_req")(z, **options)


def _dse(
    z: torch.Tensor,
    seed: int = 0,
    *,
    sigma: float = 10.0,
    t: int = 1,
    max_n: int = 10000,
    **options: Any,
) -> torch.Tensor:
    """Diffusion spectral entropy of the activations (nats; Liao et al. 2023)."""
    return _diagnostics("diffusion_spectral_entropy")(
        z, sigma=sigma, t=t, max_n=max_n, seed=seed, **options
    )


def _dsmi_y(
    z: torch.Tensor,
    y: torch.Tensor,
    seed: int = 0,
    *,
    sigma: float = 10.0,
    t: int = 1,
    max_n: int = 10000,
    **options: Any,
) -> torch.Tensor:
    """Diffusion spectral mutual information between the activations and the labels."""
    return _diagnostics("diffusion_spectral_mutual_information")(
        z, y, sigma=sigma, t=t, max_n=max_n, seed=seed, **options
    )


def _dsmi_x(
    z: torch.Tensor,
    x_all: torch.Tensor,
    sample_index: torch.Tensor,
    cache: dict,
    seed: int = 0,
    *,
    n_clusters: int = 10,
    sigma: float = 10.0,
    t: int = 1,
    max_n: int = 10000,
    **options: Any,
) -> torch.Tensor:
    """DSMI between the activations and the inputs, clustered once (cluster_reference)."""
    if x_all is None:
        raise ValueError("dsmi_x needs the inputs (probe_inputs as a tensor)")
    key = (x_all.data_ptr(), tuple(x_all.shape), n_clusters)
    if cache.get("key") != key:
        cache["key"] = key
        cache["clusters"] = _diagnostics("cluster_reference")(x_all, n_clusters=n_clusters)
    clusters = torch.as_tensor(cache["clusters"], device=z.device)[sample_index]
    x = x_all[sample_index]
    return _diagnostics("diffusion_spectral_mutual_information")(
        z, x, sigma=sigma, t=t, max_n=max_n, seed=seed, clusters=clusters, **options
    )


_SPECTRAL = ("diagnostics.spectral",)
register_metric(
    "effective_rank",
    _effective_rank,
    outputs="repr/effective_rank",
    expensive=True,
    requires=_SPECTRAL,
)
register_metric(
    "von_neumann", _von_neumann, outputs="repr/von_neumann", expensive=True, requires=_SPECTRAL
)
register_metric(
    "alpha_req", _alpha_req, outputs="repr/alpha_req", expensive=True, requires=_SPECTRAL
)
register_metric("dse", _dse, outputs="repr/dse", slow=True, requires=_SPECTRAL)
register_metric("dsmi", _dsmi_y, outputs="repr/dsmi_y", slow=True, requires=_SPECTRAL)
register_metric("dsmi_x", _dsmi_x, outputs="repr/dsmi_x", slow=True, requires=_SPECTRAL)


# ---------------------------------------------------------------- information plane


def _info_plane(
    acts: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: str = "binning",
    **options: Any,
) -> dict[Any, Any]:
    """I(X;T) and I(T;Y) of every layer (nats): ``diagnostics.information_plane``, once
    per record for all layers (the partition of X and the label terms are shared). A
    layer whose estimate fails is reported as failed; the others are recorded."""
    prefix = f"info_plane/{method}"
    frame = _diagnostics("information_plane")(acts, x, y, method=method, on_error="collect",
                                              **options)  # fmt: skip
    errors = frame.attrs.get("errors", {})
    out: dict[Any, Any] = {}
    for layer, i_xt, i_ty in zip(frame["layer"], frame["I_XT"], frame["I_TY"]):
        if layer in errors:
            out[(f"{prefix}/I_XT", layer)] = errors[layer]
        else:
            out[(f"{prefix}/I_XT", layer)] = float(i_xt)
            out[(f"{prefix}/I_TY", layer)] = float(i_ty)
    return out


register_metric(
    "info_plane",
    _info_plane,
    scope="layers",
    outputs=("info_plane/{method}/I_XT", "info_plane/{method}/I_TY"),
    slow=True,
    requires=("diagnostics.infoplane",),
)


# ---------------------------------------------------------------- gradient and weight norms


def _norms(
    model: nn.Module, layers: Mapping[str, nn.Module], what: str, cache: dict
) -> dict[Any, Any]:
    params = list(model.parameters())
    key = tuple(map(id, params))
    if cache.get("key") != key:  # which parameters belong to which layer (once)
        index = {id(p): i for i, p in enumerate(params)}
        cache["key"] = key
        cache["layers"] = {
            name: [index[id(p)] for p in module.parameters() if id(p) in index]
            for name, module in layers.items()
        }
        cache["select"] = {}
    if what == "grad":
        tensors = [p.grad for p in params]
    else:
        tensors = list(params)
    present = [i for i, t in enumerate(tensors) if t is not None]
    if not present:
        return {}
    ts = [tensors[i].detach() for i in present]
    try:
        norms = torch._foreach_norm(ts)  # one kernel launch per device and dtype
    except (RuntimeError, TypeError, AttributeError):  # sparse or exotic tensors
        norms = [torch.linalg.vector_norm(t) for t in ts]
    dev = norms[0].device
    dtype = torch.float32 if dev.type == "mps" else torch.float64
    if all(n.device == dev and n.dtype == norms[0].dtype for n in norms):
        sq = torch.stack(norms).to(dtype).square()
    else:
        sq = torch.stack([n.to(dev, dtype) for n in norms]).square()
    name = f"{what}/norm"
    out: dict[Any, Any] = {name: sq.sum().sqrt()}
    # which of ``sq`` belong to which layer, as a 0/1 matrix (a parameter shared by two
    # layers counts in both), cached per set of present parameters: the layers' sums of
    # squares are one product, not an indexing, a sum and a root per layer
    plan = cache["select"].get((dev, tuple(present)))
    if plan is None:
        pos = {i: k for k, i in enumerate(present)}
        names, member = [], []
        for lname, idx in cache["layers"].items():
            sel = {pos[i] for i in idx if i in pos}
            if sel:
                names.append(lname)
                member.append([1.0 if k in sel else 0.0 for k in range(len(present))])
        matrix = torch.tensor(member, dtype=sq.dtype, device=dev) if names else None
        if len(cache["select"]) > 8:  # parameters gaining/losing gradients: keep a few
            cache["select"].clear()
        plan = cache["select"][(dev, tuple(present))] = (names, matrix)
    names, matrix = plan
    if names:
        for lname, v in zip(names, (matrix @ sq).sqrt().unbind()):
            out[(name, lname)] = v
    return out


def _grad_norm(model: nn.Module, layers: Mapping[str, nn.Module], cache: dict) -> dict[Any, Any]:
    """L2 norm of the gradients, per selected layer and for the whole model.

    Nothing is recorded when no parameter holds a gradient (e.g. after ``zero_grad``).
    """
    return _norms(model, layers, "grad", cache)


def _weight_norm(model: nn.Module, layers: Mapping[str, nn.Module], cache: dict) -> dict[Any, Any]:
    """L2 norm of the parameters, per selected layer and for the whole model."""
    return _norms(model, layers, "weight", cache)


register_metric("grad_norm", _grad_norm, scope="model", outputs="grad/norm")
register_metric("weight_norm", _weight_norm, scope="model", outputs="weight/norm")
