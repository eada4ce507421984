"""Offline analysis: saved activations and logits in, a run log out (``infoscope analyze``).

The dumps (``.npz``, ``.pt``, ``.safetensors``; one file per step or one stacked file) are
read by :mod:`diagnostics.offline.dumps`, which documents their arrays and checks them.
:func:`analyze_snapshots` computes the chosen metrics for every step with the estimators of
this package, on ``device`` (the arrays are moved there as torch tensors, so the estimators
run on it), writes them with the metric names of :mod:`diagnostics.schema` into a run (a
:class:`~diagnostics.runlog.RunWriter` directory), replays the collapse detectors over the
result (:mod:`diagnostics.offline.replay`) and writes their alerts, so that the dashboard
shows an offline analysis exactly like a live one. The run is written into a staging folder
and renamed onto ``out`` at the end (:mod:`diagnostics.offline.output`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from diagnostics.offline.dumps import RESERVED, load_dumps, read_dump

__all__ = ["LAYER_METRICS", "analyze_snapshots", "load_snapshot", "resolve_device"]

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _layer_metric(name: str) -> Callable[..., dict[str, Any]]:
    import diagnostics as d

    def act_stats(z, x, y, opts):
        return {"act/mean": z.mean(), "act/std": z.std(correction=0)}  # population std

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
    """Read one per-step dump file into a dict (arrays as numpy, ``step`` as int): its
    ``step``, else the last number in its name, else ``index``."""
    from diagnostics.offline.dumps import _split

    path = Path(path)
    (snap,) = _split(path, read_dump(path), "per-step", index)
    return {**snap.arrays, "step": snap.step}


def resolve_device(device: Any = "cpu") -> Any:
    """``device`` as a ``torch.device``; a CUDA device that is not available is refused."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device: expected cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {device}: CUDA is not available here (torch {torch.__version__}, "
                "torch.cuda.is_available() is False); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {device}: there are {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type != "cpu":
        raise ValueError(f"--device: expected cpu, cuda or cuda:N, got {device!r}")
    return dev


def _flat(a: Any, name: str) -> Any:
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
    layout: str = "auto",
    device: Any = "cpu",
    overwrite: bool = False,
    progress: bool | None = None,
    rl: bool | None = None,
) -> Path:
    """Analyse dump files (see :mod:`diagnostics.offline.dumps`; a folder stands for its
    dump files) into the run directory ``out``.

    ``metrics`` are names from :data:`LAYER_METRICS`; ``method`` is the information-plane
    estimator, ``sigma`` the DSE/DSMI kernel width, ``k`` the top-k of the token statistics;
    ``layout`` is ``auto``, ``per-step`` or ``stacked``; the estimators run on ``device``
    (``cpu``, ``cuda``, ``cuda:N``). ``out`` must not hold anything unless ``overwrite``;
    nothing is left there when the analysis fails. ``progress``: ``None`` shows a bar on a
    terminal, ``False`` never. ``rl=True`` says the logits come from RL fine-tuning, where a
    collapse of token entropy is a problem (in pretraining it is learning); ``None`` lets the
    detectors decide from the series. Returns the run directory.
    """
    import torch

    from diagnostics import estimators as lm
    from diagnostics.detectors import Context
    from diagnostics.offline.output import check_output, staged_output
    from diagnostics.offline.progress import progress_bar
    from diagnostics.offline.replay import replay_detectors
    from diagnostics.runlog import RunWriter

    metrics = list(metrics)
    unknown = [m for m in metrics if m not in LAYER_METRICS]
    if unknown:
        raise ValueError(f"metrics: expected names from {', '.join(LAYER_METRICS)}, got {unknown}")
    if not paths:
        raise ValueError("paths: expected at least one snapshot file, got none")
    dev = resolve_device(device)
    check_output(out, overwrite=overwrite)
    snapshots = load_dumps(paths, layout=layout, progress=progress)
    fns = [_layer_metric(m) for m in metrics]
    opts = {"method": method, "sigma": sigma}
    info = {
        "source": "infoscope analyze",
        "snapshots": [str(p) for p in paths],
        "layout": layout,
        "device": str(dev),
    }

    def on_device(a: np.ndarray, dtype: Any = None) -> torch.Tensor:
        return torch.as_tensor(a).to(device=dev, dtype=dtype)

    run_meta = {"name": Path(out).name, "config": {**info, "metrics": metrics, **opts}}
    with staged_output(out, overwrite=overwrite) as stage:
        with RunWriter(stage, meta={**run_meta, **(meta or {})}) as w:
            for snap in progress_bar(snapshots, enabled=progress, desc="analyze", unit="step"):
                step, arrays = snap.step, snap.arrays
                x = arrays.get("x")
                x = None if x is None else on_device(_flat(x, "x"))
                y = arrays.get("y")
                y = None if y is None else on_device(y)
                for layer, acts in arrays.items():
                    if layer in RESERVED:
                        continue
                    z = on_device(_flat(acts, layer), torch.float64)
                    values: dict[str, Any] = {}
                    for fn in fns:
                        values.update(fn(z, x, y, opts))
                    if values:
                        w.log(step, {k_: float(v) for k_, v in values.items()}, layer=layer)
                if "logits" in arrays:
                    mask = arrays.get("mask")
                    mask = None if mask is None else on_device(mask)
                    stats = lm.token_stats(on_device(arrays["logits"]), mask=mask, k=k)
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
            if collapse:
                replay_detectors(w, Context(rl=rl))
    return Path(out)
