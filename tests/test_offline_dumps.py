"""``infoscope analyze`` on .npz, .pt and .safetensors dumps, one file per step or stacked,
through the real CLI: the same values whatever the format, and clear errors for bad dumps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diagnostics as d
from diagnostics.cli import main
from diagnostics.offline import analyze_snapshots
from diagnostics.runlog import open_run

safetensors_torch = pytest.importorskip("safetensors.torch")

STEPS = (0, 50, 400)
METRICS = "act_stats,effective_rank,info_plane"


def step_arrays() -> list[dict[str, np.ndarray]]:
    """Three steps of a small tanh network on the 12-bit task, plus LM logits and a mask."""
    x, y = d.tishby_dataset()
    x = np.asarray(x)[:300]
    y = np.asarray(y)[:300]
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(12, 6)), rng.normal(size=(6, 3))
    out = []
    for i, _ in enumerate(STEPS):
        h1 = np.tanh(x @ w1 * (1 + i))
        mask = np.ones((2, 16), dtype=bool)
        mask[1, 12:] = False
        out.append(
            {
                "x": x,
                "y": y,
                "h1": h1,
                "h2": np.tanh(h1 @ w2),
                "logits": (rng.normal(size=(2, 16, 50)) * (1 + 3 * i)).astype(np.float32),
                "mask": mask,
            }
        )
    return out


def tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def write(folder, fmt: str, layout: str) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    per_step = step_arrays()
    if layout == "stacked":
        arrays = {k: np.stack([a[k] for a in per_step]) for k in per_step[0]}
        arrays["step"] = np.array(STEPS)
        items = [("all", arrays)]
    else:
        items = [(f"step{s}", {**a, "step": np.array(s)}) for s, a in zip(STEPS, per_step)]
    paths = []
    for name, arrays in items:
        path = folder / f"{name}.{fmt}"
        if fmt == "npz":
            np.savez(path, **arrays)
        elif fmt == "pt":
            torch.save(tensors(arrays), path)
        else:
            safetensors_torch.save_file(tensors(arrays), str(path))
        paths.append(path)
    return paths


def analyze(*args, capsys) -> tuple[int, str]:
    code = main(["analyze", *map(str, args)])
    return code, capsys.readouterr().err


def table(run) -> list[tuple]:
    df = open_run(run).scalars()
    df = df.astype({"metric": str, "layer": object}).sort_values(["step", "metric", "layer"])
    return [(r.step, r.metric, r.layer, r.value) for r in df.itertuples()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The run analysed from per-step .npz files, the format infoscope has always read."""
    tmp = tmp_path_factory.mktemp("ref")
    paths = write(tmp / "npz", "npz", "per-step")
    out = analyze_snapshots(paths, tmp / "run", metrics=METRICS.split(","), progress=False)
    return table(out)


@pytest.mark.parametrize(
    "fmt,layout",
    [("pt", "per-step"), ("safetensors", "per-step"), ("npz", "stacked"), ("pt", "stacked"),
     ("safetensors", "stacked")],
)  # fmt: skip
def test_every_format_and_layout_gives_the_npz_values(tmp_path, capsys, reference, fmt, layout):
    paths = write(tmp_path / "dumps", fmt, layout)
    out = tmp_path / "run"
    code, err = analyze(*paths, "--out", out, "--metrics", METRICS, capsys=capsys)
    assert code == 0, err
    assert err == ""  # no progress bar when stderr is not a terminal
    got = table(out)
    assert len(got) == len(reference) > 30
    assert [r[:3] for r in got] == [r[:3] for r in reference]
    np.testing.assert_allclose([r[3] for r in got], [r[3] for r in reference], rtol=1e-12)
    run = open_run(out)
    assert sorted(run.scalars().step.unique()) == list(STEPS)
    assert len(run.distributions()) == 3
    assert run.meta["config"]["device"] == "cpu"


def test_a_folder_nested_pt_dicts_and_a_single_step_stacked_file(tmp_path, capsys):
    folder = tmp_path / "dumps"
    folder.mkdir()
    a = step_arrays()[0]
    for s in (3, 7):
        payload = {"step": s, "acts": {"enc.0": torch.from_numpy(a["h1"])}}
        torch.save(payload, folder / f"s{s}.pt")
    out = tmp_path / "run"
    code, err = analyze(folder, "--out", out, "--metrics", "act_stats", capsys=capsys)
    assert code == 0, err
    df = open_run(out).scalars()
    assert set(df.layer.astype(str)) == {"acts.enc.0"} and sorted(df.step.unique()) == [3, 7]
    single = tmp_path / "one.npz"
    np.savez(single, step=np.array([12]), h=a["h1"][None])
    code, err = analyze(
        single, "--out", tmp_path / "r1", "--metrics", "act_stats", "--layout", "stacked",
        capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    assert open_run(tmp_path / "r1").scalars().step.unique().tolist() == [12]


class Opaque:
    """Something torch.load(weights_only=True) refuses to unpickle."""


def test_bad_dumps_are_one_clear_line_and_leave_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    h = np.random.default_rng(0).normal(size=(40, 6))
    cases = {}
    torch.save({"h": torch.zeros(4, 2), "meta": Opaque()}, tmp_path / "pickled.pt")
    cases["pickled"] = ([tmp_path / "pickled.pt"], "refused: it holds a pickled", "Opaque")
    torch.save({"h": np.zeros((4, 2))}, tmp_path / "numpy.pt")
    cases["numpy"] = ([tmp_path / "numpy.pt"], "refused", "weights_only=True")
    torch.save([torch.zeros(4, 2)], tmp_path / "list.pt")
    cases["list"] = ([tmp_path / "list.pt"], "unknown layout", "got list")
    np.savez(tmp_path / "a_step1.npz", h=h)
    np.savez(tmp_path / "b_step2.npz", h=h[:, :5])
    cases["shapes"] = (
        [tmp_path / "a_step1.npz", tmp_path / "b_step2.npz"],
        "mismatched shapes across steps",
        "'h' has shape (40, 5)",
    )
    np.savez(tmp_path / "step2d.npz", step=np.zeros((2, 2)), h=h)
    cases["step2d"] = ([tmp_path / "step2d.npz"], "unknown layout", "'step' has shape (2, 2)")
    np.savez(tmp_path / "lead.npz", step=np.array([1, 2, 3]), h=h)
    cases["lead"] = ([tmp_path / "lead.npz"], "unknown layout", "expected a leading axis of 3")
    np.savez(tmp_path / "again_step2.npz", h=h)
    cases["twice"] = (
        [tmp_path / "b_step2.npz", tmp_path / "again_step2.npz"],
        "step 2 occurs twice",
        "again_step2.npz",
    )
    np.savez(tmp_path / "rows.npz", x=h[:30], h=h)
    cases["rows"] = ([tmp_path / "rows.npz"], "disagree on the number of samples", "h 40")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    cases["junk"] = ([tmp_path / "junk.pt"], "cannot read it as a torch.save file", "junk.pt")
    (tmp_path / "acts.h5").write_bytes(b"")
    cases["suffix"] = ([tmp_path / "acts.h5"], "unknown format", "acts.h5")
    for name, (paths, message, detail) in cases.items():
        code, err = analyze(*paths, "--out", out, "--metrics", "act_stats", capsys=capsys)
        assert code == 2, (name, err)
        assert message in err and detail in err, (name, err)
        assert err.startswith("infoscope: error: ") and err.count("\n") == 1, (name, err)
        assert any(str(p) in err or p.name in err for p in paths), (name, err)
        assert not out.exists(), name
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")], name


def test_existing_out_is_refused_unless_overwrite(tmp_path, capsys):
    paths = write(tmp_path / "dumps", "npz", "per-step")
    out = tmp_path / "run"
    assert analyze(*paths, "--out", out, "--metrics", "act_stats", capsys=capsys)[0] == 0
    before = len(open_run(out).scalars())
    code, err = analyze(*paths, "--out", out, "--metrics", "act_stats", capsys=capsys)
    assert code == 2 and "already holds a run" in err and "--overwrite" in err
    code, err = analyze(
        *paths, "--out", out, "--metrics", "act_stats,effective_rank", "--overwrite",
        capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    assert len(open_run(out).scalars()) > before  # replaced, not appended to


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_is_refused_clearly_without_a_gpu(tmp_path, capsys):
    paths = write(tmp_path / "dumps", "npz", "per-step")
    code, err = analyze(*paths, "--out", tmp_path / "r", "--device", "cuda", capsys=capsys)
    assert code == 2 and "--device cuda: CUDA is not available here" in err
    code, err = analyze(*paths, "--out", tmp_path / "r", "--device", "tpu", capsys=capsys)
    assert code == 2 and "--device: expected cpu, cuda or cuda:N, got 'tpu'" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_values(tmp_path, capsys, reference):
    paths = write(tmp_path / "dumps", "npz", "per-step")
    code, err = analyze(
        *paths, "--out", tmp_path / "r", "--metrics", METRICS, "--device", "cuda", capsys=capsys
    )
    assert code == 0, err
    got = table(tmp_path / "r")
    assert [r[:3] for r in got] == [r[:3] for r in reference]
    np.testing.assert_allclose([r[3] for r in got], [r[3] for r in reference], rtol=1e-6)
    assert open_run(tmp_path / "r").meta["config"]["device"].startswith("cuda")


def test_progress_bar_when_asked(tmp_path, capsys):
    paths = write(tmp_path / "dumps", "npz", "per-step")
    analyze_snapshots(paths, tmp_path / "r", metrics=["act_stats"], progress=True)
    err = capsys.readouterr().err
    assert "analyze:" in err and "/3 " in err  # a bar over the three steps
    code, err = analyze(*paths, "--out", tmp_path / "q", "--quiet", capsys=capsys)
    assert code == 0 and err == ""
