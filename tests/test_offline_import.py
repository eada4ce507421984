"""Importing training logs users already have: TensorBoard event files (verl's and TRL's tag
names, written by torch's SummaryWriter), CSV / JSONL tables, through the real CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diagnostics.cli import main
from diagnostics.offline import _tb_server
from diagnostics.runlog import open_run

pytest.importorskip("tensorboard")
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEPS = np.arange(0, 300, 2)
READERS = [
    "python",
    pytest.param(
        "server",
        marks=pytest.mark.skipif(
            _tb_server.server_binary() is None, reason="no TensorBoard data server binary here"
        ),
    ),
]


def collapsing(steps: np.ndarray) -> np.ndarray:
    """Token entropy that falls fast and keeps sliding to near zero (Cui et al. 2025)."""
    return 2.0 * np.exp(-steps / 30.0) + 0.01


def healthy(steps: np.ndarray) -> np.ndarray:
    return 2.0 + 0.05 * np.sin(steps / 7.0)


def write_events(logdir: Path, series: dict[str, np.ndarray], steps=STEPS, **kw) -> Path:
    writer = SummaryWriter(str(logdir))
    for i, step in enumerate(steps):
        for tag, values in series.items():
            writer.add_scalar(tag, float(values[i]), int(step), **kw)
    writer.close()
    return logdir


def verl_series(entropy: np.ndarray) -> dict[str, np.ndarray]:
    t = STEPS / STEPS[-1]
    return {
        "actor/entropy": entropy,
        "critic/score/mean": 0.2 + 0.7 * t,
        "critic/rewards/mean": 0.2 + 0.6 * t,
        "actor/kl_loss": 0.001 + 0.05 * t,
        "response_length/mean": 400 - 200 * t,
        "actor/pg_loss": -0.01 * (1 - t),
    }


def trl_series(entropy: np.ndarray) -> dict[str, np.ndarray]:
    """Tag names as TRL's GRPOTrainer logs them through the Hugging Face TensorBoard callback
    (``train/`` prefix; ``eval_*`` keys become ``eval/*``)."""
    t = STEPS / STEPS[-1]
    return {
        "train/entropy": entropy,
        "train/reward": 0.1 + 0.8 * t,
        "train/kl": 0.02 * t,
        "train/completions/mean_length": 300 - 100 * t,
        "train/loss": 0.1 * (1 - t),
        "eval/entropy": healthy(STEPS),
    }


def cli(*args: str, capsys=None) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return code, out, err


def series_of(run: Path, metric: str) -> tuple[np.ndarray, np.ndarray]:
    df = open_run(run).scalars(metrics=metric).sort_values("step")
    return df.step.to_numpy(), df.value.to_numpy()


def assert_nothing_left(out: Path) -> None:
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert leftovers == []


# --------------------------------------------------------------------------- TensorBoard
@pytest.mark.parametrize("reader", READERS)
def test_verl_log_imports_with_infoscope_names_and_a_collapse_alert(tmp_path, capsys, reader):
    values = verl_series(collapsing(STEPS))
    logdir = write_events(tmp_path / "tensorboard_log" / "proj" / "grpo", values)
    out = tmp_path / "runs" / "grpo"
    code, stdout, _ = cli("import-tb", logdir, "--out", out, "--reader", reader, capsys=capsys)
    assert code == 0
    assert "actor/entropy -> lm/token_entropy/mean" in stdout
    run = open_run(out)
    metrics = set(run.metrics())
    assert {"lm/token_entropy/mean", "rl/reward", "rl/kl", "rl/response_length"} <= metrics
    assert {"critic/rewards/mean", "actor/pg_loss"} <= metrics  # kept under their own names
    assert not {"actor/entropy", "critic/score/mean", "actor/kl_loss"} & metrics
    steps, got = series_of(out, "lm/token_entropy/mean")
    np.testing.assert_array_equal(steps, STEPS)
    # TensorBoard stores simple values as float32
    np.testing.assert_array_equal(got, values["actor/entropy"].astype(np.float32))
    _, reward = series_of(out, "rl/reward")
    np.testing.assert_array_equal(reward, values["critic/score/mean"].astype(np.float32))
    alerts = run.alerts()
    collapse = alerts[alerts.indicator == "token_entropy_collapse"]
    assert set(collapse.severity) == {"warning", "critical"}
    assert collapse.step.min() > 0 and collapse.iloc[0].evidence["metric"] == (
        "lm/token_entropy/mean"
    )
    config = run.meta["config"]
    assert config["source"] == "infoscope import-tb" and config["reader"] == reader
    assert config["tag_map"]["actor/entropy"] == "lm/token_entropy/mean"
    assert run.meta["name"] == "grpo" and run.meta["status"] == "finished"


@pytest.mark.parametrize("reader", READERS)
def test_trl_log_imports_and_a_healthy_entropy_raises_nothing(tmp_path, capsys, reader):
    root = tmp_path / "logs"
    write_events(root / "collapsing", trl_series(collapsing(STEPS)))
    write_events(root / "healthy", trl_series(healthy(STEPS)))
    out = tmp_path / "imported"
    code, stdout, _ = cli("import-tb", root, "--out", out, "--reader", reader, capsys=capsys)
    assert code == 0, stdout
    # several TensorBoard runs: one infoscope run per TensorBoard run below --out
    assert sorted(p.name for p in out.iterdir()) == ["collapsing", "healthy"]
    for name in ("collapsing", "healthy"):
        metrics = set(open_run(out / name).metrics())
        assert {"lm/token_entropy/mean", "rl/reward", "rl/kl", "rl/response_length"} <= metrics
        assert {"eval/entropy", "train/loss"} <= metrics and "train/entropy" not in metrics
    bad = open_run(out / "collapsing").alerts()
    assert "token_entropy_collapse" in set(bad.indicator)
    assert open_run(out / "healthy").alerts().empty
    # --run picks one run, which is then --out itself
    one = tmp_path / "one"
    code, _, _ = cli("import-tb", root, "--out", one, "--run", "healthy", capsys=capsys)
    assert code == 0 and (one / "run.sqlite").is_file()
    assert open_run(one).meta["config"]["tensorboard_run"] == "healthy"


def test_map_option_renames_other_tags(tmp_path, capsys):
    logdir = write_events(tmp_path / "tb", {"policy/ent": collapsing(STEPS), "loss": STEPS * 0.0})
    out = tmp_path / "run"
    code, stdout, _ = cli(
        "import-tb", logdir, "--out", out, "--map", "policy/ent=lm/token_entropy/mean", "--rl",
        capsys=capsys,
    )  # fmt: skip
    assert code == 0
    assert "policy/ent -> lm/token_entropy/mean" in stdout
    assert "token_entropy_collapse" in set(open_run(out).alerts().indicator)
    # without --rl a log with no reward could be pretraining, where entropy falls by learning
    code, _, _ = cli(
        "import-tb", logdir, "--out", tmp_path / "plain", "--map",
        "policy/ent=lm/token_entropy/mean", capsys=capsys,
    )  # fmt: skip
    assert code == 0 and open_run(tmp_path / "plain").alerts().empty
    code, _, err = cli(
        "import-tb", logdir, "--out", tmp_path / "r2", "--map", "nope", capsys=capsys
    )
    assert code == 2 and "--map: expected TAG=METRIC" in err


def test_both_readers_agree_on_resumed_runs_and_tensor_scalars(tmp_path, capsys):
    if _tb_server.server_binary() is None:
        pytest.skip("no TensorBoard data server binary here")
    logdir = tmp_path / "tb"
    writer = SummaryWriter(str(logdir))
    for step in range(10):
        writer.add_scalar("x", float(step), step)
        writer.add_scalar("t", step * 2.0, step, new_style=True)  # a tensor summary
    for step in range(5, 8):  # resumed from a checkpoint at step 5
        writer.add_scalar("x", 100.0 + step, step)
    writer.close()
    got = {}
    for reader in ("python", "server"):
        out = tmp_path / reader
        assert cli("import-tb", logdir, "--out", out, "--reader", reader, capsys=capsys)[0] == 0
        got[reader] = {m: series_of(out, m) for m in ("x", "t")}
    for reader in ("python", "server"):
        steps, values = got[reader]["x"]
        assert steps.tolist() == list(range(8))  # points after the resume step are replaced
        assert values.tolist() == [0, 1, 2, 3, 4, 105, 106, 107]
        assert got[reader]["t"][1].tolist() == [2.0 * s for s in range(10)]


# --------------------------------------------------------------------------- bad TB input
@pytest.mark.parametrize("reader", READERS)
def test_bad_tensorboard_input_is_one_clear_line_and_leaves_nothing(tmp_path, capsys, reader):
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli("import-tb", empty, "--out", out, "--reader", reader, capsys=capsys)
    assert code == 2 and f"{empty}: is empty" in err and err.count("\n") == 1
    notb = tmp_path / "notb"
    notb.mkdir()
    (notb / "metrics.csv").write_text("step,loss\n0,1\n")
    code, _, err = cli("import-tb", notb, "--out", out, "--reader", reader, capsys=capsys)
    assert code == 2 and f"{notb}: holds no event files" in err
    # a record whose checksum does not match: flip the last byte (the last record's CRC)
    corrupt = write_events(tmp_path / "corrupt" / "run", {"x": STEPS * 1.0})
    event_file = next(corrupt.iterdir())
    data = bytearray(event_file.read_bytes())
    data[-1] ^= 0xFF
    event_file.write_bytes(bytes(data))
    code, _, err = cli("import-tb", corrupt.parent, "--out", out, "--reader", reader, capsys=capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"{event_file}: corrupt TensorBoard event file" in err
    # a file that is not an event file at all, under an event-file name
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "events.out.tfevents.1.host").write_bytes(bytes(range(256)) * 20)
    code, _, err = cli("import-tb", garbage, "--out", out, "--reader", reader, capsys=capsys)
    assert code == 2 and "events.out.tfevents.1.host: corrupt TensorBoard event file" in err
    assert_nothing_left(out)


def test_a_log_without_scalars_and_an_existing_out_are_refused(tmp_path, capsys):
    hist = tmp_path / "hist"
    writer = SummaryWriter(str(hist))
    writer.add_histogram("w", np.arange(10.0), 0)
    writer.close()
    out = tmp_path / "out"
    code, _, err = cli("import-tb", hist, "--out", out, capsys=capsys)
    assert code == 2 and "hold no scalar summaries" in err
    assert_nothing_left(out)
    logdir = write_events(tmp_path / "tb", {"x": STEPS * 1.0})
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = cli("import-tb", logdir, "--out", out, capsys=capsys)
    assert code == 2 and "is not empty" in err and "--overwrite" in err
    assert (out / "notes.txt").read_text() == "mine"  # untouched
    code, _, _ = cli("import-tb", logdir, "--out", out, "--overwrite", capsys=capsys)
    assert code == 0 and not (out / "notes.txt").exists()
    assert len(open_run(out).scalars()) == len(STEPS)
    code, _, err = cli("import-tb", logdir, "--out", out, capsys=capsys)
    assert code == 2 and "already holds a run" in err


def test_import_tb_through_the_real_entry_point(tmp_path):
    logdir = write_events(tmp_path / "tb", verl_series(collapsing(STEPS)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "diagnostics.cli", "import-tb", str(logdir)]
    done = subprocess.run(
        [*cmd, "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar when stderr is not a terminal
    assert "token_entropy_collapse" in set(open_run(tmp_path / "r").alerts().indicator)
    again = subprocess.run(
        [*cmd, "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env, timeout=300
    )
    assert again.returncode == 2 and again.stderr.startswith("infoscope: error: --out:")


# --------------------------------------------------------------------------- CSV / JSONL
def test_csv_import_maps_columns_and_flags_collapse(tmp_path, capsys):
    values = verl_series(collapsing(STEPS))
    lines = ["step,actor/entropy,critic/score/mean,phase"]
    lines += [
        f"{s},{float(e)!r},{float(r)!r},{'warmup' if s < 20 else 'main'}"
        for s, e, r in zip(STEPS, values["actor/entropy"], values["critic/score/mean"])
    ]
    path = tmp_path / "metrics.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    code, stdout, _ = cli("import-csv", path, "--out", out, capsys=capsys)
    assert code == 0 and "actor/entropy -> lm/token_entropy/mean" in stdout
    run = open_run(out)
    assert set(run.metrics()) == {"lm/token_entropy/mean", "rl/reward"}  # text column skipped
    steps, got = series_of(out, "lm/token_entropy/mean")
    np.testing.assert_array_equal(steps, STEPS)
    np.testing.assert_array_equal(got, values["actor/entropy"])  # float64 round-trips
    assert "token_entropy_collapse" in set(run.alerts().indicator)
    assert run.meta["config"]["source"] == "infoscope import-csv"


def test_jsonl_and_trainer_state_imports(tmp_path, capsys):
    entropy = collapsing(STEPS)
    rows = []
    for i, s in enumerate(STEPS):
        row = {"step": int(s), "entropy": float(entropy[i]), "reward": 0.5, "kl": 0.01 * i}
        if i % 10 == 0:
            row = {"step": int(s), "eval": {"loss": 1.0 / (i + 1)}}  # an eval row: nested
        rows.append(row)
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    out = tmp_path / "run"
    code, _, _ = cli("import-csv", path, "--out", out, capsys=capsys)
    assert code == 0
    run = open_run(out)
    assert set(run.metrics()) == {"lm/token_entropy/mean", "rl/reward", "rl/kl", "eval/loss"}
    steps, got = series_of(out, "lm/token_entropy/mean")
    keep = np.arange(len(STEPS)) % 10 != 0  # the eval rows hold no entropy: no point there
    np.testing.assert_array_equal(steps, STEPS[keep])
    np.testing.assert_allclose(got, entropy[keep], rtol=1e-15)
    assert "token_entropy_collapse" in set(run.alerts().indicator)
    # a Hugging Face trainer_state.json: its log_history
    state = {"global_step": 3, "log_history": [{"step": s, "loss": 1.0 / s} for s in (1, 2, 3)]}
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    code, _, _ = cli("import-csv", tmp_path / "trainer_state.json", "--out", tmp_path / "hf",
                     capsys=capsys)  # fmt: skip
    assert code == 0
    assert series_of(tmp_path / "hf", "loss")[0].tolist() == [1, 2, 3]


def test_bad_tables_are_one_clear_line_and_leave_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    cases = {
        "frac.csv": ("step,loss\n0.5,1\n1.5,2\n", "step column 'step' holds a non-integer"),
        "empty.csv": ("", "no rows"),
        "text.csv": ("step,note\n0,a\n1,b\n", "no numeric columns"),
        "bad.jsonl": ('{"step": 0, "loss": 1}\n{"step": 1,\n', "line 2 is not JSON"),
        "list.jsonl": ("[1, 2]\n", "line 1 is a JSON list, expected an object"),
        "log.txt": ("step loss\n", "expected a .csv"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        code, _, err = cli("import-csv", tmp_path / name, "--out", out, capsys=capsys)
        assert code == 2 and message in err and str(tmp_path / name) in err, (name, err)
        assert err.count("\n") == 1
        assert_nothing_left(out)
    (tmp_path / "ok.csv").write_text("step,loss\n0,1\n")
    code, _, err = cli("import-csv", tmp_path / "ok.csv", "--out", out, "--step-column", "it",
                       capsys=capsys)  # fmt: skip
    assert code == 2 and "--step-column: 'it' is not a column" in err


def test_csv_without_a_step_column_uses_the_row_number(tmp_path, capsys):
    (tmp_path / "plain.csv").write_text("loss,acc\n3,0.1\n2,0.5\n1,\n")
    out = tmp_path / "run"
    assert cli("import-csv", tmp_path / "plain.csv", "--out", out, capsys=capsys)[0] == 0
    assert series_of(out, "loss")[0].tolist() == [0, 1, 2]
    steps, acc = series_of(out, "acc")
    assert steps.tolist() == [0, 1] and acc.tolist() == [0.1, 0.5]  # empty cell: no point
    assert not any(math.isnan(v) for v in acc)


def test_a_data_server_that_does_not_start(tmp_path, capsys, monkeypatch):
    """``auto`` falls back to the Python reader with a warning; ``server`` fails clearly."""
    logdir = write_events(tmp_path / "tb", {"actor/entropy": collapsing(STEPS)})
    monkeypatch.setattr(_tb_server, "server_binary", lambda: "/bin/false")
    code, _, err = cli("import-tb", logdir, "--out", tmp_path / "auto", capsys=capsys)
    assert code == 0
    assert err.startswith("infoscope: warning: ") and "data server failed" in err
    assert "reading with the Python reader instead" in err
    assert open_run(tmp_path / "auto").meta["config"]["reader"] == "python"
    code, _, err = cli(
        "import-tb", logdir, "--out", tmp_path / "srv", "--reader", "server", capsys=capsys
    )
    assert code == 2 and "TensorBoard's data server failed" in err
    assert_nothing_left(tmp_path / "srv")


@pytest.mark.slow
def test_the_collapse_page_works_on_an_imported_run(tmp_path, capsys, monkeypatch):
    from streamlit.testing.v1 import AppTest

    logdir = write_events(tmp_path / "tb", verl_series(collapsing(STEPS)))
    root = tmp_path / "runs"
    assert cli("import-tb", logdir, "--out", root / "verl", capsys=capsys)[0] == 0
    monkeypatch.setenv("INFOSCOPE_ROOT", str(root))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    at.query_params["run"] = ["verl"]
    at.query_params["col_tab"] = "Alert detail"  # the collapse page's alert explained
    at.run()
    for page in ("app_pages/collapse.py", "app_pages/language_model.py"):
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        shown = "\n".join(str(e.value) for e in (*at.markdown, *at.caption))
        if page.endswith("collapse.py"):
            assert ":red[✖ critical]" in shown and "exploration is exhausted" in shown
            assert at.get("plotly_chart"), "the alert's series drawn"


def test_staged_output_all_or_nothing(tmp_path):
    from diagnostics.offline.output import staged_output

    out = tmp_path / "new" / "deeper" / "run"
    with pytest.raises(KeyboardInterrupt):
        with staged_output(out) as stage:
            (stage / "run.sqlite").write_text("half")
            raise KeyboardInterrupt
    assert not (tmp_path / "new").exists()  # neither the run nor the folders made for it
    with staged_output(out) as stage:
        (stage / "a").write_text("1")
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "a").read_text() == "1"
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0o700
    with pytest.raises(ValueError, match="is not empty; choose a new folder or pass --overwrite"):
        with staged_output(out):
            pass
    with pytest.raises(RuntimeError):
        with staged_output(out, overwrite=True) as stage:
            (stage / "b").write_text("2")
            raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["a"]  # a failed overwrite keeps the old
    with staged_output(out, overwrite=True) as stage:
        (stage / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["run"]  # no staging leftovers


def test_a_run_without_scalars_is_skipped_with_a_warning(tmp_path, capsys):
    root = tmp_path / "logs"
    write_events(root / "scalars", {"x": STEPS * 1.0})
    writer = SummaryWriter(str(root / "images-only"))
    writer.add_histogram("w", np.arange(10.0), 0)
    writer.close()
    out = tmp_path / "run"
    code, stdout, err = cli("import-tb", root, "--out", out, capsys=capsys)
    assert code == 0
    assert "infoscope: warning:" in err and "run 'images-only' skipped" in err
    assert (out / "run.sqlite").is_file()  # the one run left is --out itself
    assert open_run(out).meta["config"]["tensorboard_run"] == "scalars"
