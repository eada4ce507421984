"""Offline analysis: saved activations and logits in, a run log out.

A *snapshot* is one ``.npz`` file (``numpy.savez``) saved at one training step. Its arrays:

- ``step`` (optional, a scalar): the training step; otherwise the last number in the file
  name (``acts_step1200.npz`` -> 1200), otherwise the file's position in the list;
- ``x`` (optional, ``(n, ...)``): the inputs the activations were computed on;
- ``y`` (optional, ``(n,)`` integers): their labels;
- ``logits`` (optional, ``(..., vocab)``) and ``mask`` (optional, ``logits.shape[:-1]``):
  next-token logits of a language model and which positions are real tokens;
- every other array is a layer's activations, ``(n, ...)`` (flattened to ``(n, d)``), named
  by its key.

:func:`analyze_snapshots` computes the chosen metrics for every snapshot with the estimators
of this package, writes them with the metric names of :mod:`diagnostics.schema` into a run
(a :class:`~diagnostics.runlog.RunWriter` directory), replays the collapse detectors over the
result and writes their alerts, so that the dashboard shows an offline analysis exactly like
a live one. ``infoscope analyze`` is the command-line form.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LAYER_METRICS", "analyze_snapshots", "load_snapshot"]

RESERVED = ("step", "x", "y", "logits", "mask")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _layer_metric(name: str) -> Callable[..., dict[str, Any]]:
    import diagnostics as d

    def act_stats(z, x, y, opts):
        return {"act/mean": z.mean(), "act/std": z.std()}

    def effective_rank(z, x, y, opts):
        return {"repr/effective_rank": d.effective_rank(z)}

    def von_neumann(z, x, y, opts):
        return {"repr/von_neumann": d.von_neumann_entropy(z)}

    def dse(z, x, y, opts):
        return {"repr/dse": d.diffusion_spectral_entropy(z, sigma=opts.get("sigma", 10.0))}

    def dsmi(z, x, y, opts):
        if y is None:
            return {}
        value = d.diffusion_spectral_mutual_information(z, y, sigma=opts.get("sigma", 10.0))
        return {"repr/dsmi_y": value}

    def info_plane(z, x, y, opts):
        if x is None or y is None:
            return {}
        method = opts.get("method", "binning")
        row = d.information_plane({"layer": z}, x, y, method=method).iloc[0]
        return {f"info_plane/{method}/I_XT": row["I_XT"], f"info_plane/{method}/I_TY": row["I_TY"]}

    return {
        "act_stats": act_stats,
        "effective_rank": effective_rank,
        "von_neumann": von_neumann,
        "dse": dse,
        "dsmi": dsmi,
        "info_plane": info_plane,
    }[name]


#: per-layer metrics that ``analyze_snapshots`` knows (``dsmi`` needs ``y``; ``info_plane``
#: needs ``x`` and ``y``; they are skipped for snapshots without them)
LAYER_METRICS = ("act_stats", "effective_rank", "von_neumann", "dse", "dsmi", "info_plane")


def load_snapshot(path: str | os.PathLike, index: int = 0) -> dict[str, Any]:
    """Read one snapshot file into a dict (arrays as numpy, ``step`` as int)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"snapshot: expected a .npz file (numpy.savez), got {path.name}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"snapshot: cannot read {path}: {exc}") from None
    if "step" in arrays:
        step = int(np.asarray(arrays.pop("step")).reshape(-1)[0])
    else:
        numbers = re.findall(r"\d+", path.stem)
        step = int(numbers[-1]) if numbers else index
    arrays["step"] = step
    return arrays


def _flat(a: np.ndarray, name: str) -> np.ndarray:
    if a.ndim == 0:
        raise ValueError(f"{name}: expected activations of shape (n, ...), got a scalar")
    return a.reshape(a.shape[0], -1) if a.ndim != 2 else a


def analyze_snapshots(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    metrics: Iterable[str] = ("act_stats", "effective_rank", "von_neumann", "dse", "info_plane"),
    method: str = "binning",
    sigma: float = 10.0,
    k: int = 10,
    meta: dict[str, Any] | None = None,
    collapse: bool = True,
    rl: bool | None = None,
) -> Path:
    """Analyse snapshot files (see the module docstring) into the run directory ``out``.

    ``metrics`` are names from :data:`LAYER_METRICS`; ``method`` is the information-plane
    estimator, ``sigma`` the DSE/DSMI kernel width, ``k`` the top-k of the token statistics.
    ``rl=True`` says the logits come from RL fine-tuning, where a collapse of token entropy is
    a problem (in pretraining it is learning); ``None`` lets the detectors decide from the
    series. Returns the run directory.
    """
    from diagnostics import estimators as lm
    from diagnostics.detectors import Context, detect_collapse
    from diagnostics.runlog import RunWriter, open_run

    metrics = list(metrics)
    unknown = [m for m in metrics if m not in LAYER_METRICS]
    if unknown:
        raise ValueError(f"metrics: expected names from {', '.join(LAYER_METRICS)}, got {unknown}")
    if not paths:
        raise ValueError("paths: expected at least one snapshot file, got none")
    snapshots = sorted((load_snapshot(p, i) for i, p in enumerate(paths)), key=lambda s: s["step"])
    fns = [_layer_metric(m) for m in metrics]
    opts = {"method": method, "sigma": sigma}
    info = {"source": "infoscope analyze", "snapshots": [str(p) for p in paths]}
    context = Context(rl=rl)
    meta = {"config": {**info, "metrics": metrics, **opts}, **(meta or {})}
    meta.setdefault("detector_context", context.to_dict())
    with RunWriter(out, meta=meta) as w:
        for snap in snapshots:
            step = snap["step"]
            x = snap.get("x")
            x = None if x is None else _flat(x, "x")
            y = snap.get("y")
            for layer, acts in snap.items():
                if layer in RESERVED:
                    continue
                z = _flat(acts, layer).astype(np.float64)
                values: dict[str, Any] = {}
                for fn in fns:
                    values.update(fn(z, x, y, opts))
                if values:
                    w.log(step, {k_: float(v) for k_, v in values.items()}, layer=layer)
            if "logits" in snap:
                stats = lm.token_stats(snap["logits"], mask=snap.get("mask"), k=k)
                ent = stats["entropy"]
                ent = ent[~ent.isnan()]
                row = {
                    f"lm/{name}": float(v.nanmean())
                    for name, v in stats.items()
                    if name != "entropy"
                }
                row["lm/token_entropy/mean"] = float(ent.mean())
                for q, v in zip(QUANTILES, lm.masked_quantiles(ent, list(QUANTILES))):
                    row[f"lm/token_entropy/q{round(q * 100):02d}"] = float(v)
                w.log(step, row)
                counts, edges = np.histogram(ent.cpu().numpy(), bins=40)
                w.log_distribution(step, "lm/token_entropy", edges=edges, counts=counts)
        w.flush()
        if collapse:
            scalars = open_run(out).scalars()
            for alert in detect_collapse(scalars, context=context):
                alert.write_to(w)
    return Path(out)
