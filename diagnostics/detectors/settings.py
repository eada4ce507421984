"""The thresholds of the online collapse detectors, one frozen dataclass with documented
defaults (``CollapseSettings``), and its construction from a plain mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CollapseSettings:
    """Thresholds of the collapse detectors (see the module docstring for each rule)."""

    #: consecutive records a condition must hold before it is reported
    patience: int = 2
    #: effective-rank series watched by ``rank_collapse``
    rank_metric: str = "repr/effective_rank"
    #: warning when ``erank - 1 <= rank_warn * (peak - 1)``
    rank_warn: float = 0.5
    #: collapsed when ``erank - 1 <= rank_collapse * (peak - 1)``
    rank_collapse: float = 0.1
    #: layers whose effective rank never reached this are not judged
    rank_min_peak: float = 2.0
    #: entropy series watched by ``entropy_collapse``
    entropy_metrics: tuple[str, ...] = ("repr/dse", "repr/von_neumann")
    #: warning when entropy <= entropy_warn * running peak
    entropy_warn: float = 0.5
    #: collapsed when entropy <= entropy_collapse * running peak
    entropy_collapse: float = 0.1
    #: entropies whose peak stayed below this (nats) are not judged
    entropy_min_peak: float = 1e-3
    #: fraction series watched by ``saturation``
    saturation_metrics: tuple[str, ...] = ("act/saturated_frac", "act/dead_frac")
    saturation_warn: float = 0.5
    saturation_collapse: float = 0.9
    #: the training-loss series used by ``memorisation``
    loss_metric: str = "train/loss"
    dsmi_metric: str = "repr/dsmi_y"
    #: DSMI records spanned by the memorisation window
    memorisation_window: int = 5
    #: relative fall of the loss over the window that counts as "still improving"
    memorisation_loss_drop: float = 0.2
    #: relative DSMI rise below which DSMI "stagnates"
    memorisation_dsmi_rise: float = 0.05
    #: floor (nats) of the DSMI scale in the relative rise
    memorisation_dsmi_floor: float = 0.01
    #: relative DSMI gain since the layer's first record above which it has "learned"
    memorisation_learned_gain: float = 0.25
    #: prefix of the information-plane series (``{prefix}{estimator}/I_XT``)
    info_plane_prefix: str = "info_plane/"
    #: relative fall of I(X;T) below its peak that marks compression
    compression_drop: float = 0.05

    def __post_init__(self) -> None:
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"patience: expected an integer >= 1, got {self.patience!r}")
        if not isinstance(self.memorisation_window, int) or self.memorisation_window < 2:
            raise ValueError(
                f"memorisation_window: expected an integer >= 2, got {self.memorisation_window!r}"
            )
        for name in (
            "rank_warn",
            "rank_collapse",
            "entropy_warn",
            "entropy_collapse",
            "saturation_warn",
            "saturation_collapse",
            "memorisation_loss_drop",
            "compression_drop",
        ):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v <= 1):
                raise ValueError(f"{name}: expected a number in [0, 1], got {v!r}")
        if not (
            isinstance(self.memorisation_learned_gain, (int, float))
            and self.memorisation_learned_gain >= 0
        ):
            raise ValueError(
                "memorisation_learned_gain: expected a number >= 0, got "
                f"{self.memorisation_learned_gain!r}"
            )
        if self.rank_collapse > self.rank_warn:
            raise ValueError(
                f"rank_collapse: expected <= rank_warn ({self.rank_warn}), got {self.rank_collapse}"
            )
        if self.entropy_collapse > self.entropy_warn:
            raise ValueError(
                f"entropy_collapse: expected <= entropy_warn ({self.entropy_warn}), "
                f"got {self.entropy_collapse}"
            )
        if self.saturation_collapse < self.saturation_warn:
            raise ValueError(
                f"saturation_collapse: expected >= saturation_warn ({self.saturation_warn}), "
                f"got {self.saturation_collapse}"
            )


def settings_from_mapping(values: Mapping[str, Any]) -> CollapseSettings:
    """Build settings from a dict (unknown keys raise, naming the known ones)."""
    known = set(CollapseSettings.__dataclass_fields__)
    unknown = [k for k in values if k not in known]
    if unknown:
        raise ValueError(
            f"collapse settings: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )
    return CollapseSettings(**values)
