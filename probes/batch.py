"""Nested input batches and running them through the model (private to the probes).

A batch is a tensor, a tuple/list of tensors or a dict of tensors (a tokenizer's output):
these helpers find its batch size, slice or move every tensor with a batch axis, call the
model on it the way the user would (:func:`default_forward`), subsample its rows with a
seeded generator, and run a forward in eval mode without gradients while restoring every
module's train/eval flag afterwards (:func:`eval_no_grad`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "as_tensor",
    "batch_size",
    "default_forward",
    "eval_no_grad",
    "map_batch",
    "subsample_index",
    "to_device",
]


def _tensor_items(obj: Any) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _tensor_items(v)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from _tensor_items(v)


def _like(original: Mapping, mapped: dict) -> Mapping:
    """``mapped`` as the mapping type of ``original`` (a tokenizer's ``BatchEncoding``),
    or the plain dict when that type cannot be built from one."""
    try:
        return type(original)(mapped)
    except Exception:
        return mapped


def batch_size(inputs: Any) -> int:
    """The first axis of the first tensor with one (the probe batch's size)."""
    for t in _tensor_items(inputs):
        if t.ndim >= 1:
            return int(t.shape[0])
    raise ValueError(
        "probe_inputs: expected a tensor, or a tuple/list/dict of tensors with a batch axis"
    )


def map_batch(inputs: Any, fn: Callable[[torch.Tensor], torch.Tensor], n: int) -> Any:
    """Apply ``fn`` to every tensor of ``inputs`` whose first axis is the batch (``n``)."""
    if isinstance(inputs, torch.Tensor):
        return fn(inputs) if inputs.ndim >= 1 and inputs.shape[0] == n else inputs
    if isinstance(inputs, Mapping):
        return _like(inputs, {k: map_batch(v, fn, n) for k, v in inputs.items()})
    if isinstance(inputs, tuple):
        return tuple(map_batch(v, fn, n) for v in inputs)
    if isinstance(inputs, list):
        return [map_batch(v, fn, n) for v in inputs]
    return inputs


def to_device(inputs: Any, device: torch.device) -> Any:
    """``inputs`` with every tensor (and numpy array) moved to ``device``."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if type(inputs).__module__ == "numpy" and hasattr(inputs, "dtype"):  # numpy arrays
        return as_tensor(inputs, "probe_inputs").to(device)
    if isinstance(inputs, Mapping):
        return _like(inputs, {k: to_device(v, device) for k, v in inputs.items()})
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(to_device(v, device) for v in inputs)
    return inputs


def default_forward(model: nn.Module, inputs: Any) -> Any:
    """``model(**x)`` for a dict, ``model(*x)`` for a tuple/list, ``model(x)`` otherwise."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def as_tensor(value: Any, name: str) -> torch.Tensor:
    """A detached tensor from a tensor or numpy array; ``name`` is the argument's name in
    the error for anything else."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            return torch.as_tensor(np.ascontiguousarray(value))
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"{name}: expected a torch.Tensor or numpy array, got {type(value).__name__}")


def subsample_index(n: int, max_rows: int, seed: int) -> torch.Tensor:
    """``max_rows`` of ``range(n)`` drawn with a generator seeded by ``seed``, sorted."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:max_rows].sort().values


@contextlib.contextmanager
def eval_no_grad(model: nn.Module) -> Iterator[None]:
    """Run the body with ``model`` in eval mode under ``torch.no_grad()``; every module's
    train/eval flag is restored afterwards, also when the body raises."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            yield
    finally:
        for m, was_training in flags:
            m.training = was_training
