"""`infoscope import-tb`: TensorBoard event files (verl, TRL, any SummaryWriter) as runs."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from diagnostics.cli.base import CLIError, Handler, add_run_output_options, command, one_line


@command(
    "import-tb",
    help="import TensorBoard event files (verl, TRL, any SummaryWriter) as runs",
)
def _import_tb(p: argparse.ArgumentParser) -> Handler:
    p.description = (
        "Import every scalar series of every TensorBoard run below LOGDIR. Known tags (verl's "
        "and TRL's entropy, reward, KL, response length) get infoscope's names, the others "
        "keep theirs; the collapse detectors are replayed over the result. One run is "
        "written to --out; several to --out/<run name> (LOGDIR's own to --out/_root)."
    )
    p.add_argument("logdir", type=Path, help="TensorBoard log folder")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="TAG=METRIC",
        help="also write TAG as METRIC (repeatable), e.g. --map "
        "train/objective/entropy=lm/token_entropy/mean",
    )
    p.add_argument(
        "--run",
        action="append",
        dest="runs",
        metavar="NAME",
        help="import only this TensorBoard run (its folder relative to LOGDIR; repeatable)",
    )
    p.add_argument(
        "--reader",
        choices=["auto", "server", "python"],
        default="auto",
        help="TensorBoard's data server (fast) or its Python reader; auto: the server when "
        "installed",
    )
    add_run_output_options(p, what="the log")

    def run(args: argparse.Namespace) -> int:
        from diagnostics.offline.names import parse_map
        from diagnostics.offline.tensorboard import import_tensorboard
        from diagnostics.runlog import RunLogError

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                results = import_tensorboard(
                    args.logdir,
                    args.out,
                    mapping=parse_map(args.map),
                    runs=args.runs,
                    overwrite=args.overwrite,
                    rl=args.rl,
                    reader=args.reader,
                    progress=False if args.quiet else None,
                )
        except (ValueError, RunLogError, ImportError, OSError) as exc:
            raise CLIError(one_line(exc)) from None
        for w in caught:
            print(f"infoscope: warning: {one_line(w.message)}", file=sys.stderr)
        for imported in results:
            print(imported.describe())
        root = args.out.parent if len(results) == 1 else args.out
        print(f"view: infoscope dashboard {root}")
        return 0

    return run
