"""Where a record's activations come from: the probe forward or the user's own forward.

A part of :class:`~probes.monitor.Monitor` (a mixin; the monitor's ``__init__`` sets the
state it uses). In probe mode the fixed probe batch is prepared once (on the model's
device, subsampled to ``max_rows``, this rank's shard under DDP) and run through the model
in eval mode at each record (:meth:`ActivationSource._probe_forward`). In live mode hooks
are armed just before a step that records and capture the user's own forward
(:meth:`ActivationSource._arm`, :meth:`ActivationSource._take_live`). Either way the
captured rows are gathered across ranks and subsampled to ``max_rows``
(:meth:`ActivationSource._gather`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from probes import distributed as _dist
from probes.batch import as_tensor, batch_size, eval_no_grad, map_batch, subsample_index, to_device

__all__ = ["ActivationSource"]


class ActivationSource:
    """The monitor's capture side (see the module docstring)."""

    # ------------------------------------------------------------------ probe batch
    def _prepare_probe(self, inputs: Any, labels: Any) -> None:
        inputs = to_device(inputs, self.device)
        n = batch_size(inputs)
        y = None
        if labels is not None:
            y = as_tensor(labels, "probe_labels").to(self.device)
            if y.ndim == 0 or y.shape[0] != n:
                raise ValueError(
                    f"probe_labels: expected {n} labels (one per probe input), got shape "
                    f"{tuple(y.shape)}"
                )
        if self.max_rows is not None and n > self.max_rows:
            keep = subsample_index(n, self.max_rows, self.seed).to(self.device)
            inputs = map_batch(inputs, lambda t: t.index_select(0, keep.to(t.device)), n)
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
        self._probe_local = map_batch(inputs, lambda t: t[start:end], n)
        self._mask_local = None if mask is None else mask[start:end]

    def _probe_forward(self, step: int, names: list[str]):
        cap = self._probe_capture
        cap.clear()
        start, end = self._shard
        if not names or end <= start:
            return {}, {}, end - start
        n_local = end - start
        chunk = self._probe_batch_size or n_local
        try:
            cap.attach(names)
            with eval_no_grad(self._fwd_model):
                for a in range(0, n_local, chunk):
                    b = min(a + chunk, n_local)
                    part = (
                        self._probe_local
                        if (a, b) == (0, n_local)
                        else map_batch(self._probe_local, lambda t, a=a, b=b: t[a:b], n_local)
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
        results = cap.results()
        errors = dict(cap.errors)
        cap.clear()
        return results, errors, n_local

    # ------------------------------------------------------------------ live capture
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

    def _live_layers(self, step: int | None) -> set[str]:
        names: set[str] = set()
        for a in self._layer_metrics:
            if step is None or a.cadence.due(step):
                names.update(n for n in a.layers if not self._is_disabled(a.key, n))
        return names

    def _layer_due_within(self, first: int, last: int) -> bool:
        """Whether a layer metric's cadence is due at a step in ``[first, last]``."""
        for s in range(first, last + 1):
            for cadence in self._layer_cadences:
                if cadence.due(s):
                    return True
        return False

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

    # ------------------------------------------------------------------ gather
    def _gather(self, step, names, acts, errors, batch, local_x, local_y):
        """Under DDP, gather every layer's rows (and live x / y) to all ranks, in rank
        order; subsample to ``max_rows``. Returns ``(acts, x, y)``."""
        if self.world_size > 1:
            acts, local_x, local_y = _dist.gather_captures(
                names,
                acts,
                errors,
                batch,
                local_x,
                local_y,
                rank=self.rank,
                live=self.mode == "live",
                device=self.device,
            )
        if self.rank == 0:
            for lname, err in errors.items():
                if lname in names:
                    self._failure(step, f"capture:{lname}", RuntimeError(err), layer=lname)
        if self.max_rows is not None:
            for lname, (z, idx) in list(acts.items()):
                if z.shape[0] > self.max_rows:
                    seed = self.seed if self.mode == "probe" else self.seed + step
                    keep = subsample_index(z.shape[0], self.max_rows, seed).to(z.device)
                    acts[lname] = (z.index_select(0, keep), idx.index_select(0, keep))
        return acts, local_x, local_y
