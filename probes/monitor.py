"""The Monitor: attach probes to a model, record metrics at a cadence, write the run log.

Three lines in a training loop that already exists::

    monitor = Monitor(model, "runs/exp1", layers=["encoder.*", torch.nn.Linear],
                      probe_inputs=x_val, probe_labels=y_val, every=100)
    for step, (x, y) in enumerate(loader):
        ...  # the user's own forward / backward / optimizer step
        monitor.step(step, loss=loss)
    monitor.close()  # or use ``with Monitor(...) as monitor:``

Modes
-----
``"probe"`` (the default when ``probe_inputs`` is given; the information-plane
convention): at a recording step the fixed probe batch is run through the model in
eval mode under ``torch.no_grad()``, with forward hooks on the selected layers only
for that forward; every module's train/eval flag is restored afterwards. The user's
RNG state is never touched (subsampling uses the monitor's own generator).

``"live"`` (the default without ``probe_inputs``): no extra forward. Hooks are
registered just before a step that will be recorded (``step(s)`` arms them when the
next step is due; integrations call :meth:`Monitor.begin_step`) and capture the user's
own forward (the last one before ``step``), then are removed. Pass ``labels=`` /
``inputs=`` to :meth:`Monitor.step` for metrics that need them.

With ``torch.compile``, probe mode runs the original (uncompiled) module; live mode's
hooks change what the compiled graph guards on, so adding and removing them can
trigger recompilation: prefer probe mode there. Under FSDP the probe forward runs
through the wrapper (every rank takes part, as in training).

At steps where nothing is recorded no hook is registered and ``step`` costs a few
cadence checks (and buffering the scalars passed to it, without a device sync).

The estimators are expensive next to a small model's training step (an SVD or an
``n x n`` eigendecomposition per layer), so by default the monitor keeps its share of
the wall time within ``budget=0.04``: an expensive metric that falls due while the probes
have used more than 4% of the time since the first step (with what the record is
expected to cost) is postponed to its next due step. The share counts all the time
spent inside the monitor: every ``step`` call, cheap metrics, writing and live mode's
hooks (in the user's forward) included. It is 4% so that the overhead seen from outside
stays within 5%: what the monitor cannot time (calling it, ~3 us of a quiet ``step``
right after a training step; the training steps after a record, with the caches the
record used) adds up to ~1% on a model whose step takes under a millisecond
(``benchmarks/probe_overhead.py``). Cheap metrics are never postponed: on such a model
they alone can take most of the budget. ``budget=None`` records exactly at the cadences.

Metrics, cadences and defaults
------------------------------
``metrics`` names registered metrics (:mod:`probes.metrics`): a list of names, or a
dict ``{name: options}`` where options may hold ``every`` (a cadence for that metric),
``layers`` (a sub-selection of the monitor's layers) and keyword options of the metric.
Without ``metrics``: ``act_stats``, ``effective_rank``, ``grad_norm``, ``weight_norm`` at
``every``; ``dse`` (and ``dsmi`` with probe labels, ``info_plane`` with probe inputs and
labels) at ``slow_every`` (default: ten times sparser than ``every``). A default metric
whose estimator module is not installed is left out with a warning.

Rows are subsampled to ``max_rows`` (the probe batch once, at construction, seeded;
live captures and ``reduce="all"`` token rows at each record, seeded by step).

Failures and distributed training
---------------------------------
A metric that raises (out of memory, NaN activations rejected by an estimator, a bug)
warns once, is recorded as an event ``probe_failure`` in the run log, and training
continues; after ``disable_after`` consecutive failures on a layer it is switched off
for that layer (event ``probe_disabled``). A run log that cannot be written (full disk)
warns once and training continues; writes are retried at most every
``retry_seconds``.

Under ``torch.distributed`` (DDP), every rank must call :meth:`step` at the same steps.
The probe batch is sharded across ranks and the activations all-gathered in order, so
rank 0 sees exactly what a single process would; live captures are gathered likewise.
Only rank 0 computes estimates and writes (the run log, TensorBoard); other ranks
never open the run log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from diagnostics.detectors import Alert, CollapseDetector, CollapseSettings, Context
from diagnostics.runlog import RunWriter
from probes import distributed as _dist
from probes.activations import ActivationSource
from probes.batch import default_forward
from probes.cadence import Cadence, as_cadence
from probes.capture import REDUCTIONS, Capture, OutputSelect
from probes.layers import LayerSelection, model_device, select_layers, unwrap
from probes.output import MAX_PENDING_SCALARS, Output
from probes.record import Recorder
from probes.schedule import Scheduling, default_metrics

__all__ = ["Monitor", "MODES", "default_metrics"]

MODES = ("probe", "live")
_Tensor = torch.Tensor


class Monitor(Recorder, ActivationSource, Scheduling, Output):
    """Record what a model's layers know while it trains (see the module docstring).

    This class holds the monitor's state and its public methods; the work is done by
    one mixin per job: :class:`~probes.schedule.Scheduling` (which metric runs when,
    the time budget), :class:`~probes.activations.ActivationSource` (the probe forward,
    live hooks, the gather across ranks), :class:`~probes.record.Recorder` (one record:
    calling the metrics) and :class:`~probes.output.Output` (run log, TensorBoard,
    collapse detectors, failure isolation).

    Parameters
    ----------
    model:
        The model (plain, DDP/FSDP-wrapped or ``torch.compile``-d).
    run:
        A run directory (a :class:`~diagnostics.runlog.RunWriter` is opened on rank 0
        and closed by :meth:`close`), an open ``RunWriter`` (kept open), or ``None``
        (nothing written; results in :attr:`last`).
    layers:
        Names, glob patterns, module types, a callable ``(name, module) -> bool`` or a
        list of these (:func:`probes.layers.select_layers`); default: every leaf module
        with parameters.
    probe_inputs, probe_labels:
        The fixed probe batch (tensor, tuple/list or dict of tensors, e.g. a tokenizer's
        output) and its labels; moved to the model's device once.
    mode:
        ``"probe"`` or ``"live"``; default ``"probe"`` when ``probe_inputs`` is given.
    every, slow_every:
        Cadences: an int (every N steps), ``"log"`` (log-spaced), a list of steps or a
        :class:`~probes.cadence.Cadence`. ``slow_every`` (for expensive metrics)
        defaults to ``every`` ten times sparser.
    metrics:
        Metric names or ``{name: options}``; see the module docstring.
    max_rows:
        Most rows (samples, or tokens with ``reduce="all"``) an estimate sees; ``None``
        for no limit.
    reduce:
        Sequence / spatial reduction: ``"mean"`` (default), ``"last"``, ``"all"``,
        ``"flatten"`` (:mod:`probes.capture`).
    output:
        Which part of a layer's output to analyse when it is not a tensor: an index, a
        key/attribute name, or a callable (e.g. ``lambda o: torch.softmax(o, 1)`` to
        analyse probabilities rather than logits); default: the first tensor. A dict
        ``{layer name: one of these}`` chooses per layer (the default for layers not
        in it).
    forward:
        ``forward(model, inputs)`` for the probe batch; default ``model(x)``,
        ``model(*x)`` for a tuple/list, ``model(**x)`` for a dict.
    probe_batch_size:
        Run the probe batch in chunks of this many rows (default: at once).
    seed:
        Seed of the row subsampling and of stochastic estimators.
    collapse:
        ``True`` (default settings), a :class:`~diagnostics.detectors.CollapseSettings` (or
        a dict of its fields), or ``False`` to run no detector. The detectors run online
        after each record; their alerts go to the run log and :attr:`alerts`.
    context:
        What the detectors should know of the run (:class:`~diagnostics.detectors.Context`
        or a dict): by default the number of classes and the label entropy of
        ``probe_labels`` (a classifier's layers are judged against the rank its classes
        need), the model's output layers among ``layers`` and the layers' order. Given
        fields take precedence; it is stored in the run's meta so that a replay judges
        alike.
    tensorboard:
        A ``torch.utils.tensorboard.SummaryWriter``: every scalar is mirrored there
        (tag ``metric/layer``), alerts as text.
    name, config, meta:
        Run name, the user's configuration (stored as the run's ``config``), and other
        metadata for the run log.
    disable_after:
        Consecutive failures after which a metric is switched off for a layer.
    scalar_prefix:
        Prefix for the scalars passed to :meth:`step` as keywords (``loss`` is recorded
        as ``train/loss``).
    retry_seconds:
        After a failed write to the run log, the least time before the next attempt.
    budget:
        The most wall time, as a fraction of the training time since the first
        :meth:`step`, that the probes may take before *expensive* metrics (the
        estimators: effective rank, DSE, DSMI, information plane, ...) are postponed: a
        due expensive metric runs only while the monitor's share is within the budget
        (each runs at least once), otherwise it waits for its next due step (event
        ``probe_deferred`` the first time; counts in :attr:`deferred`). Cheap metrics
        (activation statistics, norms) always follow their cadence. ``None`` records
        exactly at the cadences. Default 0.04, which keeps the whole overhead within 5%
        (see the module docstring). On a GPU the share includes waiting for kernels
        queued before a record.
    """

    def __init__(
        self,
        model: nn.Module,
        run: str | Any | None = None,
        *,
        layers: LayerSelection = None,
        probe_inputs: Any = None,
        probe_labels: Any = None,
        mode: str | None = None,
        every: int | str | Iterable[int] | Cadence = 100,
        slow_every: int | str | Iterable[int] | Cadence | None = None,
        metrics: Iterable[Any] | Mapping[str, Any] | None = None,
        max_rows: int | None = 1024,
        reduce: str = "mean",
        output: OutputSelect = None,
        forward: Callable[[nn.Module, Any], Any] | None = None,
        probe_batch_size: int | None = None,
        seed: int = 0,
        collapse: bool | CollapseSettings | Mapping[str, Any] = True,
        context: Context | Mapping[str, Any] | None = None,
        tensorboard: Any = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        disable_after: int = 3,
        scalar_prefix: str = "train/",
        retry_seconds: float = 30.0,
        budget: float | None = 0.04,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if mode is None:
            mode = "probe" if probe_inputs is not None else "live"
        if mode not in MODES:
            raise ValueError(f"mode: expected 'probe' or 'live', got {mode!r}")
        if mode == "probe" and probe_inputs is None:
            raise ValueError("probe_inputs: mode='probe' needs a probe batch (probe_inputs=...)")
        if reduce not in REDUCTIONS:
            raise ValueError(
                f"reduce: expected one of {', '.join(map(repr, REDUCTIONS))}, got {reduce!r}"
            )
        if max_rows is not None and (
            isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 2
        ):
            raise ValueError(f"max_rows: expected an integer >= 2 or None, got {max_rows!r}")
        if probe_batch_size is not None and (
            not isinstance(probe_batch_size, int) or probe_batch_size < 1
        ):
            raise ValueError(
                f"probe_batch_size: expected an integer >= 1 or None, got {probe_batch_size!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed: expected an integer, got {seed!r}")
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget
        ):
            raise ValueError(f"budget: expected a number > 0 or None, got {budget!r}")
        if not isinstance(disable_after, int) or disable_after < 1:
            raise ValueError(f"disable_after: expected an integer >= 1, got {disable_after!r}")

        self.model = model
        self._fwd_model = unwrap(model)
        self.mode = mode
        self.rank, self.world_size = _dist.rank_and_world()
        self.layers = select_layers(model, layers)
        self.device = model_device(model)
        self.every = as_cadence(every, name="every")
        self.slow_every = (
            self.every.scaled(10)
            if slow_every is None
            else as_cadence(slow_every, name="slow_every")
        )
        self.max_rows = max_rows
        self.reduce = reduce
        self.seed = seed
        self.scalar_prefix = scalar_prefix
        self.disable_after = disable_after
        self.retry_seconds = float(retry_seconds)
        self._forward = forward or default_forward
        self._probe_batch_size = probe_batch_size
        self.last: dict[tuple[str, str | None], float] = {}
        self.alerts: list[Alert] = []
        self._closed = False
        self._warned: set[Any] = set()
        self._fail_streak: dict[tuple[str, str | None], int] = {}
        self._disabled: set[tuple[str, str | None]] = set()
        self._pending: list[tuple[int, str, Any]] = []
        self._scalar_names: dict[str, str] = {}  # step() keyword -> its run-log name
        # the keywords whose first value was a CPU tensor (the loss), with their run-log
        # name: step()'s quiet path takes their value without asking the device again
        self._cpu_scalars: dict[str, str] = {}
        self._stash: tuple[int, list[tuple[str, str | None, Any]], set[str]] | None = None
        self._write_blocked_until = 0.0
        self._dropped_rows = 0
        self._write_failed = False
        self.budget = None if budget is None else float(budget)
        self._t_first: float | None = None  # first step() call (wall clock)
        self._t_monitor = 0.0  # wall time spent inside the monitor since then
        self._record_costs: dict[tuple[str, ...], float] = {}  # see _apply_budget
        self.deferred: dict[str, int] = {}  # metric -> records postponed by the budget

        # ---- probe batch (probe mode): on the model's device, subsampled once
        self._x_all: torch.Tensor | None = None
        self._y_all: torch.Tensor | None = None
        self._probe_local: Any = None
        self._mask_local: torch.Tensor | None = None
        self._shard = (0, 0)
        if mode == "probe":
            self._prepare_probe(probe_inputs, probe_labels)
        elif probe_labels is not None:
            raise ValueError(
                "probe_labels: given without probe_inputs; in live mode pass the batch's "
                "labels to step(..., labels=y)"
            )

        # ---- metrics
        self._metrics = self._parse_metrics(metrics)
        self._layer_metrics = [a for a in self._metrics if a.scope != "model"]
        self._model_metrics = [a for a in self._metrics if a.scope == "model"]
        # the distinct cadences, so that an idle step asks each only once
        self._cadences = _distinct(a.cadence for a in self._metrics)
        self._layer_cadences = _distinct(a.cadence for a in self._layer_metrics)

        # ---- capture
        if isinstance(output, Mapping):
            unknown = [k for k in output if k not in self.layers]
            if unknown:
                raise ValueError(
                    f"output: {', '.join(map(repr, unknown))} not among the monitor's layers "
                    f"({', '.join(self.layers)})"
                )
        self._probe_capture = Capture(self.layers, select=output, reduce=reduce, accumulate=True)
        self._live_capture = Capture(self.layers, select=output, reduce=reduce, accumulate=False)
        self._explicit_arming = False
        self._armed_until: int | None = None
        self._armed_names: set[str] | None = None
        self._current_step = 0
        self._stride = 1
        self._quiet_next: int | None = None  # the step after the last one: last + stride
        self._quiet_until = -1  # see step() and _quiet_after()

        # ---- outputs (rank 0 only)
        self.writer: RunWriter | None = None
        self._owns_writer = False
        self.collapse: CollapseDetector | None = None
        self.tensorboard = tensorboard if self.rank == 0 else None
        if self.rank == 0:
            self.collapse = self._build_collapse(collapse, context)
            self._open_writer(run, name=name, config=config, meta=meta)

        if self.mode == "live" and self._layer_metrics:
            # the first forward may already be a recorded step
            self._arm(self._live_layers(None), until=None)

    # ------------------------------------------------------------------ public API
    def step(
        self,
        step: int,
        *,
        labels: Any = None,
        inputs: Any = None,
        **scalars: Any,
    ) -> dict[tuple[str, str | None], float]:
        """End of training step ``step``: record what is due, log ``scalars``.

        Keyword scalars are logged as ``{scalar_prefix}{name}`` (``loss`` ->
        ``train/loss``); tensors are buffered without a device sync and converted at the
        next record. ``labels`` / ``inputs`` are the live batch's (live mode only).
        Returns the values recorded at this step (``{(metric, layer): value}``, empty
        when nothing was recorded, and always empty on ranks other than 0).
        """
        # Every step runs this, right after the training step has evicted it from the CPU
        # caches (an idle call costs ~10x its warm time), so it is kept short: a step in the
        # quiet stretch the last full call found (Scheduling._quiet_after) buffers scalars,
        # with as few lookups as it can (each is a cache miss here).
        t_in = time.perf_counter()
        if type(step) is int and step == self._quiet_next and step <= self._quiet_until:
            if scalars:
                # the loss on the CPU, inline: a method call costs ~2 us here, and asking
                # the tensor for its device ~0.8 us (a keyword whose values move to
                # another device later would cost a sync per step, not a wrong value)
                pending, cpu = self._pending, self._cpu_scalars  # (rank 0 only)
                for k, v in scalars.items():
                    name = cpu.get(k)
                    if name is not None and type(v) is _Tensor:
                        try:
                            pending.append((step, name, v.item()))
                        except RuntimeError:  # not one element: _buffer says so
                            self._buffer_scalars(step, {k: v})
                    elif self.rank == 0:
                        self._buffer_scalars(step, {k: v})
                if len(pending) >= MAX_PENDING_SCALARS:
                    self._flush_scalars()
            self._quiet_next = step + self._stride
            self._t_monitor += time.perf_counter() - t_in
            return {}
        last = self._last_step
        if self._closed:
            raise RuntimeError("Monitor.step: the monitor is closed")
        if self._t_first is None:
            self._t_first = t_in
            self._live_capture.seconds = 0.0  # (before the time the budget measures)
        elif self._live_capture.seconds:  # the live hooks, in the user's forward
            self._t_monitor += self._live_capture.seconds
            self._live_capture.seconds = 0.0
        step = int(step)
        if scalars and self.rank == 0:
            self._buffer_scalars(step, scalars)
        if last is not None and step > last:
            self._stride = min(step - last, 1000)
        self._quiet_next = step + self._stride
        due: list = []
        for cadence in self._cadences:
            if cadence.due(step):
                due = [a for a in self._metrics if a.cadence.due(step)]
                break
        out: dict[tuple[str, str | None], float] = {}
        if due:
            if self.budget is not None:
                due = self._apply_budget(step, due, t_in)
            if due:
                out = self._record(step, due, labels=labels, inputs=inputs)
        elif len(self._pending) >= MAX_PENDING_SCALARS:
            self._flush_scalars()
        if self.mode == "live" and not self._explicit_arming:
            until = step + self._stride
            if self._layer_due_within(step + 1, until):
                self._live_capture.clear()
                names = set()
                for s in range(step + 1, until + 1):
                    names |= self._live_layers(s)
                if names:
                    self._arm(names, until=until)
                else:
                    self._disarm()
            elif self._armed_names is not None or self._live_capture.attached:
                self._disarm()  # (an idle step with nothing armed has nothing to undo)
        self._quiet_until = self._quiet_after(step)
        self._t_monitor += time.perf_counter() - t_in
        return out

    def begin_step(self, step: int) -> None:
        """Live mode: arm the hooks when ``step`` will be recorded (integrations call
        this before the forward; afterwards the monitor arms only through it)."""
        self._explicit_arming = True
        if self.mode != "live" or self._closed:
            return
        names = self._live_layers(int(step))
        if names:
            self._arm(names, until=int(step))
        else:
            self._disarm()

    def collect_grads(self, step: int) -> None:
        """Compute the model-scope metrics due at ``step`` now (e.g. gradient norms
        before an optimizer clears the gradients) and use them when ``step`` records."""
        if self._closed or self.rank != 0:
            return
        t_in = time.perf_counter()
        step = int(step)
        due = [a for a in self._model_metrics if a.cadence.due(step)]
        if not due:
            return
        rows: list[tuple[str, str | None, Any]] = []
        for act in due:
            self._run_model_metric(step, act, rows)
        self._stash = (step, rows, {a.key for a in due})
        self._t_monitor += time.perf_counter() - t_in

    def record(self, step: int, *, labels: Any = None, inputs: Any = None) -> dict:
        """Record every metric now, whatever the cadence (live mode: from the last
        captured forward, if any)."""
        if self._closed:
            raise RuntimeError("Monitor.record: the monitor is closed")
        return self._record(int(step), list(self._metrics), labels=labels, inputs=inputs)

    def log_scalars(self, step: int, values: Mapping[str, Any]) -> None:
        """Log scalars under their full names (``{"val/acc": 0.9}``), buffered like
        :meth:`step`'s keywords and written at the next record or :meth:`flush`."""
        if self._closed:
            raise RuntimeError("Monitor.log_scalars: the monitor is closed")
        if self.rank == 0:
            self._buffer(int(step), values)
            if len(self._pending) >= MAX_PENDING_SCALARS:
                self._flush_scalars()

    def flush(self) -> None:
        """Write buffered scalars and commit the run log."""
        if self.rank != 0 or self._closed:
            return
        self._flush_scalars()
        if self.writer is not None:
            self._safe_write(self.writer.flush)
        if self.tensorboard is not None:
            self._safe_tb(self.tensorboard.flush)

    def close(self, *, status: str = "finished") -> None:
        """Remove hooks, write what is buffered and close the run log (if the monitor
        opened it). Safe to call twice."""
        if self._closed:
            return
        self._quiet_until = -1  # step() after close() raises
        try:
            self._disarm()
            self._probe_capture.detach()
            if self.rank == 0:
                self._flush_scalars()
                if self.writer is not None:
                    if self._owns_writer:
                        self._safe_write(lambda: self.writer.close(status=status), force=True)
                    else:
                        self._safe_write(self.writer.flush, force=True)
                if self.tensorboard is not None:
                    self._safe_tb(self.tensorboard.flush)
        finally:
            self._closed = True

    @property
    def _last_step(self) -> int | None:
        """The step of the last :meth:`step` call (``None`` before the first)."""
        return None if self._quiet_next is None else self._quiet_next - self._stride

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(status="failed" if exc_type is not None else "finished")

    def __repr__(self) -> str:
        return (
            f"Monitor(mode={self.mode!r}, layers={list(self.layers)}, "
            f"metrics={[a.defn.name for a in self._metrics]}, every={self.every!r})"
        )


def _distinct(cadences: Iterable[Cadence]) -> list[Cadence]:
    """The distinct cadence objects, in order of first appearance."""
    seen: dict[int, Cadence] = {}
    for c in cadences:
        seen.setdefault(id(c), c)
    return list(seen.values())
