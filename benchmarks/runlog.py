"""Run-log throughput: rows written per second through RunWriter.log, and the time to
read a 1,000,000-row run into a DataFrame.

    python benchmarks/runlog.py

Goals (issue 2): writing 100k rows costs under 1 s; reading 1M rows under 2 s.
The anchor for reading is a plain ``pandas.read_sql_query`` of the same table, measured
in the same run.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import pandas as pd

from diagnostics import RunWriter, open_run


def write_rows(run_dir: Path, steps: int, layers: int, metrics: int) -> float:
    names = [f"repr/metric{i}" for i in range(metrics)]
    t0 = time.perf_counter()
    with RunWriter(run_dir) as w:
        for step in range(steps):
            for layer in range(layers):
                w.log(
                    step, {m: step * 0.001 + i for i, m in enumerate(names)}, layer=f"layer{layer}"
                )
    return time.perf_counter() - t0


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="infoscope-bench-"))
    # 100k rows: 100 steps x 50 layers x 20 metrics
    t_write = write_rows(tmp / "small", steps=100, layers=50, metrics=20)
    print(
        f"write 100,000 rows through RunWriter.log: {t_write:.3f} s "
        f"({100_000 / t_write:,.0f} rows/s; goal < 1 s: ratio to goal {t_write / 1.0:.2f})"
    )

    # 1M rows: 1000 steps x 50 layers x 20 metrics
    t_write_1m = write_rows(tmp / "big", steps=1000, layers=50, metrics=20)
    print(f"write 1,000,000 rows: {t_write_1m:.2f} s ({1e6 / t_write_1m:,.0f} rows/s)")

    reader = open_run(tmp / "big")
    t_read = best_of(lambda: reader.scalars())
    assert len(reader.scalars()) == 1_000_000

    conn = sqlite3.connect(tmp / "big" / "run.sqlite")
    anchor_sql = (
        "SELECT s.id, s.step, s.wall_time, m.name AS metric, l.name AS layer, s.value "
        "FROM scalars s JOIN names m ON m.id = s.metric_id LEFT JOIN names l ON l.id = s.layer_id"
    )
    t_anchor = best_of(lambda: pd.read_sql_query(anchor_sql, conn), repeats=1)
    t_filtered = best_of(lambda: reader.scalars(metrics=["repr/metric3"]))
    print(
        f"read 1,000,000 rows into a DataFrame: {t_read:.2f} s (goal < 2 s: ratio to goal "
        f"{t_read / 2.0:.2f}); pandas.read_sql_query anchor {t_anchor:.2f} s "
        f"(infoscope / anchor = {t_read / t_anchor:.2f})"
    )
    print(f"read one metric (50,000 of 1,000,000 rows): {t_filtered:.3f} s")
    size = (tmp / "big" / "run.sqlite").stat().st_size
    print(f"file size for 1M rows: {size / 2**20:.1f} MiB ({size / 1e6:.1f} bytes/row)")


if __name__ == "__main__":
    main()
