"""Lightning Callback and Hugging Face TrainerCallback, each with a tiny real trainer run."""

from __future__ import annotations

import importlib
import math
import sys

import pytest
import torch
from torch import nn

from diagnostics import open_run


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _table(run_dir):
    with open_run(run_dir) as r:
        df = r.scalars()
        meta = r.meta
        events = r.events()
    got: dict = {}
    for s, m, lay in zip(df.step, df.metric, df.layer):
        got.setdefault((m, None if isinstance(lay, float) else lay), set()).add(int(s))
    return got, meta, events


@pytest.mark.parametrize(
    "module, blocked, extra",
    [
        ("probes.hf", ["transformers"], "infoscope[hf]"),
        ("probes.lightning", ["lightning", "pytorch_lightning"], "infoscope[lightning]"),
    ],
)
def test_missing_framework_names_the_extra(monkeypatch, module, blocked, extra):
    for name in blocked:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)  # makes ``import name`` fail
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ImportError, match=extra.replace("[", r"\[").replace("]", r"\]")):
        importlib.import_module(module)


@pytest.mark.slow
def test_lightning_callback_tiny_trainer(tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    from probes import InfoscopeCallback

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    x, y = torch.randn(48, 5), torch.randint(0, 2, (48,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    probe_cb = InfoscopeCallback(
        tmp_path / "probe", layers=["net.1"], probe_inputs=x[:16], probe_labels=y[:16],
        every=2, metrics=["act_stats", "grad_norm"],
    )  # fmt: skip
    live_cb = InfoscopeCallback(tmp_path / "live", layers=["net.1"], every=3, metrics=["act_stats"])
    trainer = L.Trainer(
        max_steps=6, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[probe_cb, live_cb],
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(Tiny(), loader)

    got, meta, events = _table(tmp_path / "probe")
    assert meta["status"] == "finished" and events.empty
    assert got[("act/mean", "net.1")] == {2, 4, 6}
    # gradients were read before the optimizer step (Lightning keeps them until then)
    assert got[("grad/norm", None)] == {2, 4, 6}
    assert got[("train/loss", None)] == {1, 2, 3, 4, 5, 6}
    live, live_meta, _ = _table(tmp_path / "live")
    assert live_meta["probes"]["mode"] == "live"
    assert live[("act/mean", "net.1")] == {3, 6}
    assert probe_cb.monitor.closed and live_cb.monitor.closed


def _tiny_bert(tmp_path):
    transformers = pytest.importorskip("transformers")
    from probes import InfoscopeTrainerCallback

    cfg = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32, num_labels=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg)
    n, t = 24, 10
    ids = torch.randint(1, 40, (n, t))
    mask = torch.ones(n, t, dtype=torch.long)
    mask[::2, 7:] = 0
    labels = torch.randint(0, 2, (n,))
    train = [
        {"input_ids": ids[i], "attention_mask": mask[i], "labels": labels[i]} for i in range(n)
    ]
    cb = InfoscopeTrainerCallback(
        tmp_path / "run",
        layers="bert.encoder.layer.*",
        probe_inputs={"input_ids": ids[:8], "attention_mask": mask[:8]},
        probe_labels=labels[:8],
        every=2,
        metrics=["act_stats", "grad_norm", "weight_norm"],
    )
    return transformers, model, train, cb


def _check_bert_run(run_dir, model, max_steps=4):
    got, meta, events = _table(run_dir)
    assert meta["status"] == "finished" and events.empty, events
    layers = ["bert.encoder.layer.0", "bert.encoder.layer.1"]
    assert meta["probes"]["layers"] == layers
    for layer in layers:
        assert got[("act/mean", layer)] == {2, 4}  # BertLayer outputs: tuples or tensors
        assert got[("grad/norm", layer)] == {2, 4}  # before the Trainer zeroes them
    assert got[("train/loss", None)] >= {1, 2, 3, 4}
    assert meta["config"]["max_steps"] == max_steps  # the arguments stored as the config
    assert model.training  # eval mode was restored after each probe


class _Args:
    """The few TrainingArguments fields the callback reads (TrainingArguments itself
    cannot be built without ``accelerate``)."""

    def __init__(self, output_dir, max_steps):
        self.output_dir = str(output_dir)
        self.max_steps = max_steps

    def to_dict(self):
        return {"output_dir": self.output_dir, "max_steps": self.max_steps}


def test_hf_callback_through_callback_handler(tmp_path):
    """The callback driven by transformers' own CallbackHandler, with the events in the
    order Trainer's training loop emits them (gradients cleared before on_step_end)."""
    transformers, model, train, cb = _tiny_bert(tmp_path)
    from transformers.trainer_callback import CallbackHandler, TrainerControl, TrainerState

    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    handler = CallbackHandler([cb], model, None, opt, None)
    args, state, control = _Args(tmp_path / "out", 4), TrainerState(), TrainerControl()
    handler.on_train_begin(args, state, control)
    for k in range(4):
        batch = {key: torch.stack([ex[key] for ex in train[6 * k : 6 * k + 6]]) for key in train[0]}
        handler.on_step_begin(args, state, control)
        model.train()
        loss = model(**batch).loss
        loss.backward()
        handler.on_pre_optimizer_step(args, state, control)
        opt.step()
        handler.on_optimizer_step(args, state, control)
        model.zero_grad()
        state.global_step += 1
        handler.on_step_end(args, state, control)
        handler.on_log(args, state, control, {"loss": loss.item(), "learning_rate": 1e-3})
    handler.on_train_end(args, state, control)
    _check_bert_run(tmp_path / "run", model)
    got, _, _ = _table(tmp_path / "run")
    assert got[("train/learning_rate", None)] == {1, 2, 3, 4}


@pytest.mark.slow
def test_hf_trainer_callback_tiny_bert(tmp_path):
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")
    transformers, model, train, cb = _tiny_bert(tmp_path)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=6,
        logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
        learning_rate=1e-3, dataloader_num_workers=0,
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=train, callbacks=[cb])
    trainer.train()
    _check_bert_run(tmp_path / "run", model)


@pytest.mark.slow
def test_hf_trainer_callback_with_lm_monitor_on_tiny_gpt2(tmp_path):
    """A real Trainer run of a causal LM with the LM monitor: token entropy recorded live."""
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")
    transformers = pytest.importorskip("transformers")
    from probes import InfoscopeTrainerCallback
    from probes.lm import LMMonitor

    cfg = transformers.GPT2Config(
        vocab_size=50, n_positions=32, n_embd=16, n_layer=2, n_head=2, attn_implementation="eager"
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    ids = torch.randint(0, 50, (24, 12))
    train = [{"input_ids": ids[i], "labels": ids[i]} for i in range(24)]
    cb = InfoscopeTrainerCallback(tmp_path / "run", monitor_class=LMMonitor, every=2)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=6,
        logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
        learning_rate=1e-3, dataloader_num_workers=0,
    )  # fmt: skip
    transformers.Trainer(model=model, args=args, train_dataset=train, callbacks=[cb]).train()
    got, meta, events = _table(tmp_path / "run")
    assert meta["status"] == "finished"
    steps = got[("lm/token_entropy/mean", None)]
    assert steps and steps <= {0, 1, 2, 3, 4}
    assert got[("train/loss", None)] >= {1, 2, 3, 4}
    with open_run(tmp_path / "run") as r:
        ent = r.scalars(metrics="lm/token_entropy/mean").value
    assert ((ent > 0) & (ent <= math.log(50) + 1e-6)).all()  # a near-uniform random LM
    with pytest.raises(TypeError, match="monitor_class"):
        InfoscopeTrainerCallback(tmp_path / "x", monitor_class=dict)
