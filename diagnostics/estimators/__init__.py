"""The estimators: pure functions, tensor (or numpy array) in, 0-d tensor out, on the input's
device, in nats unless ``base=2``. One module per family, each naming its formula's source:

========================  =====================================================================
``mi``                    ``mutual_information`` / ``entropy``: pick an estimator by name
``knn``                   KSG and Ross mutual information, Kozachenko-Leonenko entropy (k-NN)
``binning``               plug-in entropy, binning MI (Shwartz-Ziv & Tishby; Saxe et al.)
``kde``                   KDE upper/lower bounds (Kolchinsky & Tracey; Saxe et al.)
``kernel``                matrix-based Renyi entropy and MI, Cauchy-Schwarz QMI
``gaussian``              Gaussian MI from canonical correlations
``diffusion``, ``dsmi``   diffusion spectral entropy and mutual information (Liao et al.)
``rank``                  effective rank, von Neumann entropy, alpha-ReQ
``tokens``                token entropy, top-k mass/entropy, sum p^2, log-probs (chunked)
``rl``                    entropy-advantage covariance, completion/answer entropy, R(H) fit
``attention``             attention entropy per head, raw and normalised
``compressed``            compression-based IB (Butakov et al. 2023)
``infoplane``             the information plane of many layers at once
========================  =====================================================================

Estimators know nothing of hooks, runs, files or the dashboard: they import only each other
and ``diagnostics._validate``. Private kernels live in ``_common``, ``_knn`` and ``_lm_inputs``.
"""

from __future__ import annotations

from diagnostics.estimators.attention import attention_entropy
from diagnostics.estimators.binning import (
    binning_entropy,
    binning_mi,
    discrete_entropy,
    discretize,
)
from diagnostics.estimators.compressed import compress, compressed_mi
from diagnostics.estimators.diffusion import diffusion_spectral_entropy, median_sigma
from diagnostics.estimators.dsmi import (
    cluster_reference,
    diffusion_spectral_mutual_information,
)
from diagnostics.estimators.gaussian import cca_mi
from diagnostics.estimators.infoplane import INFOPLANE_METHODS, information_plane
from diagnostics.estimators.kde import kde_entropy, kde_mi
from diagnostics.estimators.kernel import cs_mi, renyi_entropy, renyi_mi
from diagnostics.estimators.knn import bsy_weights, kl_entropy, ksg_mi, weighted_kl_entropy
from diagnostics.estimators.mi import ENTROPY_METHODS, MI_METHODS, entropy, mutual_information
from diagnostics.estimators.rank import alpha_req, effective_rank, von_neumann_entropy
from diagnostics.estimators.rl import (
    answer_entropy,
    completion_entropy,
    entropy_advantage_covariance,
    fit_entropy_reward,
    positive_covariance_share,
    top_covariance_tokens,
)
from diagnostics.estimators.tokens import (
    masked_mean,
    masked_quantiles,
    perplexity,
    sum_squared_probs,
    token_entropy,
    token_logprobs,
    token_stats,
    topk_entropy,
    topk_mass,
)

__all__ = [
    "ENTROPY_METHODS",
    "INFOPLANE_METHODS",
    "MI_METHODS",
    "alpha_req",
    "answer_entropy",
    "attention_entropy",
    "binning_entropy",
    "binning_mi",
    "bsy_weights",
    "cca_mi",
    "cluster_reference",
    "completion_entropy",
    "compress",
    "compressed_mi",
    "cs_mi",
    "diffusion_spectral_entropy",
    "diffusion_spectral_mutual_information",
    "discrete_entropy",
    "discretize",
    "effective_rank",
    "entropy",
    "entropy_advantage_covariance",
    "fit_entropy_reward",
    "information_plane",
    "kde_entropy",
    "kde_mi",
    "kl_entropy",
    "ksg_mi",
    "masked_mean",
    "masked_quantiles",
    "median_sigma",
    "mutual_information",
    "perplexity",
    "positive_covariance_share",
    "renyi_entropy",
    "renyi_mi",
    "sum_squared_probs",
    "token_entropy",
    "token_logprobs",
    "token_stats",
    "top_covariance_tokens",
    "topk_entropy",
    "topk_mass",
    "von_neumann_entropy",
    "weighted_kl_entropy",
]
