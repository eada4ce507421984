"""torch.distributed helpers for the monitor (private).

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

import torch

__all__ = [
    "rank_and_world",
    "shard_bounds",
    "all_gather_meta",
    "all_gather_rows",
    "broadcast_flag",
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
