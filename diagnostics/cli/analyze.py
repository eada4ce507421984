"""`infoscope analyze`: saved activations and logits (.npz, .pt, .safetensors) into a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from diagnostics.cli.base import CLIError, Handler, add_run_output_options, command, one_line


@command(
    "analyze",
    help="analyse saved activations/logits (.npz, .pt, .safetensors dumps) into a run",
)
def _analyze(p: argparse.ArgumentParser) -> Handler:
    p.add_argument(
        "snapshots",
        nargs="+",
        type=Path,
        help="dump files (.npz, .pt, .safetensors; one per step, or one stacked file with a "
        "'step' array), or folders of them",
    )
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    p.add_argument(
        "--metrics",
        default="act_stats,effective_rank,von_neumann,dse,info_plane",
        help="comma-separated per-layer metrics (act_stats, effective_rank, von_neumann, "
        "dse, dsmi, info_plane)",
    )
    p.add_argument("--method", default="binning", help="information-plane estimator")
    p.add_argument("--sigma", type=float, default=10.0, help="DSE/DSMI kernel width")
    p.add_argument(
        "--layout",
        choices=["auto", "per-step", "stacked"],
        default="auto",
        help="one file per step, or one file with a leading step axis and a 'step' array "
        "(auto: stacked when 'step' holds more than one number)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="where the estimators run: cpu (default), cuda or cuda:N",
    )
    add_run_output_options(p, what="the logits")

    def run(args: argparse.Namespace) -> int:
        from diagnostics.offline import analyze_snapshots
        from diagnostics.runlog import RunLogError

        try:
            out = analyze_snapshots(
                args.snapshots,
                args.out,
                metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
                method=args.method,
                sigma=args.sigma,
                rl=args.rl,
                layout=args.layout,
                device=args.device,
                overwrite=args.overwrite,
                progress=False if args.quiet else None,
            )
        except (ValueError, RunLogError, ImportError, OSError) as exc:
            raise CLIError(one_line(exc)) from None
        print(
            f"wrote {out} ({len(args.snapshots)} dump path(s)); view: infoscope dashboard "
            f"{out.parent}"
        )
        return 0

    return run
