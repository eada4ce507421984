"""PyTorch Lightning integration: :class:`InfoscopeCallback` (extra ``infoscope[lightning]``).

Usage::

    from probes.lightning import InfoscopeCallback

    trainer = lightning.Trainer(callbacks=[InfoscopeCallback(
        "runs/exp1", every=50, probe_inputs=x_val, probe_labels=y_val)])

The callback builds a :class:`~probes.monitor.Monitor` on the LightningModule when
fitting starts (after the strategy moved it to its device and set up DDP), and uses
``trainer.global_step`` (optimizer steps) as the step:

- before each training batch, live mode arms its hooks when the coming step records;
- before the optimizer step, gradient norms are taken (Lightning keeps the gradients
  until then);
- after a batch that completed an optimizer step, ``monitor.step`` runs with the
  batch's loss (``outputs["loss"]``) logged as ``train/loss``;
- at the end of fitting (or on an exception) the monitor is closed.

Works with ``lightning`` (``lightning.pytorch``) and, when that is not installed, with
the standalone ``pytorch_lightning`` package.
"""

from __future__ import annotations

import os
from typing import Any

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover - depends on the installation
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError as exc:
        raise ImportError(
            "probes.lightning needs PyTorch Lightning; install it with "
            "pip install 'infoscope[lightning]'"
        ) from exc

import torch

from probes.monitor import Monitor

__all__ = ["InfoscopeCallback"]


class InfoscopeCallback(Callback):
    """A Lightning ``Callback`` that runs a :class:`~probes.monitor.Monitor`.

    Parameters
    ----------
    run:
        The run directory; default ``{trainer.default_root_dir}/infoscope``.
    **monitor_options:
        Keyword arguments of :class:`~probes.monitor.Monitor` (``layers``,
        ``probe_inputs``, ``probe_labels``, ``every``, ``metrics``, ...).
    """

    def __init__(self, run: str | os.PathLike | None = None, **monitor_options: Any) -> None:
        super().__init__()
        self.run = run
        self.monitor_options = monitor_options
        self.monitor: Monitor | None = None
        self._last_step: int | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self.monitor is not None:
            return
        run = self.run
        if run is None:
            run = os.path.join(trainer.default_root_dir, "infoscope")
        options = dict(self.monitor_options)
        if "config" not in options:
            hp = getattr(pl_module, "hparams", None)
            if hp:
                options["config"] = dict(hp)
        self.monitor = Monitor(pl_module, run, **options)

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.monitor is not None:
            self.monitor.begin_step(trainer.global_step + 1)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.monitor is not None:
            self.monitor.collect_grads(trainer.global_step + 1)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.monitor is None:
            return
        step = int(trainer.global_step)
        if step == self._last_step:  # gradient accumulation: no optimizer step yet
            return
        self._last_step = step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        scalars = {}
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            scalars["loss"] = loss
        self.monitor.step(step, **scalars)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._close("finished")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._close("failed")

    def _close(self, status: str) -> None:
        if self.monitor is not None:
            self.monitor.close(status=status)
