"""The labelled detector benchmark: every detector against runs of real training whose labels
say which indicators must fire (and from which step on) and which must not.

    python benchmarks/detectors.py                 # records the suite's runs once, then scores
    python benchmarks/detectors.py --small         # the shorter runs the tests use
    python benchmarks/detectors.py --rerecord      # record again

Prints, per indicator, true positives, false positives (on healthy runs separately), misses and
the median detection delay in steps after the labelled onset, for infoscope's detectors and, in
the same run, for the plain rules a user writes by hand (a fixed fraction of the initial value,
as verl and TRL users do on ``actor/entropy``). The goal: no false alarm at warning or above on
any healthy run, every labelled pathology detected. The cases are listed in
``benchmarks/detector_suite.py``; the shipped sample runs are cases too.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for p in (_HERE, _HERE.parent):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import detector_suite as S  # noqa: E402

from diagnostics.cli.base import sample_runs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--runs",
        type=Path,
        default=Path("runs/detector-suite"),
        help="where the suite's own runs are recorded (default runs/detector-suite)",
    )
    p.add_argument(
        "--samples",
        type=Path,
        default=None,
        help="the shipped sample runs (default: the project's)",
    )
    p.add_argument("--small", action="store_true", help="the shorter runs the tests use")
    p.add_argument("--rerecord", action="store_true", help="record the suite's runs again")
    p.add_argument("--only", nargs="*", help="case names to evaluate (default: all)")
    args = p.parse_args(argv)  # fmt: skip
    samples = args.samples or sample_runs()
    runs = args.runs / ("small" if args.small else "full")
    t0 = time.perf_counter()
    S.record(runs, args.only, small=args.small, force=args.rerecord)
    t_rec = time.perf_counter() - t0
    cases = [c for c in S.CASES if not args.only or c.name in args.only]
    missing = [c.name for c in cases if not (S.run_dir(c, samples, runs) / "run.sqlite").exists()]
    if missing:
        print(f"runs not found (skipped): {', '.join(missing)}")
    t1 = time.perf_counter()
    ours = S.evaluate(cases, samples, runs, S.detector_alerts)
    t_ours = time.perf_counter() - t1
    anchor = S.evaluate(cases, samples, runs, lambda path, case: S.anchor_alerts(path))
    n_healthy = sum(o.healthy for o in ours)
    print(
        f"\n{len(ours)} runs ({n_healthy} healthy, {len(ours) - n_healthy} with a labelled "
        f"pathology); recording {t_rec:.0f} s, detectors replayed in {t_ours:.1f} s\n"
    )
    print("infoscope detectors")
    print(S.table(ours).to_string(index=False))
    print("\nanchor: plain rules written by hand (a fixed fraction of the initial value, ...)")
    print(S.table(anchor).to_string(index=False))
    print("\nper run (infoscope):")
    for o in ours:
        fired = ", ".join(
            f"{k} {'after ' + str(d) + ' steps' if ok else 'MISSED'}"
            for k, (ok, d) in o.detected.items()
        )
        print(
            f"  {o.case:26s} {'healthy ' if o.healthy else 'pathology'}  "
            f"{fired or '-'}; false alarms: {', '.join(o.false_alarms) or 'none'}; "
            f"info notes: {o.info_notes}"
        )
    ok, problems = S.goal_met(ours)
    a_ok, a_problems = S.goal_met(anchor)
    print(f"\ngoal (no false alarm >= warning on a healthy run, every pathology detected): "
          f"infoscope {'MET' if ok else 'NOT MET'}; anchor {'met' if a_ok else 'not met'} "
          f"({len(a_problems)} problems)")  # fmt: skip
    for line in problems:
        print(f"  {line}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
