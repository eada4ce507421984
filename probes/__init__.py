"""infoscope probes: attach to a live torch model and record what its layers know::

    from probes import Monitor

    monitor = Monitor(model, "runs/exp1", layers=["encoder.*", torch.nn.Linear],
                      probe_inputs=x_val, probe_labels=y_val, every=100)
    for step, batch in enumerate(loader):
        ...  # the user's own forward / backward / optimizer step
        monitor.step(step, loss=loss)
    monitor.close()

Modules, by job:

- :mod:`probes.monitor`: the :class:`Monitor`, a facade over the four modules below.
- :mod:`probes.schedule`: which metric runs when (the metric plan) and the time budget;
  :mod:`probes.cadence`: the cadences themselves.
- :mod:`probes.activations`: where a record's activations come from (probe forward,
  live hooks, gather across ranks), over :mod:`probes.layers` (layer names and
  selection), :mod:`probes.capture` (hooks, output extraction, sequence reduction),
  :mod:`probes.batch` (nested input batches) and :mod:`probes.distributed` (DDP).
- :mod:`probes.record`: one record, calling each due metric with its context.
- :mod:`probes.output`: the run log, TensorBoard, the collapse detectors, and failure
  isolation (warn once, ``probe_failure`` events, switching failing metrics off).
- :mod:`probes.metrics`: the metric registry and the built-in metrics.
- :mod:`probes.lm`: ``LMMonitor``, token, attention and RL entropy of language models.
- :mod:`probes.lightning` and :mod:`probes.hf`: training-framework callbacks (extras
  ``infoscope[lightning]`` and ``infoscope[hf]``).
"""

from __future__ import annotations

from importlib import import_module

from probes.cadence import Cadence, Every, LogSpaced, Never, Steps, as_cadence
from probes.layers import named_layers, normalize_name, select_layers
from probes.metrics import available_metrics, get_metric, register_metric, unregister_metric
from probes.monitor import Monitor, default_metrics

# integrations import their framework only when asked for
_LAZY = {
    "InfoscopeCallback": "probes.lightning",
    "InfoscopeTrainerCallback": "probes.hf",
    "LMMonitor": "probes.lm",
}

__all__ = [
    "Monitor",
    "default_metrics",
    "Cadence",
    "Every",
    "LogSpaced",
    "Steps",
    "Never",
    "as_cadence",
    "register_metric",
    "unregister_metric",
    "get_metric",
    "available_metrics",
    "select_layers",
    "named_layers",
    "normalize_name",
    *_LAZY,
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'probes' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
