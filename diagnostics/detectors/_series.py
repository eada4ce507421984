"""Input handling of the functional detector API (``detect_token_entropy_collapse(series)``
and kin): a Series, a 1-D array or the run log's scalars DataFrame in, a clean float Series
indexed by step out, and the argument checks (this package imports no torch, so it cannot use
``diagnostics._validate``; these mirror its messages).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd

_SCALAR_COLUMNS = ("step", "metric", "value")


def _check_int(value: Any, *, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def _check_float(value: Any, *, name: str, minimum: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not (minimum <= value <= maximum):
        raise ValueError(f"{name}: expected a number in [{minimum}, {maximum}], got {value}")
    return value


# --------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------


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


def _check_fraction(value: Any, *, name: str, open_low: bool = True) -> float:
    v = _check_float(value, name=name, minimum=0.0, maximum=1.0)
    if open_low and v == 0.0:
        raise ValueError(f"{name}: expected a number in (0, 1], got {v}")
    return v
