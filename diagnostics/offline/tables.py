"""Plain training logs (CSV, TSV, JSONL, a JSON list) imported as infoscope runs.

``infoscope import-csv FILE --out RUN`` reads a table with one row per step:

- ``.csv`` / ``.tsv``: a header row, then one row per step;
- ``.jsonl`` / ``.ndjson``: one JSON object per line (nested objects are flattened with
  ``/``: ``{"train": {"loss": 1}}`` is ``train/loss``);
- ``.json``: a list of such objects, or a Hugging Face ``trainer_state.json`` (its
  ``log_history``).

The step is the column ``--step-column`` names, else the first of ``step``, ``global_step``,
``_step`` (W&B exports), ``Step`` (TensorBoard's CSV download), ``iteration``, ``iter``;
without one, the row number. A ``wall_time``, ``_timestamp``, ``timestamp`` or ``Wall time``
column (unix seconds) is the wall time. Every other numeric column is a metric, renamed by
the table of :mod:`diagnostics.offline.names` (and ``--map``); text columns are skipped.
Empty or NaN cells are missing points, not NaN values; when a step occurs twice, its last row
wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from diagnostics.offline.scalars import Imported, ScalarLog, ScalarSeries, write_scalar_log

__all__ = ["STEP_COLUMNS", "import_table", "read_table"]

STEP_COLUMNS = ("step", "global_step", "_step", "Step", "iteration", "iter")
WALL_COLUMNS = ("wall_time", "_timestamp", "timestamp", "Wall time")
SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "/"))
        else:
            out[name] = value
    return out


def _records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from None
        if isinstance(data, Mapping) and isinstance(data.get("log_history"), list):
            data = data["log_history"]
        if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
            raise ValueError(
                f"{path}: expected a JSON list of objects (one per step) or a "
                "trainer_state.json with log_history"
            )
        return [_flatten(r) for r in data]
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {number} is not JSON ({exc.msg})") from None
        if not isinstance(row, Mapping):
            raise ValueError(
                f"{path}: line {number} is a JSON {type(row).__name__}, expected an object"
            )
        rows.append(_flatten(row))
    return rows


def _frame(path: Path) -> Any:
    import pandas as pd

    if path.suffix in (".csv", ".tsv"):
        try:
            return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
        except pd.errors.EmptyDataError:
            return pd.DataFrame()
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a readable CSV table ({exc})") from None
    return pd.DataFrame.from_records(_records(path))


def read_table(path: str | os.PathLike, *, step_column: str | None = None) -> ScalarLog:
    """The numeric columns of the table at ``path`` as a
    :class:`~diagnostics.offline.scalars.ScalarLog` (see the module docstring)."""
    import pandas as pd

    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{path}: expected a {', '.join(SUFFIXES)} file, got {path.suffix!r}")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    df = _frame(path)
    if df.empty:
        raise ValueError(f"{path}: no rows (expected one row per step)")
    if step_column is not None and step_column not in df.columns:
        raise ValueError(
            f"--step-column: {step_column!r} is not a column of {path}; its columns: "
            f"{', '.join(map(str, df.columns[:30]))}"
        )
    step_col = step_column or next((c for c in STEP_COLUMNS if c in df.columns), None)
    wall_col = next((c for c in WALL_COLUMNS if c in df.columns), None)
    if step_col is None:
        steps = np.arange(len(df), dtype=np.int64)
    else:
        raw = pd.to_numeric(df[step_col], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(raw) | (raw != np.round(raw)))
        if len(bad):
            raise ValueError(
                f"{path}: step column {step_col!r} holds a non-integer or missing value "
                f"({df[step_col].iloc[bad[0]]!r} in data row {bad[0] + 1})"
            )
        steps = raw.astype(np.int64)
    if wall_col is not None:
        walls = pd.to_numeric(df[wall_col], errors="coerce").to_numpy(dtype=np.float64)
    else:
        walls = np.full(len(df), np.nan)
    series: dict[str, ScalarSeries] = {}
    for col in df.columns:
        if col in (step_col, wall_col):
            continue
        values = df[col]
        if values.dtype == object:
            values = pd.to_numeric(values, errors="coerce")
            if values.isna().all():
                continue  # a text column
        elif not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            continue
        v = values.to_numpy(dtype=np.float64, na_value=np.nan)
        keep = ~np.isnan(v)
        if not keep.any():
            continue
        s, w, v = steps[keep], walls[keep], v[keep]
        order = np.argsort(s, kind="stable")
        s, w, v = s[order], w[order], v[order]
        last = np.r_[s[1:] != s[:-1], True]  # a repeated step: its last row wins
        series[str(col)] = ScalarSeries(s[last], w[last], v[last])
    if not series:
        raise ValueError(f"{path}: no numeric columns besides the step (nothing to import)")
    return ScalarLog(name=path.stem, source=str(path), series=series)


def import_table(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    mapping: Mapping[str, str] | None = None,
    step_column: str | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    rl: bool | None = None,
) -> Imported:
    """Import the table at ``path`` into the run ``out``
    (:class:`~diagnostics.offline.scalars.Imported`).

    Nothing is left at ``out`` when it fails. ``rl``: whether the log is of RL fine-tuning
    (``None``: the detectors tell from the series).
    """
    from diagnostics.offline.names import resolve_names
    from diagnostics.offline.output import check_output, staged_output

    check_output(out, overwrite=overwrite)
    log = read_table(path, step_column=step_column)
    mapping = dict(mapping or {})
    missing = [t for t in mapping if t not in log.series]
    if missing:
        raise ValueError(
            f"--map: column(s) {', '.join(map(repr, missing))} not found in {path}; its "
            f"numeric columns: {', '.join(list(log.series)[:30])}"
        )
    names = resolve_names(log.series, mapping)
    meta = {
        "name": Path(out).name,
        "config": {
            "source": "infoscope import-csv",
            "file": str(Path(path).absolute()),
            "tag_map": {t: m for t, m in names.items() if t != m},
        },
    }
    with staged_output(out, overwrite=overwrite) as stage:
        alerts = write_scalar_log(log, stage, names=names, meta=meta, progress=progress, rl=rl)
    return Imported(Path(out), log, names, alerts)
