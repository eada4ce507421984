"""The metric registry: metrics by name, built-ins and user-registered ones.

A metric is a function registered under a name with :func:`register_metric`. Two
scopes exist:

- ``scope="layer"``: called once per selected layer as ``fn(z, **context, **params)``
  where ``z`` is the layer's ``(rows, features)`` activation matrix on the model's
  device. It returns a number or 0-d tensor (recorded under ``outputs[0]``, or the
  metric's name) or a dict ``{metric_name: value}``.
- ``scope="model"``: called once per record as ``fn(model, **context, **params)``; it
  returns ``{metric_name: value}`` (whole-model rows) or ``{(metric_name, layer): value}``.

The function receives, among the context keywords, only those its signature names
explicitly (a ``**kwargs`` catch-all receives the user's options, not the context):

======================  =======================================================
``x``, ``y``            the probe inputs (flattened to ``(rows, -1)``) and labels,
                        row-aligned with ``z``; ``None`` when unknown
``x_all``, ``y_all``    the same before row alignment (the whole probe batch)
``sample_index``        ``z``'s row -> probe-sample index (``x = x_all[sample_index]``)
``layer``, ``module``   the stable layer name and the module
``layers``, ``model``   all selected layers ``{name: module}`` and the model
``step``, ``seed``      the step being recorded and the monitor's seed
``cache``               a dict private to this metric, kept across steps
======================  =======================================================

A metric whose signature has ``x`` or ``y`` without a default needs them: it is
skipped (with a warning, once) when the monitor has none. Options given by the user
(``metrics={"dse": {"sigma": 5.0}}``) are passed as keyword arguments and checked
against the signature when the monitor is built.

Built-in metrics (all information quantities in nats; estimators live in
:mod:`diagnostics`, probes only pick them by name):

=================  ======================================  ============================
name               records                                 calls
=================  ======================================  ============================
``act_stats``      ``act/mean``, ``act/std``,              reductions here (see
                   ``act/dead_frac``, ``act/saturated_frac``  :func:`activation_stats`)
``effective_rank`` ``repr/effective_rank``                 ``diagnostics.effective_rank``
``von_neumann``    ``repr/von_neumann``                    ``diagnostics.von_neumann_entropy``
``alpha_req``      ``repr/alpha_req``                      ``diagnostics.alpha_req``
``dse``            ``repr/dse``                            ``diagnostics.diffusion_spectral_entropy``
``dsmi``           ``repr/dsmi_y`` (needs labels)          ``diagnostics.diffusion_spectral_mutual_information``
``dsmi_x``         ``repr/dsmi_x`` (needs inputs)          the same, with ``cluster_reference(x)`` computed once
``info_plane``     ``info_plane/{method}/I_XT``, ``I_TY``  ``diagnostics.information_plane``
                   (needs inputs and labels)
``grad_norm``      ``grad/norm`` per layer and model       reductions here
``weight_norm``    ``weight/norm`` per layer and model     reductions here
=================  ======================================  ============================

``dse``, ``dsmi``, ``dsmi_x`` and ``info_plane`` are *slow*: by default they run at the
monitor's slow cadence (ten times sparser than ``every``). These and the other
estimator metrics (``effective_rank``, ``von_neumann``, ``alpha_req``) are *expensive*:
the monitor's time ``budget`` may postpone them (see :class:`probes.monitor.Monitor`).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = [
    "MetricDef",
    "register_metric",
    "unregister_metric",
    "get_metric",
    "available_metrics",
    "activation_stats",
    "SATURATION_BOUNDS",
]

LAYER_CONTEXT = frozenset(
    {
        "x",
        "y",
        "x_all",
        "y_all",
        "sample_index",
        "layer",
        "module",
        "layers",
        "model",
        "step",
        "seed",
        "cache",
    }
)
MODEL_CONTEXT = frozenset({"layers", "step", "seed", "cache", "x_all", "y_all"})


@dataclass(frozen=True)
class MetricDef:
    """A registered metric (see the module docstring)."""

    name: str
    fn: Callable[..., Any]
    scope: str
    outputs: tuple[str, ...]
    slow: bool
    expensive: bool
    requires: tuple[str, ...]
    description: str
    context: frozenset[str] = field(default_factory=frozenset)
    needs: frozenset[str] = field(default_factory=frozenset)
    params: frozenset[str] = field(default_factory=frozenset)
    var_kw: bool = False

    def missing_requirements(self) -> list[str]:
        """Modules in ``requires`` that cannot be imported."""
        missing = []
        for mod in self.requires:
            try:
                found = importlib.util.find_spec(mod) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(mod)
        return missing

    def check_params(self, params: Mapping[str, Any]) -> None:
        unknown = [k for k in params if k not in self.params and not self.var_kw]
        if unknown:
            raise TypeError(
                f"metrics[{self.name!r}]: unknown option(s) {', '.join(map(repr, unknown))}; "
                f"it accepts {', '.join(sorted(self.params)) or 'no options'} "
                "(plus 'every' and 'layers')"
            )


_REGISTRY: dict[str, MetricDef] = {}


def register_metric(
    name: str,
    fn: Callable[..., Any] | None = None,
    *,
    scope: str = "layer",
    outputs: tuple[str, ...] | list[str] | str | None = None,
    slow: bool = False,
    expensive: bool | None = None,
    requires: tuple[str, ...] | list[str] | str = (),
    description: str | None = None,
    overwrite: bool = False,
):
    """Register ``fn`` as metric ``name`` (usable as a decorator when ``fn`` is omitted).

    ``outputs`` names what it records (a scalar return value is recorded under
    ``outputs[0]``, or ``name`` when ``outputs`` is not given); ``slow=True`` puts it on
    the monitor's slow cadence by default; ``expensive`` (default: ``slow``) lets the
    monitor's time ``budget`` postpone it; ``requires`` lists modules that must be
    importable (a default metric whose module is missing is dropped with a warning, an
    explicitly requested one raises). Re-registering a name needs ``overwrite=True``.

    >>> @register_metric("demo/max_abs", overwrite=True)
    ... def _max_abs(z):
    ...     return z.abs().max()
    >>> get_metric("demo/max_abs").outputs
    ('demo/max_abs',)
    >>> unregister_metric("demo/max_abs")
    """
    if fn is None:
        return lambda f: register_metric(
            name,
            f,
            scope=scope,
            outputs=outputs,
            slow=slow,
            expensive=expensive,
            requires=requires,
            description=description,
            overwrite=overwrite,
        )
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    if scope not in ("layer", "model"):
        raise ValueError(f"scope: expected 'layer' or 'model', got {scope!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"name: a metric named {name!r} is already registered (pass overwrite=True)"
        )
    if isinstance(outputs, str):
        outputs = (outputs,)
    if isinstance(requires, str):
        requires = (requires,)
    context_names = LAYER_CONTEXT if scope == "layer" else MODEL_CONTEXT
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    context, needs, params, var_kw = set(), set(), set(), sig is None
    if sig is not None:
        plist = list(sig.parameters.values())
        # the first positional parameter receives z (layer) or the model (model scope)
        first = next(
            (p for p in plist if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)), None
        )
        if first is None and not any(p.kind == p.VAR_POSITIONAL for p in plist):
            raise TypeError(
                f"fn: a {scope} metric takes the {'activations z' if scope == 'layer' else 'model'} "
                "as its first positional argument"
            )
        for p in plist:
            if p is first or p.kind in (p.VAR_POSITIONAL,):
                continue
            if p.kind == p.VAR_KEYWORD:
                var_kw = True
            elif p.name in context_names:
                context.add(p.name)
                if p.name in ("x", "y") and p.default is p.empty:
                    needs.add(p.name)
            else:
                params.add(p.name)
    doc = description
    if doc is None:
        doc = (inspect.getdoc(fn) or "").split("\n\n")[0].replace("\n", " ")
    _REGISTRY[name] = MetricDef(
        name=name,
        fn=fn,
        scope=scope,
        outputs=tuple(outputs) if outputs else (name,),
        slow=bool(slow),
        expensive=bool(slow) if expensive is None else bool(expensive),
        requires=tuple(requires),
        description=doc,
        context=frozenset(context),
        needs=frozenset(needs),
        params=frozenset(params),
        var_kw=var_kw,
    )
    return fn


def unregister_metric(name: str) -> None:
    """Remove a registered metric (built-ins too)."""
    _REGISTRY.pop(name, None)


def get_metric(name: str) -> MetricDef:
    """The registered metric ``name``; an unknown name raises with the closest names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=4, cutoff=0.3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"metrics: unknown metric {name!r}{hint} Registered: {', '.join(sorted(_REGISTRY))}. "
            "Register new ones with probes.register_metric(name, fn)."
        ) from None


def available_metrics() -> dict[str, str]:
    """``{name: one-line description}`` of every registered metric."""
    return {n: d.description for n, d in sorted(_REGISTRY.items())}


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
    dead = (zf == 0) if dead_tol == 0 else (zf.abs() <= dead_tol)
    out = {
        "act/mean": zf.mean(),
        "act/std": zf.std(correction=0),  # (torch.std_mean is slower on CPU)
        "act/dead_frac": dead.all(dim=0).to(zf.dtype).mean(),
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
    z: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    layer: str = "",
    *,
    method: str = "binning",
    **options: Any,
) -> dict[str, Any]:
    """I(X;T) and I(T;Y) of the layer (nats): ``diagnostics.information_plane``."""
    prefix = f"info_plane/{method}"
    frame = _diagnostics("information_plane")({layer: z}, x, y, method=method, **options)
    row = frame.iloc[0]
    return {f"{prefix}/I_XT": float(row["I_XT"]), f"{prefix}/I_TY": float(row["I_TY"])}


register_metric(
    "info_plane",
    _info_plane,
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
    sq = torch.stack([n.to(dev, dtype) for n in norms]).square()
    pos = {i: k for k, i in enumerate(present)}
    name = f"{what}/norm"
    out: dict[Any, Any] = {name: sq.sum().sqrt()}
    for lname, idx in cache["layers"].items():
        sel = [pos[i] for i in idx if i in pos]
        if sel:
            out[(name, lname)] = sq[torch.tensor(sel, device=dev)].sum().sqrt()
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

BUILTIN_METRICS = tuple(_REGISTRY)
