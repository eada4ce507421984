"""Recorders of the detector suite's own runs: short runs of real training with the probes
attached (``probes.Monitor`` / ``probes.lm.LMMonitor``), each a few seconds to a minute on a
CPU; ``small=True`` gives the shorter versions the tests use. The labels of each run are in
``detector_suite.py``.
"""

from __future__ import annotations

import shutil
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path


def _digits(seed: int = 0, n_probe: int = 300):
    import torch
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    probe, train = perm[:n_probe], perm[n_probe:]
    return x[train], y[train], x[probe], y[probe]


def _mlp(activation: str, *, seed: int, bias: float = 0.0, scale: float = 1.0):
    import torch

    torch.manual_seed(seed)
    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[activation]
    sizes = (64, 128, 64, 32)
    blocks: OrderedDict[str, torch.nn.Module] = OrderedDict()
    for i in range(3):
        blocks[f"fc{i + 1}"] = torch.nn.Linear(sizes[i], sizes[i + 1])
        blocks[f"act{i + 1}"] = act()
    blocks["out"] = torch.nn.Linear(32, 10)
    model = torch.nn.Sequential(blocks)
    with torch.no_grad():
        for m in model:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(scale)
                m.bias.add_(bias)
    return model


#: per-layer metrics of the digits cases (all at the record cadence)
_DIGITS_METRICS = {
    "act_stats": {},
    "effective_rank": {},
    "von_neumann": {},
    "dse": {"sigma": "median"},
}


def _train_classifier(
    out, model, layers, *, epochs, lr, every, seed, lr_jump=None, name="", sgd=False
):
    import torch

    from probes import Monitor

    x_train, y_train, x_probe, y_probe = _digits(seed)
    if sgd:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    metrics = {k: {**v, "every": every} for k, v in _DIGITS_METRICS.items()}
    monitor = Monitor(
        model, out, layers=layers, probe_inputs=x_probe, probe_labels=y_probe, every=every,
        metrics=metrics, budget=None, seed=seed, name=name,
        config={"recipe": "benchmarks/detector_suite.py", "case": name, "epochs": epochs,
                "lr": lr, "lr_jump": lr_jump},
    )  # fmt: skip
    with monitor:
        for epoch in range(epochs + 1):
            if lr_jump is not None and epoch == lr_jump[0]:
                for g in opt.param_groups:
                    g["lr"] = lr_jump[1]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x_train), y_train)
            loss.backward()
            monitor.step(epoch, loss=loss.detach())
            if epoch < epochs:
                opt.step()


def record_healthy_tanh(out: Path, small: bool, seed: int = 1) -> None:
    model = _mlp("tanh", seed=seed)
    _train_classifier(out, model, ["act1", "act2", "act3", "out"], epochs=120 if small else 400,
                      lr=3e-3, every=4 if small else 10, seed=seed, name="healthy-tanh")  # fmt: skip


def record_healthy_fast(out: Path, small: bool, seed: int = 3) -> None:
    """The digits MLP with a learning rate 3x the sample run's (fast, still converging)."""
    model = _mlp("relu", seed=seed)
    _train_classifier(out, model, ["act1", "act2", "act3", "out"], epochs=100 if small else 300,
                      lr=1e-2, every=4 if small else 10, seed=seed, name="healthy-fast")  # fmt: skip


def record_healthy_sgd(out: Path, small: bool, seed: int = 4) -> None:
    """The digits MLP trained by SGD with momentum (full batch, lr 0.1)."""
    model = _mlp("relu", seed=seed)
    _train_classifier(out, model, ["act1", "act2", "act3", "out"], epochs=150 if small else 400,
                      lr=0.1, every=5 if small else 10, seed=seed, name="healthy-sgd",
                      sgd=True)  # fmt: skip


def record_healthy_cnn(out: Path, small: bool, seed: int = 2) -> None:
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(OrderedDict(
        unflatten=torch.nn.Unflatten(1, (1, 8, 8)),
        conv1=torch.nn.Conv2d(1, 16, 3, padding=1), act1=torch.nn.ReLU(),
        conv2=torch.nn.Conv2d(16, 32, 3, padding=1), act2=torch.nn.ReLU(),
        pool=torch.nn.AdaptiveAvgPool2d(2), flat=torch.nn.Flatten(),
        fc=torch.nn.Linear(128, 64), act3=torch.nn.ReLU(), out=torch.nn.Linear(64, 10),
    ))  # fmt: skip
    _train_classifier(out, model, ["act1", "act2", "act3", "out"], epochs=100 if small else 300,
                      lr=3e-3, every=4 if small else 10, seed=seed, name="healthy-cnn")  # fmt: skip


def record_divergent_lr(out: Path, small: bool, seed: int = 0) -> None:
    model = _mlp("relu", seed=seed)
    _train_classifier(out, model, ["act1", "act2", "act3", "out"], epochs=160 if small else 300,
                      lr=3e-3, every=4 if small else 5, seed=seed, lr_jump=(100, 0.9),
                      name="divergent-lr")  # fmt: skip


def record_dead_relu(out: Path, small: bool, seed: int = 0) -> None:
    model = _mlp("relu", seed=seed, bias=-3.0)
    _train_classifier(out, model, ["act1", "act2", "act3", "out"], epochs=60 if small else 200,
                      lr=3e-3, every=4 if small else 10, seed=seed, name="dead-relu")  # fmt: skip


def record_saturated_tanh(out: Path, small: bool, seed: int = 0) -> None:
    model = _mlp("tanh", seed=seed, scale=8.0)
    _train_classifier(out, model, ["act1", "act2", "act3", "out"], epochs=60 if small else 200,
                      lr=3e-3, every=4 if small else 10, seed=seed, name="saturated-tanh")  # fmt: skip


def record_simsiam_collapse(out: Path, small: bool, seed: int = 0) -> None:
    """Two noisy, shifted views of each digit; an encoder trained to maximise the cosine
    similarity of their embeddings, with neither stop-gradient nor predictor (the ablation in
    which SimSiam collapses: Chen & He 2021, fig. 2). No labels reach the probes."""
    import torch

    from probes import Monitor

    x_train, _, x_probe, _ = _digits(seed)
    torch.manual_seed(seed)
    enc = torch.nn.Sequential(OrderedDict(
        fc1=torch.nn.Linear(64, 128), act1=torch.nn.ReLU(),
        fc2=torch.nn.Linear(128, 64), act2=torch.nn.ReLU(), emb=torch.nn.Linear(64, 32),
    ))  # fmt: skip
    opt = torch.optim.SGD(enc.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)

    def view(x):
        img = x.view(-1, 8, 8)
        shift = int(torch.randint(-1, 2, (1,), generator=g))
        img = torch.roll(img, shifts=shift, dims=2)
        return (img + 0.1 * torch.randn(img.shape, generator=g)).reshape(-1, 64)

    steps = 150 if small else 400
    every = 5 if small else 10
    metrics = {k: {**v, "every": every} for k, v in _DIGITS_METRICS.items()}
    with Monitor(enc, out, layers=["act1", "act2", "emb"], probe_inputs=x_probe, every=every,
                 metrics=metrics, budget=None, seed=seed, name="simsiam-collapse",
                 config={"recipe": "benchmarks/detector_suite.py", "case": "simsiam-collapse",
                         "steps": steps}) as mon:  # fmt: skip
        for step in range(steps + 1):
            idx = torch.randint(0, len(x_train), (256,), generator=g)
            z1, z2 = enc(view(x_train[idx])), enc(view(x_train[idx]))
            loss = -torch.nn.functional.cosine_similarity(z1, z2, dim=1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            mon.step(step, loss=loss.detach())
            if step < steps:
                opt.step()


# ---------------------------------------------------------------- language models


def _grammar(n: int, length: int, g):
    """The sample runs' grammar, ``next = (3 * cur + c) mod 48``, ``c`` in {0, 1, 2}."""
    from dashboard.samples.lm_entropy import grammar

    return grammar(n, length, g)


def _gpt2(seed: int):
    """The sample runs' 2-layer GPT-2 (eager attention, no dropout), randomly initialised."""
    from dashboard.samples.lm_entropy import build_model

    return build_model(seed)


def _pretrain(model, out, *, steps, every, seed, name, each_step=None, lr=3e-3):
    import torch

    from probes.lm import LMMonitor

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with LMMonitor(model, out, every=every, name=name,
                   config={"recipe": "benchmarks/detector_suite.py", "case": name,
                           "steps": steps}) as mon:  # fmt: skip
        model.train()
        for step in range(steps):
            if each_step is not None:
                each_step(model, step)
            x = _grammar(16, 32, g)
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(step, loss=loss.detach())


def record_lm_pretrain_long(out: Path, small: bool, seed: int = 3) -> None:
    _pretrain(_gpt2(seed), out, steps=1200, every=100 if small else 20, seed=seed,
              name="lm-pretrain-long")  # fmt: skip


def _query_block(model, layer: int):
    """The query rows of GPT-2's fused c_attn (a Conv1D: weight (n_embd, 3 n_embd))."""
    attn = model.transformer.h[layer].attn
    return attn.c_attn, attn.split_size


def record_attention_forced(out: Path, small: bool, seed: int = 4) -> None:
    import torch

    start = 40
    last = 1

    def force(model, step):
        if step >= start:
            c_attn, d = _query_block(model, last)
            with torch.no_grad():  # queries and keys of the last layer grow 8% a step
                c_attn.weight[:, : 2 * d].mul_(1.08)
                c_attn.bias[: 2 * d].mul_(1.08)

    _pretrain(_gpt2(seed), out, steps=100 if small else 200, every=4 if small else 2, seed=seed,
              name="attention-forced", each_step=force)  # fmt: skip


def record_uniform_early_attention(out: Path, small: bool, seed: int = 5) -> None:
    import torch

    def hold(model, step):
        c_attn, d = _query_block(model, 0)
        with torch.no_grad():  # zero queries: every key gets the same score
            c_attn.weight[:, :d].zero_()
            c_attn.bias[:d].zero_()

    _pretrain(_gpt2(seed), out, steps=1200, every=100 if small else 20, seed=seed,
              name="uniform-early-attention", each_step=hold)  # fmt: skip


def record_dpo_overoptimisation(out: Path, small: bool, seed: int = 6) -> None:
    """Pretrain (unrecorded), then DPO (Rafailov et al. 2023) on pairs whose chosen answer
    follows the grammar with c = 0 and rejected one with c = 2, with a small beta, far past
    the point where the margin is won (Shi et al. 2024's over-optimisation)."""
    import copy

    import torch

    from probes.lm import LMMonitor

    model = _gpt2(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150 if small else 200):
        x = _grammar(16, 32, g)
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    ref = copy.deepcopy(model).eval()
    beta, prompt_len, resp_len = 0.05, 8, 8
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)

    def answer(prompt, c):
        seq = prompt
        for _ in range(resp_len):
            seq = torch.cat([seq, (3 * seq[:, -1:] + c) % 48], 1)
        return seq

    def logp(m, seq):
        lp = torch.log_softmax(m(input_ids=seq).logits[:, :-1].float(), -1)
        return lp.gather(-1, seq[:, 1:, None])[..., 0][:, prompt_len - 1 :].sum(1)

    steps = 120 if small else 300
    with LMMonitor(model, out, every=1, name="dpo-overoptimisation", k=3,
                   config={"recipe": "benchmarks/detector_suite.py",
                           "case": "dpo-overoptimisation", "beta": beta}) as mon:  # fmt: skip
        for step in range(steps):
            prompt = _grammar(16, prompt_len, g)
            chosen, rejected = answer(prompt, 0), answer(prompt, 2)
            with torch.no_grad():
                ref_margin = logp(ref, chosen) - logp(ref, rejected)
            margin = logp(model, chosen) - logp(model, rejected)
            loss = -torch.nn.functional.logsigmoid(beta * (margin - ref_margin)).mean()
            model.train()
            model(input_ids=chosen)  # the recorded forward: the policy on chosen answers
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(step, loss=loss.detach())


RECORDERS: dict[str, Callable[[Path, bool], None]] = {
    "healthy-tanh": record_healthy_tanh,
    "healthy-fast": record_healthy_fast,
    "healthy-sgd": record_healthy_sgd,
    "healthy-cnn": record_healthy_cnn,
    "lm-pretrain-long": record_lm_pretrain_long,
    "divergent-lr": record_divergent_lr,
    "dead-relu": record_dead_relu,
    "saturated-tanh": record_saturated_tanh,
    "simsiam-collapse": record_simsiam_collapse,
    "attention-forced": record_attention_forced,
    "uniform-early-attention": record_uniform_early_attention,
    "dpo-overoptimisation": record_dpo_overoptimisation,
}


def record(root: Path, names=None, *, small: bool = False, force: bool = False, log=print):
    """Record the suite's own runs below ``root`` (skipping existing ones unless ``force``)."""
    import torch

    torch.set_num_threads(1)
    for name, fn in RECORDERS.items():
        if names is not None and name not in names:
            continue
        out = Path(root) / name
        if (out / "run.sqlite").exists() and not force:
            continue
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        fn(out, small)
        log(f"recorded {name} in {time.perf_counter() - t0:.1f} s")
