"""torch.distributed helpers for the monitor (private): sharding, gathers, one broadcast flag.

Under DDP every rank runs the monitor at the same steps. The probe batch is split
into contiguous shards (rank ``r`` forwards rows ``[start_r, end_r)``), each rank
captures its shard, and the captured rows are all-gathered in rank order, so that
rank 0 holds exactly the activations a single process would have computed on the
whole batch. Live captures are gathered the same way (each rank's own batch, in rank
order). Only rank 0 computes estimates and writes; the other ranks return right after
the gather and never touch the run log.

Gathers pad each rank's rows to the largest count (``all_gather`` needs equal shapes)
and cut the padding off afterwards. With the gloo backend, CUDA tensors travel through
the CPU.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "rank_and_world",
    "shard_bounds",
    "all_gather_meta",
    "all_gather_rows",
    "broadcast_flag",
    "gather_captures",
]


def _dist():
    import torch.distributed as dist

    return dist


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialised."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous shard ``[start, end)`` of ``n`` rows for ``rank`` (sizes differ by at most 1)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _comm_device(t: torch.Tensor) -> torch.device:
    dist = _dist()
    if t.device.type != "cpu" and dist.get_backend() == "gloo":
        return torch.device("cpu")
    return t.device


def all_gather_meta(values: torch.Tensor) -> torch.Tensor:
    """All-gather a small 1-D int64 tensor: returns ``(world, k)`` on every rank."""
    dist = _dist()
    dev = _comm_device(values)
    local = values.to(dev, torch.int64).contiguous()
    out = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(out, local)
    return torch.stack(out).to(values.device)


def all_gather_rows(t: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """All-gather ``t`` (``rows[rank]`` rows, same trailing shape and dtype on every rank)
    and return the rows of all ranks concatenated in rank order."""
    dist = _dist()
    dev = _comm_device(t)
    width = max(rows)
    local = t.to(dev)
    if local.shape[0] < width:
        pad = local.new_zeros((width - local.shape[0], *local.shape[1:]))
        local = torch.cat([local, pad])
    local = local.contiguous()
    out = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(out, local)
    return torch.cat([o[:r] for o, r in zip(out, rows)]).to(t.device)


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank (so that all ranks take the same branch)."""
    dist = _dist()
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dev = _comm_device(t)
    t = t.to(dev)
    dist.broadcast(t, src=0)
    return bool(t.item())


def gather_captures(
    names: list[str],
    acts: dict[str, tuple[torch.Tensor, torch.Tensor]],
    errors: dict[str, str],
    batch: int,
    local_x: torch.Tensor | None,
    local_y: torch.Tensor | None,
    *,
    rank: int,
    live: bool,
    device: torch.device,
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], Any, Any]:
    """All-gather the captured ``{layer: (rows, sample_index)}`` of ``names`` and the live
    inputs / labels, in rank order. Returns ``(acts, x, y)`` on every rank.

    A first gather of a small table (per layer: captured?, rows, features; then the batch
    size and the sizes of ``x`` and ``y``) lets every rank agree on the shapes. A layer
    missing on some rank, or with different feature sizes, is left out and its reason
    added to ``errors``. In live mode (``live=True``) sample indices are shifted by the
    batch sizes of the lower ranks, so that they index the concatenated batch.
    """
    meta = []
    for n in names:
        if n in acts:
            z, _ = acts[n]
            meta += [1, z.shape[0], z.shape[1]]
        else:
            meta += [0, 0, 0]
    meta += [batch]
    meta += [-1 if local_x is None else local_x.shape[0]]
    meta += [-1 if local_y is None else local_y.shape[0]]
    table = all_gather_meta(torch.tensor(meta, dtype=torch.int64, device=device))
    table = table.cpu().tolist()
    batches = [row[3 * len(names)] for row in table]
    offset = sum(batches[:rank]) if live else 0
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for i, n in enumerate(names):
        ok = [row[3 * i] for row in table]
        rows = [row[3 * i + 1] for row in table]
        dims = {row[3 * i + 2] for row in table}
        if not all(ok) or len(dims) != 1:
            if n not in errors:
                errors[n] = (
                    "the layer produced no output on some rank"
                    if not all(ok)
                    else f"feature sizes differ across ranks: {sorted(dims)}"
                )
            continue
        z, idx = acts[n]
        gz = all_gather_rows(z, rows)
        gi = all_gather_rows(idx + offset, rows)
        out[n] = (gz, gi)
    gx = gy = None
    for pos, local in ((1, local_x), (2, local_y)):
        sizes = [row[3 * len(names) + pos] for row in table]
        if min(sizes) < 0:
            continue
        g = all_gather_rows(local.to(device), sizes)
        if pos == 1:
            gx = g
        else:
            gy = g
    return out, gx, gy
