"""KSG mutual information: infoscope's ksg_mi against npeet-plus's mi on the same inputs.

    python benchmarks/mi.py            # n in {2000, 5000, 20000} x d in {2, 10, 25, 50} per side
    python benchmarks/mi.py --quick    # n in {2000, 5000} x d in {2, 25}: well under a minute
    python benchmarks/mi.py --backends # also time every ksg_mi backend (kdtree, brute, torch)

Each cell draws x ~ N(0, I_d), y = x + N(0, I_d) (float64), then times
``npeet_plus.mi(x, y, k=3)`` (which adds its own 1e-10 uniform noise) and
``diagnostics.ksg_mi(x, y, k=3, standardize=False)`` (seeded 1e-10 noise, backend
"auto", ``torch.get_num_threads()`` worker threads) on the same arrays, best of three
runs for sub-second cells (``--repeat`` to change). It prints wall times and their
ratio npeet / ours (> 1: ours is faster), process CPU times (all threads; on a
shared machine wall time mostly measures the neighbours' load) and their ratio, the
peak memory of each call, our estimate in nats and its difference from npeet's (the
two add different 1e-10 noise, which moves a neighbour count only on a near-tie, so
the difference is ~0).

Peak memory: the process's peak resident set size (VmHWM from /proc/self/status)
during the call minus the resident size before it, after resetting the peak with
``/proc/self/clear_refs`` (Linux). This counts every allocation (numpy, torch, scipy
and sklearn C/C++ internals, thread stacks), which tracemalloc would not. Where
/proc is unavailable it falls back to tracemalloc (Python/numpy allocations only)
and says so.

npeet cells predicted to take more than --npeet-limit seconds (default 60; from the
same d at the previous n, scaled by (n / n_prev)^2) are skipped and marked so.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import math
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from functools import partial

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import npeet_plus  # noqa: E402
import torch  # noqa: E402

from diagnostics.estimators import ksg_mi  # noqa: E402

_PROC = os.path.exists("/proc/self/clear_refs") and os.path.exists("/proc/self/status")


def _fix_malloc() -> None:
    """Make glibc return freed large blocks to the OS (fixed mmap threshold), so that
    the resident size falls back between cells and each cell's peak can be measured."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: fixed, disables the dynamic raise
        libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
    except OSError:
        pass


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(fn: Callable[[], float], repeat: int) -> tuple[float, float, float, float]:
    """(best wall seconds, CPU seconds of that run, value, peak extra MiB of the first run)."""
    gc.collect()
    if _PROC and _reset_peak():
        before = _status_kib("VmRSS")
        c0, t0 = time.process_time(), time.perf_counter()
        value = fn()
        best, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = (_status_kib("VmHWM") - before) / 1024.0
    else:
        tracemalloc.start()
        c0, t0 = time.process_time(), time.perf_counter()
        value = fn()
        best, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    if repeat <= 0:  # adaptive: best of 3 for sub-second cells, one run otherwise
        repeat = 3 if best < 1.0 else 1
    for _ in range(repeat - 1):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall, c = time.perf_counter() - t0, time.process_time() - c0
        if wall < best:
            best, cpu = wall, c
    return best, cpu, value, peak


def run_ours(x: np.ndarray, y: np.ndarray, backend: str = "auto") -> float:
    return float(ksg_mi(x, y, k=3, standardize=False, backend=backend))


def run_npeet(x: np.ndarray, y: np.ndarray) -> float:
    return float(npeet_plus.mi(x, y, k=3)) * math.log(2)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="n in {2000, 5000}, d in {2, 25}")
    ap.add_argument(
        "--backends", action="store_true", help="also time each ksg_mi backend (n <= 5000)"
    )
    ap.add_argument(
        "--repeat", type=int, default=0, help="runs per cell, best kept (0: 3 if < 1 s else 1)"
    )
    ap.add_argument(
        "--npeet-limit", type=float, default=60.0, help="skip npeet cells predicted slower"
    )
    ap.add_argument("--n", type=int, nargs="*", help="override the sample sizes")
    ap.add_argument("--d", type=int, nargs="*", help="override the dimensions (per side)")
    args = ap.parse_args()

    _fix_malloc()
    ns = args.n or ([2000, 5000] if args.quick else [2000, 5000, 20000])
    ds = args.d or ([2, 25] if args.quick else [2, 10, 25, 50])
    mem_kind = "peak RSS growth (VmHWM - VmRSS before)" if _PROC else "tracemalloc peak"
    print(
        f"# ksg_mi vs npeet_plus.mi, k=3, float64; torch threads={torch.get_num_threads()}, "
        f"cores={os.cpu_count()}, load average={os.getloadavg()[0]:.1f}"
    )
    print(
        f"# memory: {mem_kind}, MiB; ratio = npeet / ours (> 1: ours faster); cpu = "
        "process CPU seconds (all threads): the fair measure when the machine is shared"
    )
    # warm up: imports, thread pools
    w = np.random.default_rng(0).standard_normal((300, 30))
    for b in ("kdtree", "brute", "torch"):
        run_ours(w[:, :2], w[:, 2:4], b)
        run_ours(w[:, :15], w[:, 15:], b)
    run_npeet(w[:, :2], w[:, 2:4])
    run_npeet(w[:, :15], w[:, 15:])

    hdr = (
        f"{'n':>6} {'d':>3} | {'npeet s':>8} {'ours s':>7} {'ratio':>6} | "
        f"{'npeet cpu':>9} {'ours cpu':>8} {'ratio':>6} | {'npeet MiB':>9} {'ours MiB':>8} | "
        f"{'MI nats':>8} {'|diff|':>7}"
    )
    if args.backends:
        hdr += " | kdtree s  brute s  torch s"
    print(hdr)
    print("-" * len(hdr))
    last_npeet: dict[int, tuple[int, float]] = {}
    t_start = time.perf_counter()
    for d in ds:
        for n in ns:
            rng = np.random.default_rng(1000 * n + d)
            x = rng.standard_normal((n, d))
            y = x + rng.standard_normal((n, d))
            o_t, o_c, o_v, o_m = measure(partial(run_ours, x, y), args.repeat)
            pred = None
            if d in last_npeet:
                n0, t0 = last_npeet[d]
                pred = t0 * (n / n0) ** 2
            if pred is not None and pred > args.npeet_limit:
                row = (
                    f"{n:>6} {d:>3} | {'skipped':>8} {o_t:>7.3f} {'-':>6} | {'-':>9} {o_c:>8.3f} "
                    f"{'-':>6} | {'-':>9} {o_m:>8.1f} | {o_v:>8.4f} {'-':>7}  "
                    f"(npeet predicted {pred:.0f} s > {args.npeet_limit:.0f} s: skipped)"
                )
            else:
                np.random.seed(0)
                p_t, p_c, p_v, p_m = measure(partial(run_npeet, x, y), args.repeat)
                last_npeet[d] = (n, p_t)
                row = (
                    f"{n:>6} {d:>3} | {p_t:>8.3f} {o_t:>7.3f} {p_t / o_t:>5.1f}x | "
                    f"{p_c:>9.3f} {o_c:>8.3f} {p_c / o_c:>5.1f}x | {p_m:>9.1f} {o_m:>8.1f} | "
                    f"{o_v:>8.4f} {abs(p_v - o_v):>7.0e}"
                )
            if args.backends:
                for b in ("kdtree", "brute", "torch"):
                    if n <= 5000:
                        tb = measure(partial(run_ours, x, y, b), 1)[0]
                        row += f" {tb:>8.3f}"
                    else:
                        row += f" {'-':>8}"
            print(row, flush=True)
    print(f"# total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
