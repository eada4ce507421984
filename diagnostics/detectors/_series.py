"""Input handling of the functional detector API (``detect_token_entropy_collapse(series)``
and kin): a Series, a 1-D array or the run log's scalars DataFrame in, a clean float Series
indexed by step out (the settings check the arguments).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

_SCALAR_COLUMNS = ("step", "metric", "value")


def _is_scalars_frame(data: Any) -> bool:
    return isinstance(data, pd.DataFrame) and all(c in data.columns for c in _SCALAR_COLUMNS)


def _clean(s: pd.Series, *, name: str) -> pd.Series:
    try:
        values = pd.to_numeric(s, errors="raise").astype(float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected numeric values, got dtype {s.dtype}") from None
    try:
        steps = pd.Index(values.index).astype(np.int64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: expected integer steps as the index, got {values.index.dtype}"
        ) from None
    values = pd.Series(values.to_numpy(), index=steps)
    values = values.groupby(level=0).mean().sort_index()
    return values[np.isfinite(values.to_numpy())]


def _frame_rows(frame: pd.DataFrame, metric: str, layer: Any = None) -> pd.DataFrame:
    rows = frame[frame["metric"] == metric]
    if "layer" in frame.columns:
        rows = rows[rows["layer"].isna()] if layer is None else rows[rows["layer"] == layer]
    return rows


def _series(data: Any, *, name: str, metric: str, required: bool = True) -> pd.Series | None:
    """Turn one input into a clean float Series indexed by int step (sorted, finite)."""
    if data is None:
        if required:
            raise ValueError(f"{name}: expected a series, got None")
        return None
    if isinstance(data, pd.DataFrame):
        if not _is_scalars_frame(data):
            raise ValueError(
                f"{name}: expected a DataFrame with columns step, metric, value (the run "
                f"log's scalars layout), got columns {list(data.columns)}"
            )
        rows = _frame_rows(data, metric)
        if rows.empty:
            if required:
                raise ValueError(f"{name}: the DataFrame has no rows for metric {metric!r}")
            return None
        s = pd.Series(rows["value"].to_numpy(dtype=float), index=rows["step"].to_numpy())
        return _clean(s, name=name)
    if isinstance(data, pd.Series):
        return _clean(data, name=name)
    if hasattr(data, "detach"):  # torch tensor
        data = data.detach().cpu().numpy()
    if isinstance(data, (np.ndarray, list, tuple)):
        arr = np.asarray(data)
        if arr.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D series, got shape {arr.shape}")
        return _clean(pd.Series(arr), name=name)
    raise TypeError(
        f"{name}: expected a pandas Series, a 1-D array or a scalars DataFrame, "
        f"got {type(data).__name__}"
    )
