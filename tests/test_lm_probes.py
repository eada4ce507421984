"""LMMonitor: logits and attention probes on tiny GPT-2 / Llama models, RL metrics, alerts.

Models are built from small configs (nothing downloaded) and trained a few steps on text
from a synthetic grammar; logged values are compared with the estimators of
:mod:`diagnostics.lm` run on the same logits / attention probabilities.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from diagnostics import open_run
from diagnostics.lm import (
    attention_entropy,
    entropy_advantage_covariance,
    masked_mean,
    masked_quantiles,
    perplexity,
    positive_covariance_share,
    token_stats,
)
from probes.lm import QUANTILES, LMMonitor

transformers = pytest.importorskip("transformers")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
VOCAB = 50
TOL = dict(rel_tol=1e-4, abs_tol=1e-5)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def grammar(n: int, length: int, *, vocab: int = VOCAB, seed: int = 0) -> torch.Tensor:
    """Sequences of a tiny Markov grammar: ``next = (3 * cur + c) % vocab``, ``c`` in {0, 1, 2}
    (entropy rate log 3)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.empty((n, length), dtype=torch.long)
    x[:, 0] = torch.randint(0, vocab, (n,), generator=g)
    for t in range(1, length):
        x[:, t] = (3 * x[:, t - 1] + torch.randint(0, 3, (n,), generator=g)) % vocab
    return x


def gpt2(attn: str = "eager", seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=32,
        vocab_size=VOCAB,
        n_positions=64,
        attn_pdrop=0.0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation=attn,
    )
    return transformers.GPT2LMHeadModel(cfg)


def llama(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        attn_implementation="eager",
    )
    return transformers.LlamaForCausalLM(cfg)


class SGD:
    """Plain SGD (torch.optim's first step imports torch._dynamo: seconds per session)."""

    def __init__(self, params, lr):
        self.params, self.lr = list(params), lr

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        for p in self.params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-self.lr)


class Grab:
    """Test-side hooks: the last logits of a module and the attention probabilities."""

    def __init__(self, logits_module, attn_modules=()):
        self.logits = None
        self.attn = {}
        self.handles = [logits_module.register_forward_hook(self._logits)]
        for name, m in attn_modules:
            self.handles.append(m.register_forward_hook(lambda m, a, o, n=name: self._attn(n, o)))

    def _logits(self, m, a, o):
        self.logits = (o if isinstance(o, torch.Tensor) else o.logits).detach().clone()

    def _attn(self, name, o):
        self.attn[name] = o[1].detach().clone()

    def remove(self):
        for h in self.handles:
            h.remove()


def close(a, b, what=""):
    assert math.isclose(float(a), float(b), **TOL), f"{what}: {a} != {b}"


def check_token_metrics(out, logits, targets, valid):
    ref = token_stats(logits, targets=targets, k=10, mask=valid)
    h = ref["entropy"]
    close(out[("lm/token_entropy/mean", None)], masked_mean(h), "entropy mean")
    qs = masked_quantiles(h, list(QUANTILES))
    for q, v in zip(QUANTILES, qs):
        close(out[(f"lm/token_entropy/q{round(q * 100):02d}", None)], v, f"q{q}")
    for key in ("topk_mass", "topk_entropy", "topk_entropy_renorm", "sum_p2"):
        close(out[(f"lm/{key}", None)], masked_mean(ref[key]), key)
    close(out[("lm/logprob", None)], masked_mean(ref["logprob"]), "logprob")
    close(out[("lm/perplexity", None)], perplexity(ref["logprob"]), "perplexity")
    return h


def check_attention(out, attn, mask):
    assert attn, "no attention captured by the test hooks"
    for name, w in attn.items():
        ref = attention_entropy(w, mask=mask)
        heads = ref["entropy"].shape[0]
        close(out[("attn/entropy", name)], ref["entropy"].mean(), f"{name} entropy")
        close(out[("attn/entropy_norm", name)], ref["entropy_norm"].mean(), f"{name} norm")
        for hd in range(heads):
            close(out[(f"attn/entropy/h{hd}", name)], ref["entropy"][hd], f"{name} h{hd}")
            close(out[(f"attn/entropy_norm/h{hd}", name)], ref["entropy_norm"][hd], f"h{hd}")
        assert (f"attn/entropy/h{heads}", name) not in out


@pytest.mark.parametrize("device", DEVICES)
def test_gpt2_live_matches_estimators(tmp_path, device):
    model = gpt2().to(device)
    attn_mods = [(f"transformer.h.{i}.attn", model.transformer.h[i].attn) for i in range(2)]
    opt = SGD(model.parameters(), lr=0.05)
    x = grammar(6, 20).to(device)
    am = torch.ones_like(x)
    am[0, 15:] = 0  # right padding
    am[3, 12:] = 0
    labels = x.masked_fill(am == 0, -100)
    labels[:, :4] = -100  # a "prompt" that is not trained on
    mon = LMMonitor(model, tmp_path / "run", every=2, name="gpt2")
    grab = Grab(model.lm_head, attn_mods)
    recorded = {}
    for s in range(5):
        out_model = model(input_ids=x, attention_mask=am, labels=labels)
        out_model.loss.backward()
        opt.step()
        opt.zero_grad()
        out = mon.step(s, loss=out_model.loss)
        if s % 2 == 0:
            assert out, f"step {s} was due"
            recorded[s] = out
            # the same logits as the monitor's hook saw (the forward of this step)
            targets = torch.full(x.shape, -1, dtype=torch.long, device=device)
            targets[:, :-1] = labels[:, 1:]
            valid = torch.zeros_like(x, dtype=torch.bool)
            valid[:, :-1] = (labels[:, 1:] != -100) & (am[:, :-1] == 1)
            check_token_metrics(out, grab.logits, targets, valid)
            check_attention(out, grab.attn, am)
        else:
            assert not out
    grab.remove()
    mon.close()
    assert not mon._handles  # hooks removed
    with open_run(tmp_path / "run") as r:
        sc = r.scalars()
        got = sc[(sc.metric == "lm/token_entropy/mean") & (sc.step == 4)]["value"].iloc[0]
        close(got, recorded[4][("lm/token_entropy/mean", None)], "run log")
        assert set(sc.step[sc.metric == "lm/topk_mass"]) == {0, 2, 4}
        heads = sc[sc.metric == "attn/entropy/h1"]
        assert set(heads.layer) == {"transformer.h.0.attn", "transformer.h.1.attn"}
        d = r.distributions(metrics="lm/token_entropy")
        assert list(d.step) == [0, 2, 4] and set(d.kind) == {"histogram"}
        data = d.data.iloc[0]
        n_valid = int(((labels[:, 1:] != -100) & (am[:, :-1] == 1)).sum())
        assert sum(data["counts"]) == n_valid
        assert float(data["edges"][-1]) == pytest.approx(math.log(VOCAB))
        assert r.events().empty
        assert set(sc.metric) >= {"train/loss", "lm/perplexity", "attn/entropy_norm"}


@pytest.mark.parametrize("device", DEVICES)
def test_llama_probe_mode_matches_estimators(tmp_path, device):
    model = llama().to(device)
    x = grammar(8, 24, seed=1).to(device)
    probe = {"input_ids": grammar(4, 16, seed=2).to(device)}
    probe["attention_mask"] = torch.ones_like(probe["input_ids"])
    probe["attention_mask"][1, 10:] = 0
    opt = SGD(model.parameters(), lr=0.05)
    mon = LMMonitor(model, tmp_path / "run", probe_inputs=probe, every=3)
    assert mon.mode == "probe" and len(mon._attn_modules) == 2
    for s in range(4):
        model.train()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        out = mon.step(s, loss=loss)
        assert bool(out) == (s % 3 == 0)
    assert model.training  # train/eval flags restored after the probe forward
    model.eval()
    with torch.no_grad():
        ref = model(**probe, output_attentions=True)
    ids, am = probe["input_ids"], probe["attention_mask"].bool()
    targets = torch.full(ids.shape, -1, dtype=torch.long, device=device)
    targets[:, :-1] = torch.where(am[:, 1:], ids[:, 1:], -1)
    check_token_metrics(out, ref.logits, targets, am)
    attn = {f"model.layers.{i}.self_attn": a for i, a in enumerate(ref.attentions)}
    check_attention(out, attn, probe["attention_mask"])
    mon.close()


def test_sdpa_falls_back_without_attention(tmp_path):
    model = gpt2(attn="sdpa")
    x = grammar(4, 12)
    with pytest.warns(RuntimeWarning, match="attn_implementation='eager'") as rec:
        mon = LMMonitor(model, tmp_path / "run", every=1)
        for s in range(3):
            model(input_ids=x, labels=x).loss.backward()
            out = mon.step(s)
        mon.close()
    assert sum("attention entropy skipped" in str(w.message) for w in rec) == 1
    assert ("lm/token_entropy/mean", None) in out
    assert not any(m.startswith("attn/") for m, _ in out)
    with open_run(tmp_path / "run") as r:
        ev = r.events()
        assert list(ev.kind) == ["attention_unavailable"]
        assert not any(m.startswith("attn/") for m in r.metrics())


class Bigram(nn.Module):
    """A tiny policy whose output is logits ``(batch, seq, vocab)`` (not a HF model)."""

    def __init__(self, vocab: int = 12, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = nn.Embedding(vocab, vocab)
        with torch.no_grad():
            self.table.weight.copy_(0.3 * torch.randn(vocab, vocab, generator=g))

    def forward(self, ids):
        return self.table(ids)


def test_attention_modules_without_probabilities(tmp_path):
    """Modules whose output holds no probabilities: warned once at the first record,
    an event, and the LM metrics still recorded."""
    policy = Bigram()
    ids = torch.randint(0, 12, (4, 6))
    mon = LMMonitor(policy, tmp_path / "run", every=1, attention_layers="table")
    with pytest.warns(RuntimeWarning, match="returned no probabilities"):
        for s in range(3):
            policy(ids)
            out = mon.step(s)
    assert ("lm/token_entropy/mean", None) in out
    mon.close()
    with open_run(tmp_path / "run") as r:
        ev = r.events()
        assert list(ev.kind) == ["attention_unavailable"] and int(ev.step.iloc[0]) == 0


def rl_loop(tmp_path, *, steps: int, lr: float, name: str, seed: int = 0):
    """REINFORCE on a bigram policy, reward = share of the target token in the response."""
    vocab, length, batch, target = 12, 6, 32, 3
    policy = Bigram(vocab, seed)
    opt = SGD(policy.parameters(), lr)
    g = torch.Generator().manual_seed(seed)
    mon = LMMonitor(policy, tmp_path / name, every=1, fit_min_points=5)
    seen = []
    for s in range(steps):
        seq = torch.randint(0, vocab, (batch, 1), generator=g)
        with torch.no_grad():  # sampling: forwards the hooks also see (the last one wins)
            for _ in range(length):
                p = torch.softmax(policy(seq)[:, -1], -1)
                seq = torch.cat([seq, torch.multinomial(p, 1, generator=g)], 1)
        logits = policy(seq)  # (batch, 1 + length, vocab)
        logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, seq[:, 1:, None])[..., 0]
        mask = torch.ones_like(logp, dtype=torch.bool)
        reward = (seq[:, 1:] == target).float().mean(1)
        adv = (reward - reward.mean()) / (reward.std() + 1e-6)
        loss = -(adv[:, None] * logp).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        mon.log_rl(s, logprobs=logp.detach(), advantages=adv, mask=mask, rewards=reward)
        out = mon.step(s)
        seen.append((logits.detach(), logp.detach(), adv, mask, reward, out))
    mon.close()
    return mon, seen


def test_rl_entropy_collapse_alert_and_covariance(tmp_path):
    mon, seen = rl_loop(tmp_path, steps=40, lr=20.0, name="rl")
    with open_run(tmp_path / "rl") as r:
        sc = r.scalars()
        alerts = r.alerts()
    h = sc[sc.metric == "lm/token_entropy/mean"].set_index("step")["value"]
    assert h.iloc[-1] < 0.1 * h.iloc[:3].median(), "the policy's entropy did not collapse"
    sev = set(alerts[alerts.indicator == "token_entropy_collapse"].severity)
    assert sev == {"warning", "critical"}
    # deduplicated: one row per (indicator, severity, layer, onset)
    assert not alerts.duplicated(["indicator", "severity", "layer", "step"]).any()
    ev = alerts[alerts.severity == "critical"].evidence.iloc[0]
    assert ev["metric"] == "lm/token_entropy/mean" and len(ev["values"]) > 0
    assert [a.indicator for a in mon.alerts].count("token_entropy_collapse") == 2
    # covariance metrics equal the estimator on the same batch
    logits, logp, adv, mask, reward, out = seen[5]
    cov = entropy_advantage_covariance(logp, adv, mask=mask)
    got = sc[(sc.metric == "rl/cov/mean") & (sc.step == 5)].value.iloc[0]
    close(got, masked_mean(cov), "cov mean")
    got = sc[(sc.metric == "rl/cov/pos_share") & (sc.step == 5)].value.iloc[0]
    close(got, positive_covariance_share(cov), "pos_share")
    close(sc[(sc.metric == "rl/reward") & (sc.step == 5)].value.iloc[0], reward.mean())
    # lm/* of the RL step: the training forward's logits restricted to the response
    # (mask one shorter than the logits' positions: aligned with logits[:, :-1])
    ref_h = token_stats(logits[:, :-1], stats=("entropy",))["entropy"]
    close(out[("lm/token_entropy/mean", None)], ref_h.mean(), "response entropy")
    close(sc[(sc.metric == "rl/completion_entropy") & (sc.step == 5)].value.iloc[0], ref_h.mean())
    fit = sc[sc.metric == "rl/fit/ceiling"]
    assert len(fit) == 40 - 4 and fit.value.notna().all()
    assert set(sc.metric) >= {"rl/cov/mean", "rl/cov/pos_share", "rl/fit/a", "rl/fit/b"}


def test_failing_metric_is_isolated(tmp_path, monkeypatch):
    import probes.lm as plm

    def boom(*a, **k):
        raise RuntimeError("token stats exploded")

    monkeypatch.setattr(plm, "token_stats", boom)
    policy = Bigram()
    ids = torch.randint(0, 12, (4, 6))
    mon = LMMonitor(policy, tmp_path / "run", every=1, disable_after=2)
    with pytest.warns(RuntimeWarning, match="exploded") as rec:
        for s in range(4):
            policy(ids).sum().backward()  # the user's forward is not disturbed
            mon.step(s, loss=1.0)
    assert sum("exploded" in str(w.message) for w in rec) == 1
    mon.close()
    with open_run(tmp_path / "run") as r:
        ev = r.events()
        assert (ev.kind == "probe_failure").sum() >= 2
        assert "probe_disabled" in set(ev.kind)
        assert "train/loss" in r.metrics()


def test_log_rl_answers_and_validation(tmp_path):
    policy = Bigram()
    mon = LMMonitor(policy, None, every=1)
    ids = torch.randint(0, 12, (4, 6))
    policy(ids)
    ent = torch.rand(4, 5)
    mon.log_rl(
        0,
        rewards=torch.tensor([1.0, 0.0, 1.0, 1.0]),
        entropies=ent,
        answers=[["a", "a", "b", "b"], ["c", "c"]],
    )
    out = mon.step(0)
    close(out[("rl/answer_entropy", None)], math.log(2) / 2, "answer entropy")
    close(out[("rl/completion_entropy", None)], ent.mean(), "completion entropy")
    close(out[("rl/reward", None)], 0.75, "reward")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="k: expected an integer >= 1"):
            LMMonitor(policy, None, k=0)
    with pytest.raises(ValueError, match="lm_collapse"):
        LMMonitor(policy, None, lm_collapse={"nope": {}})
    mon.close()


def test_lm_detectors_run_in_the_monitors_one_detector(tmp_path):
    """LMMonitor judges the LM series with the Monitor's online detectors: the attention
    modules are their layer order, lm_collapse keywords reach the settings, False turns a
    detector off; an unknown name or keyword is refused naming it."""
    model = gpt2()
    mon = LMMonitor(
        model,
        tmp_path / "run",
        lm_collapse={
            "token_entropy_collapse": {"floor_fraction": 0.05},
            "entropic_overload": False,
        },
    )
    det = mon.collapse
    assert det.context.layer_order == ("transformer.h.0.attn", "transformer.h.1.attn")
    assert det.settings.token_entropy_floor == 0.05
    names = [d.indicator for d in det.detectors]
    assert "entropic_overload" not in names and "attention_collapse" in names
    assert "rank_collapse" in names  # the representation detectors run too
    mon.close()
    off = LMMonitor(gpt2(), None, lm_collapse=False)
    assert "token_entropy_collapse" not in [d.indicator for d in off.collapse.detectors]
    off.close()
    with pytest.raises(ValueError, match="lm_collapse"):
        LMMonitor(gpt2(), None, lm_collapse={"nope": {}})
    with pytest.raises(TypeError, match="floor"):
        LMMonitor(gpt2(), None, lm_collapse={"token_entropy_collapse": {"floor": 0.1}})
