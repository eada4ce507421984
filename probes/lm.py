"""Probes for language models: token entropy, top-k indicators, attention entropy, RL.

:class:`LMMonitor` is a :class:`~probes.monitor.Monitor` that also watches a causal
language model's next-token distributions and attention::

    monitor = LMMonitor(model, "runs/lm", every=10)        # a HF causal LM, or any
    for step, batch in enumerate(loader):                   # module returning logits
        out = model(**batch, labels=batch["input_ids"])    # the user's own forward
        out.loss.backward(); opt.step(); opt.zero_grad()
        monitor.step(step, loss=out.loss)
    monitor.close()

and, in an RL loop (REINFORCE / PPO / GRPO), the batch's log-probabilities and advantages::

    monitor.log_rl(step, logprobs=logp, advantages=adv, mask=response_mask, rewards=r)
    monitor.step(step)

What is captured
----------------
Logits: a forward hook on the LM head (``model.get_output_embeddings()`` for Hugging Face
models), or on the module named by ``logits=`` (a name or a module whose output is the
logits, a tensor or an object with ``.logits``); default for other models: the model's own
output. Token statistics are computed **inside the hook** with
:func:`diagnostics.lm.token_stats` (chunked: no float32 copy of the full logits; the
logits are not kept after the forward), so only ``(batch, seq)`` tensors stay until the
step is recorded. A forward pre-hook on the model reads ``input_ids``, ``attention_mask``
and ``labels`` from its arguments:

- positions where ``attention_mask`` is 0 are left out;
- with ``labels`` (Hugging Face convention: ``-100`` = ignored), only positions whose
  next-token label is not ignored count (the response tokens of a fine-tuning batch), and
  the log-probability is that of the label;
- otherwise the log-probability is that of the next input token (``input_ids[:, 1:]``);
- :meth:`LMMonitor.log_rl` with ``mask`` (response tokens) restricts the ``lm/*``
  statistics of that step's captured forward to the response: a mask shaped like the
  logits' positions ``(batch, seq)`` or one shorter, ``(batch, seq - 1)`` (the usual
  log-probability layout, aligned with ``logits[:, :-1]``). Call ``log_rl`` before
  ``step``.

In live mode (the default) the hooks are attached only before a step that records and
capture the **last** forward before :meth:`~probes.monitor.Monitor.step` (with gradient
accumulation: the last micro-batch; generation forwards before the training forward are
overwritten by it). With ``probe_inputs`` (a dict of ``input_ids`` / ``attention_mask`` or
a tensor of ids) the fixed probe batch is run in eval mode without gradients at each
record instead.

Attention entropy needs the attention probabilities, which only the **eager** attention
implementation computes: build the model with ``attn_implementation="eager"``
(``AutoModelForCausalLM.from_pretrained(..., attn_implementation="eager")`` or
``Config(..., attn_implementation="eager")``). The probes read them with forward hooks on
the attention modules (index 1 of their output, as Hugging Face's own
``output_attentions`` recorder does), so ``output_attentions=True`` is not needed. With
``sdpa`` / flash / flex attention no probabilities exist: the monitor warns once, records
an ``attention_unavailable`` event in the run log and skips the ``attn/*`` metrics; the
``lm/*`` metrics are unaffected. Eager attention in training mode returns the
probabilities *after* attention dropout: use ``attn_pdrop=0`` / ``attention_dropout=0``
or probe mode for exact values.

Recorded metrics (names from :mod:`diagnostics.schema`, all entropies in nats):

==============================================  ============================================
``lm/token_entropy/mean``, ``.../q05`` ...      mean and quantiles of per-token entropy
``q95``; distribution ``lm/token_entropy``      (histogram over ``[0, log vocab]``)
``lm/topk_mass``, ``lm/topk_entropy``,          top-``k`` mass and entropy (raw,
``lm/topk_entropy_renorm``, ``lm/sum_p2``       renormalised), ``sum p^2``, token means
``lm/logprob``, ``lm/perplexity``               mean log-prob of the next token, ``exp(-that)``
``attn/entropy``, ``attn/entropy_norm``         per attention module (mean over heads)
``attn/entropy/h{H}``, ``.../entropy_norm/h{H}`` per attention module and head
``rl/reward``                                   mean reward (:meth:`LMMonitor.log_rl`)
``rl/cov/mean``, ``rl/cov/pos_share``           entropy-advantage covariance (Cui et al. 2025)
``rl/completion_entropy``, ``rl/answer_entropy``  per completion / per prompt, averaged
``rl/fit/a``, ``rl/fit/b``, ``rl/fit/ceiling``  ``R = -a exp(H) + b`` over the run so far
==============================================  ============================================

The LM collapse detectors (:func:`diagnostics.lm_collapse.detect_lm_collapse`: token-entropy
collapse, over-optimisation, positive covariance, attention collapse, entropic overload)
run on the recorded series after each record; each alert (indicator, severity, layer,
onset step) is written once, with its evidence. Failures are isolated as in the Monitor:
a metric that raises warns once, is recorded as a ``probe_failure`` event and training
continues. Under DDP the ``lm/*`` and ``attn/*`` metrics are rank 0's own batch (not
gathered).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from diagnostics.collapse import Alert
from diagnostics.lm import (
    answer_entropy,
    attention_entropy,
    completion_entropy,
    entropy_advantage_covariance,
    fit_entropy_reward,
    masked_mean,
    masked_quantiles,
    perplexity,
    positive_covariance_share,
    token_stats,
)
from probes.batch import as_tensor as _as_tensor
from probes.cadence import Cadence, as_cadence
from probes.capture import extract_tensor
from probes.layers import normalize_name
from probes.monitor import Monitor
from probes.output import to_floats as _to_floats

__all__ = ["LMMonitor", "QUANTILES", "find_attention_modules", "find_logits_module"]

logger = logging.getLogger("infoscope.probes")

#: Quantiles of the per-token entropy written as ``lm/token_entropy/qNN``.
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
_NON_EAGER = ("sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
_WATCHED = {
    "lm/token_entropy/mean",
    "lm/topk_entropy",
    "lm/topk_mass",
    "rl/cov/mean",
    "rl/cov/pos_share",
}
_LM_DETECTORS = (
    "token_entropy_collapse",
    "over_optimisation",
    "positive_covariance",
    "attention_collapse",
    "entropic_overload",
)


def find_logits_module(model: nn.Module, logits: Any = None) -> tuple[str, nn.Module]:
    """The module whose output is the logits: ``logits`` (a dotted name or a module), the
    Hugging Face output embedding (``lm_head``), or the model itself."""
    named = {normalize_name(n): m for n, m in model.named_modules()}
    if isinstance(logits, nn.Module):
        for n, m in named.items():
            if m is logits:
                return n, m
        raise ValueError("logits: the module given is not part of the model")
    if isinstance(logits, str):
        if logits not in named:
            raise ValueError(f"logits: expected a module name of the model, got {logits!r}")
        return logits, named[logits]
    if logits is not None:
        raise TypeError(f"logits: expected a module name or a module, got {type(logits).__name__}")
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Module):
        for n, m in named.items():
            if m is head:
                return n, m
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


@dataclass
class _Forward:
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


class LMMonitor(Monitor):
    """A :class:`~probes.monitor.Monitor` with language-model probes (module docstring).

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
        ``True`` (default detector settings), ``False`` (none), or a dict
        ``{detector name: settings}`` for :func:`diagnostics.lm_collapse.detect_lm_collapse`
        (settings ``False`` switches that detector off: e.g. ``token_entropy_collapse``
        and ``over_optimisation`` when pretraining from scratch, where entropy is meant to
        fall).
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
            unknown = set(lm_collapse) - set(_LM_DETECTORS)
            if unknown:
                raise ValueError(
                    f"lm_collapse: expected detector names from {list(_LM_DETECTORS)}, "
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
        # attributes the overridden hooks of Monitor (_emit) use during its __init__
        self._lm_ready = False
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
        self._lm_settings: dict[str, dict[str, Any]] | None = None
        self._lm_off: set[str] = set()
        if lm_collapse is True:
            self._lm_settings = {}
        elif isinstance(lm_collapse, Mapping):
            self._lm_off = {n for n, v in lm_collapse.items() if v is False}
            self._lm_settings = {n: dict(v or {}) for n, v in lm_collapse.items() if v is not False}
        self._lm_series: list[tuple[int, str, str | None, float]] = []
        self._lm_alerted: set[tuple] = set()

        top = self._fwd_model
        self.logits_name, self._logits_module = find_logits_module(top, logits)
        self._attn_modules: dict[str, nn.Module] = {}
        self._attn_index = 1
        self._attn_note: str | None = None  # why attention is unavailable
        if attention is not False:
            mods, self._attn_index = find_attention_modules(top, attention_layers)
            impl = getattr(getattr(top, "config", None), "_attn_implementation", None)
            if isinstance(impl, str) and impl in _NON_EAGER:
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
        self._handles: list[Any] = []
        self._current: _Forward | None = None
        self._last_fwd: _Forward | None = None
        self._rl_mask: tuple[int, torch.Tensor] | None = None
        self._fit_h: list[torch.Tensor] = []
        self._fit_r: list[torch.Tensor] = []
        self._rl_rows: list[tuple[int, str, Any]] = []
        self._lm_ready = True
        if self._attn_note is not None and self.rank == 0:
            self._attention_unavailable(None, self._attn_note)
        if self.mode == "live":
            self._lm_attach()  # the first forward may already be a recorded step

    # ------------------------------------------------------------------ hooks
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
            self._current = _Forward(
                ids=None if ids is None else ids.detach(),
                mask=mask.detach() if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None,
                labels=None if labels is None else labels.detach(),
            )
        except Exception as exc:  # never raise into the user's forward
            self._current = _Forward(errors=[("lm/capture", exc)])

    def _cur(self) -> _Forward:
        if self._current is None:
            self._current = _Forward()
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

    def _token_pass(self, cur: _Forward, z: torch.Tensor) -> None:
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
        cur.tokens = token_stats(
            z,
            targets=targets,
            k=min(self.k, vocab),
            mask=valid,
            temperature=self.temperature,
        )
        cur.vocab = vocab

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
            m = None if mask is None else _as_tensor(mask, "mask").to(self.device).bool()
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

    def _emit_rl(self, step: int | None) -> dict[tuple[str, str | None], float]:
        """Write the pending ``rl/*`` rows; return those of ``step``."""
        pending, self._rl_rows = self._rl_rows, []
        if self.rank != 0 or not pending:
            return {}
        values = _to_floats([v for _, _, v in pending])
        rows = [(s, name, None, val) for (s, name, _), val in zip(pending, values)]
        self._emit(rows)
        return {(name, None): val for s, name, _, val in rows if s == step}

    # ------------------------------------------------------------------ RL metrics
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
        lp = _as_tensor(logprobs, "logprobs")
        adv = _as_tensor(advantages, "advantages").to(lp.device)
        mk = None if mask is None else mask.to(lp.device)
        cov = entropy_advantage_covariance(lp, adv, mask=mk)
        values["rl/cov/mean"] = masked_mean(cov)
        values["rl/cov/pos_share"] = positive_covariance_share(cov)

    def _rl_entropy(self, values, ent, mask, box) -> None:
        e = _as_tensor(ent, "entropies")
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
        aligned = self._align(h, mask)
        return None if aligned is None else aligned[0]

    @staticmethod
    def _align(h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
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

    # ------------------------------------------------------------------ recording
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
        values = _to_floats([v for _, _, v in rows])
        out = {(m, lay): val for (m, lay, _), val in zip(rows, values)}
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

    def _token_rows(self, fwd: _Forward, rl_mask, step: int, rows: list) -> Any:
        tok = dict(fwd.tokens)
        if rl_mask is not None and rl_mask[0] == step and self.mode == "live":
            aligned = self._align(tok["entropy"], rl_mask[1])
            if aligned is None:
                self._warn_once(
                    ("rl-mask-shape",),
                    f"log_rl: mask of shape {tuple(rl_mask[1].shape)} does not match the "
                    f"captured logits' positions {tuple(tok['entropy'].shape)} (or one "
                    "shorter); lm/* metrics use all positions",
                )
            else:
                for key, v in tok.items():
                    a, m = self._align(v, rl_mask[1])
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

    def _attention_rows(self, fwd: _Forward, rows: list) -> None:
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

    def _lm_probe_forward(self, step: int) -> None:
        flags = [(m, m.training) for m in self._fwd_model.modules()]
        self._last_fwd = None
        try:
            self._lm_attach()
            self._fwd_model.eval()
            with torch.no_grad():
                self._forward(self._fwd_model, self._probe_local)
        except Exception as exc:
            self._failure(step, "lm/forward", exc)
        finally:
            self._lm_detach()
            for m, was_training in flags:
                m.training = was_training

    # ------------------------------------------------------------------ alerts
    def _emit(self, rows: list[tuple[int, str, str | None, float]]) -> None:
        super()._emit(rows)
        if not self._lm_ready or self._lm_settings is None or self.rank != 0:
            return
        new = [
            r
            for r in rows
            if r[1] in _WATCHED
            or r[1] == "attn/entropy_norm"
            or r[1].startswith("attn/entropy_norm/")
        ]
        if not new:
            return
        self._lm_series.extend(new)
        step = max(r[0] for r in new)
        try:
            import pandas as pd

            from diagnostics.lm_collapse import detect_lm_collapse

            frame = pd.DataFrame(self._lm_series, columns=["step", "metric", "layer", "value"])
            found = detect_lm_collapse(frame, **self._lm_settings)
        except Exception as exc:
            self._failure(step, "lm_collapse", exc)
            return
        for a in found:
            key = (a["indicator"], a["severity"], a["layer"], a["step"])
            if key in self._lm_alerted or a["indicator"] in self._lm_off:
                continue
            self._lm_alerted.add(key)
            alert = Alert(
                step=a["step"],
                indicator=a["indicator"],
                severity=a["severity"],
                message=a["message"],
                layer=a["layer"],
                evidence=a["evidence"],
            )
            self.alerts.append(alert)
            logger.warning("[%s] step %d: %s", alert.indicator, alert.step, alert.message)
            if self.writer is not None:
                self._safe_write(lambda al=alert: al.write_to(self.writer))
            if self.tensorboard is not None:
                self._safe_tb(
                    lambda al=alert: self.tensorboard.add_text(
                        f"alerts/{al.indicator}", f"{al.severity}: {al.message}", al.step
                    )
                )
