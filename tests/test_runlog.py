"""The run log: round trips, concurrency, crash safety, refusals, clear errors."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import diagnostics
from diagnostics import schema
from diagnostics.runlog import RunLogError, RunWriter, list_runs, open_run, summarize_runs


def test_scalars_round_trip_with_layers_and_whole_model(tmp_path):
    with RunWriter(tmp_path / "r", meta={"config": {"lr": 0.1}, "model_summary": "MLP"}) as w:
        for step in range(5):
            w.log(step, {"train/loss": 1.0 / (step + 1)})
            w.log(step, {"repr/effective_rank": step + 0.5, "act/mean": -step}, layer="enc.0")
    with open_run(tmp_path / "r") as r:
        df = r.scalars()
        assert list(df.columns[:6]) == ["id", "step", "wall_time", "metric", "layer", "value"]
        assert len(df) == 15
        loss = df[df.metric == "train/loss"]
        assert loss.layer.isna().all()
        np.testing.assert_allclose(loss.value, [1 / (s + 1) for s in range(5)])
        er = df[(df.metric == "repr/effective_rank") & (df.layer == "enc.0")]
        assert er.step.tolist() == list(range(5))
        np.testing.assert_allclose(er.value, np.arange(5) + 0.5)
        assert r.meta["config"] == {"lr": 0.1}
        assert r.meta["model_summary"] == "MLP"
        assert r.meta["schema_version"] == schema.SCHEMA_VERSION
        assert r.meta["infoscope_version"] == diagnostics.__version__
        assert r.meta["status"] == "finished"
        assert r.metrics() == ["act/mean", "repr/effective_rank", "train/loss"]
        assert r.layers() == ["enc.0"]
        assert r.step_range() == (0, 4)
        # filtered reads
        only = r.scalars(metrics="train/loss")
        assert set(only.metric) == {"train/loss"} and len(only) == 5
        assert r.scalars(metrics=["nope"]).empty
        assert len(r.scalars(layers="enc.0")) == 10


def test_nan_and_inf_are_evidence_not_errors(tmp_path):
    with RunWriter(tmp_path) as w:
        w.log(1, {"a": float("nan"), "b": math.inf, "c": -math.inf, "d": 0.0}, layer="x")
    df = open_run(tmp_path).scalars().set_index("metric")["value"]
    assert math.isnan(df["a"])
    assert df["b"] == math.inf and df["c"] == -math.inf and df["d"] == 0.0


def test_log_many_converts_every_row_like_log(tmp_path):
    """log_many passes the usual types through as they are and converts the others: numpy
    steps and values, a whole float step, a layer that is not a string, NaN as NULL (read
    back as NaN); a step that is not a whole number is refused."""
    with RunWriter(tmp_path) as w:
        w.log_many(
            [
                (0, "a", None, 1.5),
                (np.int64(1), "a", None, np.float32(2.5)),
                (2.0, "a", 7, float("nan")),  # a layer named 7
                (3, "b", "x", True),
            ]
        )
        assert [type(r[0]) for r in w._scalars] == [int] * 4
        assert [r[3] for r in w._scalars] == [None, None, "7", "x"]
        assert [r[4] for r in w._scalars] == [1.5, 2.5, None, 1.0]
        with pytest.raises(TypeError, match="step: expected an integer"):
            w.log_many([(1.5, "a", None, 1.0)])
        with pytest.raises(ValueError):
            w.log_many([(4, "a", None, "high")])
    df = open_run(tmp_path).scalars()
    got = {(int(s), m, lay if isinstance(lay, str) else None): v
           for s, m, lay, v in zip(df.step, df.metric, df.layer, df.value)}  # fmt: skip
    assert got[(0, "a", None)] == 1.5 and got[(1, "a", None)] == 2.5
    assert math.isnan(got[(2, "a", "7")]) and got[(3, "b", "x")] == 1.0
    with sqlite3.connect(tmp_path / schema.DB_FILENAME) as con:
        assert con.execute("SELECT COUNT(*) FROM scalars WHERE value IS NULL").fetchone()[0] == 1


def test_distributions_alerts_events_round_trip(tmp_path):
    with RunWriter(tmp_path) as w:
        w.log_distribution(3, "lm/token_entropy", edges=[0, 1, 2, 3], counts=[5, 0, 2])
        w.log_distribution(
            4, "lm/token_entropy", layer="h.0", quantiles=[0.1, 0.9], values=[0.5, 2.5]
        )
        w.alert(
            7,
            "rank_collapse",
            severity="critical",
            message="effective rank fell to 1.1",
            layer="enc.1",
            evidence={"steps": [1, 7], "values": [12.0, 1.1], "threshold": 1.5},
        )
        w.event(
            8, "probe_failure", "dse failed: out of memory", source="dse", detail={"layer": "enc.1"}
        )
    r = open_run(tmp_path)
    d = r.distributions()
    assert d.kind.tolist() == ["histogram", "quantiles"]
    assert d.data[0] == {"edges": [0.0, 1.0, 2.0, 3.0], "counts": [5.0, 0.0, 2.0]}
    assert (
        d.layer.isna().tolist() == [True, False]
        and d.layer[1] == "h.0"
        and d.data[1]["values"] == [0.5, 2.5]
    )
    a = r.alerts()
    assert a.loc[0, "indicator"] == "rank_collapse" and a.loc[0, "severity"] == "critical"
    assert a.loc[0, "evidence"] == {"steps": [1, 7], "values": [12.0, 1.1], "threshold": 1.5}
    e = r.events()
    assert e.loc[0, "kind"] == "probe_failure" and e.loc[0, "detail"] == {"layer": "enc.1"}
    s = r.summary()
    assert (s["alerts"], s["critical"], s["failures"]) == (1, 1, 1)


def test_alerts_of_runs_before_the_critical_scale_read_as_critical(tmp_path):
    import sqlite3

    with RunWriter(tmp_path) as w:
        w.alert(1, "rank_collapse", severity="warning", message="rank falling")
        w.alert(2, "rank_collapse", severity="collapsed", message="the old name, given today")
    # a row as a run written before 0.2 holds it
    with sqlite3.connect(tmp_path / "run.sqlite") as conn:
        conn.execute(
            "INSERT INTO alerts(step, wall_time, indicator, severity, layer, message, evidence) "
            "VALUES (3, 0, 'saturation', 'collapsed', NULL, 'old row', '{}')"
        )
    r = open_run(tmp_path)
    assert r.alerts()["severity"].tolist() == ["warning", "critical", "critical"]
    s = r.summary()
    assert (s["alerts"], s["warnings"], s["critical"]) == (3, 1, 2)


def test_bad_arguments_name_the_argument(tmp_path):
    with RunWriter(tmp_path) as w:
        with pytest.raises(ValueError, match="severity"):
            w.alert(0, "x", severity="fatal", message="m")
        with pytest.raises(ValueError, match="edges"):
            w.log_distribution(0, "m", edges=[0, 1], counts=[1, 2])
        with pytest.raises(TypeError, match=r"values\['a'\]"):
            w.log(0, {"a": "high"})
        with pytest.raises(TypeError, match="step"):
            w.log(1.5, {"a": 1.0})
    with pytest.raises(RunLogError, match="closed"):
        w.log(0, {"a": 1.0})


def test_tail_reads_only_new_rows(tmp_path):
    w = RunWriter(tmp_path)
    w.log(0, {"a": 1.0})
    w.flush()
    r = open_run(tmp_path)
    first = r.scalars()
    last = int(first.id.max())
    assert r.last_id() == last
    w.log(1, {"a": 2.0, "b": 3.0})
    w.flush()
    new = r.tail(last)
    assert new.step.tolist() == [1, 1] and new.metric.tolist() == ["a", "b"]
    assert r.tail(r.last_id()).empty
    w.close()


def test_unflushed_rows_are_invisible_until_commit(tmp_path):
    w = RunWriter(tmp_path, batch_rows=100, flush_seconds=3600)
    w.log(0, {"a": 1.0})
    r = open_run(tmp_path)
    assert r.scalars().empty  # still in the writer's batch
    assert r.status == "running"
    w.close()
    assert len(r.scalars()) == 1 and r.status == "finished"


def test_append_to_existing_run_keeps_rows_and_names(tmp_path):
    with RunWriter(tmp_path) as w:
        w.log(0, {"a": 1.0}, layer="l")
    with RunWriter(tmp_path) as w:
        w.log(1, {"a": 2.0}, layer="l")
    df = open_run(tmp_path).scalars()
    assert df.value.tolist() == [1.0, 2.0] and df.layer.tolist() == ["l", "l"]


_WRITER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from diagnostics.runlog import RunWriter
    w = RunWriter(sys.argv[1], batch_rows=50, flush_seconds=3600)
    step = 0
    while True:
        w.log(step, {"a": float(step), "b": -float(step)}, layer="layer")
        step += 1
        if step % 25 == 0:
            print(step, flush=True)
        time.sleep(0.0005)
    """
)


def _start_writer(run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER_SCRIPT, str(run_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_reader_sees_consistent_data_while_another_process_writes(tmp_path):
    proc = _start_writer(tmp_path)
    try:
        while int(proc.stdout.readline()) < 500:
            pass
        r = open_run(tmp_path)
        seen = 0
        for _ in range(20):
            df = r.scalars()
            # every committed batch is whole: each step has both of its rows
            counts = df.groupby("step").size()
            assert (counts == 2).all()
            assert df.step.max() + 1 == df.step.nunique()  # no holes
            assert len(df) % 50 == 0  # whole transactions only
            a = df[df.metric == "a"].set_index("step").value
            b = df[df.metric == "b"].set_index("step").value
            np.testing.assert_array_equal(a.values, -b.values)
            assert len(df) >= seen
            seen = len(df)
            time.sleep(0.02)
        assert seen >= 1000
    finally:
        proc.kill()
        proc.wait()


def test_sigkill_leaves_a_readable_run(tmp_path):
    proc = _start_writer(tmp_path)
    while int(proc.stdout.readline()) < 400:
        pass
    logged = 400
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    r = open_run(tmp_path)
    df = r.scalars()
    # at most the last uncommitted batch (50 rows = 25 steps) is lost
    assert len(df) >= 2 * logged - 50
    assert len(df) % 50 == 0
    assert df.step.nunique() == df.step.max() + 1
    assert r.status in ("running", "stale")  # the writer never closed it
    assert pd.isna(summarize_runs(tmp_path).loc[0, "error"])


def test_newer_schema_version_is_refused(tmp_path):
    with RunWriter(tmp_path) as w:
        w.log(0, {"a": 1.0})
    with sqlite3.connect(tmp_path / "run.sqlite") as c:
        c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (json.dumps(99),))
    with pytest.raises(RunLogError, match="schema version 99.*Upgrade infoscope"):
        open_run(tmp_path)
    with pytest.raises(RunLogError, match="schema version 99"):
        RunWriter(tmp_path)


def test_corrupt_and_foreign_files_give_clear_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunLogError, match="not an infoscope run"):
        open_run(bad)
    with pytest.raises(RunLogError, match="not an infoscope run"):
        RunWriter(bad)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with sqlite3.connect(foreign / "run.sqlite") as c:
        c.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(RunLogError, match="SQLite database but not an infoscope run"):
        open_run(foreign)
    with pytest.raises(RunLogError, match="no run at"):
        open_run(tmp_path / "missing")
    good = tmp_path / "good"
    with RunWriter(good) as w:
        w.log(0, {"a": 1.0})
    table = summarize_runs(tmp_path).set_index("name")
    assert table.loc["good", "status"] == "finished" and pd.isna(table.loc["good", "error"])
    assert "not an infoscope run" in table.loc["bad", "error"]
    assert "not an infoscope run" in table.loc["foreign", "error"]


def test_full_disk_raises_clear_error(tmp_path):
    w = RunWriter(tmp_path, batch_rows=10_000)
    w.log(0, {"a": 1.0})
    w.flush()
    # Cap the database file at its current size: SQLite then fails with SQLITE_FULL,
    # exactly what it reports when the disk is full.
    pages = w._conn.execute("PRAGMA page_count").fetchone()[0]
    w._conn.execute(f"PRAGMA max_page_count = {pages}")
    w.log_many((s, "big", "layer", float(s)) for s in range(5_000))
    with pytest.raises(RunLogError, match="disk is full"):
        w.flush()
    # what was committed before is still there
    assert open_run(tmp_path).scalars().value.tolist() == [1.0]
    # once there is room again, the rows kept for retry are committed with their names
    w._conn.execute("PRAGMA max_page_count = 1000000")
    w.close()
    df = open_run(tmp_path).scalars()
    assert len(df) == 5_001 and (df.layer[1:] == "layer").all() and (df.metric[1:] == "big").all()


def test_read_only_location_raises_clear_error(tmp_path):
    with pytest.raises(RunLogError, match="cannot write run log"):
        RunWriter("/sys/infoscope-cannot-write-here")  # sysfs: read-only even for root
    w = RunWriter(tmp_path)
    w._conn.execute("PRAGMA query_only = ON")  # the file turns read-only under the writer
    w.log(0, {"a": 1.0})
    with pytest.raises(RunLogError, match="read-only"):
        w.flush()


def test_list_runs_finds_nested_runs_and_skips_hidden(tmp_path):
    for name in ("a", "group/b", "group/c/d", ".hidden/e"):
        with RunWriter(tmp_path / name) as w:
            w.log(0, {"x": 1.0})
    found = [p.relative_to(tmp_path).as_posix() for p in list_runs(tmp_path)]
    assert found == ["a", "group/b", "group/c/d"]
    assert list_runs(tmp_path / "a") == [tmp_path / "a"]
    with pytest.raises(RunLogError, match="no folder"):
        list_runs(tmp_path / "nothing")


def test_flush_at_interpreter_exit(tmp_path):
    code = (
        "from diagnostics.runlog import RunWriter\n"
        f"w = RunWriter({str(tmp_path)!r}, batch_rows=10_000, flush_seconds=3600)\n"
        "w.log(3, {'a': 1.5})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    r = open_run(tmp_path)
    assert r.scalars().value.tolist() == [1.5]
    assert r.meta["status"] == "finished"


def test_dataframe_types_for_large_reads(tmp_path):
    with RunWriter(tmp_path) as w:
        w.log_many((s, f"m{s % 3}", f"l{s % 2}" if s % 5 else None, s * 0.5) for s in range(3000))
    df = open_run(tmp_path).scalars()
    assert isinstance(df.metric.dtype, pd.CategoricalDtype)
    assert df.step.dtype == np.int64 and df.id.dtype == np.int64
    assert df.layer.isna().sum() == 600
    np.testing.assert_allclose(df.value, np.arange(3000) * 0.5)
    assert (df.metric == [f"m{s % 3}" for s in range(3000)]).all()
