"""Turning a captured forward into rows: ``lm/*`` token statistics and ``attn/*`` entropies.

A part of :class:`~probes.lm.LMMonitor` (a mixin; its ``__init__`` sets the state used
here). At a step where ``lm_every`` is due, :meth:`TokenRecording._lm_record` takes the
last captured forward (:mod:`probes.lm.hooks`; in probe mode it runs the probe batch
first), restricts the token statistics to the RL response mask when ``log_rl`` gave one
(:func:`align_to_mask`), and writes the means, the entropy quantiles (:data:`QUANTILES`),
the entropy histogram and the per-head attention entropies. When the attention
implementation exposes no probabilities, it warns once, records ``attention_unavailable``
and stops capturing attention.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from diagnostics.lm import masked_mean, masked_quantiles, perplexity
from probes.lm.hooks import CapturedForward
from probes.output import float_values

__all__ = ["QUANTILES", "TokenRecording", "align_to_mask"]

#: Quantiles of the per-token entropy written as ``lm/token_entropy/qNN``.
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def align_to_mask(h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``h`` restricted to the positions of ``mask``: same shape, or one shorter in the
    last dimension (aligned with ``logits[..., :-1, :]``)."""
    if tuple(mask.shape) == tuple(h.shape):
        return h, mask
    if (
        h.ndim >= 1
        and mask.ndim == h.ndim
        and tuple(mask.shape[:-1]) == tuple(h.shape[:-1])
        and mask.shape[-1] == h.shape[-1] - 1
    ):
        return h[..., :-1], mask
    return None


class TokenRecording:
    """The LM monitor's ``lm/*`` and ``attn/*`` record (see the module docstring)."""

    def _lm_record(self, step: int) -> dict[tuple[str, str | None], float]:
        if self.mode == "probe":
            self._lm_probe_forward(step)
        fwd, self._last_fwd = self._last_fwd, None
        rl_mask, self._rl_mask = self._rl_mask, None
        if self.rank != 0:
            return {}
        if fwd is None:
            self._warn_once(
                ("lm-empty",),
                f"LMMonitor: no forward through {self.logits_name or 'the model'} was captured "
                f"before step {step}; call monitor.step(step) after the model's forward "
                "(LM metrics skipped)",
            )
            return {}
        for source, exc in fwd.errors:
            self._failure(step, source, exc, metric=source)
        rows: list[tuple[str, str | None, Any]] = []
        hist = None
        if fwd.tokens and ("lm/token_stats", None) not in self._disabled:
            try:
                hist = self._token_rows(fwd, rl_mask, step, rows)
            except Exception as exc:
                self._failure(step, "lm/token_stats", exc, metric="lm/token_stats")
        if fwd.attn_missing and self._attn_modules:
            self._attention_unavailable(
                step,
                "the attention modules returned no probabilities (attention implementation "
                "other than eager); build the model with attn_implementation='eager' for "
                "attn/* metrics",
            )
        elif fwd.attn:
            try:
                self._attention_rows(fwd, rows)
            except Exception as exc:
                self._failure(step, "attn/entropy", exc, metric="attn/entropy")
        if not rows:
            return {}
        out = float_values(rows)
        if hist is not None and self.writer is not None:
            edges, counts = hist
            c = counts.tolist()
            self._safe_write(
                lambda: self.writer.log_distribution(
                    step, "lm/token_entropy", edges=edges, counts=c
                )
            )
        self._emit([(step, m, lay, v) for (m, lay), v in out.items()])
        return out

    def _token_rows(self, fwd: CapturedForward, rl_mask, step: int, rows: list) -> Any:
        tok = dict(fwd.tokens)
        if rl_mask is not None and rl_mask[0] == step and self.mode == "live":
            aligned = align_to_mask(tok["entropy"], rl_mask[1])
            if aligned is None:
                self._warn_once(
                    ("rl-mask-shape",),
                    f"log_rl: mask of shape {tuple(rl_mask[1].shape)} does not match the "
                    f"captured logits' positions {tuple(tok['entropy'].shape)} (or one "
                    "shorter); lm/* metrics use all positions",
                )
            else:
                for key, v in tok.items():
                    a, m = align_to_mask(v, rl_mask[1])
                    tok[key] = torch.where(m.to(a.device), a, torch.nan)
        h = tok["entropy"]
        rows.append(("lm/token_entropy/mean", None, masked_mean(h)))
        qs = masked_quantiles(h, list(QUANTILES))
        for q, v in zip(QUANTILES, qs.unbind(0)):
            rows.append((f"lm/token_entropy/q{round(q * 100):02d}", None, v))
        for key in ("topk_mass", "topk_entropy", "topk_entropy_renorm", "sum_p2"):
            rows.append((f"lm/{key}", None, masked_mean(tok[key])))
        if "logprob" in tok:
            lp = tok["logprob"]
            rows.append(("lm/logprob", None, masked_mean(lp)))
            rows.append(("lm/perplexity", None, perplexity(lp)))
        top = math.log(fwd.vocab) if fwd.vocab > 1 else 1.0
        valid = ~torch.isnan(h)
        vals = torch.where(valid, h.clamp(0.0, top), -1.0).reshape(-1)
        counts = torch.histc(vals, bins=self.hist_bins, min=0.0, max=top)
        edges = [top * i / self.hist_bins for i in range(self.hist_bins + 1)]
        return edges, counts

    def _attention_rows(self, fwd: CapturedForward, rows: list) -> None:
        for name, res in fwd.attn.items():
            ent, norm = res["entropy"], res["entropy_norm"]
            rows.append(("attn/entropy", name, ent.mean()))
            rows.append(("attn/entropy_norm", name, masked_mean(norm)))
            for hd in range(ent.shape[0]):
                rows.append((f"attn/entropy/h{hd}", name, ent[hd]))
                rows.append((f"attn/entropy_norm/h{hd}", name, norm[hd]))

    def _attention_unavailable(self, step: int | None, reason: str) -> None:
        """Warn once, record one event, stop capturing attention."""
        self._attn_modules = {}
        if self._handles:  # re-attach without the attention hooks
            self._lm_detach()
            self._lm_attach()
        if ("attention-unavailable",) in self._warned:
            return
        self._warn_once(
            ("attention-unavailable",), f"LMMonitor: attention entropy skipped: {reason}"
        )
        if self.rank == 0:
            self._event(
                step,
                "attention_unavailable",
                f"attention entropy skipped: {reason}",
                source="attn/entropy",
                detail={"logits": self.logits_name},
            )
