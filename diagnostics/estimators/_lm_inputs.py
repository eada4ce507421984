"""Validation and chunking of language-model inputs (logits, masks, per-token values) shared
by the token, RL and attention estimators.

Logits are walked in row chunks chosen by **bytes**: two float32 work buffers of ``rows x
vocab`` are allocated once and reused, their total at most ``min(chunk_bytes_cap, logits.nbytes
// 4)`` (64 MiB on the CPU, 1 GiB on CUDA), at least one row; inputs under 16 MiB may use up to
4 MiB regardless. verl processes 2048 rows at a time and TRL 128; choosing by bytes gives a 150k
vocabulary proportionally fewer rows instead of a larger footprint.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from diagnostics._validate import (
    ArrayLike,
    as_tensor,
    check_float,
    check_int,
)

_MIB = 1 << 20
#: Cap on the float32 work memory of the chunked per-token functions, per device type.
CHUNK_BYTES_CAP = {"cpu": 64 * _MIB, "cuda": 1024 * _MIB}
_CHUNK_BYTES_CAP_OTHER = 256 * _MIB
#: Below this, the quarter-of-the-logits rule is not applied (tiny inputs: one chunk).
CHUNK_BYTES_FLOOR = 4 * _MIB

_TOKEN_STATS = ("entropy", "topk_mass", "topk_entropy", "topk_entropy_renorm", "sum_p2", "logprob")


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


def _valid(values: torch.Tensor, mask: ArrayLike | None) -> torch.Tensor:
    m = _as_mask(mask, values.shape, values.device)
    valid = ~torch.isnan(values)
    return valid if m is None else valid & m
