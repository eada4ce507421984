"""Attention entropy per head: -sum a log a over keys, raw and normalised by its causal
maximum log(i + 1).

Sources: Zhai et al. (2023, ICML), attention entropy collapse; Jha & Reagen (2025),
arXiv:2501.03489, collapse in deep layers and entropic overload in early ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from diagnostics._validate import (
    ArrayLike,
    as_tensor,
    check_base,
    check_choice,
    to_base,
)
from diagnostics.estimators._lm_inputs import _as_mask, _chunk_rows, _row_blocks

__all__ = ["attention_entropy"]


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
