"""Every estimator on CUDA against the CPU: equal values, and the time each takes.

    python benchmarks/gpu_check.py            # the check (sizes that fit a short lease)
    python benchmarks/gpu_check.py --big      # adds the issues' GPU goals (KSG n=100k d=64,
                                              # DSE N=10k, token entropy (8, 4096, 152064) bf16)

Without a CUDA device it runs the CPU side only and says so (exit code 0), so the script
itself is tested here; on a machine with a GPU it prints one line per estimator:
CPU value, CUDA value, their difference, CPU and CUDA time and the speed-up, and exits
non-zero if any difference exceeds its tolerance.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import diagnostics as d  # noqa: E402
from diagnostics import lm, mi  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[str], torch.Tensor], device: str, repeats: int = 2) -> tuple[float, float]:
    value = fn(device)  # warm-up (CUDA context, kernels, allocator)
    _sync(device)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn(device)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return float(torch.as_tensor(value).double().mean().cpu()), best


def cases(big: bool) -> list[tuple[str, Callable[[str], torch.Tensor], float]]:
    g = torch.Generator().manual_seed(0)
    n = 3000
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = 0.6 * x + 0.8 * torch.randn(n, 4, generator=g, dtype=torch.float64)
    labels = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    t = torch.tanh(torch.randn(n, 8, generator=g, dtype=torch.float64))
    z = torch.randn(2000, 128, generator=g, dtype=torch.float64)
    logits = torch.randn(4, 512, 32000, generator=g) * 3
    attn = torch.softmax(torch.randn(2, 4, 64, 64, generator=g).tril() * 4, dim=-1)

    out: list[tuple[str, Callable[[str], torch.Tensor], float]] = [
        ("ksg_mi n=3000 d=4+4", lambda dev: mi.ksg_mi(x.to(dev), y.to(dev), noise=0), 1e-9),
        ("ksg_mi labels (Ross)", lambda dev: mi.ksg_mi(x.to(dev), labels.to(dev), noise=0), 1e-9),
        ("binning_mi", lambda dev: mi.binning_mi(t.to(dev), labels.to(dev)), 1e-9),
        ("kde_mi", lambda dev: mi.kde_mi(t.to(dev), labels.to(dev)), 1e-7),
        ("renyi_mi", lambda dev: mi.renyi_mi(x[:1000].to(dev), y[:1000].to(dev)), 1e-6),
        ("cs_mi", lambda dev: mi.cs_mi(x[:1000].to(dev), y[:1000].to(dev)), 1e-6),
        ("cca_mi", lambda dev: mi.cca_mi(x.to(dev), y.to(dev)), 1e-9),
        ("kl_entropy", lambda dev: mi.kl_entropy(x.to(dev)), 1e-9),
        ("weighted_kl_entropy", lambda dev: mi.weighted_kl_entropy(t.to(dev)), 1e-9),
        ("dse N=2000 D=128", lambda dev: d.diffusion_spectral_entropy(z.to(dev)), 1e-8),
        (
            "dsmi N=2000 10 classes",
            lambda dev: d.diffusion_spectral_mutual_information(
                z.to(dev), (torch.arange(2000) % 10).to(dev)
            ),
            1e-8,
        ),
        ("effective_rank", lambda dev: d.effective_rank(z.to(dev)), 1e-8),
        ("von_neumann_entropy", lambda dev: d.von_neumann_entropy(z.to(dev)), 1e-8),
        ("alpha_req", lambda dev: d.alpha_req(z.to(dev)), 1e-6),
        ("token_entropy (4,512,32000) f32", lambda dev: lm.token_entropy(logits.to(dev)), 1e-4),
        (
            "token_entropy bf16",
            lambda dev: lm.token_entropy(logits.to(dev, torch.bfloat16)),
            1e-3,
        ),
        ("attention_entropy", lambda dev: lm.attention_entropy(attn.to(dev))["entropy"], 1e-5),
    ]
    if big:
        xb = torch.randn(100_000, 64, generator=g)
        yb = xb + torch.randn(100_000, 64, generator=g)
        zb = torch.randn(10_000, 128, generator=g, dtype=torch.float64)
        out += [
            (
                "GOAL ksg_mi n=100k d=64 (< 2 s)",
                lambda dev: mi.ksg_mi(xb.to(dev), yb.to(dev)),
                1e-4,
            ),
            ("GOAL dse N=10k (< 2 s)", lambda dev: d.diffusion_spectral_entropy(zb.to(dev)), 1e-6),
        ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="add the issues' GPU-size goals")
    args = parser.parse_args()
    has_cuda = torch.cuda.is_available()
    print(
        f"torch {torch.__version__}; CUDA: {torch.cuda.get_device_name() if has_cuda else 'none'}"
    )
    failures = 0
    print(
        f"{'estimator':36s} {'cpu':>14s} {'cuda':>14s} {'|diff|':>9s} {'cpu s':>8s} {'cuda s':>8s} {'x':>6s}"
    )
    for name, fn, tol in cases(args.big):
        cpu_value, cpu_time = timed(fn, "cpu", repeats=1)
        if not has_cuda:
            print(f"{name:36s} {cpu_value:14.8f} {'-':>14s} {'-':>9s} {cpu_time:8.3f}")
            continue
        cuda_value, cuda_time = timed(fn, "cuda")
        diff = abs(cpu_value - cuda_value)
        ok = diff <= tol * max(1.0, abs(cpu_value))
        failures += not ok
        print(
            f"{name:36s} {cpu_value:14.8f} {cuda_value:14.8f} {diff:9.2e} {cpu_time:8.3f} "
            f"{cuda_time:8.3f} {cpu_time / cuda_time:6.1f}{'' if ok else '  MISMATCH'}"
        )
    if args.big and has_cuda:
        logits = torch.randn(8, 4096, 152064, device="cuda", dtype=torch.bfloat16)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        lm.token_entropy(logits)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        extra = torch.cuda.max_memory_allocated() - base
        print(
            f"GOAL token_entropy (8, 4096, 152064) bf16: {dt:.3f} s, peak extra "
            f"{extra / 2**20:.0f} MiB = {extra / logits.nbytes:.3f} of the logits"
        )
    if not has_cuda:
        print("no CUDA device: CPU values only (run this on a GPU machine for the comparison)")
    print("gpu_check:", "FAILED" if failures else "ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
