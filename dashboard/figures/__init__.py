"""Figure builders: tidy pandas DataFrames in, plotly Figures out, one module per chart family.

Plain functions, testable without Streamlit and reused by the dashboard's pages and by
static reports. No Streamlit and no torch import here. Every builder is importable from
this package (``from dashboard.figures import line_figure``); the modules are
:mod:`~dashboard.figures.common` (units, colours, downsampling, smoothing, CSV),
:mod:`~dashboard.figures.lines`, :mod:`~dashboard.figures.info_plane`,
:mod:`~dashboard.figures.heatmaps` (heatmaps and distributions),
:mod:`~dashboard.figures.language_model`, :mod:`~dashboard.figures.alerts` and
:mod:`~dashboard.figures.evidence` (one alert's evidence, for the HTML report).

Conventions shared by the builders:

- Input frames are *tidy*: one row per (series, step) with a ``value`` column, or the
  wide frames documented per builder. What a builder is given is what its chart shows,
  so ``to_csv(frame)`` is the "download what the chart shows" file (at full resolution;
  the chart itself may be downsampled for drawing).
- Long series are downsampled for drawing with :func:`minmax_indices` (the first, last,
  minimum and maximum point of each bucket, "M4"), which keeps spikes visible where
  plain striding would drop them.
- Smoothing is TensorBoard's debiased exponential moving average (:func:`smooth_ema`);
  the raw curve is drawn faintly underneath the smoothed one.
- Hover labels carry the exact logged value (``%{customdata:.10g}``).
- Information quantities are stored in nats; :func:`convert_units` turns them into bits
  (the information-plane convention) for display.
"""

from __future__ import annotations

from dashboard.figures.alerts import (
    INDICATOR_INFO,
    SEVERITY_COLORS,
    SEVERITY_RANK,
    alert_explanation_figure,
    alert_key,
    alert_timeline_figure,
    evidence_metric,
    indicator_status,
    read_evidence,
)
from dashboard.figures.common import (
    LN2,
    PALETTE,
    REPRESENTATION_METRICS,
    REPRESENTATION_PREFIXES,
    convert_units,
    is_information_metric,
    minmax_indices,
    path_extremes_indices,
    smooth_ema,
    to_csv,
    unit_suffix,
)
from dashboard.figures.heatmaps import (
    distribution_heatmap_figure,
    heatmap_figure,
    histogram_grid,
)
from dashboard.figures.info_plane import (
    add_onset_markers,
    info_plane_estimators,
    info_plane_figure,
    info_plane_frame,
    onset_points,
)
from dashboard.figures.language_model import (
    QUANTILE_COLUMNS,
    attention_frame,
    attention_heatmap_figure,
    entropy_reward_figure,
    fit_entropy_reward,
    quantile_band_figure,
)
from dashboard.figures.lines import line_figure, small_multiples_figure

__all__ = [
    "add_onset_markers",
    "INDICATOR_INFO",
    "LN2",
    "PALETTE",
    "REPRESENTATION_METRICS",
    "REPRESENTATION_PREFIXES",
    "QUANTILE_COLUMNS",
    "SEVERITY_COLORS",
    "SEVERITY_RANK",
    "alert_explanation_figure",
    "evidence_metric",
    "alert_key",
    "alert_timeline_figure",
    "attention_frame",
    "attention_heatmap_figure",
    "convert_units",
    "distribution_heatmap_figure",
    "entropy_reward_figure",
    "fit_entropy_reward",
    "heatmap_figure",
    "histogram_grid",
    "indicator_status",
    "info_plane_estimators",
    "info_plane_figure",
    "info_plane_frame",
    "is_information_metric",
    "line_figure",
    "minmax_indices",
    "onset_points",
    "path_extremes_indices",
    "quantile_band_figure",
    "read_evidence",
    "small_multiples_figure",
    "smooth_ema",
    "to_csv",
    "unit_suffix",
]
