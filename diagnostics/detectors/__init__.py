"""Collapse detectors: judgements over recorded metric series, written as alerts.

One module per indicator family: ``representation`` (rank collapse, entropy collapse,
saturation), ``memorisation``, ``compression`` (compression onset of the information plane),
``lm`` (token-entropy collapse, over-optimisation, positive covariance) and ``attention``
(attention entropy collapse, entropic overload). ``base`` holds the :class:`Alert` record and
the detector interface, ``settings`` the thresholds, ``online`` the :class:`CollapseDetector`
that the probes run after each record and :func:`detect_collapse` that replays a recorded run.
Detectors read series only: they import no torch and no estimator.
"""

from __future__ import annotations

from diagnostics.detectors.attention import detect_attention_collapse, detect_entropic_overload
from diagnostics.detectors.base import Alert
from diagnostics.detectors.lm import (
    detect_lm_collapse,
    detect_over_optimisation,
    detect_positive_covariance,
    detect_token_entropy_collapse,
)
from diagnostics.detectors.online import (
    DETECTORS,
    CollapseAlert,
    CollapseDetector,
    detect_collapse,
)
from diagnostics.detectors.settings import CollapseSettings, settings_from_mapping

__all__ = [
    "DETECTORS",
    "Alert",
    "CollapseAlert",
    "CollapseDetector",
    "CollapseSettings",
    "detect_attention_collapse",
    "detect_collapse",
    "detect_entropic_overload",
    "detect_lm_collapse",
    "detect_over_optimisation",
    "detect_positive_covariance",
    "detect_token_entropy_collapse",
    "settings_from_mapping",
]
