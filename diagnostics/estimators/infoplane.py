"""The information plane: I(X; T) and I(T; Y) for every layer T of a network.

:func:`information_plane` takes the activations of several layers on the same n inputs
and returns one row per layer. It picks an estimator from :mod:`diagnostics.estimators.mi` (or the
compression-based one of :mod:`diagnostics.estimators.compressed`) and never estimates anything
itself. References: Shwartz-Ziv & Tishby (2017, "Opening the black box of deep neural
networks via information"; binning), Saxe et al. (2018, "On the information bottleneck
theory of deep learning"; KDE bounds and bin sizes for ReLU), Butakov et al. (2023;
compression), Kraskov et al. (2004; KSG).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

from diagnostics._validate import (
    as_labels,
    as_samples,
    check_base,
    check_choice,
    check_float,
    check_same_n,
    to_base,
)

__all__ = ["information_plane", "INFOPLANE_METHODS"]

INFOPLANE_METHODS = ("binning", "kde", "ksg", "compressed")

_BINNING_OPTIONS = ("bins", "bin_size", "value_range")
_KDE_OPTIONS = ("noise_variance", "bound", "chunk_size")
_COMPRESSED_OPTIONS = (
    "dim",
    "x_dim",
    "compressor",
    "k",
    "noise_to_signal",
    "weighted",
    "max_features",
    "seed",
    "ae_epochs",
    "ae_hidden",
    "ae_batch_size",
    "ae_lr",
)


def _check_options(method: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"unexpected option(s) {', '.join(map(repr, unknown))} for method={method!r}; "
            f"it takes {', '.join(allowed)}"
        )


def _input_ids(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """One integer symbol per distinct input row; and whether every row is distinct."""
    _, inverse = torch.unique(x, dim=0, return_inverse=True)
    distinct = int(inverse.max()) + 1 == x.shape[0]
    return inverse.reshape(-1), distinct


# Each method is a class: ``__init__`` computes what every layer shares (the partition of
# X and H(X), the label terms, the compressed X) once per call; ``layer(name, t)`` returns
# the layer's (I(X;T), I(T;Y)) in nats. A layer's numbers never depend on the other layers
# passed with it.


class _Binning:
    def __init__(self, x, y, options):
        from diagnostics.estimators.binning import _plugin_entropy

        self.options = options
        self.ids, self.distinct = _input_ids(x)
        self.y = y
        self.h_x: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self.h_y: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._plugin_entropy = _plugin_entropy

    def _given(self, cache, labels, device):
        """The labels on ``device`` and their plug-in entropy, once per device."""
        got = cache.get(device)
        if got is None:
            lab = labels.to(device)
            got = cache[device] = (lab, self._plugin_entropy(lab[:, None]))
        return got

    def layer(self, name, t):
        from diagnostics.estimators.binning import _entropy_from_counts, _row_ids, discretize

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            codes = discretize(t, **self.options)
        for w in caught:  # re-issue naming the layer (clipping is never silent)
            msg = str(w.message)
            msg = msg[3:] if msg.startswith("x: ") else msg
            warnings.warn(f"activations[{name!r}]: {msg}", w.category, stacklevel=3)
        # the distinct binned rows once: H(T) and both conditionals H(T | .) = H(T, .) - H(.)
        ia, counts = _row_ids(codes)
        h_t = _entropy_from_counts(counts)
        # I(X; T) = H(T) - H(T | X); H(T | X) = 0 when every input is distinct (T = f(X))
        if self.distinct:
            i_xt = h_t
        else:
            ids, h_x = self._given(self.h_x, self.ids, codes.device)
            i_xt = h_t - (self._plugin_entropy(torch.stack([ia, ids], dim=1)) - h_x)
        lab, h_y = self._given(self.h_y, self.y, codes.device)
        i_ty = h_t - (self._plugin_entropy(torch.stack([ia, lab], dim=1)) - h_y)
        return i_xt, i_ty


class _KDE:
    def __init__(self, x, y, options):
        from diagnostics.estimators.kde import _is_constant, _samples

        self.s2 = check_float(options.get("noise_variance", 1e-3), name="noise_variance",
                              positive=True)  # fmt: skip
        self.bound = check_choice(
            options.get("bound", "upper"), name="bound", choices=("upper", "lower")
        )
        self.chunk = options.get("chunk_size")
        self.x, self.y = x, y
        self.x_constant: dict[torch.device, bool] = {}
        self.y_constant = _is_constant(y)
        self._samples, self._is_constant = _samples, _is_constant
        self.groups: dict[torch.device, Any] = {}

    def _h(self, t):
        from diagnostics.estimators.kde import _kde_h

        return _kde_h(t, self.s2, self.bound, self.chunk)

    def layer(self, name, t):
        # what kde_mi(x, t) and kde_mi(t, y) compute, with H_up(T) and the label groups once
        from diagnostics.estimators._common import _zero

        device = t.device
        t = self._samples(t, f"activations[{name!r}]", device)
        if device not in self.x_constant:
            self.x_constant[device] = self._is_constant(
                self._samples(self.x.to(device), "x", device)
            )
        t_constant = self._is_constant(t)
        x_zero = self.x_constant[device] or t_constant
        y_zero = t_constant or self.y_constant
        h = None if x_zero and y_zero else self._h(t)
        if x_zero:
            i_xt = _zero(device)
        else:
            h_noise = 0.5 * t.shape[1] * (math.log(2.0 * math.pi * self.s2) + 1.0)
            i_xt = h - h_noise
        i_ty = _zero(device) if y_zero else h - self._conditional(t)
        return i_xt.to(torch.float64), i_ty.to(torch.float64)

    def _conditional(self, t):
        """sum_y p(y) H_up(T | Y = y), the label groups computed once per device."""
        from diagnostics.estimators._common import _group_indices, _zero

        got = self.groups.get(t.device)
        if got is None:
            groups, counts = _group_indices(self.y.to(t.device))
            got = self.groups[t.device] = (groups, counts.tolist())
        groups, counts = got
        n = t.shape[0]
        total = _zero(t.device)
        for idx, c in zip(groups, counts):
            total = total + (c / n) * self._h(t[idx])
        return total


class _KSG:
    def __init__(self, x, y, options):
        self.x, self.y, self.options = x, y, options

    def layer(self, name, t):
        from diagnostics.estimators.knn import ksg_mi

        return (
            ksg_mi(self.x.to(t.device), t, **self.options),
            ksg_mi(t, self.y.to(t.device), **self.options),
        )


class _Compressed:
    def __init__(self, x, y, options):
        from diagnostics.estimators import compressed as cmp

        opts = dict(options)
        dim = opts.pop("dim", 2)
        x_dim = opts.pop("x_dim", dim)
        compressor = opts.pop("compressor", "pca")
        k = opts.pop("k", 5)
        noise = opts.pop("noise_to_signal", 1e-3)
        weighted = bool(opts.pop("weighted", True))
        max_features = opts.pop("max_features", 512)
        seed = opts.pop("seed", 0)
        dim, compressor, k, noise, max_features, seed = cmp._check_options(
            dim, compressor, k, noise, max_features, seed
        )
        self.cmp, self.y = cmp, y
        self.dim, self.k, self.weighted, self.seed = dim, k, weighted, seed
        self.ae = opts  # only autoencoder options remain
        self.common = dict(compressor=compressor, noise_to_signal=noise, max_features=max_features)
        # X is compressed once and reused for every layer
        self.px = cmp._prepare(x, name="x", dim=x_dim, seed=seed, ae_options=self.ae, **self.common)

    def layer(self, name, t):
        cmp = self.cmp
        # every layer's compressor is seeded alike (seed + 1), whatever the other layers
        pt = cmp._prepare(t, name=f"activations[{name!r}]", dim=self.dim, seed=self.seed + 1,
                          ae_options=self.ae, **self.common)  # fmt: skip
        px = self.px
        if px.z is not None and pt.z is not None and px.z.device != pt.z.device:
            px = cmp._Prepared(px.z.to(pt.z.device))
        i_xt = cmp._mi_prepared(px, pt, k=self.k, weighted=self.weighted, seed=self.seed)
        lab = self.y.to(pt.z.device) if pt.z is not None else self.y
        i_ty = cmp._mi_prepared(pt, lab, k=self.k, weighted=self.weighted, seed=self.seed)
        return i_xt, i_ty


_METHODS = {
    "binning": (_Binning, _BINNING_OPTIONS),
    "kde": (_KDE, _KDE_OPTIONS),
    "ksg": (_KSG, None),  # options go to diagnostics.estimators.knn.ksg_mi as they are
    "compressed": (_Compressed, _COMPRESSED_OPTIONS),
}

ON_ERROR = ("raise", "collect")


def information_plane(
    activations: Mapping[str, Any],
    x: Any,
    y: Any,
    *,
    method: str = "binning",
    base: float = math.e,
    on_error: str = "raise",
    **options: Any,
) -> pd.DataFrame:
    """I(X; T) and I(T; Y) for every layer T: a DataFrame with columns ``layer, I_XT, I_TY``.

    Parameters
    ----------
    activations:
        ``layer name -> (n, d)`` activations (torch tensors or numpy arrays; ``(n,)``
        for a one-unit layer), all on the same n inputs, in the order the rows should
        come out.
    x:
        The n inputs, ``(n, d_x)``.
    y:
        The n class labels, 1-D integers.
    method:
        ``"binning"`` (default), ``"kde"``, ``"ksg"`` or ``"compressed"``; see below.
    base:
        Logarithm base of the result: nats (default) or ``base=2`` for bits.
    on_error:
        ``"raise"`` (default): a layer whose estimate fails raises. ``"collect"``: such a
        layer gets NaN in both columns and its exception in ``df.attrs["errors"]``
        (``{layer: exception}``), and the other layers are estimated as usual (what a
        training monitor needs). Errors in ``x``, ``y`` or the options raise either way.
    options:
        Passed to the estimator (keyword-only; unknown names raise ``TypeError``).

    What every layer shares is computed once per call: the partition of X into distinct
    inputs and H(X), the label terms (H(Y), the class groups), the compressed X; per
    layer the binned rows' partition serves H(T) and both conditionals, and the KDE bound
    H_up(T) serves both I(X; T) and I(T; Y). A layer's numbers do not depend on the other
    layers passed with it.

    Methods
    -------
    ``"binning"`` -- Shwartz-Ziv & Tishby (2017), by default exactly as their IDNNs code:
    every activation is mapped to its bin among ``bins=30`` edges
    ``linspace(-1, 1, 30)`` (``value_range=(-1, 1)``); each distinct binned row of a
    layer is one value of T (:func:`diagnostics.estimators.binning.discretize`,
    :func:`diagnostics.estimators.binning.discrete_entropy`). Then ``I(T; Y) = H(T) - H(T | Y)`` and
    ``I(X; T) = H(T) - H(T | X)``, which is ``H(T)`` when every input row is distinct
    (T is a deterministic function of X; the 12-bit task). Activations outside the
    edges are clipped into the first/last bin **with a RuntimeWarning** naming the
    layer. For unbounded activations (ReLU) pass Saxe et al.'s ``bin_size=0.07``
    (code ``floor(t / 0.07)``, no range), or ``value_range`` covering the layer.
    Plug-in entropies of the sample: exact for the finite input set, but the numbers
    depend on the bin size (too fine: I(X;T) = log n for every layer).

    ``"kde"`` -- Kolchinsky-Tracey upper bound on a noisy layer ``T + N(0, s2 I)``
    (Saxe et al. 2018; :func:`diagnostics.estimators.kde.kde_mi`; ``noise_variance`` s2 = 1e-3,
    ``bound``, ``chunk_size``): ``I(X; T) = H_up(T) - H(T | X)`` with the noise
    entropy for H(T|X), ``I(T; Y) = H_up(T) - sum_y p(y) H_up(T | y)``. O(n^2 d) time.

    ``"ksg"`` -- Kraskov et al. (2004) between X and T, and Ross's (2014) mixed
    estimator for T and the labels (:func:`diagnostics.estimators.knn.ksg_mi`; options such as
    ``k`` go there). Poor for deterministic layers of discrete inputs (duplicate
    points; the value mostly reflects the tie-breaking noise).

    ``"compressed"`` -- Butakov et al. (2023), :mod:`diagnostics.estimators.compressed`: X and
    every layer compressed to ``dim=2`` dimensions (``x_dim`` for X, default ``dim``;
    ``compressor="pca"`` or ``"autoencoder"``), noise-to-signal ``1e-3`` noise added,
    whitened, weighted Kozachenko-Leonenko entropies with ``k=5``. X is compressed once
    and reused for every layer. A layer wider than ``max_features`` (512) is projected
    by randomised PCA first (the range finder of ``torch.pca_lowrank``, centred
    implicitly: time O(10 n D (dim + 8)), memory O((n + D)(dim + 8)) beyond the
    activations, which are not copied; measured: n = 500 x 10^6 float32 features in
    1-2 minutes on one loaded CPU core with ~0.1 GB extra, instead of the O(D^2)
    memory of exact PCA). Seeded by ``seed`` (default 0). Meant for
    continuous, high-dimensional data (images, wide layers); on a finite input set
    with a deterministic network (the 12-bit task) the compressed variables are a few
    thousand points blurred only by the 1e-3 noise, and the numbers mostly reflect
    that noise (I(X;T) can even come out negative): use binning or kde there.

    Returns
    -------
    pandas.DataFrame with columns ``layer`` (str), ``I_XT``, ``I_TY`` (floats in
    ``base``; this converts the 0-d tensors with one device sync per value), one row
    per layer in the order given; ``df.attrs`` holds ``method`` and ``base``.

    >>> from diagnostics.datasets import tishby_dataset
    >>> x, y = tishby_dataset()
    >>> w = torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
    >>> acts = {"hidden": torch.tanh(x @ w), "constant": torch.zeros(4096, 2)}
    >>> df = information_plane(acts, x, y, base=2)
    >>> list(df.columns), df.loc[1, ["I_XT", "I_TY"]].tolist()
    (['layer', 'I_XT', 'I_TY'], [0.0, 0.0])
    >>> bool(0 < df.loc[0, "I_TY"] <= df.loc[0, "I_XT"] <= 12)
    True
    """
    method = check_choice(method, name="method", choices=INFOPLANE_METHODS)
    base = check_base(base)
    on_error = check_choice(on_error, name="on_error", choices=ON_ERROR)
    cls, allowed = _METHODS[method]
    if allowed is not None:
        _check_options(method, options, allowed)
    if not isinstance(activations, Mapping):
        raise TypeError(
            "activations: expected a dict of layer name -> (n, d) array, got "
            f"{type(activations).__name__}"
        )
    if len(activations) == 0:
        raise ValueError("activations: expected at least one layer, got an empty dict")
    xt = as_samples(x, name="x")
    yt = as_labels(y, name="y", device=xt.device)
    check_same_n(x=xt, y=yt)
    from diagnostics.estimators.compressed import _as_wide_samples

    shared = cls(xt, yt, options)  # what every layer shares, once
    errors: dict[str, BaseException] = {}
    rows = []
    for name, a in activations.items():
        name = str(name)
        try:
            t = _as_wide_samples(a, name=f"activations[{name!r}]")
            check_same_n(x=xt, **{f"activations[{name!r}]": t})
            i_xt, i_ty = shared.layer(name, t)
            rows.append((name, float(to_base(i_xt, base)), float(to_base(i_ty, base))))
        except Exception as exc:
            if on_error == "raise":
                raise
            errors[name] = exc
            rows.append((name, math.nan, math.nan))
    df = pd.DataFrame(
        {
            "layer": [r[0] for r in rows],
            "I_XT": [r[1] for r in rows],
            "I_TY": [r[2] for r in rows],
        }
    )
    df.attrs.update(method=method, base=base)
    if on_error == "collect":
        df.attrs["errors"] = errors
    return df
