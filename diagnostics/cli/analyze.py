"""`infoscope analyze`: saved activations and logits (snapshots) into a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from diagnostics.cli.base import CLIError, Handler, command


@command("analyze", help="analyse saved activations/logits (.npz snapshots) into a run")
def _analyze(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("snapshots", nargs="+", type=Path, help=".npz files, one per step")
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
        "--rl",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the logits come from RL fine-tuning (--no-rl: they do not); judges token-entropy "
        "collapse, which in pretraining is learning (default: decided from the series)",
    )

    def run(args: argparse.Namespace) -> int:
        from diagnostics.offline import analyze_snapshots
        from diagnostics.runlog import RunLogError

        if (args.out / "run.sqlite").exists():
            raise CLIError(f"--out: {args.out} already holds a run; choose a new folder")
        try:
            out = analyze_snapshots(
                args.snapshots,
                args.out,
                metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
                method=args.method,
                sigma=args.sigma,
                rl=args.rl,
            )
        except (ValueError, RunLogError) as exc:
            raise CLIError(str(exc)) from None
        print(
            f"wrote {out} ({len(args.snapshots)} snapshots); view: infoscope dashboard {out.parent}"
        )
        return 0

    return run
