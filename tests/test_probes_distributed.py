"""DDP for real: torchrun with 2 gloo ranks on CPU against a single process on the same data."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diagnostics import open_run

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("ddp_probe_script.py")


def _rows(run_dir: Path) -> dict:
    with open_run(run_dir) as r:
        df = r.scalars()
        meta = r.meta
    rows = {}
    for s, m, lay, v in zip(df.step, df.metric, df.layer, df.value):
        if m in ("probe/seconds", "train/loss"):  # wall time; each rank's own shard loss
            continue
        rows[(int(s), m, None if isinstance(lay, float) else lay)] = v
    return rows, meta


def _single_process(out: Path) -> None:
    spec = importlib.util.spec_from_file_location("ddp_probe_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    argv, threads = sys.argv, torch.get_num_threads()
    sys.argv = [str(SCRIPT), str(out)]
    try:
        mod.main()
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_two_ranks_match_single_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    ddp_out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        str(SCRIPT), str(ddp_out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    single_out = tmp_path / "single"
    _single_process(single_out)

    info = [json.loads((ddp_out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["world"] for i in info] == [2, 2]
    # only rank 0 opened a run log
    assert info[0]["probe_writer"] and info[0]["live_writer"]
    assert not info[1]["probe_writer"] and not info[1]["live_writer"]
    assert info[1]["last_probe"] == 0  # rank 1 computed nothing

    for mode in ("probe", "live"):
        ddp, ddp_meta = _rows(ddp_out / mode)
        single, _ = _rows(single_out / mode)
        assert ddp_meta["pid"] == info[0]["pid"]
        assert ddp_meta["probes"]["world_size"] == 2
        assert set(ddp) == set(single), mode
        assert {k[1] for k in ddp} >= {"act/mean", "test/order"}
        assert {k[0] for k in ddp} == {0, 2, 4}
        for key, v in single.items():
            w = ddp[key]
            assert math.isclose(w, v, rel_tol=1e-5, abs_tol=1e-6), (mode, key, w, v)
