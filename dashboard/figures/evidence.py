"""One alert's evidence as a chart: the series its rule read, the whole logged series under
it, the threshold it crossed and the step where it fired (the HTML report draws one per
alert; evidence layout in :mod:`diagnostics.schema`, "Alerts")."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.alerts import SEVERITY_COLORS
from dashboard.figures.common import PALETTE, convert_units, unit_suffix
from dashboard.figures.lines import line_figure


def _numbers(seq: Any) -> np.ndarray | None:
    if not isinstance(seq, (list, tuple)) or not seq:
        return None
    if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in seq):
        return None
    return np.array([np.nan if v is None else v for v in seq], dtype=np.float64)


def _finite(x: Any) -> float | None:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        return float(x)
    return None


def evidence_figure(
    alert: pd.Series,
    history: pd.DataFrame,
    metric: str | None,
    *,
    unit: str = "bits",
    max_points: int = 1000,
) -> go.Figure | None:
    """One alert's evidence: the series the rule read (thick), the whole logged series of
    that metric and layer (``history``: ``step, value``; faint), the threshold it crossed
    (dashed, with the side that fires) and the step where it fired (dotted, in the
    severity's colour); series the rule also read (``related``) on a right-hand axis.

    Evidence in the layout of :mod:`diagnostics.schema`; runs written before it (``series``
    instead of ``metric``) get their points drawn but no threshold (it was often a fraction
    rather than a value of the series). None when there is nothing to draw.
    """
    ev = alert["evidence"] if isinstance(alert["evidence"], Mapping) else {}
    legacy = "metric" not in ev
    steps, values = _numbers(ev.get("steps")), _numbers(ev.get("values"))
    if steps is None or values is None or len(steps) != len(values):
        steps = values = None
    related = {}
    for name, part in (ev.get("related") or {}).items():
        if isinstance(part, Mapping):
            r_steps, r_values = _numbers(part.get("steps")), _numbers(part.get("values"))
            if r_steps is not None and r_values is not None and len(r_steps) == len(r_values):
                related[str(name)] = (r_steps, r_values)
    if steps is None and history.empty and not related:
        return None
    label = metric or "series"
    parts = []
    if not history.empty:
        parts.append(("whole run", history["step"].to_numpy(), history["value"].to_numpy()))
    if steps is not None:
        parts.append(("evidence", steps, values))
    severity = str(alert["severity"])
    color = SEVERITY_COLORS.get(severity, "#444444")
    step = float(alert["step"])
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "series": name,
                    "step": s,
                    "value": convert_units(np.asarray(v, dtype=np.float64), label, unit),
                }
            )
            for name, s, v in parts
        ]
        or [pd.DataFrame({"series": [], "step": [], "value": []})],
        ignore_index=True,
    )
    layer = alert["layer"] if isinstance(alert["layer"], str) else None
    title = label + (f" · {layer}" if layer else "")
    fig = line_figure(
        frame,
        max_points=max_points,
        title=title,
        y_title=f"{label.rsplit('/', 1)[-1]}{unit_suffix(label, unit)}",
        highlight=["evidence"] if steps is not None else None,
        marks=[(step, color, f"{severity} at step {step:g}")],
        height=320,
        legend_below=True,
    )
    threshold = None if legacy else _finite(ev.get("threshold"))
    if threshold is not None and (steps is not None or not history.empty):
        shown = float(convert_units(threshold, label, unit))
        direction = ev.get("direction")
        fires = f", fires {direction}" if direction in ("below", "above") else ""
        fig.add_hline(
            y=shown,
            line=dict(color=color, width=1.5, dash="dash"),
            annotation=dict(text=f"threshold {shown:.4g}{fires}", font=dict(size=10)),
            annotation_position="bottom left",
        )
    for i, (name, (r_steps, r_values)) in enumerate(related.items()):
        fig.add_trace(
            go.Scatter(
                x=r_steps,
                y=convert_units(r_values, name, unit),
                mode="lines+markers",
                name=f"{name} (right axis)",
                yaxis="y2",
                marker=dict(size=4),
                line=dict(color=PALETTE[(i + 2) % len(PALETTE)], width=1.5, dash="dot"),
                hovertemplate=f"<b>{name}</b><br>step %{{x}}<br>value %{{y:.10g}}<extra></extra>",
            )
        )
    if related:
        fig.update_layout(
            yaxis2=dict(overlaying="y", side="right", showgrid=False, title=", ".join(related))
        )
    return fig
