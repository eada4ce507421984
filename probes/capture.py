"""Capture layer outputs with forward hooks: extract, detach, reduce, upcast.

A layer's output may be a tensor, a tuple or list (Hugging Face blocks return
``(hidden_states, ...)``), a dict or ``ModelOutput``, or a dataclass: the first tensor
found (depth first, in order) is taken, unless ``select`` says otherwise (an ``int``
index, a ``str`` key/attribute, or a callable ``output -> tensor``; or a dict
``{layer name: one of these}`` for per-layer choices, the default for the others).

The captured tensor is detached, stays on its device, and becomes a 2-D matrix of
rows (samples) by features:

- ``(B,)`` becomes ``(B, 1)``; ``(B, D)`` is kept.
- Higher-rank outputs have a feature axis (the channel axis 1 for convolution,
  batch-norm, instance-norm and pooling modules; the last axis otherwise, as in
  ``(B, T, D)`` transformer activations) and position axes (tokens, pixels). They are
  reduced according to ``reduce``:

  - ``"mean"`` (default): mean over positions, one row per sample, so rows stay aligned
    with probe labels. With an ``attention_mask`` in the probe inputs, padding tokens
    are left out.
  - ``"last"``: the last position (the last non-padding token when a mask is known),
    the usual summary of a causal language model.
  - ``"all"``: every position is a row (labels are repeated per token); rows are
    subsampled to ``max_rows`` afterwards.
  - ``"flatten"``: all non-batch axes flattened into features, the convention of the
    information-plane studies for small networks (memory grows with the map size).

Half-precision outputs are upcast to float32 (estimators upcast further to float64
where they need to); integer and boolean outputs become float32.

Hooks never raise into the user's forward: a failure is stored in ``Capture.errors``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["Capture", "extract_tensor", "reduce_rows", "REDUCTIONS", "OutputSelect"]

REDUCTIONS = ("mean", "last", "all", "flatten")

#: What to take from a layer's output: an index, a key/attribute name, a callable, or a
#: dict ``{layer name: one of these}``; ``None``: the first tensor.
OutputSelect = (
    int | str | Callable[[Any], Any] | Mapping[str, int | str | Callable[[Any], Any] | None] | None
)

_CHANNEL_FIRST = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.GroupNorm,
    nn.Dropout2d,
    nn.Dropout3d,
)


def extract_tensor(output: Any, select: int | str | Callable[[Any], Any] | None = None) -> Any:
    """The tensor to analyse inside a module's ``output`` (see the module docstring).

    Returns ``None`` when there is none.

    >>> extract_tensor((torch.ones(2), None)).shape
    torch.Size([2])
    >>> extract_tensor({"a": None, "b": torch.zeros(3)}).shape
    torch.Size([3])
    """
    if select is not None:
        if callable(select):
            output = select(output)
        elif isinstance(select, int):
            output = output[select]
        elif isinstance(output, Mapping):
            output = output[select]
        else:
            output = getattr(output, select)
    return _first_tensor(output, depth=0)


def _first_tensor(obj: Any, depth: int) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if depth > 4 or obj is None:
        return None
    if isinstance(obj, Mapping):  # dict, transformers ModelOutput (an OrderedDict)
        items = obj.values()
    elif isinstance(obj, (tuple, list)):
        items = obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = (getattr(obj, f.name) for f in dataclasses.fields(obj))
    else:
        return None
    for item in items:
        t = _first_tensor(item, depth + 1)
        if t is not None:
            return t
    return None


def feature_axis(module: nn.Module | None, ndim: int) -> int:
    """The feature axis of a ``ndim``-D output of ``module`` (1 for channel-first
    modules, the last axis otherwise)."""
    if ndim >= 3 and isinstance(module, _CHANNEL_FIRST):
        return 1
    return ndim - 1


def reduce_rows(
    t: torch.Tensor,
    *,
    reduce: str = "mean",
    axis: int = -1,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Turn a ``(B, ...)`` output into ``(rows, features)``.

    Returns ``(z, sample_index)``: ``sample_index[i]`` is the sample (batch row) that
    row ``i`` of ``z`` comes from, or ``None`` when rows are the samples themselves.
    ``mask`` is an optional ``(B, P)`` padding mask (1 = real token) for the positions.

    >>> z, idx = reduce_rows(torch.arange(12.0).reshape(2, 3, 2), reduce="all")
    >>> z.shape, idx.tolist()
    (torch.Size([6, 2]), [0, 0, 0, 1, 1, 1])
    """
    if t.ndim == 0:
        raise ValueError("expected an output with a batch axis, got a 0-d tensor")
    if t.ndim == 1:
        return t.unsqueeze(1), None
    if t.ndim == 2:
        return t, None
    b = t.shape[0]
    if reduce == "flatten":
        return t.reshape(b, -1), None
    axis = axis % t.ndim
    t = t.movedim(axis, -1).reshape(b, -1, t.shape[axis])  # (B, P, D)
    p = t.shape[1]
    m = None
    if mask is not None and mask.ndim == 2 and tuple(mask.shape) == (b, p):
        m = mask.to(device=t.device, dtype=torch.bool)
    if reduce == "mean":
        if m is None:
            return t.mean(dim=1), None
        w = m.to(t.dtype).unsqueeze(-1)
        return (t * w).sum(dim=1) / w.sum(dim=1).clamp_min(1), None
    if reduce == "last":
        if m is None:
            return t[:, -1], None
        # position of the last real token (works for left and right padding)
        pos = torch.arange(p, device=t.device).expand(b, p)
        last = torch.where(m, pos, torch.zeros_like(pos)).amax(dim=1)
        return t[torch.arange(b, device=t.device), last], None
    if reduce == "all":
        idx = torch.arange(b, device=t.device).repeat_interleave(p)
        z = t.reshape(b * p, t.shape[-1])
        if m is not None:
            keep = m.reshape(-1)
            z, idx = z[keep], idx[keep]
        return z, idx
    raise ValueError(f"reduce: expected one of {', '.join(map(repr, REDUCTIONS))}, got {reduce!r}")


def _upcast(z: torch.Tensor) -> torch.Tensor:
    if z.dtype in (torch.float16, torch.bfloat16) or not z.is_floating_point():
        return z.float()
    return z


class Capture:
    """Forward hooks on named modules that keep each one's (reduced) output.

    ``attach(names)`` registers hooks, ``detach()`` removes them (always call it in a
    ``finally``; the context manager form does). With ``accumulate=True`` (probe batches
    run in chunks) the outputs of successive calls are concatenated, with sample indices
    shifted by ``offset``; otherwise each call replaces the last (live capture keeps the
    last forward).
    """

    def __init__(
        self,
        layers: Mapping[str, nn.Module],
        *,
        select: OutputSelect = None,
        reduce: str = "mean",
        accumulate: bool = True,
    ) -> None:
        if reduce not in REDUCTIONS:
            raise ValueError(
                f"reduce: expected one of {', '.join(map(repr, REDUCTIONS))}, got {reduce!r}"
            )
        self.layers = dict(layers)
        self.select = select
        self.reduce = reduce
        self.accumulate = accumulate
        self.mask: torch.Tensor | None = None
        self.offset = 0
        self._handles: list[Any] = []
        self._parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.errors: dict[str, str] = {}
        self.batch_sizes: dict[str, int] = {}
        self.seconds = 0.0  # wall time spent in the hooks (the consumer resets it)

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self, names=None) -> Capture:
        self.detach()
        for name in self.layers if names is None else names:
            module = self.layers[name]
            self._handles.append(module.register_forward_hook(self._make_hook(name, module)))
        return self

    def detach(self) -> None:
        handles, self._handles = self._handles, []
        for h in handles:
            h.remove()

    def clear(self) -> None:
        self._parts = {}
        self.errors = {}
        self.batch_sizes = {}
        self.offset = 0

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.detach()

    def _make_hook(self, name: str, module: nn.Module):
        select = self.select.get(name) if isinstance(self.select, Mapping) else self.select

        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            t0 = time.perf_counter()
            try:
                t = extract_tensor(output, select)
                if t is None:
                    raise TypeError(f"no tensor in the output ({type(output).__name__})")
                t = t.detach()
                z, idx = reduce_rows(
                    t, reduce=self.reduce, axis=feature_axis(module, t.ndim), mask=self.mask
                )
                if idx is None:
                    idx = torch.arange(z.shape[0], device=z.device)
                z = _upcast(z)
                if self.offset:
                    idx = idx + self.offset
                if self.accumulate:
                    self._parts.setdefault(name, []).append((z, idx))
                    self.batch_sizes[name] = self.batch_sizes.get(name, 0) + int(t.shape[0])
                else:
                    self._parts[name] = [(z, idx)]
                    self.batch_sizes[name] = int(t.shape[0])
            except Exception as exc:  # never break the user's forward
                self.errors[name] = f"{type(exc).__name__}: {exc}"
            self.seconds += time.perf_counter() - t0

        return hook

    def results(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{name: (z, sample_index)}`` for every layer that produced output."""
        out = {}
        for name, parts in self._parts.items():
            if len(parts) == 1:
                out[name] = parts[0]
            else:
                try:
                    out[name] = (
                        torch.cat([z for z, _ in parts]),
                        torch.cat([i for _, i in parts]),
                    )
                except RuntimeError as exc:
                    self.errors[name] = f"outputs of successive calls do not stack: {exc}"
        return out
