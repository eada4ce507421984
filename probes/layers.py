"""Layer names and layer selection.

Names are the dotted names ``named_modules()`` gives, with the attributes that
wrappers insert removed, so that a layer keeps one stable name whether the model is
wrapped or not:

- ``DistributedDataParallel`` / ``DataParallel``: ``module.``
- FSDP (``FullyShardedDataParallel``): ``_fsdp_wrapped_module.`` (at every wrapped level)
- ``torch.compile``: ``_orig_mod.``
- activation checkpointing (``checkpoint_wrapper``): ``_checkpoint_wrapped_module.``

A selection is a glob pattern matched against the stable names (``*`` matches within one
dotted component, ``**`` across components, ``?`` one character, ``[...]`` a set:
``"encoder.layer.*"`` selects the blocks ``encoder.layer.0``, ``encoder.layer.1``, ...
but not their submodules, ``"encoder.**"`` everything below ``encoder``; a name without
wildcards matches exactly), a module type
(``torch.nn.Linear``: every module that is an instance of it), a callable
``(name, module) -> bool``, or a list of these (their union, in model order). ``None``
selects every leaf module that has parameters of its own. A selection (or an entry of a
list) that matches nothing raises ``ValueError`` listing the closest names.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["normalize_name", "named_layers", "select_layers", "unwrap", "LayerSelection"]

LayerSelection = str | type | Callable[[str, nn.Module], bool] | Iterable[Any] | None

# attribute names that only wrappers use: dropped wherever they appear
_WRAPPER_ATTRS = ("_fsdp_wrapped_module", "_orig_mod", "_checkpoint_wrapped_module")
# ``module`` is dropped only below a DDP / DataParallel wrapper
_PARALLEL_WRAPPERS = (nn.parallel.DistributedDataParallel, nn.DataParallel)


def normalize_name(name: str) -> str:
    """Drop wrapper components from a dotted module name (string form).

    A leading ``module.`` (DDP/DataParallel) is dropped, and ``_fsdp_wrapped_module``,
    ``_orig_mod`` and ``_checkpoint_wrapped_module`` components anywhere.

    >>> normalize_name("module._orig_mod.encoder._fsdp_wrapped_module.0")
    'encoder.0'
    """
    parts = [p for p in name.split(".") if p and p not in _WRAPPER_ATTRS]
    while parts and parts[0] == "module":
        parts = [p for p in parts[1:] if p not in _WRAPPER_ATTRS]
    return ".".join(parts)


def _is_wrapper_child(parent: nn.Module, attr: str) -> bool:
    if attr in _WRAPPER_ATTRS:
        return True
    return attr == "module" and isinstance(parent, _PARALLEL_WRAPPERS)


def named_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(stable_name, module)`` for every module, in ``named_modules()`` order.

    Wrapper modules are skipped: the module they wrap takes their (stable) name. Each
    module is yielded once (shared modules under their first name). The root module's
    name is ``""``.
    """
    seen: set[int] = set()

    def walk(prefix: str, module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        if id(module) in seen:
            return
        seen.add(id(module))
        children = list(module._modules.items())
        wraps = any(c is not None and _is_wrapper_child(module, a) for a, c in children)
        if not wraps:
            yield prefix, module
        for attr, child in children:
            if child is None:
                continue
            if _is_wrapper_child(module, attr):
                yield from walk(prefix, child)
            else:
                yield from walk(f"{prefix}.{attr}" if prefix else attr, child)

    yield from walk("", model)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP / DataParallel / ``torch.compile`` wrappers (not FSDP, whose
    forward must run through the wrapper to gather the sharded parameters)."""
    while True:
        if isinstance(model, _PARALLEL_WRAPPERS):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _has_own_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _matches(entry: Any, name: str, module: nn.Module) -> bool:
    if isinstance(entry, str):
        if name == "":
            return entry == ""
        return bool(_glob_regex(entry).fullmatch(name)) if _is_glob(entry) else name == entry
    if isinstance(entry, type):
        return isinstance(module, entry)
    return bool(entry(name, module))


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern:
    """``**`` -> any characters, ``*`` -> any within a dotted component, ``?`` -> one
    non-dot character, ``[...]`` -> a character set."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^.]*")
        elif c == "?":
            out.append("[^.]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _describe(entry: Any) -> str:
    if isinstance(entry, str):
        return repr(entry)
    if isinstance(entry, type):
        return f"type {entry.__module__}.{entry.__qualname__}"
    return f"callable {getattr(entry, '__name__', repr(entry))}"


def _no_match_error(entry: Any, layers: list[tuple[str, nn.Module]]) -> ValueError:
    names = [n for n, _ in layers if n]
    what = _describe(entry)
    if isinstance(entry, str):
        # match on the literal part of a glob so that "encodr.*" suggests "encoder.0"
        probe = entry.replace("*", "").replace("?", "").strip(".") or entry
        close = difflib.get_close_matches(probe, names, n=6, cutoff=0.4)
        if not close:
            close = difflib.get_close_matches(entry, names, n=6, cutoff=0.0)
        hint = f"; closest names: {', '.join(close)}" if close else ""
    elif isinstance(entry, type):
        types = sorted({type(m).__name__ for _, m in layers})
        hint = f"; module types in the model: {', '.join(types[:20])}"
    else:
        hint = f"; some names: {', '.join(names[:8])}"
    return ValueError(f"layers: {what} matches no module of the model{hint}")


def select_layers(model: nn.Module, layers: LayerSelection = None) -> dict[str, nn.Module]:
    """Select layers of ``model``: ``{stable_name: module}`` in model order.

    See the module docstring for what ``layers`` may be.

    >>> m = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    >>> list(select_layers(m, nn.Linear)), list(select_layers(m, ["1", "2"]))
    (['0', '2'], ['1', '2'])
    >>> select_layers(m, "3")
    Traceback (most recent call last):
    ...
    ValueError: layers: '3' matches no module of the model; closest names: 2, 1, 0
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    all_layers = list(named_layers(model))
    if layers is None:
        chosen = {n: m for n, m in all_layers if not m._modules and _has_own_params(m)}
        if not chosen:
            raise ValueError(
                "layers: the model has no leaf module with parameters; pass layers= "
                "(names, glob patterns, module types or a callable)"
            )
        return chosen
    if isinstance(layers, (str, type)) or callable(layers) and not isinstance(layers, nn.Module):
        entries = [layers]
    elif isinstance(layers, Iterable):
        entries = list(layers)
        if not entries:
            raise ValueError("layers: expected at least one name, pattern, type or callable")
    else:
        raise TypeError(
            "layers: expected a name or glob pattern, a module type, a callable "
            f"(name, module) -> bool, or a list of these; got {type(layers).__name__}"
        )
    hit: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, (str, type)) and not callable(entry):
            raise TypeError(
                f"layers[{i}]: expected a name or glob pattern, a module type or a callable, "
                f"got {type(entry).__name__} {entry!r}"
            )
        found = [n for n, m in all_layers if _matches(entry, n, m)]
        if not found and isinstance(entry, str):
            # a name written with wrapper prefixes ("module.encoder.0") finds the stable name
            stable = _normalize_glob(entry) if _is_glob(entry) else normalize_name(entry)
            found = [n for n, m in all_layers if _matches(stable, n, m)]
        if not found:
            raise _no_match_error(entry, all_layers)
        hit.update(found)
    return {n: m for n, m in all_layers if n in hit}


def _normalize_glob(pattern: str) -> str:
    # wrapper prefixes in a pattern are dropped like in names ("module.encoder.*")
    parts = pattern.split(".")
    kept = [p for p in parts if p not in _WRAPPER_ATTRS]
    if kept and kept[0] == "module" and len(kept) > 1:
        kept = kept[1:]
    return ".".join(kept)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model without any."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")
