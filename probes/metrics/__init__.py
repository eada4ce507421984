"""Metrics by name: the registry (:mod:`.registry`) and the built-in metrics (:mod:`.builtin`).

A metric is a function registered under a name with :func:`register_metric`. Three
scopes exist:

- ``scope="layer"``: called once per selected layer as ``fn(z, **context, **params)``
  where ``z`` is the layer's ``(rows, features)`` activation matrix on the model's
  device. It returns a number or 0-d tensor (recorded under ``outputs[0]``, or the
  metric's name) or a dict ``{metric_name: value}``.
- ``scope="layers"``: called once per record for all its layers as
  ``fn({layer: z}, **context, **params)``, for what the layers share (the information
  plane computes the partition of the inputs and the label terms once). The layers of
  one call were captured on the same rows, so ``x``, ``y`` and ``sample_index`` are
  shared (layers with different rows, e.g. token rows of different lengths, come in
  separate calls). It returns ``{(metric_name, layer): value}``; a value that is an
  exception marks that layer failed (warned, recorded as ``probe_failure``, counted
  toward switching it off) while the other layers are recorded.
- ``scope="model"``: called once per record as ``fn(model, **context, **params)``; it
  returns ``{metric_name: value}`` (whole-model rows) or ``{(metric_name, layer): value}``.

The function receives, among the context keywords, only those its signature names
explicitly (a ``**kwargs`` catch-all receives the user's options, not the context):

======================  =======================================================
``x``, ``y``            the probe inputs (flattened to ``(rows, -1)``) and labels,
                        row-aligned with ``z``; ``None`` when unknown
``x_all``, ``y_all``    the same before row alignment (the whole probe batch)
``sample_index``        ``z``'s row -> probe-sample index (``x = x_all[sample_index]``)
``layer``, ``module``   the stable layer name and the module (``scope="layer"`` only)
``layers``, ``model``   all selected layers ``{name: module}`` and the model
``step``, ``seed``      the step being recorded and the monitor's seed
``cache``               a dict private to this metric, kept across steps
======================  =======================================================

A metric whose signature has ``x`` or ``y`` without a default needs them: it is
skipped (with a warning, once) when the monitor has none. Options given by the user
(``metrics={"dse": {"sigma": 5.0}}``) are passed as keyword arguments and checked
against the signature when the monitor is built.

Built-in metrics (all information quantities in nats; estimators live in
:mod:`diagnostics`, probes only pick them by name):

=================  ======================================  ============================
name               records                                 calls
=================  ======================================  ============================
``act_stats``      ``act/mean``, ``act/std``,              reductions here (see
                   ``act/dead_frac``, ``act/saturated_frac``  :func:`activation_stats`)
``effective_rank`` ``repr/effective_rank``                 ``diagnostics.effective_rank``
``von_neumann``    ``repr/von_neumann``                    ``diagnostics.von_neumann_entropy``
``alpha_req``      ``repr/alpha_req``                      ``diagnostics.alpha_req``
``dse``            ``repr/dse``                            ``diagnostics.diffusion_spectral_entropy``
``dsmi``           ``repr/dsmi_y`` (needs labels)          ``diagnostics.diffusion_spectral_mutual_information``
``dsmi_x``         ``repr/dsmi_x`` (needs inputs)          the same, with ``cluster_reference(x)`` computed once
``info_plane``     ``info_plane/{method}/I_XT``, ``I_TY``  ``diagnostics.information_plane``,
                   (needs inputs and labels)               once per record for all layers
``grad_norm``      ``grad/norm`` per layer and model       reductions here
``weight_norm``    ``weight/norm`` per layer and model     reductions here
=================  ======================================  ============================

``dse``, ``dsmi``, ``dsmi_x`` and ``info_plane`` are *slow*: by default they run at the
monitor's slow cadence (ten times sparser than ``every``). These and the other
estimator metrics (``effective_rank``, ``von_neumann``, ``alpha_req``) are *expensive*:
the monitor's time ``budget`` may postpone them (see :class:`probes.monitor.Monitor`).
"""

from __future__ import annotations

from probes.metrics.builtin import SATURATION_BOUNDS, activation_stats  # registers them
from probes.metrics.registry import (
    _REGISTRY,
    MetricDef,
    available_metrics,
    get_metric,
    register_metric,
    unregister_metric,
)

__all__ = [
    "MetricDef",
    "register_metric",
    "unregister_metric",
    "get_metric",
    "available_metrics",
    "activation_stats",
    "SATURATION_BOUNDS",
]

#: The names registered by :mod:`probes.metrics.builtin`, in registration order.
BUILTIN_METRICS = tuple(_REGISTRY)
