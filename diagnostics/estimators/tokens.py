"""Per-token statistics of next-token logits (entropy, top-k mass and entropy, sum of squared
probabilities, log-probabilities, perplexity) and masked reductions, without a float32 copy
of the whole logits.

Entropy of one row with logits ``z`` and temperature ``T``: with ``s = (z - max z) / T`` and
``Z = sum exp(s)``, ``H = log Z - sum exp(s) s / Z``: verl's ``logsumexp(z) - sum softmax(z) z``
(``verl/utils/torch_functional.py``) shifted by the row maximum, which avoids the cancellation
between two large terms (about 100x smaller float32 error). ``-inf`` entries contribute 0; a
row that is all ``-inf``, or holds ``+inf`` or NaN, gives NaN. Top-k indicators: Shi, Land,
Locatelli, Geist & Bartolo (2024), arXiv:2410.11677. Chunking: see ``_lm_inputs``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from diagnostics._validate import (
    ArrayLike,
    as_tensor,
    check_base,
    check_int,
    is_integer_dtype,
    to_base,
)
from diagnostics.estimators._lm_inputs import (
    _TOKEN_STATS,
    _as_logits,
    _as_mask,
    _as_values,
    _check_temperature,
    _chunk_rows,
    _row_blocks,
    _valid,
)


def _token_pass(
    logits: torch.Tensor,
    *,
    want: tuple[str, ...],
    k: int = 1,
    targets: torch.Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    chunk_bytes: int | None = None,
) -> dict[str, torch.Tensor]:
    """One chunked float32 pass over the rows of ``logits``; returns flat per-row results."""
    device = logits.device
    vocab = logits.shape[-1]
    n_rows = logits.numel() // vocab
    need_dense = any(w in want for w in ("entropy", "sum_p2"))
    n_buffers = 2 if need_dense else 1
    rows = min(_chunk_rows(logits, n_buffers, chunk_size, chunk_bytes), n_rows)
    s_buf = torch.empty((rows, vocab), dtype=torch.float32, device=device)
    e_buf = torch.empty((rows, vocab), dtype=torch.float32, device=device) if need_dense else s_buf
    out = {w: torch.empty(n_rows, dtype=torch.float32, device=device) for w in want}
    flat_targets = targets.reshape(-1) if targets is not None else None
    inv_t = 1.0 / temperature
    work_dtype = torch.promote_types(logits.dtype, torch.float32)

    for block, start in _row_blocks(logits):
        for i in range(0, block.shape[0], rows):
            z = block[i : i + rows]
            r = z.shape[0]
            lo = start + i
            s = s_buf[:r]
            e = e_buf[:r]
            # the row maximum, at >= float32 precision so that z - m is computed there too
            m = z.amax(dim=-1, keepdim=True).to(work_dtype)
            torch.sub(z, m, out=s)  # upcast fused with the shift: s = z - max z
            if inv_t != 1.0:
                s.mul_(inv_t)
            torch.exp(s, out=e)  # when only one buffer, e is s (exp in place)
            norm = e.sum(dim=-1)
            log_norm = norm.log()
            if "entropy" in want:
                # H = log Z - sum e s / Z; 0 * -inf entries become NaN and nansum drops them.
                s.mul_(e)
                dot = torch.nansum(s, dim=-1)
                out["entropy"][lo : lo + r] = (log_norm - dot / norm).clamp_(min=0.0)
            if "sum_p2" in want:
                torch.mul(e, e, out=s)
                out["sum_p2"][lo : lo + r] = s.sum(dim=-1) / norm.square()
            if any(w.startswith("topk") for w in want):
                top = z.topk(k, dim=-1, sorted=False).values
                log_p = (top - m).to(torch.float32).mul_(inv_t).sub_(log_norm.unsqueeze(-1))
                p = log_p.exp()
                mass = p.sum(dim=-1)
                raw = -torch.nansum(p * log_p, dim=-1)
                if "topk_mass" in want:
                    out["topk_mass"][lo : lo + r] = mass
                if "topk_entropy" in want:
                    out["topk_entropy"][lo : lo + r] = raw
                if "topk_entropy_renorm" in want:
                    # q = p / M over the top k (= H_raw / M + log M, computed directly)
                    log_q = log_p - torch.logsumexp(log_p, dim=-1, keepdim=True)
                    h_q = -torch.nansum(log_q.exp() * log_q, dim=-1)
                    out["topk_entropy_renorm"][lo : lo + r] = h_q.clamp_(min=0.0) + 0.0
            if "logprob" in want:
                t = flat_targets[lo : lo + r]
                in_range = (t >= 0) & (t < vocab)
                picked = z.gather(-1, t.clamp(0, vocab - 1).unsqueeze(-1))
                lp = (picked - m).squeeze(-1).to(torch.float32).mul_(inv_t).sub_(log_norm)
                out["logprob"][lo : lo + r] = torch.where(in_range, lp, torch.nan)
    return out


def _finish(
    flat: torch.Tensor, lead: torch.Size, mask: torch.Tensor | None, base: float | None = None
) -> torch.Tensor:
    res = flat.view(lead)
    if base is not None:
        res = to_base(res, base)
    if mask is not None:
        res = torch.where(mask, res, torch.nan)
    return res


def token_stats(
    logits: ArrayLike,
    *,
    targets: ArrayLike | None = None,
    k: int = 10,
    stats: Sequence[str] | None = None,
    mask: ArrayLike | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    chunk_bytes: int | None = None,
    base: float = math.e,
) -> dict[str, torch.Tensor]:
    """Several per-token statistics of next-token distributions in one chunked pass.

    For each position with logits ``z`` (last dimension = vocabulary) and ``p = softmax(z / T)``:

    - ``entropy``: ``H = -sum_i p_i log p_i``;
    - ``topk_mass``: ``M_k = sum_{i in top k} p_i``;
    - ``topk_entropy``: ``-sum_{i in top k} p_i log p_i`` (the top-k tokens' share of ``H``);
    - ``topk_entropy_renorm``: entropy of ``p`` restricted to the top k and renormalised,
      ``H_raw / M_k + log M_k``;
    - ``sum_p2``: ``sum_i p_i^2`` (collision probability; tends to 1 at collapse);
    - ``logprob`` (only with ``targets``): ``log p_target`` in nats.

    Shi et al. (2024, arXiv:2410.11677) use falling top-k entropy and shrinking top-k mass as
    indicators of likelihood over-optimisation; ``k`` is a setting (10 by default: our
    choice, the paper treats k as a hyper-parameter).

    Args:
        logits: ``(..., vocab)`` floating tensor of any dtype; computed in float32 chunks
            (see the module docstring for the memory bound).
        targets: integer token ids of shape ``logits.shape[:-1]``; ids outside
            ``[0, vocab)`` (such as the ``-100`` ignore index) give NaN.
        k: number of top tokens, ``1 <= k <= vocab``.
        stats: which statistics to compute (default: all that apply).
        mask: validity mask of shape ``logits.shape[:-1]`` (True / nonzero = real token);
            masked positions are NaN in every output.
        temperature: sampling temperature ``T > 0`` applied to the logits.
        chunk_size: rows per chunk (overrides the byte budget).
        chunk_bytes: float32 work-memory budget in bytes (default: see module docstring).
        base: logarithm base of the entropies (``logprob`` stays in nats).

    Returns:
        dict name -> float32 tensor of shape ``logits.shape[:-1]`` on the logits' device.

    >>> z = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    >>> out = token_stats(z, k=2)
    >>> [round(float(out[s][0]), 4) for s in ("entropy", "topk_mass", "sum_p2")]
    [1.3863, 0.5, 0.25]
    """
    x = _as_logits(logits)
    lead = x.shape[:-1]
    vocab = x.shape[-1]
    temperature = _check_temperature(temperature)
    b = check_base(base)
    m = _as_mask(mask, lead, x.device)
    t = None
    if targets is not None:
        t = as_tensor(targets, name="targets", device=x.device)
        if not is_integer_dtype(t):
            raise ValueError(f"targets: expected integer token ids, got dtype {t.dtype}")
        if tuple(t.shape) != tuple(lead):
            raise ValueError(f"targets: expected shape {tuple(lead)}, got {tuple(t.shape)}")
    if stats is None:
        want = tuple(s for s in _TOKEN_STATS if s != "logprob" or t is not None)
    else:
        if isinstance(stats, str):
            stats = (stats,)
        want = tuple(stats)
        for s in want:
            if s not in _TOKEN_STATS:
                raise ValueError(
                    f"stats: expected names from {', '.join(map(repr, _TOKEN_STATS))}, got {s!r}"
                )
        if "logprob" in want and t is None:
            raise ValueError("targets: required when stats includes 'logprob', got None")
    if not want:
        raise ValueError("stats: expected at least one statistic, got none")
    if any(w.startswith("topk") for w in want):
        k = check_int(k, name="k", minimum=1, maximum=vocab)
    flat = _token_pass(
        x,
        want=want,
        k=k,
        targets=t,
        temperature=temperature,
        chunk_size=chunk_size,
        chunk_bytes=chunk_bytes,
    )
    entropic = ("entropy", "topk_entropy", "topk_entropy_renorm")
    return {w: _finish(flat[w], lead, m, b if w in entropic else None) for w in want}


def token_entropy(
    logits: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    chunk_bytes: int | None = None,
    base: float = math.e,
) -> torch.Tensor:
    """Entropy of each next-token distribution, ``H = -sum_i p_i log p_i``, ``p = softmax(z/T)``.

    Computed as ``log Z - sum_i e_i s_i / Z`` with ``s = (z - max z) / T``, ``e = exp(s)``,
    ``Z = sum e`` in float32 row chunks (verl's formula shifted by the row maximum), so no
    full-vocabulary float32 copy of the logits is ever made; peak extra memory is at most a
    quarter of the logits' size (and 64 MiB on the CPU / 1 GiB on CUDA by default), see the
    module docstring. ``-inf`` vocabulary entries (masked tokens) are handled exactly.

    Good at: exact (to float32 rounding) per-token entropy of any dtype's logits at the
    speed of two elementwise passes. Not an estimate of the model's entropy rate beyond the
    positions given.

    Args:
        logits: ``(..., vocab)`` floating tensor, any dtype (fp32/bf16/fp16/fp64), any device.
        mask: shape ``logits.shape[:-1]``, True / nonzero = real token; other positions NaN.
        temperature: ``T > 0``.
        chunk_size: rows per chunk (overrides the byte budget).
        chunk_bytes: float32 work-memory budget in bytes.
        base: logarithm base (nats by default).

    Returns:
        float32 tensor of shape ``logits.shape[:-1]`` on the logits' device (NaN where
        masked). Summarise with :func:`masked_mean` and :func:`masked_quantiles`.

    >>> token_entropy(torch.tensor([[0.0, 0.0], [0.0, -float("inf")]]))
    tensor([0.6931, 0.0000])
    """
    return token_stats(
        logits,
        stats=("entropy",),
        mask=mask,
        temperature=temperature,
        chunk_size=chunk_size,
        chunk_bytes=chunk_bytes,
        base=base,
    )["entropy"]


def token_logprobs(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    chunk_bytes: int | None = None,
) -> torch.Tensor:
    """Log-probability (nats) of the target / sampled token at each position.

    ``log p_t = (z_t - max z) / T - log sum exp((z - max z) / T)``, in float32 row chunks
    (one work buffer; see the module docstring). For next-token prediction pass
    ``logits[:, :-1]`` and ``input_ids[:, 1:]`` (the slice is not copied).

    Args:
        logits: ``(..., vocab)`` floating tensor.
        targets: integer ids of shape ``logits.shape[:-1]``; ids outside ``[0, vocab)``
            (e.g. the ``-100`` ignore index) give NaN rather than an error, so that no
            device synchronisation is needed.
        mask: validity mask of shape ``logits.shape[:-1]``; masked positions are NaN.
        temperature, chunk_size, chunk_bytes: as in :func:`token_entropy`.

    Returns:
        float32 tensor of shape ``logits.shape[:-1]``.

    >>> token_logprobs(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
    tensor([-0.6931])
    """
    return token_stats(
        logits,
        targets=targets,
        stats=("logprob",),
        mask=mask,
        temperature=temperature,
        chunk_size=chunk_size,
        chunk_bytes=chunk_bytes,
    )["logprob"]


def topk_mass(
    logits: ArrayLike,
    *,
    k: int = 10,
    mask: ArrayLike | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    chunk_bytes: int | None = None,
) -> torch.Tensor:
    """Probability mass of the ``k`` most likely tokens, ``sum_{i in top k} p_i``, per position.

    A shrinking top-k mass is one of the two over-optimisation indicators of Shi et al.
    (2024, arXiv:2410.11677). ``k`` is a setting (default 10, our choice).

    >>> topk_mass(torch.tensor([[0.0, 0.0, 0.0, 0.0]]), k=3)
    tensor([0.7500])
    """
    return token_stats(
        logits,
        k=k,
        stats=("topk_mass",),
        mask=mask,
        temperature=temperature,
        chunk_size=chunk_size,
        chunk_bytes=chunk_bytes,
    )["topk_mass"]


def topk_entropy(
    logits: ArrayLike,
    *,
    k: int = 10,
    renormalize: bool = False,
    mask: ArrayLike | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    chunk_bytes: int | None = None,
    base: float = math.e,
) -> torch.Tensor:
    """Entropy over the ``k`` most likely tokens, per position.

    Raw (``renormalize=False``): ``-sum_{i in top k} p_i log p_i``, the top-k tokens' share of
    the full entropy. Renormalised: the entropy of ``q_i = p_i / M_k`` over the top k,
    ``= H_raw / M_k + log M_k`` (between 0 and ``log k``). A falling top-k entropy signals
    likelihood over-optimisation (Shi et al. 2024, arXiv:2410.11677).

    >>> topk_entropy(torch.tensor([[0.0, 0.0, 0.0, 0.0]]), k=2, renormalize=True)
    tensor([0.6931])
    """
    name = "topk_entropy_renorm" if renormalize else "topk_entropy"
    return token_stats(
        logits,
        k=k,
        stats=(name,),
        mask=mask,
        temperature=temperature,
        chunk_size=chunk_size,
        chunk_bytes=chunk_bytes,
        base=base,
    )[name]


def sum_squared_probs(
    logits: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    chunk_bytes: int | None = None,
) -> torch.Tensor:
    """``sum_i p_i^2`` per position (collision probability; 1/vocab when uniform, 1 at collapse).

    ``-log`` of it is the Renyi-2 entropy, a lower bound on the Shannon entropy.

    >>> sum_squared_probs(torch.tensor([[0.0, 0.0, 0.0, 0.0]]))
    tensor([0.2500])
    """
    return token_stats(
        logits,
        stats=("sum_p2",),
        mask=mask,
        temperature=temperature,
        chunk_size=chunk_size,
        chunk_bytes=chunk_bytes,
    )["sum_p2"]


def masked_mean(
    values: ArrayLike, mask: ArrayLike | None = None, *, dim: int | None = None
) -> torch.Tensor:
    """Mean of ``values`` over the valid positions: ``mask`` True / nonzero and not NaN.

    NaN positions are always left out, so the NaN-padded output of :func:`token_entropy` can be
    passed without its mask. ``dim=None`` reduces everything to a 0-d tensor; an integer
    reduces that dimension (``dim=-1`` gives per-sequence means). Empty selections give NaN.

    >>> masked_mean(torch.tensor([1.0, 2.0, 9.0]), torch.tensor([True, True, False]))
    tensor(1.5000)
    """
    v = _as_values(values, name="values")
    valid = _valid(v, mask)
    if dim is not None:
        dim = check_int(dim, name="dim", minimum=-v.ndim, maximum=max(v.ndim - 1, 0))
    zero = torch.zeros((), dtype=v.dtype, device=v.device)
    total = torch.where(valid, v, zero)
    if dim is None:
        return total.sum() / valid.sum()
    return total.sum(dim=dim) / valid.sum(dim=dim)


def masked_quantiles(
    values: ArrayLike, q: float | Sequence[float] | ArrayLike, mask: ArrayLike | None = None
) -> torch.Tensor:
    """Quantiles of the valid entries of ``values`` (all dimensions pooled).

    Valid = ``mask`` True / nonzero and not NaN. Linear interpolation between order
    statistics (numpy's default ``method="linear"``). Computed by sorting with the invalid
    entries pushed to the end, so no device synchronisation is needed and there is no size
    limit (``torch.quantile`` refuses more than 2**24 elements). No valid entry gives NaN.

    Args:
        values: any shape.
        q: a probability or a sequence of them, each in ``[0, 1]``.
        mask: same shape as ``values``.

    Returns:
        0-d tensor for a scalar ``q``, else shape ``(len(q),)``; dtype of ``values``.

    >>> masked_quantiles(torch.tensor([1.0, 2.0, 3.0, 100.0]), [0.0, 0.5, 1.0],
    ...                  torch.tensor([1, 1, 1, 0]))
    tensor([1., 2., 3.])
    """
    v = _as_values(values, name="values")
    valid = _valid(v, mask).reshape(-1)
    qs = np.asarray(q.detach().cpu() if isinstance(q, torch.Tensor) else q, dtype=np.float64)
    if qs.ndim > 1 or qs.size == 0 or not np.all(np.isfinite(qs)):
        raise ValueError(
            f"q: expected a probability or a non-empty 1-D sequence of them, got {q!r}"
        )
    if np.any((qs < 0) | (qs > 1)):
        raise ValueError(f"q: expected probabilities in [0, 1], got {qs.tolist()}")
    inf = torch.full((), torch.inf, dtype=v.dtype, device=v.device)
    srt = torch.where(valid, v.reshape(-1), inf).sort().values
    n = valid.sum()
    qt = torch.as_tensor(qs, dtype=torch.float64, device=v.device).reshape(-1)
    pos = qt * (n - 1).clamp(min=0).to(torch.float64)
    lo = pos.floor().long()
    hi = torch.minimum(lo + 1, (n - 1).clamp(min=0))
    frac = (pos - lo.to(torch.float64)).to(v.dtype)
    v_lo, v_hi = srt[lo], srt[hi]
    res = v_lo + frac * (v_hi - v_lo)
    res = torch.where(v_hi == v_lo, v_lo, res)  # exact at ties (also avoids inf - inf)
    res = torch.where(n > 0, res, torch.nan)
    return res.reshape(()) if qs.ndim == 0 else res


def perplexity(
    logprobs: ArrayLike, mask: ArrayLike | None = None, *, dim: int | None = None
) -> torch.Tensor:
    """Perplexity ``exp(-mean log p)`` of target tokens, over the valid positions.

    ``logprobs`` are natural-log probabilities, e.g. from :func:`token_logprobs`. ``dim=-1``
    gives one perplexity per sequence; ``None`` pools all valid tokens (token-weighted).

    >>> perplexity(torch.log(torch.tensor([0.5, 0.5])))
    tensor(2.)
    """
    return torch.exp(-masked_mean(logprobs, mask, dim=dim))
