"""Hugging Face integration: :class:`InfoscopeTrainerCallback` (extra ``infoscope[hf]``).

Usage::

    from probes.hf import InfoscopeTrainerCallback

    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[
        InfoscopeTrainerCallback("runs/exp1", every=50, layers="bert.encoder.layer.*")])

The callback builds a :class:`~probes.monitor.Monitor` on the trainer's model when
training begins and uses ``state.global_step`` (optimizer steps) as the step:

- ``on_step_begin``: live mode arms its hooks when the coming step records;
- ``on_pre_optimizer_step``: gradient norms are taken (after the Trainer's gradient
  clipping; it clears the gradients before ``on_step_end``);
- ``on_step_end``: ``monitor.step``;
- ``on_log``: the Trainer's logs are written too (``loss`` -> ``train/loss``,
  ``eval_loss`` -> ``val/loss``, other keys under ``train/``), so the collapse detectors
  see the training loss;
- ``on_train_end``: the monitor is closed.

Probe batches for Hugging Face models are usually a tokenizer's output (a dict with
``input_ids`` and ``attention_mask``): the mask is used for the sequence reduction.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "probes.hf needs Hugging Face transformers; install it with pip install 'infoscope[hf]'"
    ) from exc

from probes.monitor import Monitor

__all__ = ["InfoscopeTrainerCallback"]


def _log_name(key: str) -> str:
    if "/" in key:
        return key
    if key.startswith("eval_"):
        return "val/" + key[len("eval_") :]
    return "train/" + key


class InfoscopeTrainerCallback(TrainerCallback):
    """A ``transformers.TrainerCallback`` that runs a :class:`~probes.monitor.Monitor`.

    Parameters
    ----------
    run:
        The run directory; default ``{args.output_dir}/infoscope``.
    monitor_class:
        The monitor to build: :class:`~probes.monitor.Monitor` (default) or
        :class:`~probes.lm.LMMonitor` for a causal LM (token and attention entropy).
    **monitor_options:
        Keyword arguments of the monitor class.
    """

    def __init__(
        self,
        run: str | os.PathLike | None = None,
        *,
        monitor_class: type[Monitor] = Monitor,
        **monitor_options: Any,
    ) -> None:
        if not (isinstance(monitor_class, type) and issubclass(monitor_class, Monitor)):
            raise TypeError(
                f"monitor_class: expected probes.Monitor or a subclass (e.g. LMMonitor), "
                f"got {monitor_class!r}"
            )
        self.run = run
        self.monitor_class = monitor_class
        self.monitor_options = monitor_options
        self.monitor: Monitor | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.monitor is not None:
            return
        if model is None:
            raise ValueError("InfoscopeTrainerCallback: the Trainer passed no model")
        run = self.run if self.run is not None else os.path.join(args.output_dir, "infoscope")
        options = dict(self.monitor_options)
        if "config" not in options:
            try:
                options["config"] = args.to_dict()
            except Exception:  # pragma: no cover - defensive
                pass
        self.monitor = self.monitor_class(model, run, **options)

    def on_step_begin(self, args, state, control, **kwargs):
        if self.monitor is not None:
            self.monitor.begin_step(state.global_step + 1)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.monitor is not None:
            self.monitor.collect_grads(state.global_step + 1)

    def on_step_end(self, args, state, control, **kwargs):
        if self.monitor is not None:
            self.monitor.step(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.monitor is None or not logs:
            return
        values = {
            _log_name(k): float(v)
            for k, v in logs.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)
        }
        if values:
            self.monitor.log_scalars(state.global_step, values)

    def on_train_end(self, args, state, control, **kwargs):
        if self.monitor is not None:
            self.monitor.close()
