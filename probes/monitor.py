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
the wall time near ``budget=0.05``: an expensive metric that falls due while the probes
have used more than 5% of the time since the first step is postponed to its next due
step. ``budget=None`` records exactly at the cadences.

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

import logging
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from diagnostics.collapse import DETECTORS, Alert, CollapseDetector, CollapseSettings
from diagnostics.runlog import RunLogError, RunWriter
from probes import distributed as _dist
from probes.cadence import Cadence, as_cadence
from probes.capture import REDUCTIONS, Capture
from probes.layers import LayerSelection, model_device, select_layers, unwrap
from probes.metrics import MetricDef, get_metric

__all__ = ["Monitor", "MODES", "default_metrics"]

logger = logging.getLogger("infoscope.probes")

MODES = ("probe", "live")
_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
_MAX_PENDING_SCALARS = 2048


def default_metrics(*, has_x: bool, has_y: bool) -> list[str]:
    """The metrics a Monitor records when ``metrics`` is not given."""
    names = ["act_stats", "effective_rank", "grad_norm", "weight_norm", "dse"]
    if has_y:
        names.append("dsmi")
    if has_x and has_y:
        names.append("info_plane")
    return names


@dataclass
class _Active:
    key: str
    defn: MetricDef
    params: dict[str, Any]
    cadence: Cadence
    layers: tuple[str, ...]
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def scope(self) -> str:
        return self.defn.scope


def _tensor_items(obj: Any) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _tensor_items(v)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from _tensor_items(v)


def _batch_size(inputs: Any) -> int:
    for t in _tensor_items(inputs):
        if t.ndim >= 1:
            return int(t.shape[0])
    raise ValueError(
        "probe_inputs: expected a tensor, or a tuple/list/dict of tensors with a batch axis"
    )


def _map_batch(inputs: Any, fn: Callable[[torch.Tensor], torch.Tensor], n: int) -> Any:
    """Apply ``fn`` to every tensor of ``inputs`` whose first axis is the batch (``n``)."""
    if isinstance(inputs, torch.Tensor):
        return fn(inputs) if inputs.ndim >= 1 and inputs.shape[0] == n else inputs
    if isinstance(inputs, Mapping):
        mapped = {k: _map_batch(v, fn, n) for k, v in inputs.items()}
        try:
            return type(inputs)(mapped)
        except Exception:
            return mapped
    if isinstance(inputs, tuple):
        return tuple(_map_batch(v, fn, n) for v in inputs)
    if isinstance(inputs, list):
        return [_map_batch(v, fn, n) for v in inputs]
    return inputs


def _to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if type(inputs).__module__ == "numpy" and hasattr(inputs, "dtype"):  # numpy arrays
        return _as_tensor(inputs, "probe_inputs").to(device)
    if isinstance(inputs, Mapping):
        mapped = {k: _to_device(v, device) for k, v in inputs.items()}
        try:
            return type(inputs)(mapped)
        except Exception:
            return mapped
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_to_device(v, device) for v in inputs)
    return inputs


def _default_forward(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            return torch.as_tensor(np.ascontiguousarray(value))
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"{name}: expected a torch.Tensor or numpy array, got {type(value).__name__}")


def _model_summary(model: nn.Module) -> str:
    n = sum(p.numel() for p in model.parameters())
    text = f"{type(unwrap(model)).__name__} ({n:,} parameters)\n{unwrap(model)}"
    return text if len(text) <= 20000 else text[:20000] + "\n..."


class Monitor:
    """Record what a model's layers know while it trains (see the module docstring).

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
        ``True`` (default settings), a :class:`~diagnostics.collapse.CollapseSettings`,
        or ``False`` to run no collapse detector.
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
        exactly at the cadences. Default 0.05. On a GPU the share includes waiting for
        kernels queued before a record.
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
        output: int
        | str
        | Callable[[Any], Any]
        | Mapping[str, int | str | Callable[[Any], Any] | None]
        | None = None,
        forward: Callable[[nn.Module, Any], Any] | None = None,
        probe_batch_size: int | None = None,
        seed: int = 0,
        collapse: bool | CollapseSettings = True,
        tensorboard: Any = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        disable_after: int = 3,
        scalar_prefix: str = "train/",
        retry_seconds: float = 30.0,
        budget: float | None = 0.05,
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
        self._forward = forward or _default_forward
        self._probe_batch_size = probe_batch_size
        self.last: dict[tuple[str, str | None], float] = {}
        self.alerts: list[Alert] = []
        self._closed = False
        self._warned: set[Any] = set()
        self._fail_streak: dict[tuple[str, str | None], int] = {}
        self._disabled: set[tuple[str, str | None]] = set()
        self._pending: list[tuple[int, str, Any]] = []
        self._stash: tuple[int, list[tuple[str, str | None, Any]], set[str]] | None = None
        self._write_blocked_until = 0.0
        self._dropped_rows = 0
        self._write_failed = False
        self.budget = None if budget is None else float(budget)
        self._t_first: float | None = None  # first step() call (wall clock)
        self._t_monitor = 0.0  # wall time spent inside the monitor since then
        self._expensive_ran = False
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
        self._layer_metrics = [a for a in self._metrics if a.scope == "layer"]
        self._model_metrics = [a for a in self._metrics if a.scope == "model"]

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
        self._last_step: int | None = None
        self._stride = 1

        # ---- outputs (rank 0 only)
        self.writer: RunWriter | None = None
        self._owns_writer = False
        self.collapse: CollapseDetector | None = None
        self.tensorboard = tensorboard if self.rank == 0 else None
        if self.rank == 0:
            # the LM indicators run in LMMonitor (temporary, until the probes use one detector)
            lm = {"token_entropy_collapse", "over_optimisation", "positive_covariance",
                  "attention_collapse", "entropic_overload"}  # fmt: skip
            rep = [n for n in DETECTORS if n not in lm]
            if collapse is True:
                self.collapse = CollapseDetector(indicators=rep)
            elif isinstance(collapse, CollapseSettings):
                self.collapse = CollapseDetector(collapse, indicators=rep)
            elif collapse not in (False, None):
                raise TypeError(
                    f"collapse: expected True, False or a CollapseSettings, got {collapse!r}"
                )
            self._open_writer(run, name=name, config=config, meta=meta)

        if self.mode == "live" and self._layer_metrics:
            # the first forward may already be a recorded step
            self._arm(self._live_layers(None), until=None)

    # ------------------------------------------------------------------ setup helpers
    def _prepare_probe(self, inputs: Any, labels: Any) -> None:
        inputs = _to_device(inputs, self.device)
        n = _batch_size(inputs)
        y = None
        if labels is not None:
            y = _as_tensor(labels, "probe_labels").to(self.device)
            if y.ndim == 0 or y.shape[0] != n:
                raise ValueError(
                    f"probe_labels: expected {n} labels (one per probe input), got shape "
                    f"{tuple(y.shape)}"
                )
        if self.max_rows is not None and n > self.max_rows:
            g = torch.Generator().manual_seed(self.seed)
            keep = torch.randperm(n, generator=g)[: self.max_rows].sort().values.to(self.device)
            inputs = _map_batch(inputs, lambda t: t.index_select(0, keep.to(t.device)), n)
            if y is not None:
                y = y.index_select(0, keep)
            n = self.max_rows
        self._probe_inputs = inputs
        self._n_probe = n
        mask = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None
        mask = mask if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None
        if isinstance(inputs, torch.Tensor):
            self._x_all = inputs.reshape(n, -1)
        self._y_all = y
        if self.world_size > 1 and n >= self.world_size:
            start, end = _dist.shard_bounds(n, self.rank, self.world_size)
        else:
            start, end = 0, n
        self._shard = (start, end)
        self._probe_local = _map_batch(inputs, lambda t: t[start:end], n)
        self._mask_local = None if mask is None else mask[start:end]

    def _parse_metrics(self, metrics: Any) -> list[_Active]:
        has_x = self.mode == "probe" and self._x_all is not None
        has_y = self.mode == "probe" and self._y_all is not None
        explicit = metrics is not None
        if metrics is None:
            metrics = default_metrics(has_x=has_x, has_y=has_y)
        if isinstance(metrics, Mapping):
            items = list(metrics.items())
        elif isinstance(metrics, str):
            items = [(metrics, None)]
        else:
            items = []
            for m in metrics:
                if isinstance(m, str):
                    items.append((m, None))
                elif isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str):
                    items.append(m)
                else:
                    raise TypeError(
                        "metrics: expected names, (name, options) pairs or a dict "
                        f"{{name: options}}, got {m!r}"
                    )
        active: list[_Active] = []
        keys: set[str] = set()
        for mname, opts in items:
            defn = get_metric(mname)
            if opts is None:
                opts = {}
            elif isinstance(opts, (int, str, Cadence)) or (
                isinstance(opts, Iterable) and not isinstance(opts, Mapping)
            ):
                opts = {"every": opts}
            elif not isinstance(opts, Mapping):
                raise TypeError(
                    f"metrics[{mname!r}]: expected a dict of options, got {type(opts).__name__}"
                )
            opts = dict(opts)
            missing = defn.missing_requirements()
            if missing:
                msg = (
                    f"metric {mname!r} needs {', '.join(missing)}, which is not available in "
                    "this installation"
                )
                if explicit:
                    raise ImportError(msg)
                self._warn_once(("missing", mname), msg + "; it is left out of the defaults")
                continue
            cad = opts.pop("every", None)
            cadence = (
                as_cadence(cad, name=f"metrics[{mname!r}]['every']")
                if cad is not None
                else (self.slow_every if defn.slow else self.every)
            )
            sel = opts.pop("layers", None)
            lnames: tuple[str, ...] = ()
            if defn.scope == "layer":
                if sel is None:
                    lnames = tuple(self.layers)
                else:
                    chosen = select_layers(self.model, sel)
                    lnames = tuple(n for n in chosen if n in self.layers)
                    if not lnames:
                        raise ValueError(
                            f"metrics[{mname!r}]['layers']: selects none of the monitor's "
                            f"layers ({', '.join(self.layers)})"
                        )
            elif sel is not None:
                raise ValueError(f"metrics[{mname!r}]: a model-scope metric takes no 'layers'")
            defn.check_params(opts)
            if defn.scope == "layer" and not explicit:
                if "x" in defn.needs and not has_x or "y" in defn.needs and not has_y:
                    continue
            key = mname if not opts else f"{mname}{sorted(opts.items())}"
            if key in keys:
                raise ValueError(f"metrics: {mname!r} is listed twice with the same options")
            keys.add(key)
            active.append(_Active(key, defn, opts, cadence, lnames))
        return active

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
            "budget": self.budget,
        }
        values: dict[str, Any] = {
            "probes": probes_meta,
            "model_summary": _model_summary(self.model),
        }
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
        if self._closed:
            raise RuntimeError("Monitor.step: the monitor is closed")
        t_in = time.perf_counter()
        if self._t_first is None:
            self._t_first = t_in
        step = int(step)
        if scalars and self.rank == 0:
            self._buffer(step, {self.scalar_prefix + k: v for k, v in scalars.items()})
        if self._last_step is not None and step > self._last_step:
            self._stride = min(step - self._last_step, 1000)
        self._last_step = step
        due = [a for a in self._metrics if a.cadence.due(step)]
        out: dict[tuple[str, str | None], float] = {}
        if due and self.budget is not None:
            due = self._apply_budget(step, due, t_in)
        if due:
            out = self._record(step, due, labels=labels, inputs=inputs)
        elif len(self._pending) >= _MAX_PENDING_SCALARS:
            self._flush_scalars()
        if self.mode == "live" and not self._explicit_arming:
            self._live_capture.clear()
            names = set()
            for s in range(step + 1, step + self._stride + 1):
                names |= self._live_layers(s)
            if names:
                self._arm(names, until=step + self._stride)
            else:
                self._disarm()
        self._t_monitor += time.perf_counter() - t_in
        return out

    def _apply_budget(self, step: int, due: list[_Active], now: float) -> list[_Active]:
        """Drop the expensive metrics from ``due`` while the monitor's share of the time
        since the first step is over ``budget`` (rank 0 decides for every rank)."""
        if not any(a.defn.expensive for a in due):
            return due
        train = (now - self._t_first) - self._t_monitor
        allow = not self._expensive_ran or self._t_monitor <= self.budget * max(train, 0.0)
        if self.world_size > 1:
            allow = _dist.broadcast_flag(allow, self.device)
        if allow:
            self._expensive_ran = True
            return due
        kept = []
        for a in due:
            if not a.defn.expensive:
                kept.append(a)
                continue
            n = self.deferred.get(a.key, 0) + 1
            self.deferred[a.key] = n
            if n == 1 and self.rank == 0:
                self._event(
                    step,
                    "probe_deferred",
                    f"{a.defn.name} postponed: the probes already took more than "
                    f"{self.budget:.0%} of the training time (Monitor(budget=...)); it runs "
                    "again at a due step once the share is below the budget",
                    source=a.defn.name,
                    detail={"metric": a.key, "budget": self.budget},
                )
        return kept

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
            if len(self._pending) >= _MAX_PENDING_SCALARS:
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

    def _flush_scalars(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        values = _to_floats([v for _, _, v in pending])
        rows = [(s, name, None, val) for (s, name, _), val in zip(pending, values)]
        self._emit(rows)

    # ------------------------------------------------------------------ live arming
    def _live_layers(self, step: int | None) -> set[str]:
        names: set[str] = set()
        for a in self._layer_metrics:
            if step is None or a.cadence.due(step):
                names.update(n for n in a.layers if not self._is_disabled(a.key, n))
        return names

    def _is_disabled(self, key: str, layer: str | None) -> bool:
        # under DDP only rank 0 knows what failed: the other ranks keep capturing so
        # that every rank makes the same collective calls
        return self.world_size == 1 and (key, layer) in self._disabled

    def _arm(self, names: set[str], until: int | None) -> None:
        cap = self._live_capture
        if not cap.attached or names != self._armed_names:
            cap.attach([n for n in self.layers if n in names])
            self._armed_names = set(names)
        self._armed_until = until

    def _disarm(self) -> None:
        self._live_capture.detach()
        self._live_capture.clear()
        self._armed_names = None
        self._armed_until = None

    # ------------------------------------------------------------------ recording
    def _record(
        self, step: int, due: list[_Active], *, labels: Any, inputs: Any
    ) -> dict[tuple[str, str | None], float]:
        t0 = time.perf_counter()
        layer_due = [a for a in due if a.scope == "layer"]
        model_due = [a for a in due if a.scope == "model"]
        acts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        x_all, y_all = self._x_all, self._y_all
        if layer_due:
            wanted = [
                n
                for n in self.layers
                if any(n in a.layers and not self._is_disabled(a.key, n) for a in layer_due)
            ]
            if self.mode == "probe":
                acts, errors, batch = self._probe_forward(step, wanted)
                local_x = local_y = None
            else:
                acts, errors, batch = self._take_live(step, wanted)
                local_x = None if inputs is None else _as_tensor(inputs, "inputs")
                local_y = None if labels is None else _as_tensor(labels, "labels")
            acts, lx, ly = self._gather(step, wanted, acts, errors, batch, local_x, local_y)
            if self.mode == "live":
                x_all = None if lx is None else lx.reshape(lx.shape[0], -1)
                y_all = ly
        if self.rank != 0:
            return {}

        self._flush_scalars()
        rows: list[tuple[str, str | None, Any]] = []
        for act in layer_due:
            for lname in act.layers:
                if lname in acts and (act.key, lname) not in self._disabled:
                    self._run_layer_metric(step, act, lname, acts[lname], x_all, y_all, rows)
        stash = self._stash if self._stash is not None and self._stash[0] == step else None
        self._stash = None
        for act in model_due:
            if stash is not None and act.key in stash[2]:
                continue
            self._run_model_metric(step, act, rows)
        if stash is not None:
            rows.extend(stash[1])
        values = _to_floats([v for _, _, v in rows])
        out = {(m, lay): val for (m, lay, _), val in zip(rows, values)}
        seconds = time.perf_counter() - t0
        out[("probe/seconds", None)] = seconds
        self.last = out
        self._emit([(step, m, lay, v) for (m, lay), v in out.items()])
        return out

    def _probe_forward(self, step: int, names: list[str]):
        cap = self._probe_capture
        cap.clear()
        start, end = self._shard
        if not names or end <= start:
            return {}, {}, end - start
        flags = [(m, m.training) for m in self._fwd_model.modules()]
        n_local = end - start
        chunk = self._probe_batch_size or n_local
        try:
            cap.attach(names)
            self._fwd_model.eval()
            with torch.no_grad():
                for a in range(0, n_local, chunk):
                    b = min(a + chunk, n_local)
                    part = (
                        self._probe_local
                        if (a, b) == (0, n_local)
                        else _map_batch(self._probe_local, lambda t, a=a, b=b: t[a:b], n_local)
                    )
                    cap.offset = start + a
                    cap.mask = None if self._mask_local is None else self._mask_local[a:b]
                    self._forward(self._fwd_model, part)
        except Exception as exc:
            self._failure(step, "forward", exc)
            cap.clear()
            return {}, {n: "the probe forward failed" for n in names}, n_local
        finally:
            cap.detach()
            cap.mask = None
            for m, was_training in flags:
                m.training = was_training
        results = cap.results()
        errors = dict(cap.errors)
        cap.clear()
        return results, errors, n_local

    def _take_live(self, step: int, names: list[str]):
        cap = self._live_capture
        results = {n: r for n, r in cap.results().items() if n in names}
        errors = {n: e for n, e in cap.errors.items() if n in names}
        batch = max((cap.batch_sizes.get(n, 0) for n in results), default=0)
        if not results and not errors and self.rank == 0:
            self._warn_once(
                ("live-empty",),
                f"live mode: no forward was captured before step {step}; call "
                "monitor.step(step) after the model's forward (layer metrics skipped)",
            )
        cap.clear()
        return results, errors, batch

    def _gather(self, step, names, acts, errors, batch, local_x, local_y):
        """Under DDP, gather every layer's rows (and live x / y) to all ranks, in rank
        order; subsample to ``max_rows``. Returns ``(acts, x, y)``."""
        if self.world_size > 1:
            acts, local_x, local_y = self._gather_ranks(
                names, acts, errors, batch, local_x, local_y
            )
        if self.rank == 0:
            for lname, err in errors.items():
                if lname in names:
                    self._failure(step, f"capture:{lname}", RuntimeError(err), layer=lname)
        if self.max_rows is not None:
            for lname, (z, idx) in list(acts.items()):
                if z.shape[0] > self.max_rows:
                    g = torch.Generator().manual_seed(
                        self.seed if self.mode == "probe" else self.seed + step
                    )
                    keep = torch.randperm(z.shape[0], generator=g)[: self.max_rows].sort().values
                    keep = keep.to(z.device)
                    acts[lname] = (z.index_select(0, keep), idx.index_select(0, keep))
        return acts, local_x, local_y

    def _gather_ranks(self, names, acts, errors, batch, local_x, local_y):
        meta = []
        for n in names:
            if n in acts:
                z, _ = acts[n]
                meta += [1, z.shape[0], z.shape[1]]
            else:
                meta += [0, 0, 0]
        meta += [batch]
        meta += [-1 if local_x is None else local_x.shape[0]]
        meta += [-1 if local_y is None else local_y.shape[0]]
        table = _dist.all_gather_meta(torch.tensor(meta, dtype=torch.int64, device=self.device))
        table = table.cpu().tolist()
        batches = [row[3 * len(names)] for row in table]
        offset = sum(batches[: self.rank]) if self.mode == "live" else 0
        out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for i, n in enumerate(names):
            ok = [row[3 * i] for row in table]
            rows = [row[3 * i + 1] for row in table]
            dims = {row[3 * i + 2] for row in table}
            if not all(ok) or len(dims) != 1:
                if n not in errors:
                    errors[n] = (
                        "the layer produced no output on some rank"
                        if not all(ok)
                        else f"feature sizes differ across ranks: {sorted(dims)}"
                    )
                continue
            z, idx = acts[n]
            gz = _dist.all_gather_rows(z, rows)
            gi = _dist.all_gather_rows(idx + offset, rows)
            out[n] = (gz, gi)
        gx = gy = None
        for pos, local in ((1, local_x), (2, local_y)):
            sizes = [row[3 * len(names) + pos] for row in table]
            if min(sizes) < 0:
                continue
            g = _dist.all_gather_rows(local.to(self.device), sizes)
            if pos == 1:
                gx = g
            else:
                gy = g
        return out, gx, gy

    def _context(self, act: _Active, lname: str, z, idx, x_all, y_all) -> dict[str, Any] | None:
        want = act.defn.context
        ctx: dict[str, Any] = {}
        for key in want:
            if key == "x":
                ctx["x"] = None if x_all is None else x_all.index_select(0, idx.to(x_all.device))
            elif key == "y":
                ctx["y"] = None if y_all is None else y_all.index_select(0, idx.to(y_all.device))
            elif key == "x_all":
                ctx["x_all"] = x_all
            elif key == "y_all":
                ctx["y_all"] = y_all
            elif key == "sample_index":
                ctx["sample_index"] = idx
            elif key == "layer":
                ctx["layer"] = lname
            elif key == "module":
                ctx["module"] = self.layers[lname]
            elif key == "layers":
                ctx["layers"] = self.layers
            elif key == "model":
                ctx["model"] = self._fwd_model
            elif key == "cache":
                ctx["cache"] = act.cache.setdefault(lname, {})
            elif key == "step":
                ctx["step"] = self._current_step
            elif key == "seed":
                ctx["seed"] = self.seed
        for need in act.defn.needs:
            if ctx.get(need) is None:
                what = "inputs" if need == "x" else "labels"
                self._warn_once(
                    ("needs", act.key, need),
                    f"metric {act.defn.name!r} needs the {what}; none are available "
                    f"({'probe_' + what + '=' if self.mode == 'probe' else 'step(..., ' + what + '=)'}), "
                    "so it is skipped",
                )
                return None
        return ctx

    def _run_layer_metric(self, step, act, lname, captured, x_all, y_all, rows) -> None:
        z, idx = captured
        self._current_step = step
        try:
            ctx = self._context(act, lname, z, idx, x_all, y_all)
            if ctx is None:
                return
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = act.defn.fn(z, **ctx, **act.params)
            self._relay_warnings(act, lname, caught)
            produced = self._outputs(act, result, lname)
        except Exception as exc:
            self._failure(step, f"{act.defn.name}:{lname}", exc, metric=act.key, layer=lname)
            return
        self._fail_streak.pop((act.key, lname), None)
        rows.extend(produced)

    def _run_model_metric(self, step, act, rows) -> None:
        self._current_step = step
        want = act.defn.context
        ctx = {
            k: v
            for k, v in (
                ("layers", self.layers),
                ("step", step),
                ("seed", self.seed),
                ("cache", act.cache),
                ("x_all", self._x_all),
                ("y_all", self._y_all),
            )
            if k in want
        }
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = act.defn.fn(self._fwd_model, **ctx, **act.params)
            self._relay_warnings(act, None, caught)
            produced = self._outputs(act, result, None)
        except Exception as exc:
            self._failure(step, act.defn.name, exc, metric=act.key)
            return
        self._fail_streak.pop((act.key, None), None)
        rows.extend(produced)

    def _outputs(self, act: _Active, result: Any, lname: str | None) -> list[tuple]:
        out = []
        if isinstance(result, Mapping):
            for k, v in result.items():
                if isinstance(k, tuple):
                    metric, layer = k
                else:
                    metric, layer = k, lname
                out.append((str(metric), layer, _check_scalar(v, str(metric))))
        elif result is not None:
            out.append((act.defn.outputs[0], lname, _check_scalar(result, act.defn.outputs[0])))
        return out

    # ------------------------------------------------------------------ failures & output
    def _relay_warnings(self, act: _Active, lname: str | None, caught: list) -> None:
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

    def _event(self, step, kind, message, *, source=None, detail=None) -> None:
        if self.writer is not None:
            self._safe_write(
                lambda: self.writer.event(step, kind, message, source=source, detail=detail)
            )

    def _emit(self, rows: list[tuple[int, str, str | None, float]]) -> None:
        """Write rows, mirror them to TensorBoard, run the collapse detectors."""
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
                alerts = self.collapse.feed(sorted(rows, key=lambda r: r[0]))
            except Exception as exc:
                self._failure(rows[-1][0], "collapse", exc)
                alerts = []
            for alert in alerts:
                self.alerts.append(alert)
                logger.warning("[%s] step %d: %s", alert.indicator, alert.step, alert.message)
                if self.writer is not None:
                    self._safe_write(lambda a=alert: a.write_to(self.writer))
                if self.tensorboard is not None:
                    self._safe_tb(
                        lambda a=alert: self.tensorboard.add_text(
                            f"alerts/{a.indicator}", f"{a.severity}: {a.message}", a.step
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


def _check_scalar(v: Any, name: str) -> Any:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"{name}: a metric must return a scalar, got shape {tuple(v.shape)}")
        return v.detach()
    return float(v)


def _to_floats(values: list[Any]) -> list[float]:
    """Python floats for numbers and one-element tensors: one device sync per device."""
    out: list[float] = [0.0] * len(values)
    by_device: dict[torch.device, list[int]] = {}
    for i, v in enumerate(values):
        if isinstance(v, torch.Tensor):
            by_device.setdefault(v.device, []).append(i)
        else:
            out[i] = float(v)
    for dev, idxs in by_device.items():
        dtype = torch.float32 if dev.type == "mps" else torch.float64  # MPS has no float64
        stacked = torch.stack([values[i].reshape(()).to(dtype) for i in idxs])
        for i, f in zip(idxs, stacked.tolist()):
            out[i] = f
    return out
