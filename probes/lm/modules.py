"""Finding a language model's parts: the module whose output is the logits, the attention modules.

Hugging Face models name their LM head (``get_output_embeddings()``) and the class whose
output carries the attention probabilities (``_can_record_outputs["attentions"]``); other
models fall back to the model's own output and to modules whose class name ends in
``Attention``. Both can be chosen by hand (``LMMonitor(logits=..., attention_layers=...)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from probes.layers import normalize_name

__all__ = ["NON_EAGER", "find_attention_modules", "find_logits_module"]

#: Attention implementations that compute no attention probabilities.
NON_EAGER = ("sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


def _name_of(named: Mapping[str, nn.Module], module: nn.Module) -> str | None:
    for n, m in named.items():
        if m is module:
            return n
    return None


def find_logits_module(model: nn.Module, logits: Any = None) -> tuple[str, nn.Module]:
    """The module whose output is the logits: ``logits`` (a dotted name or a module), the
    Hugging Face output embedding (``lm_head``), or the model itself."""
    named = {normalize_name(n): m for n, m in model.named_modules()}
    if isinstance(logits, nn.Module):
        n = _name_of(named, logits)
        if n is None:
            raise ValueError("logits: the module given is not part of the model")
        return n, logits
    if isinstance(logits, str):
        if logits not in named:
            raise ValueError(f"logits: expected a module name of the model, got {logits!r}")
        return logits, named[logits]
    if logits is not None:
        raise TypeError(f"logits: expected a module name or a module, got {type(logits).__name__}")
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Module):
        n = _name_of(named, head)
        if n is not None:
            return n, head
    return "", model


def find_attention_modules(
    model: nn.Module, attention_layers: Any = None
) -> tuple[dict[str, nn.Module], int]:
    """Attention modules ``{name: module}`` and the index of the probabilities in their output.

    Default: the class Hugging Face's ``output_attentions`` recorder names
    (``model._can_record_outputs["attentions"]``), else every module whose class name ends
    in ``Attention`` and that is not inside another one. ``attention_layers`` (a selection as
    in :func:`probes.layers.select_layers`) overrides it.
    """
    from probes.layers import select_layers

    index = 1
    if attention_layers is not None:
        return dict(select_layers(model, attention_layers)), index
    target: Any = None
    layer_name = None
    rec = getattr(model, "_can_record_outputs", None)
    if isinstance(rec, Mapping) and "attentions" in rec:
        spec = rec["attentions"]
        if isinstance(spec, type):
            target = spec
        else:
            target = getattr(spec, "target_class", None)
            index = int(getattr(spec, "index", 1) or 1)
            layer_name = getattr(spec, "layer_name", None)
    found: dict[str, nn.Module] = {}
    for n, m in model.named_modules():
        name = normalize_name(n)
        if target is not None:
            ok = isinstance(m, target) and (layer_name is None or ("." + name).endswith(layer_name))
        else:
            ok = type(m).__name__.endswith("Attention") and not any(
                name.startswith(f + ".") for f in found
            )
        if ok:
            found[name] = m
    return found, index
