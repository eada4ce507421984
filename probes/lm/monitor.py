"""The LMMonitor: a Monitor that also watches a language model's tokens, attention and RL.

The class holds the LM monitor's state and its public methods (:mod:`probes.lm` describes
what it records); the work is done by one mixin per job: :class:`~probes.lm.hooks.LMHooks`
(hooks on the forward), :class:`~probes.lm.tokens.TokenRecording` (``lm/*`` and ``attn/*``
rows), :class:`~probes.lm.rl.RLLogging` (``rl/*`` rows), over the
:class:`~probes.monitor.Monitor`, whose online detectors judge the LM series too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from diagnostics.detectors import CollapseDetector
from diagnostics.detectors.replay import LM_KEYWORDS, with_keywords
from probes.batch import as_tensor
from probes.cadence import Cadence, as_cadence
from probes.layers import unwrap
from probes.lm.hooks import CapturedForward, LMHooks
from probes.lm.modules import NON_EAGER, find_attention_modules, find_logits_module
from probes.lm.rl import RLLogging
from probes.lm.tokens import TokenRecording
from probes.monitor import Monitor

#: The LM detectors ``LMMonitor(lm_collapse={name: settings or False})`` accepts.
LM_DETECTORS = tuple(LM_KEYWORDS)

__all__ = ["LMMonitor"]


class LMMonitor(TokenRecording, RLLogging, LMHooks, Monitor):
    """A :class:`~probes.monitor.Monitor` with language-model probes (see :mod:`probes.lm`).

    Parameters (besides the Monitor's; ``metrics`` defaults to none, so only the LM probes
    run unless layer metrics are asked for, and ``every`` to 10)
    ----------
    logits:
        The module whose output is the logits (a dotted name or the module); default: the
        Hugging Face output embedding, else the model's output.
    attention:
        ``True`` / ``None`` (default): capture attention probabilities where the attention
        implementation exposes them (warn once and skip otherwise); ``False``: never.
    attention_layers:
        Selection of the attention modules (default: found automatically).
    k:
        Top-k of the top-k mass and entropy (default 10; Shi et al. 2024 leave k a
        setting).
    temperature:
        Sampling temperature applied to the logits before the statistics.
    lm_every:
        Cadence of the ``lm/*`` and ``attn/*`` metrics (default ``every``).
    rl_every:
        Cadence of the ``rl/*`` metrics (default ``lm_every``).
    hist_bins:
        Bins of the ``lm/token_entropy`` histogram over ``[0, log vocab]`` nats.
    fit_min_points, fit_window:
        The entropy-reward fit runs once this many ``log_rl`` records exist, over the last
        ``fit_window`` of them (default: all).
    lm_collapse:
        ``True`` (the LM detectors with default settings), ``False`` (none of them), or a
        dict ``{detector name: keywords}`` with the keywords of its functional form
        (:func:`diagnostics.detectors.detect_token_entropy_collapse` and kin; ``False``
        switches that detector off). The Monitor's ``collapse`` settings apply to all.
    """

    def __init__(
        self,
        model: nn.Module,
        run: Any = None,
        *,
        logits: str | nn.Module | None = None,
        attention: bool | None = None,
        attention_layers: Any = None,
        k: int = 10,
        temperature: float = 1.0,
        every: int | str | Iterable[int] | Cadence = 10,
        lm_every: int | str | Iterable[int] | Cadence | None = None,
        rl_every: int | str | Iterable[int] | Cadence | None = None,
        hist_bins: int = 40,
        fit_min_points: int = 5,
        fit_window: int | None = None,
        lm_collapse: bool | Mapping[str, Mapping[str, Any]] = True,
        metrics: Any = (),
        meta: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected an integer >= 1, got {k!r}")
        if isinstance(hist_bins, bool) or not isinstance(hist_bins, int) or hist_bins < 1:
            raise ValueError(f"hist_bins: expected an integer >= 1, got {hist_bins!r}")
        if not isinstance(fit_min_points, int) or fit_min_points < 2:
            raise ValueError(f"fit_min_points: expected an integer >= 2, got {fit_min_points!r}")
        if fit_window is not None and (not isinstance(fit_window, int) or fit_window < 2):
            raise ValueError(f"fit_window: expected an integer >= 2 or None, got {fit_window!r}")
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")
        if isinstance(lm_collapse, Mapping):
            unknown = set(lm_collapse) - set(LM_DETECTORS)
            if unknown:
                raise ValueError(
                    f"lm_collapse: expected detector names from {list(LM_DETECTORS)}, "
                    f"got {sorted(unknown)}"
                )
        elif not isinstance(lm_collapse, bool):
            raise TypeError(f"lm_collapse: expected True, False or a dict, got {lm_collapse!r}")

        self.lm_every = as_cadence(every if lm_every is None else lm_every, name="lm_every")
        self.rl_every = self.lm_every if rl_every is None else as_cadence(rl_every, name="rl_every")
        lm_meta = {
            "k": k,
            "temperature": float(temperature),
            "lm_every": repr(self.lm_every),
            "rl_every": repr(self.rl_every),
            "hist_bins": hist_bins,
        }
        # what the overridden hooks of Monitor (_emit, _build_collapse) use during its __init__
        self._lm_ready = False
        self._lm_off = (
            set(LM_DETECTORS)
            if lm_collapse is False
            else {n for n, v in lm_collapse.items() if v is False}
            if isinstance(lm_collapse, Mapping)
            else set()
        )
        self._lm_keywords = (
            {n: dict(v or {}) for n, v in lm_collapse.items() if v is not False}
            if isinstance(lm_collapse, Mapping)
            else {}
        )
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        top = unwrap(model)
        self.logits_name, self._logits_module = find_logits_module(top, logits)
        self._attn_modules: dict[str, nn.Module] = {}
        self._attn_index = 1
        self._attn_note: str | None = None  # why attention is unavailable
        if attention is not False:
            mods, self._attn_index = find_attention_modules(top, attention_layers)
            impl = getattr(getattr(top, "config", None), "_attn_implementation", None)
            if isinstance(impl, str) and impl in NON_EAGER:
                self._attn_note = (
                    f"the model uses attn_implementation={impl!r}, which does not expose "
                    "attention probabilities; build it with attn_implementation='eager' for "
                    "attn/* metrics"
                )
            elif not mods:
                if attention is True:
                    self._attn_note = "no attention module found (pass attention_layers=...)"
            else:
                self._attn_modules = mods
        super().__init__(
            model,
            run,
            every=every,
            metrics=metrics,
            meta={"lm_probes": lm_meta} | dict(meta or {}),
            **options,
        )
        self.k = k
        self.temperature = float(temperature)
        self.hist_bins = hist_bins
        self.fit_min_points = fit_min_points
        self.fit_window = fit_window

        self._handles: list[Any] = []
        self._current: CapturedForward | None = None
        self._last_fwd: CapturedForward | None = None
        self._rl_mask: tuple[int, torch.Tensor] | None = None
        self._fit_h: list[torch.Tensor] = []
        self._fit_r: list[torch.Tensor] = []
        self._rl_rows: list[tuple[int, str, Any]] = []
        self._lm_ready = True
        if self._attn_note is not None and self.rank == 0:
            self._attention_unavailable(None, self._attn_note)
        if self.mode == "live":
            self._lm_attach()  # the first forward may already be a recorded step

    # ------------------------------------------------------------------ detectors
    def _collapse_indicators(self) -> list[str] | None:
        from diagnostics.detectors import DETECTORS

        return [n for n in DETECTORS if n not in self._lm_off]

    def _build_collapse(self, collapse: Any, context: Any) -> CollapseDetector | None:
        """The monitor's detectors, with the LM keywords of ``lm_collapse`` applied and the
        attention modules (in model order) as the layer order of the attention detectors."""
        det = super()._build_collapse(collapse, context)
        if det is None:
            return None
        ctx = det.context
        if self._attn_modules and not (isinstance(context, Mapping) and context.get("layer_order")):
            ctx = replace(ctx, layer_order=tuple(self._attn_modules))
        return CollapseDetector(
            with_keywords(det.settings, self._lm_keywords),
            indicators=[d.indicator for d in det.detectors],
            context=ctx,
        )

    # ------------------------------------------------------------------ public API
    def step(self, step: int, *, labels: Any = None, inputs: Any = None, **scalars: Any):
        """End of step ``step``: record the LM metrics when due, then everything the
        :class:`~probes.monitor.Monitor` records (see :meth:`Monitor.step`)."""
        if self._closed:
            raise RuntimeError("LMMonitor.step: the monitor is closed")
        step = int(step)
        t_in = time.perf_counter()
        lm_out: dict = {}
        if self.lm_every.due(step):
            lm_out = self._lm_record(step)
        self._t_monitor += time.perf_counter() - t_in
        out = super().step(step, labels=labels, inputs=inputs, **scalars)
        t_in = time.perf_counter()
        if self._rl_rows:
            lm_out = lm_out | self._emit_rl(step)
        if lm_out:
            self._flush_scalars()  # the user's scalars, with the LM record
        if self.mode == "live" and not self._explicit_arming:
            due = any(self.lm_every.due(s) for s in range(step + 1, step + self._stride + 1))
            self._lm_attach() if due else self._lm_detach()
        self._t_monitor += time.perf_counter() - t_in
        if lm_out:
            out = dict(out) | lm_out
            self.last = dict(self.last) | lm_out
        return out

    def begin_step(self, step: int) -> None:
        """Live mode: attach the hooks when ``step`` will be recorded (integrations)."""
        super().begin_step(step)
        if self.mode == "live" and not self._closed:
            self._lm_attach() if self.lm_every.due(int(step)) else self._lm_detach()

    def record(self, step: int, *, labels: Any = None, inputs: Any = None) -> dict:
        """Record every metric now, whatever the cadences."""
        if self._closed:
            raise RuntimeError("LMMonitor.record: the monitor is closed")
        lm_out = self._lm_record(int(step))
        out = super().record(step, labels=labels, inputs=inputs)
        lm_out = lm_out | self._emit_rl(int(step))
        self._flush_scalars()
        return dict(out) | lm_out

    def log_rl(
        self,
        step: int,
        *,
        logprobs: Any = None,
        advantages: Any = None,
        mask: Any = None,
        rewards: Any = None,
        entropies: Any = None,
        answers: Any = None,
    ) -> None:
        """Record an RL batch's entropy-mechanism metrics at ``step`` (when ``rl_every`` is due).

        Args:
            logprobs: log-probabilities of the sampled tokens, ``(batch, seq)``.
            advantages: same shape, or ``(batch,)`` sequence-level advantages.
            mask: ``(batch, seq)`` response mask of ``logprobs`` (True = a generated
                token). It also restricts this step's ``lm/*`` statistics to the response
                (see the module docstring on alignment); call ``log_rl`` before ``step``.
            rewards: rewards (any shape; their mean is ``rl/reward``).
            entropies: per-token entropies ``(batch, seq)`` aligned with ``mask``; default:
                those of this step's captured forward (live mode).
            answers: final answers of several samples per prompt (see
                :func:`diagnostics.lm.answer_entropy`) for ``rl/answer_entropy``.

        Values stay on the device until the next record writes them (no sync here).
        ``rl/fit/*`` needs the entropy (``entropies`` or a captured forward) and the
        rewards at ``fit_min_points`` records.
        """
        if self._closed:
            raise RuntimeError("LMMonitor.log_rl: the monitor is closed")
        step = int(step)
        t_in = time.perf_counter()
        try:
            m = None if mask is None else as_tensor(mask, "mask").to(self.device).bool()
            if m is not None:
                self._rl_mask = (step, m)
            if self.rank != 0 or not self.rl_every.due(step):
                return
            values: dict[str, Any] = {}
            self._rl_metric(step, "rl/reward", values, self._rl_reward, rewards)
            if logprobs is not None and advantages is not None:
                self._rl_metric(step, "rl/cov", values, self._rl_cov, logprobs, advantages, m)
            elif (logprobs is None) != (advantages is None):
                self._warn_once(
                    ("rl-cov-args",),
                    "log_rl: the covariance metrics need both logprobs and advantages",
                )
            h_tok = None
            ent = entropies
            if ent is None:
                ent = self._captured_entropy(m)
            if ent is not None:
                box: dict[str, Any] = {}
                self._rl_metric(
                    step, "rl/completion_entropy", values, self._rl_entropy, ent, m, box
                )
                h_tok = box.get("h_tok")
            if answers is not None:
                self._rl_metric(step, "rl/answer_entropy", values, self._rl_answers, answers)
            if h_tok is not None and "rl/reward" in values:
                self._fit_h.append(h_tok)
                self._fit_r.append(values["rl/reward"])
                if self.fit_window is not None and len(self._fit_h) > self.fit_window:
                    del self._fit_h[0], self._fit_r[0]
                if len(self._fit_h) >= self.fit_min_points:
                    self._rl_metric(step, "rl/fit", values, self._rl_fit)
            self._rl_rows.extend((step, name, v) for name, v in values.items())
        finally:
            self._t_monitor += time.perf_counter() - t_in

    def flush(self) -> None:
        """Write buffered scalars (and ``rl/*`` values) and commit the run log."""
        if not self._closed and self._rl_rows:
            self._emit_rl(None)
        super().flush()

    def close(self, *, status: str = "finished") -> None:
        """Remove the LM hooks, write pending ``rl/*`` values, close as the Monitor does."""
        if self._closed:
            return
        try:
            self._lm_detach()
            if self._rl_rows:
                self._emit_rl(None)
        finally:
            super().close(status=status)
