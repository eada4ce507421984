"""The metric registry: register a function under a name, look it up, list what exists.

:func:`register_metric` reads the function's signature once: which context keywords it
asks for (:data:`LAYER_CONTEXT`, :data:`MODEL_CONTEXT`), which of ``x`` / ``y`` it needs,
and which user options it accepts; the monitor checks options against that when it is
built. The contract a metric function follows, and the built-in metrics, are described in
:mod:`probes.metrics`.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MetricDef",
    "register_metric",
    "unregister_metric",
    "get_metric",
    "available_metrics",
    "LAYER_CONTEXT",
    "LAYERS_CONTEXT",
    "MODEL_CONTEXT",
    "SCOPES",
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
#: a ``scope="layers"`` metric's context: a layer metric's, less the one layer's name and module
LAYERS_CONTEXT = LAYER_CONTEXT - {"layer", "module"}
SCOPES = ("layer", "layers", "model")
_CONTEXT = {"layer": LAYER_CONTEXT, "layers": LAYERS_CONTEXT, "model": MODEL_CONTEXT}


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
    if scope not in SCOPES:
        raise ValueError(f"scope: expected 'layer', 'layers' or 'model', got {scope!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"name: a metric named {name!r} is already registered (pass overwrite=True)"
        )
    if isinstance(outputs, str):
        outputs = (outputs,)
    if isinstance(requires, str):
        requires = (requires,)
    context_names = _CONTEXT[scope]
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    context, needs, params, var_kw = set(), set(), set(), sig is None
    if sig is not None:
        plist = list(sig.parameters.values())
        # the first positional parameter receives z (layer), {layer: z} (layers) or the model
        first = next(
            (p for p in plist if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)), None
        )
        if first is None and not any(p.kind == p.VAR_POSITIONAL for p in plist):
            what = {"layer": "activations z", "layers": "dict of activations", "model": "model"}
            raise TypeError(
                f"fn: a {scope} metric takes the {what[scope]} as its first positional argument"
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
