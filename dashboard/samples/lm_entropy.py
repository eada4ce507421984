"""Token-entropy dynamics of a tiny GPT-2: pretraining, then RL with and without Clip-Cov.

    python examples/lm_entropy.py              # three runs -> dashboard/sample_runs/
    python examples/lm_entropy.py --out runs --rl-steps 300
    python -m dashboard.samples.lm_entropy --out runs   # the same from an installed wheel

1. **Pretraining** (``lm-pretrain``): a randomly initialised 2-layer GPT-2 (eager attention,
   no dropout) learns text from a synthetic grammar, ``next = (3 * cur + c) mod V`` with
   ``c`` uniform in {0, 1, 2} (entropy rate log 3 = 1.10 nats), with
   :class:`probes.lm.LMMonitor` in live mode every 5 steps: token entropy (mean, quantiles,
   histograms), top-k indicators, log-probability and perplexity, attention entropy per
   layer and head. The detectors run with their defaults: token entropy falls here because
   the model learns, and the token-entropy collapse detector judges RL runs only (those that
   log rewards), so it stays silent.
2. **RL** from the pretrained weights: prompts of 4 grammar tokens, 8 sampled responses of
   8 tokens per prompt, a verifiable reward (the share of response tokens in a target set,
   every fourth token id: 12 of the 48), group-relative advantages (reward minus the
   prompt's mean reward, as GRPO without the std), plain on-policy REINFORCE with Adam.

   - ``lm-rl-baseline``: no intervention. The policy's entropy collapses (Cui et al. 2025:
     positive entropy-advantage covariance drives it down) while the reward saturates; the
     monitor raises ``token_entropy_collapse`` alerts.
   - ``lm-rl-clipcov``: a Clip-Cov-like intervention (Cui et al. 2025, arXiv:2505.22617):
     the gradient of the response tokens with the highest entropy-advantage covariance
     (the top ``--clip-fraction`` of them; the paper picks a random ``2e-4`` of the tokens
     within covariance bounds in large-batch runs, a deviation for this tiny setting) is
     detached. Entropy stays up (the policy keeps spreading over the target set) at a
     slightly lower reward.

   Each RL step calls ``monitor.log_rl(step, logprobs=..., advantages=..., mask=...,
   rewards=..., answers=...)`` (answer = the last response token, for the answer-level
   entropy) before ``monitor.step(step)``.

Runs in about a minute on two CPU cores (it prints its wall time).
"""

from __future__ import annotations

import argparse
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from diagnostics import open_run
from diagnostics.estimators import entropy_advantage_covariance
from probes.lm import LMMonitor

VOCAB = 48
#: the runs, in the order they are recorded
NAMES = ("lm-pretrain", "lm-rl-baseline", "lm-rl-clipcov")
#: the one line the dashboard's Runs page shows for each run (meta ``story``), and the
#: dashboard pages that open on it when no run is picked (meta ``showcase``)
STORIES = {
    "lm-pretrain": "A tiny GPT-2 learns a synthetic grammar: token entropy falls towards "
    "the grammar's entropy rate (1.1 nats).",
    "lm-rl-baseline": "RL without intervention: the token entropy collapses while the "
    "reward saturates (token-entropy collapse alerts).",
    "lm-rl-clipcov": "RL with a Clip-Cov-like intervention: clipping the high-covariance "
    "tokens keeps the token entropy up.",
}
SHOWCASE = {
    "lm-pretrain": [],
    "lm-rl-baseline": ["language-model", "collapse"],
    "lm-rl-clipcov": ["language-model"],
}
#: where ``main`` writes by default: the sample runs shipped with the dashboard
SAMPLE_RUNS = Path(__file__).resolve().parents[1] / "sample_runs"
Progress = Callable[[int], object] | None
RECIPE = {"recipe": "dashboard/samples/lm_entropy.py"}


def grammar(n: int, length: int, g: torch.Generator) -> torch.Tensor:
    """``n`` sequences of the grammar ``next = (3 * cur + c) mod VOCAB``, ``c`` in {0, 1, 2}."""
    x = torch.empty((n, length), dtype=torch.long)
    x[:, 0] = torch.randint(0, VOCAB, (n,), generator=g)
    for t in range(1, length):
        x[:, t] = (3 * x[:, t - 1] + torch.randint(0, 3, (n,), generator=g)) % VOCAB
    return x


def build_model(seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
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
        attn_implementation="eager",  # attention probabilities for attn/* metrics
    )
    return GPT2LMHeadModel(cfg)


def pretrain(model, run: Path, *, steps: int, seed: int, progress: Progress = None) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    config = {"phase": "pretrain", "steps": steps, "batch": 16, "seq": 32, "lr": 3e-3, **RECIPE}
    with LMMonitor(
        model,
        run,
        every=5,
        name=run.name,
        config=config,
        meta=_meta(run.name),
    ) as mon:
        model.train()
        for step in range(steps):
            x = grammar(16, 32, g)
            out = model(input_ids=x, labels=x)
            out.loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(step, loss=out.loss.detach())
            if progress is not None:
                progress(1)


def _meta(name: str) -> dict:
    return {"story": STORIES[name], "showcase": SHOWCASE[name]} if name in STORIES else {}


def rl(
    model,
    run: Path,
    *,
    steps: int,
    clip_fraction: float,
    seed: int,
    progress: Progress = None,
) -> None:
    prompts_n, group, prompt_len, resp_len, lr = 4, 8, 4, 8, 2e-3
    target = torch.zeros(VOCAB, dtype=torch.bool)
    target[::4] = True
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    config = {
        "phase": "rl",
        "algorithm": "REINFORCE, group-relative advantages",
        "intervention": f"clip-cov top {clip_fraction:g}" if clip_fraction else "none",
        "clip_fraction": clip_fraction,
        "prompts": prompts_n,
        "group": group,
        "response_tokens": resp_len,
        "lr": lr,
        "reward": "share of response tokens in {0, 4, 8, ...}",
        **RECIPE,
    }
    with LMMonitor(model, run, every=1, name=run.name, config=config, meta=_meta(run.name)) as mon:
        for step in range(steps):
            seq = grammar(prompts_n, prompt_len, g).repeat_interleave(group, 0)
            model.eval()
            with torch.no_grad():  # sampling (the training forward below is what is recorded)
                for _ in range(resp_len):
                    p = torch.softmax(model(input_ids=seq).logits[:, -1].float(), -1)
                    seq = torch.cat([seq, torch.multinomial(p, 1, generator=g)], 1)
            model.train()
            logits = model(input_ids=seq).logits
            logp = torch.log_softmax(logits[:, :-1].float(), -1)
            logp = logp.gather(-1, seq[:, 1:, None])[..., 0]  # (batch, seq - 1)
            mask = torch.zeros_like(logp, dtype=torch.bool)
            mask[:, prompt_len - 1 :] = True  # positions that predict response tokens
            reward = target[seq[:, prompt_len:]].float().mean(1)
            grouped = reward.view(prompts_n, group)
            adv = (grouped - grouped.mean(1, keepdim=True)).reshape(-1)
            adv_tok = adv[:, None].expand_as(logp)
            weight = mask.float()
            if clip_fraction:
                cov = entropy_advantage_covariance(logp.detach(), adv_tok, mask=mask)
                k = max(1, int(clip_fraction * int(mask.sum())))
                top = torch.nan_to_num(cov, nan=-torch.inf).reshape(-1).topk(k).indices
                weight.view(-1)[top] = 0.0  # Clip-Cov: no gradient through these tokens
            loss = -(adv_tok * logp * weight).sum() / mask.sum()
            loss.backward()
            opt.step()
            opt.zero_grad()
            answers = seq[:, -1].view(prompts_n, group).tolist()
            mon.log_rl(
                step,
                logprobs=logp.detach(),
                advantages=adv,
                mask=mask,
                rewards=reward,
                answers=answers,
            )
            mon.step(step, loss=loss.detach())
            if progress is not None:
                progress(1)


def record(
    out: str | Path,
    *,
    steps: int = 200,
    rl_steps: int = 150,
    clip_fraction: float = 0.1,
    seed: int = 0,
    progress: Callable[[str], Progress] | None = None,
) -> list[Path]:
    """Pretrain, then the two RL runs from the same weights; write :data:`NAMES` below
    ``out`` (replacing runs of those names). Returns the run folders.

    ``progress``: called with a run's name before it is recorded; what it returns (if
    not None) is called with 1 after each step of that run."""
    out = Path(out)
    for n in NAMES:
        shutil.rmtree(out / n, ignore_errors=True)
    bar = progress or (lambda name: None)
    model = build_model(seed)
    pretrain(model, out / NAMES[0], steps=steps, seed=seed, progress=bar(NAMES[0]))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, clip in ((NAMES[1], 0.0), (NAMES[2], clip_fraction)):
        model.load_state_dict(state)
        rl(
            model,
            out / name,
            steps=rl_steps,
            clip_fraction=clip,
            seed=seed + 1,
            progress=bar(name),
        )
    return [out / n for n in NAMES]


def summarise(run: Path) -> str:
    with open_run(run) as r:
        sc = r.scalars(metrics=["lm/token_entropy/mean", "rl/reward"])
        alerts = r.alerts()
    parts = [run.name]
    for m in ("lm/token_entropy/mean", "rl/reward"):
        s = sc[sc.metric == m]["value"]
        if len(s):
            parts.append(f"{m} {s.iloc[:3].mean():.3f} -> {s.iloc[-5:].mean():.3f}")
    kinds = sorted({f"{a.indicator}:{a.severity}" for a in alerts.itertuples()})
    parts.append(f"alerts {', '.join(kinds) or 'none'}")
    return "; ".join(parts)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=SAMPLE_RUNS, help="folder of the runs")
    ap.add_argument("--steps", type=int, default=200, help="pretraining steps")
    ap.add_argument("--rl-steps", type=int, default=150, help="RL steps per run")
    ap.add_argument("--clip-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*loss_type=None.*")
    t0 = time.perf_counter()
    runs = record(
        args.out,
        steps=args.steps,
        rl_steps=args.rl_steps,
        clip_fraction=args.clip_fraction,
        seed=args.seed,
    )
    for run in runs:
        print(summarise(run))
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
