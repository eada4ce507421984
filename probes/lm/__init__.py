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

The LM detectors of :mod:`diagnostics.detectors` (token-entropy collapse, over-optimisation,
positive covariance, attention collapse, entropic overload) run online, with the Monitor's
own, on the recorded series after each record; each alert is written once, with its
evidence. Token-entropy collapse is judged once the run logs RL series (``log_rl``): in
pretraining, entropy falling is the model learning. Failures are isolated as in the Monitor:
a metric that raises warns once, is recorded as a ``probe_failure`` event and training
continues. Under DDP the ``lm/*`` and ``attn/*`` metrics are rank 0's own batch (not
gathered).

Modules: :mod:`probes.lm.monitor` (``LMMonitor``, a facade over the others),
:mod:`probes.lm.modules` (finding the logits and attention modules),
:mod:`probes.lm.hooks` (hooks on the forward), :mod:`probes.lm.tokens` (``lm/*`` and
``attn/*`` rows), :mod:`probes.lm.rl` (``rl/*`` rows), :mod:`probes.lm.alerts` (the LM
collapse detectors).
"""

from __future__ import annotations

# the hooks call the statistics as probes.lm.token_stats (see probes.lm.hooks)
from diagnostics.lm import token_stats as token_stats
from probes.lm.modules import find_attention_modules, find_logits_module
from probes.lm.monitor import LMMonitor
from probes.lm.tokens import QUANTILES

__all__ = ["LMMonitor", "QUANTILES", "find_attention_modules", "find_logits_module"]
