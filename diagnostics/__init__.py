"""infoscope diagnostics: estimators, collapse detectors, the run log, figures, CLI.

Public names are imported lazily so that ``import diagnostics`` stays cheap and does
not import torch: the dashboard reads run logs through this package without ever
loading PyTorch. Accessing an estimator imports its module (and torch) on first use.
"""

from __future__ import annotations

from importlib import import_module

from diagnostics._version import __version__

# public name -> module that defines it (one group per module; keep groups apart)
_EXPORTS: dict[str, str] = {
    # run log
    "RunWriter": "diagnostics.runlog",
    "RunReader": "diagnostics.runlog",
    "RunLogError": "diagnostics.runlog",
    "open_run": "diagnostics.runlog",
    "list_runs": "diagnostics.runlog",
    "summarize_runs": "diagnostics.runlog",
    "SCHEMA_VERSION": "diagnostics.schema",
    #
    # mutual information and entropy
    "mutual_information": "diagnostics.mi",
    "entropy": "diagnostics.mi",
    "ksg_mi": "diagnostics.mi",
    "binning_mi": "diagnostics.mi",
    "kde_mi": "diagnostics.mi",
    "renyi_mi": "diagnostics.mi",
    "cs_mi": "diagnostics.mi",
    "cca_mi": "diagnostics.mi",
    "kl_entropy": "diagnostics.mi",
    "weighted_kl_entropy": "diagnostics.mi",
    "bsy_weights": "diagnostics.mi",
    "binning_entropy": "diagnostics.mi",
    "discrete_entropy": "diagnostics.mi",
    "kde_entropy": "diagnostics.mi",
    "renyi_entropy": "diagnostics.mi",
    "discretize": "diagnostics.mi",
    "MI_METHODS": "diagnostics.mi",
    "ENTROPY_METHODS": "diagnostics.mi",
    #
    # spectral diagnostics
    "diffusion_spectral_entropy": "diagnostics.spectral",
    "diffusion_spectral_mutual_information": "diagnostics.spectral",
    "cluster_reference": "diagnostics.spectral",
    "median_sigma": "diagnostics.spectral",
    "effective_rank": "diagnostics.spectral",
    "von_neumann_entropy": "diagnostics.spectral",
    "alpha_req": "diagnostics.spectral",
    #
    # information plane
    "information_plane": "diagnostics.infoplane",
    "tishby_dataset": "diagnostics.datasets",
    "synthetic_mi_images": "diagnostics.datasets",
    "compressed_mi": "diagnostics.compressed",
    #
    # language models
    "token_entropy": "diagnostics.lm",
    "token_stats": "diagnostics.lm",
    "token_logprobs": "diagnostics.lm",
    "topk_mass": "diagnostics.lm",
    "topk_entropy": "diagnostics.lm",
    "sum_squared_probs": "diagnostics.lm",
    "perplexity": "diagnostics.lm",
    "masked_mean": "diagnostics.lm",
    "masked_quantiles": "diagnostics.lm",
    "completion_entropy": "diagnostics.lm",
    "entropy_advantage_covariance": "diagnostics.lm",
    "positive_covariance_share": "diagnostics.lm",
    "top_covariance_tokens": "diagnostics.lm",
    "answer_entropy": "diagnostics.lm",
    "fit_entropy_reward": "diagnostics.lm",
    "attention_entropy": "diagnostics.lm",
    "detect_token_entropy_collapse": "diagnostics.lm_collapse",
    "detect_over_optimisation": "diagnostics.lm_collapse",
    "detect_positive_covariance": "diagnostics.lm_collapse",
    "detect_attention_collapse": "diagnostics.lm_collapse",
    "detect_entropic_overload": "diagnostics.lm_collapse",
    "detect_lm_collapse": "diagnostics.lm_collapse",
    #
    # figure builders (DataFrame -> plotly Figure; used by the dashboard)
    "line_figure": "diagnostics.figures",
    "info_plane_figure": "diagnostics.figures",
    "heatmap_figure": "diagnostics.figures",
    "minmax_indices": "diagnostics.figures",
    "smooth_ema": "diagnostics.figures",
    #
    # online collapse detectors (representation, saturation, memorisation, info plane)
    "CollapseDetector": "diagnostics.collapse",
    "CollapseSettings": "diagnostics.collapse",
    "CollapseAlert": "diagnostics.collapse",
    "detect_collapse": "diagnostics.collapse",
    #
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'diagnostics' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
