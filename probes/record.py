"""Taking one record: capture the activations, run each due metric, collect its values.

A part of :class:`~probes.monitor.Monitor` (a mixin; the monitor's ``__init__`` sets the
state it uses). :meth:`Recorder._record` gets the due layers' activations
(:mod:`probes.activations`), gathers them across ranks, and on rank 0 calls every due
metric: a layer metric once per layer with the context its signature asks for
(:meth:`Recorder._context`; see :mod:`probes.metrics`), a ``layers`` metric once for all
its layers (per-layer failures kept apart), a model metric once. Each call's
warnings are relayed once and its errors isolated (:mod:`probes.output`); its result is
checked to be scalars. The values, with ``probe/seconds``, go to the run log in one batch.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from probes.batch import as_tensor
from probes.output import float_values
from probes.schedule import ActiveMetric

__all__ = ["Recorder"]


class Recorder:
    """The monitor's record (see the module docstring)."""

    def _record(
        self, step: int, due: list[ActiveMetric], *, labels: Any, inputs: Any
    ) -> dict[tuple[str, str | None], float]:
        t0 = time.perf_counter()
        layer_due = [a for a in due if a.scope != "model"]
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
                local_x = None if inputs is None else as_tensor(inputs, "inputs")
                local_y = None if labels is None else as_tensor(labels, "labels")
            acts, lx, ly = self._gather(step, wanted, acts, errors, batch, local_x, local_y)
            if self.mode == "live":
                x_all = None if lx is None else lx.reshape(lx.shape[0], -1)
                y_all = ly
        if self.rank != 0:
            return {}

        self._flush_scalars()
        rows: list[tuple[str, str | None, Any]] = []
        for act in layer_due:
            if act.scope == "layers":
                self._run_layers_metric(step, act, acts, x_all, y_all, rows)
                continue
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
        out = float_values(rows)
        seconds = time.perf_counter() - t0
        out[("probe/seconds", None)] = seconds
        self.last = out
        self._emit([(step, m, lay, v) for (m, lay), v in out.items()], ordered=True)
        expensive = tuple(a.key for a in due if a.defn.expensive)
        if expensive:  # what a record of these costs, for the budget: writing it included
            self._record_costs[expensive] = time.perf_counter() - t0
        return out

    def _context(
        self, act: ActiveMetric, lname: str, z, idx, x_all, y_all
    ) -> dict[str, Any] | None:
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
                ctx["cache"] = act.cache if lname is None else act.cache.setdefault(lname, {})
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

    def _run_layers_metric(self, step, act, acts, x_all, y_all, rows) -> None:
        """A ``scope="layers"`` metric: one call per record for all its layers (one call
        per group of layers captured on the same rows), each layer's failure its own."""
        names = [n for n in act.layers if n in acts and (act.key, n) not in self._disabled]
        groups: list[tuple[torch.Tensor, list[str]]] = []
        for n in names:
            idx = acts[n][1]
            for gidx, members in groups:
                if gidx is idx or (gidx.shape == idx.shape and torch.equal(gidx, idx)):
                    members.append(n)
                    break
            else:
                groups.append((idx, [n]))
        self._current_step = step
        for idx, members in groups:
            label = f"{act.defn.name}:{','.join(members)}"
            try:
                ctx = self._context(act, None, None, idx, x_all, y_all)
                if ctx is None:
                    return
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    result = act.defn.fn({n: acts[n][0] for n in members}, **ctx, **act.params)
                self._relay_warnings(act, None, caught)
                items = _layers_result(result, members)
            except Exception as exc:  # the whole call failed: every layer in it did
                for n in members:
                    self._failure(step, label, exc, metric=act.key, layer=n)
                continue
            failed: dict[str, BaseException] = {}
            produced: dict[str, list[tuple]] = {n: [] for n in members}
            for metric, layer, v in items:
                if isinstance(v, BaseException):
                    failed.setdefault(layer, v)
                    continue
                try:
                    produced[layer].append((metric, layer, _check_scalar(v, metric)))
                except Exception as exc:
                    failed.setdefault(layer, exc)
            for n in members:
                if n in failed:
                    exc = failed[n]
                    self._failure(step, f"{act.defn.name}:{n}", exc, metric=act.key, layer=n)
                else:
                    self._fail_streak.pop((act.key, n), None)
                    rows.extend(produced[n])

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

    def _outputs(self, act: ActiveMetric, result: Any, lname: str | None) -> list[tuple]:
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


def _layers_result(result: Any, layers: list[str]) -> list[tuple[str, str, Any]]:
    """``(metric, layer, value)`` from a ``scope="layers"`` metric's ``{(metric, layer): value}``
    (a value that is an exception marks that layer failed)."""
    if not isinstance(result, Mapping):
        raise TypeError(
            "a metric of scope 'layers' must return {(metric, layer): value}, got "
            f"{type(result).__name__}"
        )
    out = []
    for k, v in result.items():
        if not (isinstance(k, tuple) and len(k) == 2):
            raise TypeError(
                f"a metric of scope 'layers' must key its values by (metric, layer), got {k!r}"
            )
        metric, layer = str(k[0]), k[1]
        if layer not in layers:
            raise ValueError(
                f"a metric of scope 'layers' returned {metric!r} for layer {layer!r}, which is "
                f"not among the layers it was given ({', '.join(layers)})"
            )
        out.append((metric, layer, v))
    return out


def _check_scalar(v: Any, name: str) -> Any:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"{name}: a metric must return a scalar, got shape {tuple(v.shape)}")
        return v.detach()
    return float(v)
