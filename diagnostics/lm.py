"""Entropy dynamics of language models: token, top-k, covariance, answer and attention entropy.

Pure estimators over logits, log-probabilities, advantages and attention probabilities.
Every function takes torch tensors (or numpy arrays) and returns tensors on the input's
device without synchronising with it (no ``.item()``; the one documented exception is
``top_covariance_tokens(fraction=...)`` with a mask). Information quantities are in nats
unless ``base`` says otherwise.

Memory
------
Logits of a language model are large (``(8, 4096, 152064)`` in bfloat16 is 10 GB), so the
per-token functions (:func:`token_entropy`, :func:`token_stats`, :func:`token_logprobs`,
:func:`topk_mass`, :func:`topk_entropy`, :func:`sum_squared_probs`) never make a float32 copy
of the whole logits. They walk the rows (one row = one token's vocabulary) in chunks chosen
by **bytes**: two float32 work buffers of ``rows x vocab`` are allocated once and reused, and
their total size is at most ``min(chunk_bytes_cap, logits.nbytes // 4)`` (a quarter of the
logits; the cap is 64 MiB on the CPU, about 256 rows of a 32k vocabulary, where smaller
chunks measured slower because every op synchronises the thread pool, and 1 GiB on CUDA,
where fewer larger chunks amortise kernel launches), but at least one row. Inputs under
16 MiB may use up to 4 MiB regardless (so that small logits are not cut into many tiny
chunks, whose per-op overhead dominates). A 150k
vocabulary therefore gets proportionally fewer rows per chunk instead of a larger footprint.
Inputs whose leading dimensions cannot be flattened without a copy (a slice such as
``logits[:, :-1]``) are walked without copying them.

Entropy of one row with logits ``z`` and temperature ``T``: with ``s = (z - max z) / T`` and
``Z = sum exp(s)``, ``H = log Z - sum exp(s) s / Z``. This is verl's
``logsumexp(z) - sum softmax(z) z`` shifted by the row maximum, which avoids the cancellation
between two large terms (about 100x smaller error in float32 on random logits). Vocabulary
entries at ``-inf`` (masked tokens) contribute exactly 0 (the ``0 * -inf`` products are
dropped with ``nansum``; a NaN logit still makes the row NaN through ``Z``). A row that is
all ``-inf``, or holds ``+inf`` or NaN, gives NaN.

References
----------
- verl (``verl/utils/torch_functional.py``, ``entropy_from_logits_with_chunking``): row
  chunks of 2048 in float32; TRL's ``entropy_from_logits`` uses 128-row chunks.
- Shi, Land, Locatelli, Geist, Bartolo (2024). Understanding likelihood over-optimisation in
  direct alignment algorithms. arXiv:2410.11677 (top-k entropy and top-k probability mass).
- Cui et al. (2025). The entropy mechanism of reinforcement learning for reasoning language
  models. arXiv:2505.22617 (entropy-advantage covariance, Clip-Cov / KL-Cov, R = -a e^H + b).
- Wu et al. (2025). The invisible leash: why RLVR may not escape its origin.
  arXiv:2507.14843 (token-level vs answer-level entropy).
- Zhai et al. (2023). Stabilizing transformer training by preventing attention entropy
  collapse. ICML. Jha & Reagen (2025). Entropy-guided attention for private LLMs.
  arXiv:2501.03489 (attention entropy collapse in deep layers, entropic overload early).
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
    check_choice,
    check_float,
    check_int,
    is_integer_dtype,
    to_base,
)

__all__ = [
    "token_entropy",
    "token_stats",
    "token_logprobs",
    "topk_mass",
    "topk_entropy",
    "sum_squared_probs",
    "perplexity",
    "masked_mean",
    "masked_quantiles",
    "entropy_advantage_covariance",
    "positive_covariance_share",
    "top_covariance_tokens",
    "completion_entropy",
    "answer_entropy",
    "fit_entropy_reward",
    "attention_entropy",
]

_MIB = 1 << 20
#: Cap on the float32 work memory of the chunked per-token functions, per device type.
CHUNK_BYTES_CAP = {"cpu": 64 * _MIB, "cuda": 1024 * _MIB}
_CHUNK_BYTES_CAP_OTHER = 256 * _MIB
#: Below this, the quarter-of-the-logits rule is not applied (tiny inputs: one chunk).
CHUNK_BYTES_FLOOR = 4 * _MIB

_TOKEN_STATS = ("entropy", "topk_mass", "topk_entropy", "topk_entropy_renorm", "sum_p2", "logprob")


# --------------------------------------------------------------------------------------
# validation helpers (private)
# --------------------------------------------------------------------------------------


def _as_logits(logits: ArrayLike) -> torch.Tensor:
    t = as_tensor(logits, name="logits")
    if not t.is_floating_point():
        raise ValueError(f"logits: expected a floating-point array, got dtype {t.dtype}")
    if t.ndim < 1:
        raise ValueError("logits: expected shape (..., vocab), got a 0-d array")
    if t.numel() == 0:
        raise ValueError(f"logits: expected a non-empty array, got shape {tuple(t.shape)}")
    return t


def _as_mask(
    mask: ArrayLike | None,
    shape: torch.Size | tuple[int, ...],
    device: torch.device,
    *,
    name="mask",
) -> torch.Tensor | None:
    """A validity mask (nonzero / True = valid) of exactly ``shape``, as bool on ``device``."""
    if mask is None:
        return None
    m = as_tensor(mask, name=name, device=device)
    if m.is_complex():
        raise ValueError(f"{name}: expected a boolean or 0/1 array, got complex dtype {m.dtype}")
    if tuple(m.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(m.shape)}")
    return m if m.dtype == torch.bool else m != 0


def _as_values(values: ArrayLike, *, name: str) -> torch.Tensor:
    t = as_tensor(values, name=name)
    if t.is_complex():
        raise ValueError(f"{name}: expected real values, got complex dtype {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.to(torch.float32)
    return t


def _check_temperature(temperature: Any) -> float:
    return check_float(temperature, name="temperature", positive=True)


def _chunk_rows(
    logits: torch.Tensor, n_buffers: int, chunk_size: int | None, chunk_bytes: int | None
) -> int:
    """Rows per chunk so that ``n_buffers`` float32 buffers of rows x vocab fit the budget."""
    vocab = logits.shape[-1]
    if chunk_size is not None:
        return check_int(chunk_size, name="chunk_size", minimum=1)
    if chunk_bytes is None:
        cap = CHUNK_BYTES_CAP.get(logits.device.type, _CHUNK_BYTES_CAP_OTHER)
        quarter = logits.numel() * logits.element_size() // 4
        budget = min(cap, max(quarter, CHUNK_BYTES_FLOOR))
    else:
        budget = check_int(chunk_bytes, name="chunk_bytes", minimum=1)
    return max(1, budget // (n_buffers * vocab * 4))


def _row_blocks(x: torch.Tensor, start: int = 0):
    """Yield ``(rows, start)``: 2-D views ``(n, last)`` covering ``x`` in row-major order.

    ``start`` is the index of the block's first row among all rows. A tensor whose leading
    dimensions cannot be merged into a view (a non-contiguous slice) is split along its first
    dimension instead of being copied.
    """
    last = x.shape[-1]
    if x.ndim == 1:
        yield x.unsqueeze(0), start
        return
    try:
        flat = x.view(-1, last)
    except RuntimeError:
        flat = None
    if flat is not None:
        yield flat, start
        return
    per = math.prod(x.shape[1:-1])
    for i in range(x.shape[0]):
        yield from _row_blocks(x[i], start + i * per)


# --------------------------------------------------------------------------------------
# per-token statistics from logits
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# masked reductions
# --------------------------------------------------------------------------------------


def _valid(values: torch.Tensor, mask: ArrayLike | None) -> torch.Tensor:
    m = _as_mask(mask, values.shape, values.device)
    valid = ~torch.isnan(values)
    return valid if m is None else valid & m


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


def completion_entropy(entropies: ArrayLike, mask: ArrayLike | None = None) -> torch.Tensor:
    """Per-completion entropy: the mask-mean of token entropies over the last dimension.

    ``entropies`` is ``(..., seq)``, e.g. :func:`token_entropy` of ``(batch, seq, vocab)``
    logits; returns ``(...)``. Wu et al. (2025, arXiv:2507.14843) observe that RLVR can raise
    this while lowering :func:`answer_entropy`.

    >>> completion_entropy(torch.tensor([[1.0, 3.0, float("nan")]]))
    tensor([2.])
    """
    return masked_mean(entropies, mask, dim=-1)


# --------------------------------------------------------------------------------------
# RL: entropy-advantage covariance, answer entropy, entropy-reward fit
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# attention entropy
# --------------------------------------------------------------------------------------


def _attention_rows(attn: torch.Tensor, chunk_bytes: int | None) -> torch.Tensor:
    """Row entropies ``-sum_k a log a`` of ``(B, H, Q, K)`` attention, float32 chunks."""
    keys = attn.shape[-1]
    n_rows = attn.numel() // keys
    rows = min(_chunk_rows(attn, 1, None, chunk_bytes), n_rows)
    buf = torch.empty((rows, keys), dtype=torch.float32, device=attn.device)
    out = torch.empty(n_rows, dtype=torch.float32, device=attn.device)
    for block, start in _row_blocks(attn):
        for i in range(0, block.shape[0], rows):
            a = block[i : i + rows]
            r = a.shape[0]
            b = buf[:r]
            b.copy_(a)
            torch.special.entr(b, out=b)  # -a log a, 0 at a = 0
            out[start + i : start + i + r] = b.sum(dim=-1)
    return out.view(attn.shape[:-1])


def attention_entropy(
    attn: ArrayLike | Sequence[ArrayLike],
    *,
    mask: ArrayLike | None = None,
    causal: bool = True,
    reduce: str = "mean",
    base: float = math.e,
    chunk_bytes: int | None = None,
) -> dict[str, torch.Tensor]:
    """Attention entropy per head, raw and normalised by its maximum (causal: ``log(i + 1)``).

    For each query row ``i`` of attention probabilities ``a`` (over keys):
    ``H_i = -sum_j a_ij log a_ij``. A causal row ``i`` can reach ``n_i = i + 1`` keys, so
    ``H_i <= log n_i``; the normalised entropy is ``H_i / log n_i`` in ``[0, 1]`` (1 for
    uniform attention over the reachable keys). With a padding ``mask``, ``n_i`` counts only
    the real keys among those reachable. Rows with ``n_i = 1`` (the first token) have a
    maximum of 0: their normalised entropy is undefined, returned as NaN and left out of the
    normalised mean (they stay in the raw mean, where they contribute 0). Near-zero entropy in
    deep layers signals attention entropy collapse (Zhai et al. 2023); near-maximal entropy in
    many early-layer heads signals entropic overload (Jha & Reagen 2025, arXiv:2501.03489).

    Args:
        attn: ``(batch, heads, q, k)`` probabilities (rows sum to 1; e.g. a Hugging Face
            model's ``output_attentions`` with eager attention), any float dtype, or a
            sequence of such tensors (one per layer). When ``q < k`` (cached keys), query
            ``i`` sits at key position ``k - q + i``.
        mask: ``(batch, k)`` key padding mask (1 / True = real token, as Hugging Face's
            ``attention_mask``). Query rows at padded positions are left out of the means.
        causal: True for decoder (causal) attention; False for bidirectional attention,
            where every row's maximum is ``log`` (number of real keys).
        reduce: ``"mean"``: mean over batch and valid queries, per head; ``"none"``:
            per row ``(batch, heads, q)`` with NaN at padded queries.
        base: logarithm base of the raw entropy (the normalised one has no unit).
        chunk_bytes: float32 work-memory budget, as in :func:`token_entropy`.

    Returns:
        dict with ``entropy`` and ``entropy_norm``: float32 tensors of shape ``(heads,)``
        (``(layers, heads)`` for a sequence of layers) with ``reduce="mean"``, else
        ``(batch, heads, q)`` (``(layers, batch, heads, q)``).

    >>> a = torch.tril(torch.ones(4, 4)); a = (a / a.sum(-1, keepdim=True))[None, None]
    >>> out = attention_entropy(a)
    >>> out["entropy_norm"]
    tensor([1.])
    """
    reduce = check_choice(reduce, name="reduce", choices=("mean", "none"))
    if isinstance(attn, (list, tuple)):
        if len(attn) == 0:
            raise ValueError("attn: expected at least one layer, got an empty sequence")
        per_layer = [
            attention_entropy(
                a, mask=mask, causal=causal, reduce=reduce, base=base, chunk_bytes=chunk_bytes
            )
            for a in attn
        ]
        return {key: torch.stack([p[key] for p in per_layer]) for key in per_layer[0]}
    b = check_base(base)
    a = as_tensor(attn, name="attn")
    if not a.is_floating_point():
        raise ValueError(f"attn: expected floating-point probabilities, got dtype {a.dtype}")
    if a.ndim != 4 or a.numel() == 0:
        raise ValueError(
            f"attn: expected a non-empty (batch, heads, q, k) array, got shape {tuple(a.shape)}"
        )
    batch, heads, nq, nk = a.shape
    if causal and nq > nk:
        raise ValueError(f"attn: expected q <= k for causal attention, got q={nq}, k={nk}")
    m = _as_mask(mask, (batch, nk), a.device)
    h = _attention_rows(a, chunk_bytes)  # (B, H, Q)
    offset = nk - nq
    dev = a.device
    if m is None:
        qvalid = torch.ones((batch, nq), dtype=torch.bool, device=dev)
        if causal:
            n_keys = torch.arange(offset + 1, nk + 1, device=dev, dtype=torch.float32).expand(
                batch, nq
            )
        else:
            n_keys = torch.full((batch, nq), float(nk), device=dev)
    else:
        qvalid = (
            m[:, offset:] if nq <= nk else torch.ones((batch, nq), dtype=torch.bool, device=dev)
        )
        if causal:
            n_keys = m.to(torch.float32).cumsum(-1)[:, offset:]
        else:
            n_keys = m.to(torch.float32).sum(-1, keepdim=True).expand(batch, nq)
    h_max = n_keys.clamp(min=1).log().unsqueeze(1)  # (B, 1, Q)
    h_norm = torch.where(h_max > 0, h / h_max, torch.nan)
    qv = qvalid.unsqueeze(1).expand_as(h)
    h = to_base(h, b)
    if reduce == "none":
        return {
            "entropy": torch.where(qv, h, torch.nan),
            "entropy_norm": torch.where(qv, h_norm, torch.nan),
        }
    dims = (0, 2)
    nv = qv.sum(dim=dims)
    raw = torch.where(qv, h, 0.0).sum(dim=dims) / nv
    vn = qv & ~torch.isnan(h_norm)
    norm = torch.where(vn, h_norm, 0.0).sum(dim=dims) / vn.sum(dim=dims)
    return {"entropy": raw, "entropy_norm": norm}
