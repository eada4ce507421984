"""Read the plotly figure a Streamlit element carries (AppTest) back into Python values."""

from __future__ import annotations

import base64
import json

import numpy as np


def decode(value):
    """Plotly >= 6 writes numpy arrays as ``{"dtype", "bdata", "shape"}``; turn those (and
    plain lists) into numpy arrays, recursively for dicts."""
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            shape = value.get("shape")
            if shape:
                dims = [int(s) for s in str(shape).split(",")] if isinstance(shape, str) else shape
                arr = arr.reshape(dims)
            return arr
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(v, (int, float)) or v is None for v in value):
            return np.array([np.nan if v is None else v for v in value], dtype=float)
        return [decode(v) for v in value]
    return value


def specs(at) -> list[dict]:
    """Every plotly chart on the current AppTest page, decoded, in page order."""
    return [decode(json.loads(el.proto.spec)) for el in at.get("plotly_chart")]


def names(spec: dict) -> list[str]:
    return [t.get("name") for t in spec["data"]]
