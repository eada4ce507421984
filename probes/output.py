"""Writing what the probes record, and keeping every failure away from training.

A part of :class:`~probes.monitor.Monitor` (a mixin; the monitor's ``__init__`` sets the
state it uses). Rows go to the run log (:class:`~diagnostics.runlog.RunWriter`, opened
on rank 0 with the run's metadata), are mirrored to TensorBoard, and are fed to the
collapse detectors, whose alerts are written too (:meth:`Output._emit`). Scalars passed
to ``step`` are buffered without a device sync and converted in one go
(:func:`to_floats`) at the next record.

Failure isolation: a warning is shown once per cause (:meth:`Output._warn_once`); a
failing metric is recorded as a ``probe_failure`` event and switched off for its layer
after ``disable_after`` failures in a row (``probe_disabled``; :meth:`Output._failure`);
a run log that cannot be written drops rows for ``retry_seconds`` before the next attempt
and records ``run_log_recovered`` once it works again (:meth:`Output._safe_write`);
TensorBoard that fails is switched off (:meth:`Output._safe_tb`).
"""

from __future__ import annotations

import logging
import operator
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from diagnostics.detectors import (
    Alert,
    CollapseDetector,
    CollapseSettings,
    Context,
    settings_from_mapping,
)
from diagnostics.estimators import discrete_entropy
from diagnostics.runlog import RunLogError, RunWriter
from probes.layers import unwrap

__all__ = ["Output", "float_values", "to_floats", "MAX_PENDING_SCALARS"]

logger = logging.getLogger("infoscope.probes")

_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
_step_of = operator.itemgetter(0)
#: Buffered scalars that make ``step`` write them even when nothing is recorded.
MAX_PENDING_SCALARS = 2048


def to_floats(values: list[Any]) -> list[float]:
    """Python floats for numbers and one-element tensors: one device sync per device.

    Tensors are stacked per device and dtype and converted together (a training loop's
    buffered losses are hundreds of 0-d tensors; one conversion each would cost more than
    the rest of a record)."""
    out: list[float] = [0.0] * len(values)
    groups: dict[tuple[torch.device, torch.dtype], tuple[list[int], list[torch.Tensor]]] = {}
    for i, v in enumerate(values):
        if isinstance(v, torch.Tensor):
            key = (v.device, v.dtype)
            g = groups.get(key)
            if g is None:
                g = groups[key] = ([], [])
            g[0].append(i)
            g[1].append(v if v.ndim == 0 else v.reshape(()))
        else:
            out[i] = float(v)
    by_device: dict[torch.device, tuple[list[int], list[torch.Tensor]]] = {}
    for (dev, _), (idxs, ts) in groups.items():
        dtype = torch.float32 if dev.type == "mps" else torch.float64  # MPS has no float64
        stacked = torch.stack(ts) if len(ts) > 1 else ts[0].reshape(1)
        d = by_device.setdefault(dev, ([], []))
        d[0].extend(idxs)
        d[1].append(stacked.to(dtype))
    for idxs, parts in by_device.values():
        flat = torch.cat(parts) if len(parts) > 1 else parts[0]
        for i, f in zip(idxs, flat.tolist()):
            out[i] = f
    return out


def float_values(rows: list[tuple[str, str | None, Any]]) -> dict[tuple[str, str | None], float]:
    """``{(metric, layer): float}`` from ``(metric, layer, value)`` rows (one sync per device)."""
    values = to_floats([v for _, _, v in rows])
    return {(m, lay): val for (m, lay, _), val in zip(rows, values)}


def scalar_rows(pending: list[tuple[int, str, Any]]) -> list[tuple[int, str, None, float]]:
    """Run-log rows ``(step, name, None, float)`` from buffered ``(step, name, value)``."""
    values = to_floats([v for _, _, v in pending])
    return [(s, name, None, val) for (s, name, _), val in zip(pending, values)]


def _model_summary(model: nn.Module) -> str:
    n = sum(p.numel() for p in model.parameters())
    text = f"{type(unwrap(model)).__name__} ({n:,} parameters)\n{unwrap(model)}"
    return text if len(text) <= 20000 else text[:20000] + "\n..."


class Output:
    """The monitor's output and failure isolation (see the module docstring)."""

    # ------------------------------------------------------------------ run log
    def _open_writer(self, run: Any, *, name, config, meta) -> None:
        probes_meta = {
            "mode": self.mode,
            "every": repr(self.every),
            "slow_every": repr(self.slow_every),
            "layers": list(self.layers),
            "metrics": [
                {"name": a.defn.name, "every": repr(a.cadence), "options": a.params}
                for a in self._metrics
            ],
            "max_rows": self.max_rows,
            "reduce": self.reduce,
            "seed": self.seed,
            "world_size": self.world_size,
            "probe_rows": getattr(self, "_n_probe", None),
            "collapse": None if self.collapse is None else self.collapse.settings_dict(),
            "collapse_indicators": None
            if self.collapse is None
            else [d.indicator for d in self.collapse.detectors],
            "budget": self.budget,
        }
        values: dict[str, Any] = {
            "probes": probes_meta,
            "model_summary": _model_summary(self.model),
        }
        if self.collapse is not None:  # so that a replay of the run judges alike
            values["detector_context"] = self.collapse.context.to_dict()
        if name is not None:
            values["name"] = name
        if config is not None:
            values["config"] = dict(config)
        if meta:
            values.update(meta)
        if run is None:
            return
        if isinstance(run, RunWriter) or (hasattr(run, "log_many") and hasattr(run, "alert")):
            self.writer = run
            self._safe_write(lambda: run.set_meta(**values))
        else:
            self.writer = RunWriter(run, meta=values)
            self._owns_writer = True

    # ------------------------------------------------------------------ scalars
    def _buffer(self, step: int, values: Mapping[str, Any]) -> None:
        for name, v in values.items():
            if isinstance(v, torch.Tensor):
                if v.numel() != 1:
                    raise TypeError(
                        f"{name}: expected a scalar (one-element tensor), got shape {tuple(v.shape)}"
                    )
                v = v.detach()
            else:
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    raise TypeError(
                        f"{name}: expected a number, got {type(v).__name__} {v!r}"
                    ) from None
            self._pending.append((step, str(name), v))

    def _buffer_scalars(self, step: int, scalars: dict[str, Any]) -> None:
        """Buffer ``step``'s keyword scalars (the loss without a device sync; ``Monitor.step``
        does the same inline on the steps it returns from early)."""
        names, pending = self._scalar_names, self._pending
        for k, v in scalars.items():
            name = names.get(k)
            if name is None:
                name = names[k] = self.scalar_prefix + k
            if type(v) is torch.Tensor and v.numel() == 1:  # (the loss: the short path)
                # on the CPU the value costs less than a detached tensor; elsewhere it
                # would be a device sync
                if v.is_cpu:
                    pending.append((step, name, v.item()))
                    if k not in self._cpu_scalars:  # (step()'s quiet path: see there)
                        self._cpu_scalars[k] = name
                else:
                    pending.append((step, name, v.detach()))
            else:
                self._buffer(step, {name: v})

    def _flush_scalars(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._emit(scalar_rows(pending))

    # ------------------------------------------------------------------ failures
    def _relay_warnings(self, act, lname: str | None, caught: list) -> None:
        """An estimator's warnings, once per metric and warning category (a metric runs
        at every record: its warnings would otherwise repeat all through training)."""
        for w in caught:
            where = f" on layer {lname}" if lname is not None else ""
            self._warn_once(
                ("metric-warning", act.key, w.category),
                f"{act.defn.name}{where}: {w.message} (repeats of this warning are not shown)",
                category=w.category,
            )

    def _warn_once(self, key: Any, message: str, category: type = RuntimeWarning) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(message, category, stacklevel=4)

    def _failure(
        self,
        step: int,
        source: str,
        exc: BaseException,
        *,
        metric: str | None = None,
        layer: str | None = None,
    ) -> None:
        oom = isinstance(exc, _OOM)
        if oom and torch.cuda.is_available():
            torch.cuda.empty_cache()
        text = f"{type(exc).__name__}: {exc}"
        if len(text) > 2000:
            text = text[:2000] + "..."
        message = f"{source} failed at step {step}: {text}"
        self._warn_once(
            ("failure", source, type(exc).__name__),
            message + " (training continues; later failures are recorded in the run log)",
        )
        if self.rank != 0:
            return
        detail = {"metric": metric, "layer": layer, "error": type(exc).__name__, "oom": oom}
        self._event(step, "probe_failure", message, source=source, detail=detail)
        if metric is not None:
            key = (metric, layer)
            n = self._fail_streak.get(key, 0) + 1
            self._fail_streak[key] = n
            if n >= self.disable_after:
                self._disabled.add(key)
                self._event(
                    step,
                    "probe_disabled",
                    f"{source} failed {n} times in a row and is switched off",
                    source=source,
                    detail=detail | {"failures": n},
                )

    # ------------------------------------------------------------------ output
    def _event(self, step, kind, message, *, source=None, detail=None) -> None:
        if self.writer is not None:
            self._safe_write(
                lambda: self.writer.event(step, kind, message, source=source, detail=detail)
            )

    def _emit(self, rows: list[tuple[int, str, str | None, float]], *, ordered=False) -> None:
        """Write rows, mirror them to TensorBoard, run the collapse detectors (which take
        the rows in step order: ``ordered`` says they are already)."""
        if not rows:
            return
        if self.writer is not None:
            self._safe_write(lambda: self.writer.log_many(rows), n_rows=len(rows))
        if self.tensorboard is not None:

            def mirror():
                for s, m, lay, v in rows:
                    self.tensorboard.add_scalar(m if lay is None else f"{m}/{lay}", v, s)

            self._safe_tb(mirror)
        if self.collapse is not None:
            try:
                alerts = self.collapse.feed(rows if ordered else sorted(rows, key=_step_of))
            except Exception as exc:
                self._failure(rows[-1][0], "collapse", exc)
                alerts = []
            for alert in alerts:
                self._publish_alert(alert)

    # ------------------------------------------------------------------ detectors
    def _build_collapse(self, collapse: Any, context: Any) -> CollapseDetector | None:
        """The online detectors: ``collapse`` is True, False, a CollapseSettings or a dict of
        settings; ``context`` (a Context or a dict) overrides what the monitor infers."""
        if collapse in (False, None):
            return None
        if collapse is True:
            settings = CollapseSettings()
        elif isinstance(collapse, CollapseSettings):
            settings = collapse
        elif isinstance(collapse, Mapping):
            settings = settings_from_mapping(collapse)
        else:
            raise TypeError(
                f"collapse: expected True, False, a CollapseSettings or a dict, got {collapse!r}"
            )
        return CollapseDetector(
            settings,
            indicators=self._collapse_indicators(),
            context=self._detector_context(context),
        )

    def _collapse_indicators(self) -> list[str] | None:
        return None  # every detector

    def _detector_context(self, given: Any) -> Context:
        """What the detectors should know of this run: the number of classes and the label
        entropy of the probe labels, the model's output layers among the selected ones, the
        layers in depth order; fields of ``given`` (a Context or a dict) take precedence."""
        if given is not None and not isinstance(given, (Context, Mapping)):
            raise TypeError(f"context: expected a Context or a dict, got {type(given).__name__}")
        user = given if isinstance(given, Context) else Context.from_mapping(given or {})
        auto: dict[str, Any] = {
            "output_layers": output_layers(self._fwd_model, self.layers),
            "layer_order": tuple(self.layers),
        }
        y = self._y_all
        if y is not None and y.ndim == 1 and not torch.is_floating_point(y):
            auto["n_classes"] = int(torch.unique(y).numel())
            auto["label_entropy"] = float(discrete_entropy(y))
        merged = {k: v for k, v in user.to_dict().items() if v is not None and v != []}
        return Context.from_mapping(auto | merged)

    def _publish_alert(self, alert: Alert) -> None:
        """Keep ``alert`` in :attr:`alerts`, log it, write it and mirror it to TensorBoard."""
        self.alerts.append(alert)
        logger.warning("[%s] step %d: %s", alert.indicator, alert.step, alert.message)
        if self.writer is not None:
            self._safe_write(lambda: alert.write_to(self.writer))
        if self.tensorboard is not None:
            self._safe_tb(
                lambda: self.tensorboard.add_text(
                    f"alerts/{alert.indicator}", f"{alert.severity}: {alert.message}", alert.step
                )
            )

    def _safe_write(self, fn: Callable[[], Any], *, n_rows: int = 0, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._write_blocked_until:
            self._dropped_rows += n_rows
            return
        try:
            fn()
        except RunLogError as exc:
            self._write_failed = True
            self._write_blocked_until = now + self.retry_seconds
            self._warn_once(
                ("write",),
                f"the run log could not be written ({exc}); training continues, rows logged "
                f"in the next {self.retry_seconds:g} s are dropped before a retry",
            )
        else:
            if self._write_failed and not force:
                self._write_failed = False
                dropped, self._dropped_rows = self._dropped_rows, 0
                self._safe_write(
                    lambda: self.writer.event(
                        self._last_step,
                        "run_log_recovered",
                        f"the run log is writable again; {dropped} rows were dropped while it was not",
                        source="runlog",
                        detail={"dropped_rows": dropped},
                    )
                )

    def _safe_tb(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:
            self._warn_once(
                ("tensorboard",),
                f"TensorBoard mirroring failed ({type(exc).__name__}: {exc}); it is switched off",
            )
            self.tensorboard = None


def output_layers(model: nn.Module, layers: Mapping[str, nn.Module]) -> tuple[str, ...]:
    """The selected layers that produce the model's output: those on the chain of last
    children from the model down (the head of a Sequential, a Hugging Face ``lm_head``).
    Their information-plane compression is the prediction saturating, whatever the hidden
    layers do."""
    chain = {id(model)}
    m = model
    while True:
        children = list(m.children())
        if not children:
            break
        m = children[-1]
        chain.add(id(m))
    return tuple(name for name, mod in layers.items() if id(mod) in chain)
