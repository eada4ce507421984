"""Entropy dynamics of RL fine-tuning: entropy-advantage covariance, completion- and
answer-level entropy, and the entropy-reward fit R = -a exp(H) + b.

Sources: Cui et al. (2025), "The entropy mechanism of reinforcement learning for reasoning
language models", arXiv:2505.22617 (cov_i = (A_i - mean A)(log pi_i - mean log pi), Clip-Cov /
KL-Cov, the fitted law and its ceiling -a + b); Wu et al. (2025), arXiv:2507.14843 (token-level
vs answer-level entropy).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch

from diagnostics._validate import (
    ArrayLike,
    as_tensor,
    check_base,
    check_float,
    check_int,
    is_integer_dtype,
    to_base,
)
from diagnostics.estimators._lm_inputs import _as_mask, _as_values, _valid
from diagnostics.estimators.tokens import masked_mean


def completion_entropy(entropies: ArrayLike, mask: ArrayLike | None = None) -> torch.Tensor:
    """Per-completion entropy: the mask-mean of token entropies over the last dimension.

    ``entropies`` is ``(..., seq)``, e.g. :func:`token_entropy` of ``(batch, seq, vocab)``
    logits; returns ``(...)``. Wu et al. (2025, arXiv:2507.14843) observe that RLVR can raise
    this while lowering :func:`answer_entropy`.

    >>> completion_entropy(torch.tensor([[1.0, 3.0, float("nan")]]))
    tensor([2.])
    """
    return masked_mean(entropies, mask, dim=-1)


def entropy_advantage_covariance(
    logprobs: ArrayLike, advantages: ArrayLike, *, mask: ArrayLike | None = None
) -> torch.Tensor:
    """Per-token covariance term of the entropy mechanism (Cui et al. 2025, arXiv:2505.22617).

    ``cov_i = (A_i - mean A) (log pi_i - mean log pi)`` with both means over all valid tokens
    of the batch (as Clip-Cov / KL-Cov compute it). Its batch mean is the sample covariance
    ``Cov(log pi, A)``; under natural policy gradient (logit change ``eta A``) the entropy
    changes by ``-eta Cov_{a~pi}(log pi(a), A(a))`` to first order, so a mostly positive
    covariance drives entropy down. For vanilla policy gradient on a softmax policy the
    logit change is ``eta pi A``: pass ``advantages = pi * A`` to get that case's term.

    Args:
        logprobs: log-probabilities of the sampled tokens, e.g. ``(batch, seq)``.
        advantages: same shape, or a prefix of it (``(batch,)`` sequence-level advantages are
            broadcast over the tokens).
        mask: validity mask of ``logprobs``' shape (response tokens); NaN log-probabilities
            also count as invalid.

    Returns:
        tensor of ``logprobs``' shape (float32 or wider), NaN at invalid positions.

    >>> entropy_advantage_covariance(torch.tensor([-1.0, -3.0]), torch.tensor([1.0, -1.0]))
    tensor([1., 1.])
    """
    lp = _as_values(logprobs, name="logprobs")
    adv = _as_values(advantages, name="advantages").to(lp.device)
    if tuple(adv.shape) != tuple(lp.shape[: adv.ndim]):
        raise ValueError(
            f"advantages: expected shape {tuple(lp.shape)} or a prefix of it, "
            f"got {tuple(adv.shape)}"
        )
    adv = adv.reshape(tuple(adv.shape) + (1,) * (lp.ndim - adv.ndim)).expand_as(lp)
    dtype = torch.promote_types(torch.promote_types(lp.dtype, adv.dtype), torch.float32)
    lp, adv = lp.to(dtype), adv.to(dtype)
    valid = _valid(lp, mask) & ~torch.isnan(adv)
    zero = torch.zeros((), dtype=dtype, device=lp.device)
    n = valid.sum()
    mean_lp = torch.where(valid, lp, zero).sum() / n
    mean_adv = torch.where(valid, adv, zero).sum() / n
    cov = (adv - mean_adv) * (lp - mean_lp)
    return torch.where(valid, cov, torch.nan)


def positive_covariance_share(cov: ArrayLike, mask: ArrayLike | None = None) -> torch.Tensor:
    """Fraction of valid tokens whose covariance term is positive (0-d tensor).

    >>> positive_covariance_share(torch.tensor([1.0, -2.0, 3.0, float("nan")]))
    tensor(0.6667)
    """
    c = _as_values(cov, name="cov")
    valid = _valid(c, mask)
    return (valid & (c > 0)).sum().to(torch.float32) / valid.sum()


def top_covariance_tokens(
    cov: ArrayLike,
    *,
    k: int | None = None,
    fraction: float | None = None,
    mask: ArrayLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The valid tokens with the largest covariance terms (those KL-Cov penalises).

    Give ``k`` (a count) or ``fraction`` (of the valid tokens, rounded up; default
    ``2e-4``, verl's default ``kl_cov_ratio`` / ``clip_cov_ratio`` for Cui et al.'s methods).
    ``fraction`` needs the number of valid tokens on the host: that is one device
    synchronisation; pass ``k`` to avoid it.

    Returns:
        ``(values, indices)``: values sorted in decreasing order, shape ``(k,)``, and
        indices into ``cov`` of shape ``(k, cov.ndim)`` (as ``torch.nonzero`` lays them
        out). If ``k`` exceeds the number of valid tokens, the extra entries are invalid
        positions with value NaN.

    >>> v, idx = top_covariance_tokens(torch.tensor([[0.1, 5.0], [2.0, -1.0]]), k=2)
    >>> v.tolist(), idx.tolist()
    ([5.0, 2.0], [[0, 1], [1, 0]])
    """
    c = _as_values(cov, name="cov")
    valid = _valid(c, mask)
    numel = c.numel()
    if k is not None and fraction is not None:
        raise ValueError("k: expected either k or fraction, got both")
    if k is None:
        frac = 2e-4 if fraction is None else check_float(fraction, name="fraction", minimum=0.0)
        if frac > 1 or frac <= 0:
            raise ValueError(f"fraction: expected a number in (0, 1], got {frac}")
        n_valid = int(valid.sum())  # the one host synchronisation
        k = max(1, math.ceil(frac * n_valid)) if n_valid > 0 else 0
    else:
        k = check_int(k, name="k", minimum=0, maximum=numel)
    flat = torch.where(valid, c, -torch.inf).reshape(-1)
    values, flat_idx = flat.topk(k)
    values = torch.where(values == -torch.inf, torch.nan, values)
    idx = (
        torch.stack(torch.unravel_index(flat_idx, c.shape), dim=-1) if c.ndim else flat_idx[:, None]
    )
    return values, idx


def _answer_ids(answers: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Map a list of per-prompt answer lists to (ids (P, S), valid (P, S)) on the CPU."""
    if not isinstance(answers, Sequence) or isinstance(answers, (str, bytes)):
        raise TypeError(
            "answers: expected a (prompts, samples) integer tensor or a sequence of "
            f"per-prompt sequences of answers, got {type(answers).__name__}"
        )
    if len(answers) == 0:
        raise ValueError("answers: expected at least one prompt, got an empty sequence")
    rows = []
    for i, group in enumerate(answers):
        if not isinstance(group, Sequence) or isinstance(group, (str, bytes)):
            raise TypeError(
                f"answers: expected each prompt's answers as a sequence, got "
                f"{type(group).__name__} at prompt {i}"
            )
        table: dict[Hashable, int] = {}
        ids = []
        for a in group:
            try:
                ids.append(table.setdefault(a, len(table)))
            except TypeError:
                raise TypeError(
                    f"answers: expected hashable answers, got {type(a).__name__} at prompt {i}"
                ) from None
        rows.append(ids)
    width = max(1, max(len(r) for r in rows))
    ids = torch.zeros((len(rows), width), dtype=torch.int64)
    valid = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
        valid[i, : len(r)] = True
    return ids, valid


def answer_entropy(
    answers: ArrayLike | Sequence[Sequence[Hashable]],
    *,
    mask: ArrayLike | None = None,
    base: float = math.e,
) -> torch.Tensor:
    """Entropy of the distribution of distinct final answers among samples, per prompt.

    For prompt ``j`` with ``n`` samples whose answers take distinct values with counts
    ``c_a``: ``H_j = -sum_a (c_a / n) log(c_a / n)`` (the plug-in estimate; 0 when all
    samples agree, ``log n`` when all differ). Wu et al. (2025, arXiv:2507.14843) show RLVR can
    lower this answer-level entropy while token-level entropy rises.

    Args:
        answers: either an integer tensor ``(prompts, samples)`` of answer ids (computed on
            its device without synchronising: counts come from an ``S x S`` equality table
            per prompt), or a sequence of per-prompt sequences of hashable answers (strings,
            numbers; ``None`` counts as one more answer), which may differ in length.
        mask: with a tensor, ``(prompts, samples)`` validity of each sample.
        base: logarithm base.

    Returns:
        float32 tensor ``(prompts,)``; NaN for a prompt without valid samples.

    >>> answer_entropy([["4", "4", "5", "5"], ["7", "7"]], base=2)
    tensor([1., 0.])
    """
    b = check_base(base)
    if isinstance(answers, (torch.Tensor, np.ndarray)):
        ids = as_tensor(answers, name="answers")
        if not is_integer_dtype(ids) and ids.dtype != torch.bool:
            raise ValueError(f"answers: expected integer answer ids, got dtype {ids.dtype}")
        if ids.ndim != 2 or ids.numel() == 0:
            raise ValueError(
                f"answers: expected a non-empty (prompts, samples) array, got shape {tuple(ids.shape)}"
            )
        valid = _as_mask(mask, ids.shape, ids.device)
        if valid is None:
            valid = torch.ones_like(ids, dtype=torch.bool)
    else:
        if mask is not None:
            raise ValueError("mask: only used with a tensor of answer ids, got a mask with a list")
        ids, valid = _answer_ids(answers)
    same = (ids.unsqueeze(-1) == ids.unsqueeze(-2)) & valid.unsqueeze(-1) & valid.unsqueeze(-2)
    counts = same.sum(-1).to(torch.float32)  # (P, S): count of each sample's answer
    n = valid.sum(-1).to(torch.float32)
    log_p = torch.where(valid, counts.clamp(min=1).log() - n.clamp(min=1).log().unsqueeze(-1), 0.0)
    # H = -(1/n) sum_i log p(a_i) = -sum_a p_a log p_a; adding 0.0 turns -0.0 into 0.0
    h = (-log_p.sum(-1) / n).clamp(min=0.0) + 0.0
    return to_base(h, b)


def fit_entropy_reward(entropy: ArrayLike, reward: ArrayLike) -> dict[str, torch.Tensor]:
    """Fit ``R = -a exp(H) + b`` to an (entropy, reward) series; predict the ceiling ``-a + b``.

    The law of Cui et al. (2025, arXiv:2505.22617): as RL trades entropy for reward, the
    reward reaches ``-a + b`` when the entropy is exhausted (``H = 0``). The model is linear
    in ``x = exp(H)``, so ordinary least squares has the closed form
    ``a = -Cov(x, R) / Var(x)``, ``b = mean R + a mean x``. Pairs with a NaN or infinite value
    are left out. ``H`` must be in nats (the law is stated for natural-log entropy).

    Returns:
        dict of 0-d float64 tensors: ``a``, ``b``, ``ceiling`` (``-a + b``), ``r2``
        (coefficient of determination), ``rmse`` (root mean squared residual) and ``n``
        (pairs used). Constant entropy (no spread) gives NaN coefficients.

    >>> h = torch.tensor([1.0, 0.5, 0.2, 0.1])
    >>> fit = fit_entropy_reward(h, -0.3 * torch.exp(h) + 0.9)
    >>> [round(float(fit[key]), 4) for key in ("a", "b", "ceiling")]
    [0.3, 0.9, 0.6]
    """
    h = _as_values(entropy, name="entropy")
    r = _as_values(reward, name="reward").to(h.device)
    if h.ndim != 1:
        raise ValueError(f"entropy: expected a 1-D series, got shape {tuple(h.shape)}")
    if r.ndim != 1:
        raise ValueError(f"reward: expected a 1-D series, got shape {tuple(r.shape)}")
    if r.shape[0] != h.shape[0]:
        raise ValueError(
            f"reward: expected the same length as entropy ({h.shape[0]}), got {r.shape[0]}"
        )
    if h.shape[0] < 2:
        raise ValueError(f"entropy: expected at least 2 points to fit, got {h.shape[0]}")
    h, r = h.to(torch.float64), r.to(torch.float64)
    x = torch.exp(h)
    w = (torch.isfinite(x) & torch.isfinite(r)).to(torch.float64)
    x, r = torch.nan_to_num(x) * w, torch.nan_to_num(r) * w
    n = w.sum()
    mx, mr = x.sum() / n, r.sum() / n
    dx, dr = (x - mx) * w, (r - mr) * w
    sxx, sxr, srr = (dx * dx).sum(), (dx * dr).sum(), (dr * dr).sum()
    a = -sxr / sxx
    b = mr + a * mx
    resid = (r - (b - a * x)) * w
    sse = (resid * resid).sum()
    return {
        "a": a,
        "b": b,
        "ceiling": b - a,
        "r2": 1.0 - sse / srr,
        "rmse": torch.sqrt(sse / n),
        "n": n,
    }
