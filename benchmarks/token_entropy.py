"""Benchmark: per-token entropy of LM logits, infoscope vs. two anchors, in the same run.

Methods (all return float32 entropies of shape logits.shape[:-1]):

- ``infoscope``: ``diagnostics.token_entropy`` (float32 row chunks chosen by bytes, two
  reused work buffers, shifted formula).
- ``verl_chunked``: verl's formula ``logsumexp(z) - sum softmax(z) z`` over 2048-row
  chunks upcast to float32 (written here from its description, not copied).
- ``naive``: ``logp = log_softmax(z.float()); H = -(exp(logp) * logp).sum(-1)`` on the whole
  tensor at once.

Memory is measured honestly per method:

- CPU: each method runs once in a fresh child process. The child fills the logits in place
  (``normal_``, no temporaries), reads its peak resident set size
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), runs the method and reads the peak
  again; the difference is the peak extra memory the method needed on top of the logits
  (torch's CPU allocations are plain ``malloc`` / ``mmap``, so RSS sees them; tracemalloc
  would not).
- CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus
  the memory allocated before the call (the caching allocator's own view).

Time: one process holds the logits and calls the methods round-robin, ``--repeats`` rounds,
so that load from other processes on a shared machine hits all methods alike; wall clock
(after ``torch.cuda.synchronize()`` on CUDA) min and median, and on the CPU the median
process CPU time (less sensitive to other processes than wall time, though thread-pool
spinning under contention still inflates it). Ratios are against ``verl_chunked`` measured
in the same run. Accuracy: max absolute error against a float64 reference on the first rows.

Usage::

    python benchmarks/token_entropy.py            # (8, 2048, 32000) float32 on the CPU
    python benchmarks/token_entropy.py --quick    # (2, 2048, 32000)
    python benchmarks/token_entropy.py --device cuda   # (8, 4096, 152064) bfloat16

Goal: no slower than verl's chunked formula; peak extra memory <= a quarter of the logits.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("infoscope", "verl_chunked", "naive")
REF_ROWS = 256


def _method(name):
    import torch

    if name == "infoscope":
        from diagnostics import token_entropy

        return token_entropy

    if name == "verl_chunked":

        def verl_chunked(logits, rows=2048):
            flat = logits.reshape(-1, logits.shape[-1])
            out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
            for i in range(0, flat.shape[0], rows):
                z = flat[i : i + rows].float()
                pd = torch.softmax(z, dim=-1)
                out[i : i + rows] = torch.logsumexp(z, dim=-1) - (pd * z).sum(dim=-1)
            return out.view(logits.shape[:-1])

        return verl_chunked

    def naive(logits):
        logp = torch.log_softmax(logits.float(), dim=-1)
        return -(logp.exp() * logp).sum(dim=-1)

    return naive


def _make_logits(shape, dtype, device, seed=0):
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    return torch.empty(shape, dtype=dtype, device=device).normal_(0.0, 3.0, generator=g)


def _reference(z):
    import torch

    rows = z.reshape(-1, z.shape[-1])[:REF_ROWS].double()
    return torch.distributions.Categorical(logits=rows).entropy()


def _maxrss_bytes():
    # Linux reports ru_maxrss in KiB (macOS in bytes)
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def peak_extra(name, shape, dtype_name, device):
    """Peak extra memory (bytes) of one call of method ``name`` on fresh logits."""
    import torch

    fn = _method(name)
    # warm-up on a few rows: loads code pages and starts thread pools, which RSS would
    # otherwise charge to the method
    fn(_make_logits((1, 4, shape[-1]), getattr(torch, dtype_name), device))
    z = _make_logits(shape, getattr(torch, dtype_name), device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn(z)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    before = _maxrss_bytes()
    fn(z)
    return _maxrss_bytes() - before


def timings(names, shape, dtype_name, device, repeats):
    """Round-robin timing of the methods on one set of logits, plus accuracy."""
    import torch

    z = _make_logits(shape, getattr(torch, dtype_name), device)
    ref = _reference(z)
    cuda = device.startswith("cuda")
    fns = {n: _method(n) for n in names}
    res = {n: {"wall": [], "cpu": [], "max_err": None} for n in names}
    for _ in range(repeats):
        for n, fn in fns.items():
            if cuda:
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            h = fn(z)
            if cuda:
                torch.cuda.synchronize()
            res[n]["wall"].append(time.perf_counter() - t0)
            res[n]["cpu"].append(time.process_time() - c0)
            err = (h.reshape(-1)[:REF_ROWS].double() - ref).abs().max().item()
            res[n]["max_err"] = err
            del h
            if cuda:
                torch.cuda.empty_cache()
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="batch 2 instead of 8")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--shape", type=int, nargs=3, default=None, metavar=("B", "T", "V"))
    p.add_argument("--dtype", default=None, help="float32 on cpu, bfloat16 on cuda by default")
    p.add_argument("--repeats", type=int, default=2, help="round-robin timing rounds")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    cuda = args.device.startswith("cuda")
    if args.shape is not None:
        shape = tuple(args.shape)
    elif cuda:
        shape = (2, 4096, 152064) if args.quick else (8, 4096, 152064)
    else:
        shape = (2, 2048, 32000) if args.quick else (8, 2048, 32000)
    dtype = args.dtype or ("bfloat16" if cuda else "float32")

    if args.child:  # measure one method's memory in this fresh process, print it
        print(json.dumps({"peak_extra": peak_extra(args.child, shape, dtype, args.device)}))
        return 0

    import torch

    if cuda and not torch.cuda.is_available():
        print("CUDA requested but not available", file=sys.stderr)
        return 2
    n_bytes = math.prod(shape) * torch.empty((), dtype=getattr(torch, dtype)).element_size()
    print(
        f"token entropy of logits {shape} {dtype} on {args.device} "
        f"({n_bytes / 2**30:.2f} GiB); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}; "
        f"{args.repeats} round-robin repeats"
    )
    memory = {}
    for name in args.methods:
        if cuda:  # the caching allocator's counters are exact in-process
            memory[name] = peak_extra(name, shape, dtype, args.device)
            torch.cuda.empty_cache()
            continue
        cmd = [sys.executable, __file__, "--child", name, "--device", args.device]
        cmd += ["--shape", *map(str, shape), "--dtype", dtype]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{name}: memory run failed\n{out.stderr[-2000:]}", file=sys.stderr)
            memory[name] = float("nan")
            continue
        memory[name] = json.loads(out.stdout.strip().splitlines()[-1])["peak_extra"]
    times = timings(args.methods, shape, dtype, args.device, args.repeats)
    results = [
        {
            "method": n,
            "times": times[n]["wall"],
            "cpu": times[n]["cpu"],
            "max_err": times[n]["max_err"],
            "peak_extra": memory[n],
            "logits_bytes": n_bytes,
        }
        for n in args.methods
    ]

    anchor = next((r for r in results if r["method"] == "verl_chunked"), None)
    mem_kind = "peak CUDA alloc" if cuda else "peak RSS"
    print(
        f"\n{'method':<14}{'min s':>8}{'median s':>10}{'vs verl':>9}{'cpu s':>8}{'vs verl':>9}"
        f"{'extra ' + mem_kind:>22}{'/ logits':>10}{'max |err|':>11}"
    )
    for r in results:
        tmin, tmed, cpu = (
            min(r["times"]),
            statistics.median(r["times"]),
            statistics.median(r["cpu"]),
        )
        ratio = f"{tmin / min(anchor['times']):.2f}x" if anchor else "-"
        cratio = f"{cpu / statistics.median(anchor['cpu']):.2f}x" if anchor else "-"
        cpu_col = f"{cpu:>8.2f}{cratio:>9}" if not cuda else f"{'-':>8}{'-':>9}"  # host time only
        mib = r["peak_extra"] / 2**20
        frac = r["peak_extra"] / r["logits_bytes"]
        print(
            f"{r['method']:<14}{tmin:>8.3f}{tmed:>10.3f}{ratio:>9}{cpu_col}"
            f"{mib:>18.1f} MiB{frac:>10.3f}{r['max_err']:>11.2e}"
        )
    ours = next((r for r in results if r["method"] == "infoscope"), None)
    if ours and anchor:
        faster = min(ours["times"]) <= min(anchor["times"])
        small = ours["peak_extra"] <= ours["logits_bytes"] / 4
        print(
            f"\ngoal: no slower than verl_chunked: {'met' if faster else 'NOT met'}; "
            f"peak extra <= 1/4 of the logits: {'met' if small else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
