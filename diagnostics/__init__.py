"""infoscope diagnostics: estimators, collapse detectors, the run log, offline analysis, CLI.

=====================  ==========================================================================
``estimators/``        pure functions, tensor in -> 0-d tensor out (MI, entropy, spectral, LM)
``detectors/``         judgements over recorded series, written as alerts
``runlog/``            the run log (SQLite): ``RunWriter``, ``open_run``, ``list_runs``
``schema``             the vocabulary every layer shares: tables, metric names, indicators
``offline/``           saved activations, logits and training logs turned into runs
``cli/``               the ``infoscope`` command, one module per subcommand
``datasets``           generated data sets (the 12-bit task, bump images)
=====================  ==========================================================================

Public names are imported lazily so that ``import diagnostics`` stays cheap and does not
import torch: the dashboard reads run logs through this package without ever loading
PyTorch. Accessing an estimator imports its module (and torch) on first use.
"""

from __future__ import annotations

from importlib import import_module

from diagnostics import _moved
from diagnostics._version import __version__

_ESTIMATORS = (
    # mutual information and entropy
    "mutual_information", "entropy", "MI_METHODS", "ENTROPY_METHODS",
    "ksg_mi", "binning_mi", "kde_mi", "renyi_mi", "cs_mi", "cca_mi",
    "kl_entropy", "weighted_kl_entropy", "bsy_weights", "binning_entropy",
    "discrete_entropy", "kde_entropy", "renyi_entropy", "discretize",
    # spectral
    "diffusion_spectral_entropy", "diffusion_spectral_mutual_information",
    "cluster_reference", "median_sigma", "effective_rank", "von_neumann_entropy", "alpha_req",
    # information plane
    "information_plane", "compressed_mi",
    # language models
    "token_entropy", "token_stats", "token_logprobs", "topk_mass", "topk_entropy",
    "sum_squared_probs", "perplexity", "masked_mean", "masked_quantiles",
    "completion_entropy", "entropy_advantage_covariance", "positive_covariance_share",
    "top_covariance_tokens", "answer_entropy", "fit_entropy_reward", "attention_entropy",
)  # fmt: skip

_DETECTORS = (
    "CollapseDetector", "CollapseSettings", "CollapseAlert", "detect_collapse",
    "detect_token_entropy_collapse", "detect_over_optimisation", "detect_positive_covariance",
    "detect_attention_collapse", "detect_entropic_overload", "detect_lm_collapse",
)  # fmt: skip

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ("RunWriter", "RunReader", "RunLogError", "open_run", "list_runs", "summarize_runs"),
        "diagnostics.runlog",
    ),
    "SCHEMA_VERSION": "diagnostics.schema",
    **dict.fromkeys(_ESTIMATORS, "diagnostics.estimators"),
    **dict.fromkeys(_DETECTORS, "diagnostics.detectors"),
    "tishby_dataset": "diagnostics.datasets",
    "synthetic_mi_images": "diagnostics.datasets",
}

#: names that left this package, and where they live now
_GONE = dict.fromkeys(
    ("line_figure", "info_plane_figure", "heatmap_figure", "minmax_indices", "smooth_ema"),
    "dashboard.figures",
)

__all__ = ["__version__", *_EXPORTS]

_moved.install()


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        if name in _GONE:
            raise AttributeError(
                f"diagnostics.{name} moved with the other figure builders: "
                f"from {_GONE[name]} import {name}"
            )
        raise AttributeError(f"module 'diagnostics' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
