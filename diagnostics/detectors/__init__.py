"""Collapse detectors: judgements over recorded metric series, written as alerts.

Every detector is online (fed the rows of each recorded step, it keeps a little state) and
returns the same :class:`Alert` record on one severity scale, ``info`` < ``warning`` <
``critical``. One module per indicator family:

=====================  ==========================================================================
``representation``     rank collapse, entropy collapse, saturation and dead units
``memorisation``       the loss falls while DSMI with the labels stays flat
``compression``        compression onset of the information plane
``divergence``         the training loss diverges
``lm``                 token-entropy collapse, over-optimisation, positive covariance (RL, DPO)
``attention``          attention entropy collapse (deep layers), entropic overload (early)
=====================  ==========================================================================

``base`` holds the alert record, the run :class:`Context` and the detector interface,
``settings`` every threshold, ``online`` the :class:`CollapseDetector` the probes run after each
record, ``replay`` :func:`detect_collapse` (a recorded run through the same detectors) and the
functional forms over one series. Detectors read series only: they import no torch and no
estimator.
"""

from __future__ import annotations

from diagnostics.detectors.base import Alert, Context, Detector
from diagnostics.detectors.online import DETECTORS, CollapseAlert, CollapseDetector
from diagnostics.detectors.replay import (
    detect_attention_collapse,
    detect_collapse,
    detect_entropic_overload,
    detect_lm_collapse,
    detect_over_optimisation,
    detect_positive_covariance,
    detect_token_entropy_collapse,
)
from diagnostics.detectors.settings import CollapseSettings, settings_from_mapping

__all__ = [
    "DETECTORS",
    "Alert",
    "CollapseAlert",
    "CollapseDetector",
    "CollapseSettings",
    "Context",
    "Detector",
    "detect_attention_collapse",
    "detect_collapse",
    "detect_entropic_overload",
    "detect_lm_collapse",
    "detect_over_optimisation",
    "detect_positive_covariance",
    "detect_token_entropy_collapse",
    "settings_from_mapping",
]
