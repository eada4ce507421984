"""Pick a mutual-information or entropy estimator by name.

    mutual_information(x, y, *, method="ksg", base=math.e, **options)
    entropy(x, *, method="kl", base=math.e, **options)

Each method is one public function in its family's module, which holds its options, formula
and references: ``knn`` (``ksg_mi``, ``kl_entropy``, ``weighted_kl_entropy``), ``binning``
(``binning_mi``, ``binning_entropy``, ``discrete_entropy``, ``discretize``), ``kde``
(``kde_mi``, ``kde_entropy``), ``kernel`` (``renyi_mi``, ``renyi_entropy``, ``cs_mi``),
``gaussian`` (``cca_mi``). See ``_common`` for the conventions they share.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from diagnostics._validate import check_choice
from diagnostics.estimators.binning import binning_entropy, binning_mi, discrete_entropy
from diagnostics.estimators.gaussian import cca_mi
from diagnostics.estimators.kde import kde_entropy, kde_mi
from diagnostics.estimators.kernel import cs_mi, renyi_entropy, renyi_mi
from diagnostics.estimators.knn import kl_entropy, ksg_mi, weighted_kl_entropy

__all__ = ["MI_METHODS", "ENTROPY_METHODS", "mutual_information", "entropy"]


MI_METHODS = ("ksg", "binning", "kde", "renyi", "cs", "cca")
ENTROPY_METHODS = ("kl", "weighted_kl", "binning", "discrete", "kde", "renyi")


_MI_FUNCS = {
    "ksg": ksg_mi,
    "binning": binning_mi,
    "kde": kde_mi,
    "renyi": renyi_mi,
    "cs": cs_mi,
    "cca": cca_mi,
}

_ENTROPY_FUNCS = {
    "kl": kl_entropy,
    "weighted_kl": weighted_kl_entropy,
    "binning": binning_entropy,
    "discrete": discrete_entropy,
    "kde": kde_entropy,
    "renyi": renyi_entropy,
}


def mutual_information(
    x: Any, y: Any, *, method: str = "ksg", base: float = math.e, **options: Any
) -> torch.Tensor:
    """Mutual information I(X; Y) by the estimator ``method``, as a 0-d tensor on x's device.

    ``method``: ``"ksg"`` (:func:`ksg_mi`; Ross's mixed estimator for integer labels),
    ``"binning"`` (:func:`binning_mi`), ``"kde"`` (:func:`kde_mi`), ``"renyi"``
    (:func:`renyi_mi`), ``"cs"`` (:func:`cs_mi`), ``"cca"`` (:func:`cca_mi`).
    ``options`` go to that function (keyword-only); ``base=2`` gives bits.

    >>> y = torch.tensor([0, 1, 0, 1])
    >>> float(mutual_information(torch.tensor([[0.5], [-0.5], [0.5], [-0.5]]), y,
    ...                          method="binning", base=2))
    1.0
    """
    method = check_choice(method, name="method", choices=MI_METHODS)
    return _MI_FUNCS[method](x, y, base=base, **options)


def entropy(x: Any, *, method: str = "kl", base: float = math.e, **options: Any) -> torch.Tensor:
    """Entropy H(X) by the estimator ``method``, as a 0-d tensor on x's device.

    ``method``: ``"kl"`` (:func:`kl_entropy`), ``"weighted_kl"``
    (:func:`weighted_kl_entropy`), ``"binning"`` (:func:`binning_entropy`),
    ``"discrete"`` (:func:`discrete_entropy`), ``"kde"`` (:func:`kde_entropy`),
    ``"renyi"`` (:func:`renyi_entropy`). The continuous ones are differential
    entropies (can be negative); ``given=labels`` gives H(X | Y) where supported.

    >>> float(entropy(torch.tensor([0, 1, 2, 3]), method="discrete", base=2))
    2.0
    """
    method = check_choice(method, name="method", choices=ENTROPY_METHODS)
    return _ENTROPY_FUNCS[method](x, base=base, **options)
