"""Train a small MLP with a probe-mode and a live-mode Monitor (used by
test_probes_distributed.py).

Run alone (one process, the whole batch) or under
``python -m torch.distributed.run --nproc_per_node=2 --standalone`` (DDP on gloo, each
rank a contiguous shard of the batch): the run logs written by rank 0 must hold the
same estimates as the single-process run.

usage: python ddp_probe_script.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from probes import Monitor, register_metric


def order_sensitive(z, y, sample_index):
    """Depends on which rows come in which order and on their alignment with labels."""
    w = torch.arange(1, z.shape[0] + 1, dtype=z.dtype, device=z.device)
    return (z.sum(1) * w).sum() / w.sum() + (y.to(z.dtype) * w).sum() + sample_index[0] * 1e-3


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    # expensive: the time budget's decision is broadcast from rank 0 at every record
    register_metric("test/order", order_sensitive, expensive=True, overwrite=True)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 6, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    probe_x = torch.randn(45, 6, generator=g)  # 45 -> 40 rows (max_rows), 20 per rank
    probe_y = torch.randint(0, 3, (45,), generator=g)
    net = nn.parallel.DistributedDataParallel(model) if distributed else model

    metrics = ["act_stats", "grad_norm", "weight_norm", "test/order"]
    probe = Monitor(
        net, out / "probe", layers=["1", "3"], probe_inputs=probe_x, probe_labels=probe_y,
        every=2, metrics=metrics, max_rows=40, collapse=False, budget=1000.0,
    )  # fmt: skip
    live = Monitor(
        net, out / "live", layers=["1", "3"], every=2, max_rows=48, collapse=False,
        metrics=["act_stats", "test/order"], budget=None,
    )  # fmt: skip
    for step in range(5):
        xs, ys = x.tensor_split(world)[rank], y.tensor_split(world)[rank]
        net.zero_grad()
        loss = nn.functional.cross_entropy(net(xs), ys)
        loss.backward()  # DDP averages the gradients: the full-batch gradient
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.2 * p.grad
        probe.step(step, loss=loss)
        live.step(step, labels=ys)
    info = {
        "rank": rank,
        "world": world,
        "pid": os.getpid(),
        "probe_writer": probe.writer is not None,
        "live_writer": live.writer is not None,
        "last_probe": len(probe.last),
    }
    probe.close()
    live.close()
    (out / f"rank{rank}.json").write_text(json.dumps(info))
    if distributed:
        # both ranks tear gloo down together: a rank that destroyed its group while the
        # other still wrote its run log aborted now and then at exit (SIGABRT, ~1 in 10)
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
