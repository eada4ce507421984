"""TensorBoard import speed: ``infoscope import-tb`` against tbparse on the same event files.

    python benchmarks/offline.py [--tags 100] [--steps 10000] [--python-reader]

Writes ``tags x steps`` scalar events (1,000,000 by default) with torch's SummaryWriter,
then times, in the same run, :func:`diagnostics.offline.import_tensorboard` (read, rename,
write the run, replay the collapse detectors) and ``tbparse.SummaryReader(logdir).scalars``
(the package TensorBoard users reach for; it reads into a DataFrame and writes nothing).
Goal (issue 13): no slower than tbparse, ratio <= 1. ``--python-reader`` also times
import-tb with TensorBoard's in-process Python reader instead of its data server.
tbparse is a benchmark-only dependency (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def write_events(logdir: Path, tags: int, steps: int) -> float:
    from torch.utils.tensorboard import SummaryWriter

    names = [f"train/metric{i:03d}" for i in range(tags)]
    t0 = time.perf_counter()
    writer = SummaryWriter(str(logdir), max_queue=10_000, flush_secs=600)
    for step in range(steps):
        for i, name in enumerate(names):
            writer.add_scalar(name, 1.0 / (1 + step) + i, step)
    writer.close()
    return time.perf_counter() - t0


def time_import(logdir: Path, out: Path, reader: str, expected: int) -> float:
    from diagnostics.offline import import_tensorboard

    t0 = time.perf_counter()
    (result,) = import_tensorboard(logdir, out, reader=reader, progress=False)
    elapsed = time.perf_counter() - t0
    assert result.log.points == expected, (result.log.points, expected)
    return elapsed


def time_tbparse(logdir: Path, expected: int) -> float:
    import tbparse

    t0 = time.perf_counter()
    df = tbparse.SummaryReader(str(logdir)).scalars
    elapsed = time.perf_counter() - t0
    assert len(df) == expected, (len(df), expected)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--python-reader", action="store_true")
    args = parser.parse_args()
    try:
        import tbparse  # noqa: F401
    except ImportError:
        raise SystemExit("this benchmark needs tbparse: pip install tbparse") from None
    from diagnostics.offline.tensorboard import resolve_reader

    n = args.tags * args.steps
    tmp = Path(tempfile.mkdtemp(prefix="infoscope-bench-offline-"))
    try:
        logdir = tmp / "tb"
        t_write = write_events(logdir, args.tags, args.steps)
        size = sum(f.stat().st_size for f in logdir.iterdir()) / 1e6
        print(
            f"wrote {n:,} scalar events ({args.tags} tags x {args.steps:,} steps, {size:.0f} MB) "
            f"with SummaryWriter in {t_write:.1f} s"
        )
        t_tbparse = time_tbparse(logdir, n)
        print(f"tbparse SummaryReader(...).scalars:      {t_tbparse:7.2f} s")
        reader = resolve_reader("auto")
        t_ours = time_import(logdir, tmp / "run", reader, n)
        print(f"infoscope import-tb (reader {reader}):   {t_ours:7.2f} s  (incl. writing the run)")
        print(f"ratio import-tb / tbparse: {t_ours / t_tbparse:.2f} (goal <= 1)")
        if args.python_reader:
            t_py = time_import(logdir, tmp / "run-python", "python", n)
            print(
                f"infoscope import-tb (reader python):    {t_py:7.2f} s  "
                f"(ratio to tbparse {t_py / t_tbparse:.2f})"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
