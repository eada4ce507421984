"""Scalar series read from a training log (TensorBoard, CSV, JSONL) and their writing into a run.

A reader turns its source into a :class:`ScalarLog` (one per training run: tag -> steps,
wall times, values as numpy arrays); :func:`write_scalar_log` renames the tags to infoscope's
metric names (:mod:`diagnostics.offline.names`), writes the rows as whole-model scalars
(``layer`` NULL) into a run, and replays the collapse detectors over it
(:mod:`diagnostics.offline.replay`). A run keeps one wall time per step (the earliest wall
time the source recorded at that step).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Imported", "ScalarLog", "ScalarSeries", "write_scalar_log"]


@dataclass
class ScalarSeries:
    """One tag's points, in step order: ``steps`` (int64), ``wall_times`` (unix seconds,
    float64; NaN where the source has none) and ``values`` (float64)."""

    steps: np.ndarray
    wall_times: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)


@dataclass
class ScalarLog:
    """The scalar series of one training run: ``name`` (e.g. the TensorBoard run's folder
    relative to the log dir, ``"."`` for the log dir itself), ``source`` (the file or folder
    read), ``series`` (tag -> :class:`ScalarSeries`) and ``info`` (how it was read, e.g.
    ``{"reader": "server"}``; goes into the run's config)."""

    name: str
    source: str
    series: dict[str, ScalarSeries] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def points(self) -> int:
        return sum(len(s) for s in self.series.values())


@dataclass
class Imported:
    """One imported run: its folder, the log read, ``names`` (tag -> metric written) and the
    alerts the detectors raised on it."""

    path: Path
    log: ScalarLog
    names: dict[str, str]
    alerts: list[Any]

    @property
    def renamed(self) -> dict[str, str]:
        """The tags written under another name (tag -> metric)."""
        return {t: m for t, m in self.names.items() if t != m}

    def describe(self) -> str:
        """One line: where, how much, what was renamed, how many alerts."""
        line = (
            f"{self.path}: {len(self.log.series)} series, {self.log.points} points from "
            f"{self.log.source}"
        )
        if self.renamed:
            line += "; renamed " + ", ".join(f"{t} -> {m}" for t, m in self.renamed.items())
        return line + f"; {len(self.alerts)} alert(s)"


def write_scalar_log(
    log: ScalarLog,
    run_dir: str | os.PathLike,
    *,
    names: Mapping[str, str] | None = None,
    meta: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    rl: bool | None = None,
) -> list[Any]:
    """Write ``log`` into the run directory ``run_dir`` and replay the detectors over it.

    ``names`` maps a tag to its metric name (tags not in it keep their own names); ``meta`` is
    the run's metadata (see :class:`~diagnostics.runlog.RunWriter`); ``rl`` whether the log is
    of RL fine-tuning (``None``: the detectors tell from the series). Returns the alerts.
    """
    from diagnostics.detectors import Context
    from diagnostics.offline.progress import progress_bar
    from diagnostics.offline.replay import replay_detectors
    from diagnostics.runlog import RunWriter

    names = dict(names or {})
    tags = [t for t, s in log.series.items() if len(s)]
    metric_of = [names.get(t, t) for t in tags]
    steps = np.concatenate([log.series[t].steps for t in tags]) if tags else np.zeros(0, int)
    order = np.argsort(steps, kind="stable")
    steps = steps[order]
    if tags:
        walls = np.concatenate([log.series[t].wall_times for t in tags])[order]
        values = np.concatenate([log.series[t].values for t in tags])[order]
        which = np.repeat(np.arange(len(tags)), [len(log.series[t]) for t in tags])[order]
    else:
        walls = values = which = np.zeros(0)
    starts = np.flatnonzero(np.r_[True, steps[1:] != steps[:-1]]) if len(steps) else []
    ends = np.r_[starts[1:], len(steps)] if len(steps) else []
    # one wall time per step: the earliest one recorded (NaN-free), else the import time
    first_wall = np.fmin.reduceat(walls, starts) if len(steps) else np.zeros(0)
    step_list = steps.tolist()
    metric_names = np.array(metric_of, dtype=object)[which.astype(int)].tolist() if tags else []
    value_list = values.tolist()
    with RunWriter(run_dir, meta=dict(meta or {}), batch_rows=20000) as writer:
        bar = progress_bar(total=len(step_list), enabled=progress, desc="write", unit="pt")
        with bar:
            for a, b, wall in zip(starts.tolist(), ends.tolist(), first_wall.tolist()):
                writer.log(
                    step_list[a],
                    dict(zip(metric_names[a:b], value_list[a:b])),
                    wall_time=None if wall != wall else wall,
                )
                bar.update(b - a)
        return replay_detectors(writer, Context(rl=rl))


def as_series(steps: Any, wall_times: Any, values: Any) -> ScalarSeries:
    """A :class:`ScalarSeries` from three sequences of equal length, sorted by step."""
    s = np.asarray(steps, dtype=np.int64)
    w = np.asarray(wall_times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if not (len(s) == len(w) == len(v)):
        raise ValueError(f"expected equal lengths, got {len(s)}, {len(w)}, {len(v)}")
    if len(s) > 1 and np.any(s[1:] < s[:-1]):
        order = np.argsort(s, kind="stable")
        s, w, v = s[order], w[order], v[order]
    return ScalarSeries(s, w, v)


def run_path_for(name: str) -> Path:
    """The folder (relative to ``--out``) for a run named ``name`` when several are written:
    the run's own relative path, ``_root`` for the log dir itself (``"."``)."""
    parts = [p for p in Path(name).parts if p not in (".", "")]
    return Path(*parts) if parts else Path("_root")
