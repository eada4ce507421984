"""Hooks on a language model's forward: token statistics of its logits, attention entropy.

A part of :class:`~probes.lm.LMMonitor` (a mixin; its ``__init__`` sets the state used
here). While armed, a forward pre-hook on the model reads ``input_ids``,
``attention_mask`` and ``labels``; a hook on the logits module computes the per-token
statistics at once (:func:`diagnostics.lm.token_stats`, chunked, so the logits are not
kept), and hooks on the attention modules compute each head's attention entropy. What one
forward leaves is a :class:`CapturedForward`, kept until the step records
(:mod:`probes.lm.tokens`). Hooks never raise into the user's forward: errors are stored
and reported at the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import probes.lm as _package
from diagnostics.lm import attention_entropy
from probes.batch import eval_no_grad
from probes.capture import extract_tensor

__all__ = ["CapturedForward", "LMHooks"]


@dataclass
class CapturedForward:
    """What one forward left: its inputs and the per-token / per-head statistics."""

    ids: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    tokens: dict[str, torch.Tensor] | None = None  # (batch, seq) NaN where invalid
    vocab: int = 0
    attn: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    attn_missing: bool = False
    errors: list[tuple[str, BaseException]] = field(default_factory=list)


def _int_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor) and not x.is_floating_point() and not x.is_complex():
        return x
    return None


def _logits_of(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    t = getattr(output, "logits", None)
    if isinstance(t, torch.Tensor):
        return t
    if isinstance(output, Mapping) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    return extract_tensor(output)


class LMHooks:
    """The LM monitor's hooks (see the module docstring)."""

    def _lm_attach(self) -> None:
        if self._handles:
            return
        top = self._fwd_model
        self._handles.append(top.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
        self._handles.append(self._logits_module.register_forward_hook(self._logits_hook))
        for name, mod in self._attn_modules.items():
            self._handles.append(
                mod.register_forward_hook(lambda m, a, o, name=name: self._attn_hook(name, o))
            )

    def _lm_detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._current = None

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        try:
            ids = _int_tensor(kwargs.get("input_ids"))
            if ids is None and args:
                ids = _int_tensor(args[0])
            mask = kwargs.get("attention_mask")
            labels = _int_tensor(kwargs.get("labels"))
            self._current = CapturedForward(
                ids=None if ids is None else ids.detach(),
                mask=mask.detach() if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None,
                labels=None if labels is None else labels.detach(),
            )
        except Exception as exc:  # never raise into the user's forward
            self._current = CapturedForward(errors=[("lm/capture", exc)])

    def _cur(self) -> CapturedForward:
        if self._current is None:
            self._current = CapturedForward()
        return self._current

    def _attn_hook(self, name: str, output: Any) -> None:
        cur = self._cur()
        try:
            w = None
            if isinstance(output, (tuple, list)) and len(output) > self._attn_index:
                w = output[self._attn_index]
            if not isinstance(w, torch.Tensor) or w.ndim != 4:
                cur.attn_missing = True
                return
            m = cur.mask
            if m is not None and m.shape != (w.shape[0], w.shape[-1]):
                m = None
            with torch.no_grad():
                cur.attn[name] = attention_entropy(w.detach(), mask=m)
        except Exception as exc:
            cur.errors.append((f"attn:{name}", exc))

    def _logits_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        cur = self._cur()
        try:
            z = _logits_of(output)
            if z is None or not z.is_floating_point() or z.ndim < 2:
                raise ValueError(
                    f"logits: the output of {self.logits_name or 'the model'} is not a "
                    "floating (..., vocab) tensor"
                )
            with torch.no_grad():
                self._token_pass(cur, z.detach())
        except Exception as exc:
            cur.errors.append(("lm/token_stats", exc))
        self._last_fwd = cur
        self._current = None

    def _token_pass(self, cur: CapturedForward, z: torch.Tensor) -> None:
        lead = z.shape[:-1]
        vocab = z.shape[-1]
        dev = z.device
        valid = torch.ones(lead, dtype=torch.bool, device=dev)
        targets = None
        if z.ndim == 3:
            b, t = lead
            mask = cur.mask
            if mask is not None and mask.shape[0] == b and mask.shape[1] >= t:
                mask = mask[:, mask.shape[1] - t :].to(dev).bool()  # a KV cache: last t
                valid &= mask
            else:
                mask = None
            ids = cur.ids if cur.ids is not None and tuple(cur.ids.shape) == (b, t) else None
            lab = (
                cur.labels if cur.labels is not None and tuple(cur.labels.shape) == (b, t) else None
            )
            src = lab if lab is not None else ids
            if src is not None and t > 1:
                src = src.to(dev)
                targets = torch.full((b, t), -1, dtype=torch.long, device=dev)
                nxt = src[:, 1:].long()
                if mask is not None:
                    nxt = torch.where(mask[:, 1:], nxt, -1)
                targets[:, :-1] = nxt
            if lab is not None:
                has = torch.zeros((b, t), dtype=torch.bool, device=dev)
                has[:, :-1] = lab[:, 1:].to(dev) != -100
                valid &= has
        # looked up on the package at call time: ``probes.lm.token_stats`` is the one name
        # to replace to change the statistics (the tests replace it to make them fail)
        cur.tokens = _package.token_stats(
            z,
            targets=targets,
            k=min(self.k, vocab),
            mask=valid,
            temperature=self.temperature,
        )
        cur.vocab = vocab

    def _lm_probe_forward(self, step: int) -> None:
        self._last_fwd = None
        try:
            self._lm_attach()
            with eval_no_grad(self._fwd_model):
                self._forward(self._fwd_model, self._probe_local)
        except Exception as exc:
            self._failure(step, "lm/forward", exc)
        finally:
            self._lm_detach()
