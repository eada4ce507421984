"""The ``rl/*`` metrics of :meth:`LMMonitor.log_rl <probes.lm.LMMonitor.log_rl>`.

A part of :class:`~probes.lm.LMMonitor` (a mixin; its ``__init__`` sets the state used
here). Each RL batch gives the mean reward, the entropy-advantage covariance and its
positive share (Cui et al. 2025), the per-completion entropy (from ``entropies`` or from
the captured forward's token entropy, :meth:`RLLogging._captured_entropy`), the answer
entropy, and once enough batches exist the fit ``R = -a exp(H) + b``. Every metric is
isolated like the monitor's (:meth:`RLLogging._rl_metric`); values stay on the device in
``_rl_rows`` until the next record writes them (:meth:`RLLogging._emit_rl`).
"""

from __future__ import annotations

import warnings

import torch

from diagnostics.lm import (
    answer_entropy,
    completion_entropy,
    entropy_advantage_covariance,
    fit_entropy_reward,
    masked_mean,
    positive_covariance_share,
)
from probes.batch import as_tensor
from probes.lm.tokens import align_to_mask
from probes.output import scalar_rows

__all__ = ["RLLogging"]


class RLLogging:
    """The LM monitor's ``rl/*`` metrics (see the module docstring)."""

    def _emit_rl(self, step: int | None) -> dict[tuple[str, str | None], float]:
        """Write the pending ``rl/*`` rows; return those of ``step``."""
        pending, self._rl_rows = self._rl_rows, []
        if self.rank != 0 or not pending:
            return {}
        rows = scalar_rows(pending)
        self._emit(rows)
        return {(name, None): val for s, name, _, val in rows if s == step}

    def _rl_metric(self, step, source, values, fn, *args) -> None:
        if (source, None) in self._disabled:
            return
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fn(values, *args)
            for w in caught:
                self._warn_once(("metric-warning", source, w.category), f"{source}: {w.message}")
        except Exception as exc:
            self._failure(step, source, exc, metric=source)
        else:
            self._fail_streak.pop((source, None), None)

    @staticmethod
    def _rl_reward(values, rewards) -> None:
        if rewards is None:
            return
        r = rewards if isinstance(rewards, torch.Tensor) else torch.as_tensor(rewards)
        values["rl/reward"] = r.detach().to(torch.float32).mean()

    def _rl_cov(self, values, logprobs, advantages, mask) -> None:
        lp = as_tensor(logprobs, "logprobs")
        adv = as_tensor(advantages, "advantages").to(lp.device)
        mk = None if mask is None else mask.to(lp.device)
        cov = entropy_advantage_covariance(lp, adv, mask=mk)
        values["rl/cov/mean"] = masked_mean(cov)
        values["rl/cov/pos_share"] = positive_covariance_share(cov)

    def _rl_entropy(self, values, ent, mask, box) -> None:
        e = as_tensor(ent, "entropies")
        mk = None if mask is None else mask.to(e.device)
        if mk is not None and mk.shape != e.shape:
            raise ValueError(
                f"entropies: expected the shape of mask {tuple(mk.shape)}, got {tuple(e.shape)}"
            )
        per = completion_entropy(e, mk)
        values["rl/completion_entropy"] = masked_mean(per)
        box["h_tok"] = masked_mean(e, mk)

    @staticmethod
    def _rl_answers(values, answers) -> None:
        values["rl/answer_entropy"] = masked_mean(answer_entropy(answers))

    def _rl_fit(self, values) -> None:
        fit = fit_entropy_reward(torch.stack(self._fit_h), torch.stack(self._fit_r))
        values["rl/fit/a"] = fit["a"]
        values["rl/fit/b"] = fit["b"]
        values["rl/fit/ceiling"] = fit["ceiling"]

    def _captured_entropy(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        fwd = self._last_fwd
        if self.mode != "live" or fwd is None or not fwd.tokens:
            return None
        h = fwd.tokens["entropy"]
        if mask is None:
            return h
        aligned = align_to_mask(h, mask)
        return None if aligned is None else aligned[0]
