"""Tests for diagnostics.lm: token, top-k, covariance, answer and attention entropy."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical

from diagnostics.lm import (
    answer_entropy,
    attention_entropy,
    completion_entropy,
    entropy_advantage_covariance,
    fit_entropy_reward,
    masked_mean,
    masked_quantiles,
    perplexity,
    positive_covariance_share,
    sum_squared_probs,
    token_entropy,
    token_logprobs,
    token_stats,
    top_covariance_tokens,
    topk_entropy,
    topk_mass,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
NEG_INF = -float("inf")


def _logits(shape, *, device, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(device)


def _extreme(device):
    """Random logits with extreme rows, -inf masked vocabulary entries and ties."""
    z = _logits((4, 6, 37), device=device, scale=4.0)
    z[0, 0] *= 1e3  # spread of thousands: near one-hot
    z[0, 1] = 0.0  # uniform row
    z[0, 2] += 5e4  # huge common offset
    z[1, 0, :30] = NEG_INF  # most of the vocabulary masked out
    z[1, 1, 1:] = NEG_INF  # a single allowed token: entropy 0
    z[2, :, ::3] = NEG_INF
    z[3, 0] = torch.linspace(-80, 80, 37, dtype=torch.float64)
    return z


def _ref_entropy(z):
    return Categorical(logits=z.double()).entropy()


# --------------------------------------------------------------------------------------
# token entropy
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("chunk_size", [None, 1, 5, 1000])
def test_token_entropy_matches_categorical(device, chunk_size):
    z = _extreme(device)
    for dtype in (torch.float32, torch.float64):
        x = z.to(dtype)
        ref = _ref_entropy(x)  # on the same (rounded) numbers
        h = token_entropy(x, chunk_size=chunk_size)
        assert h.dtype == torch.float32 and h.device.type == device and h.shape == z.shape[:-1]
        torch.testing.assert_close(h.double(), ref, atol=2e-5, rtol=1e-5)
    assert torch.all(h[1, 1] == 0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_token_entropy_half_precision_against_upcast(device, dtype):
    z = _extreme(device)
    z[0, 2] -= 5e4  # keep within float16's range (65504)
    z[0, 0] /= 100
    zh = z.to(dtype)
    ref = _ref_entropy(zh.float())  # reference on the float32 upcast of the same numbers
    h = token_entropy(zh, chunk_size=3)
    assert h.dtype == torch.float32
    torch.testing.assert_close(h.double(), ref, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_token_entropy_mask_temperature_base_and_slices(device):
    z = _logits((3, 9, 50), device=device)
    mask = torch.ones(3, 9, dtype=torch.int64, device=device)
    mask[0, :4] = 0
    mask[2, 7:] = 0
    h = token_entropy(z, mask=mask)
    assert torch.isnan(h[0, :4]).all() and torch.isnan(h[2, 7:]).all()
    ok = mask.bool()
    torch.testing.assert_close(h[ok].double(), _ref_entropy(z)[ok], atol=1e-5, rtol=1e-5)
    # temperature scales the logits; base converts units
    ht = token_entropy(z, temperature=0.6)
    torch.testing.assert_close(ht.double(), _ref_entropy(z / 0.6), atol=1e-5, rtol=1e-5)
    h2 = token_entropy(z, base=2)
    torch.testing.assert_close(h2.double(), _ref_entropy(z) / math.log(2), atol=1e-5, rtol=1e-5)
    # a non-contiguous slice (next-token shift) is walked without a copy, same numbers
    zs = z.float()[:, :-1]
    assert not zs.is_contiguous()
    torch.testing.assert_close(token_entropy(zs, chunk_size=4), token_entropy(zs.contiguous()))
    # 1-D logits: one distribution
    torch.testing.assert_close(
        token_entropy(z[0, 0]).double(), _ref_entropy(z[0, 0]), atol=1e-5, rtol=0
    )


def test_token_entropy_numpy_and_nonfinite_rows():
    z = np.zeros((3, 4), dtype=np.float32)
    z[1, :] = -np.inf  # nothing allowed: undefined
    z[2, 0] = np.nan
    h = token_entropy(z)
    assert h[0].item() == pytest.approx(math.log(4), abs=1e-6)
    assert math.isnan(h[1].item()) and math.isnan(h[2].item())


def test_chunk_budget_is_by_bytes():
    from diagnostics.estimators import _lm_inputs as lm

    # float32 logits of 32 MiB (a stride-0 view, nothing allocated): two float32 buffers
    # must fit in a quarter of that
    z = torch.empty(1).expand(256 * 32768).view(256, 32768)
    rows = lm._chunk_rows(z, 2, None, None)
    assert 2 * rows * 32768 * 4 <= z.numel() * 4 // 4 and rows == 32
    bf16 = torch.empty(1, dtype=torch.bfloat16).expand(256 * 32768).view(256, 32768)
    assert lm._chunk_rows(bf16, 2, None, None) == 16  # half the bytes, half the rows
    # tiny inputs: the floor applies, one chunk
    assert lm._chunk_rows(torch.empty(8, 100), 2, None, None) >= 8
    # a 150k vocabulary on a big input: bounded by the CPU cap, fewer rows than for 32k
    big = torch.empty(1).expand(4096 * 152064).view(4096, 152064)
    rows_big = lm._chunk_rows(big, 2, None, None)
    assert 2 * rows_big * 152064 * 4 <= lm.CHUNK_BYTES_CAP["cpu"]
    assert rows_big < lm._chunk_rows(
        torch.empty(1).expand(4096 * 32000).view(4096, 32000), 2, None, None
    )
    # explicit settings
    assert lm._chunk_rows(z, 2, 7, None) == 7
    assert lm._chunk_rows(z, 2, None, 1) == 1  # at least one row
    assert lm._chunk_rows(z, 1, None, 32768 * 4 * 3) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_token_entropy_cuda_peak_memory_bf16():
    z = torch.randn(4, 1024, 32000, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    h = token_entropy(z)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    assert extra <= z.numel() * z.element_size() // 4 + 4 * h.numel() * 8
    torch.testing.assert_close(h, Categorical(logits=z.float()).entropy(), atol=1e-4, rtol=1e-5)


# --------------------------------------------------------------------------------------
# top-k, sum of squares, log-probabilities
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_topk_statistics_against_naive(device):
    z = _extreme(device).float()
    p = torch.softmax(z.double(), -1)
    for k in (1, 5, 37):
        st = token_stats(z.float(), k=k, chunk_size=4)
        top = p.topk(k, -1).values
        mass = top.sum(-1)
        raw = -torch.special.xlogy(top, top).sum(-1)
        renorm = Categorical(probs=top / mass.unsqueeze(-1)).entropy()
        torch.testing.assert_close(st["topk_mass"].double(), mass, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(st["topk_entropy"].double(), raw, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(st["topk_entropy_renorm"].double(), renorm, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(st["sum_p2"].double(), (p * p).sum(-1), atol=1e-6, rtol=1e-5)
    # k = vocabulary: mass 1, raw top-k entropy = full entropy; k = 1: renormalised 0
    full = token_stats(z, k=37)
    torch.testing.assert_close(full["topk_mass"].double(), torch.ones_like(mass), atol=1e-6, rtol=0)
    torch.testing.assert_close(full["topk_entropy"], full["entropy"], atol=2e-5, rtol=1e-5)
    assert torch.all(token_stats(z, k=1)["topk_entropy_renorm"] == 0)
    # the single-statistic wrappers agree with token_stats
    st = token_stats(z, k=5, mask=torch.ones(z.shape[:-1], dtype=torch.bool, device=device))
    torch.testing.assert_close(topk_mass(z, k=5), st["topk_mass"])
    torch.testing.assert_close(topk_entropy(z, k=5), st["topk_entropy"])
    torch.testing.assert_close(topk_entropy(z, k=5, renormalize=True), st["topk_entropy_renorm"])
    torch.testing.assert_close(sum_squared_probs(z), st["sum_p2"])
    torch.testing.assert_close(token_entropy(z), st["entropy"])


def test_uniform_distribution_closed_forms():
    z = torch.zeros(2, 3, 64, dtype=torch.bfloat16)
    st = token_stats(z, k=8)
    assert torch.allclose(st["entropy"], torch.full((2, 3), math.log(64)))
    assert torch.allclose(st["topk_mass"], torch.full((2, 3), 8 / 64))
    assert torch.allclose(st["topk_entropy_renorm"], torch.full((2, 3), math.log(8)))
    assert torch.allclose(st["topk_entropy"], torch.full((2, 3), 8 / 64 * math.log(64)))
    assert torch.allclose(st["sum_p2"], torch.full((2, 3), 1 / 64))


@pytest.mark.parametrize("device", DEVICES)
def test_token_logprobs_and_perplexity(device):
    z = _extreme(device)
    g = torch.Generator().manual_seed(1)
    t = torch.randint(0, 37, z.shape[:-1], generator=g).to(device)
    t[1, 1] = 0  # the one allowed token of that row
    for dtype in (torch.float32, torch.bfloat16):
        zz = z.to(dtype) if dtype == torch.float32 else z.clamp(-1e4, 1e4).to(dtype)
        r = torch.log_softmax(zz.double(), -1).gather(-1, t.unsqueeze(-1)).squeeze(-1)
        lp = token_logprobs(zz, t, chunk_size=5)
        finite = torch.isfinite(r)
        torch.testing.assert_close(lp.double()[finite], r[finite], atol=1e-4, rtol=1e-5)
        assert torch.equal(torch.isinf(lp), torch.isinf(r))  # masked-out targets: -inf
    # ignore index and masks give NaN; temperature
    t2 = t.clone()
    t2[0, 0] = -100
    lp = token_logprobs(
        z, t2, mask=torch.ones_like(t2).index_fill_(1, torch.tensor([5], device=device), 0)
    )
    assert torch.isnan(lp[0, 0]) and torch.isnan(lp[:, 5]).all()
    lpt = token_logprobs(z[3], t[3], temperature=2.0)
    ref_t = torch.log_softmax(z[3].double() / 2, -1).gather(-1, t[3].unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(lpt.double(), ref_t, atol=1e-5, rtol=1e-5)
    # next-token prediction on a non-contiguous slice
    zz = _logits((2, 8, 30), device=device).float()
    ids = torch.randint(0, 30, (2, 8), generator=g).to(device)
    lp = token_logprobs(zz[:, :-1], ids[:, 1:], chunk_size=3)
    ref = torch.log_softmax(zz[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(lp, ref, atol=1e-5, rtol=1e-5)
    # perplexity: uniform over V gives V; per sequence with dim=-1
    u = torch.zeros(2, 5, 10, device=device)
    lpu = token_logprobs(u, torch.zeros(2, 5, dtype=torch.long, device=device))
    assert perplexity(lpu).item() == pytest.approx(10.0, rel=1e-5)
    assert perplexity(lpu, dim=-1).shape == (2,)
    st = token_stats(zz, targets=ids)
    torch.testing.assert_close(st["logprob"], token_logprobs(zz, ids))


# --------------------------------------------------------------------------------------
# masked reductions
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_masked_mean_and_quantiles(device):
    g = torch.Generator().manual_seed(3)
    v = torch.randn(5, 40, generator=g).to(device)
    mask = torch.rand(5, 40, generator=g).to(device) > 0.3
    v_nan = v.clone()
    v_nan[0, 0] = float("nan")
    mask_np = mask.cpu().numpy().copy()
    mask_np[0, 0] = False
    vals = v.cpu().numpy()[mask_np]
    assert masked_mean(v_nan, mask).item() == pytest.approx(vals.mean(), rel=1e-5)
    per_row = masked_mean(v_nan, mask, dim=-1)
    for i in range(5):
        assert per_row[i].item() == pytest.approx(v.cpu().numpy()[i][mask_np[i]].mean(), rel=1e-5)
    qs = [0.0, 0.05, 0.25, 0.5, 0.9, 1.0]
    got = masked_quantiles(v_nan, qs, mask)
    assert got.device.type == device and got.shape == (6,)
    np.testing.assert_allclose(got.cpu().numpy(), np.quantile(vals, qs), rtol=1e-5, atol=1e-6)
    assert masked_quantiles(v, 0.5).shape == ()
    assert masked_quantiles(v, 0.5).item() == pytest.approx(np.median(v.cpu().numpy()), rel=1e-5)
    # NaN-padded token entropies summarise without a mask; nothing valid gives NaN
    h = token_entropy(_logits((2, 6, 11), device=device), mask=mask[:2, :6])
    assert masked_mean(h).item() == pytest.approx(masked_mean(h, mask[:2, :6]).item())
    none = torch.zeros_like(mask)
    assert math.isnan(masked_mean(v, none).item())
    assert torch.isnan(masked_quantiles(v, [0.1, 0.9], none)).all()
    torch.testing.assert_close(completion_entropy(h), masked_mean(h, dim=-1))


# --------------------------------------------------------------------------------------
# entropy-advantage covariance
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_covariance_definition_broadcast_share_and_top(device):
    g = torch.Generator().manual_seed(4)
    lp = -torch.rand(4, 12, generator=g).to(device) * 5
    adv_seq = torch.randn(4, generator=g).to(device)
    mask = torch.ones(4, 12, dtype=torch.bool, device=device)
    mask[1, 8:] = False
    cov = entropy_advantage_covariance(lp, adv_seq, mask=mask)
    adv = adv_seq[:, None].expand(4, 12)
    a, l_ = adv[mask].double(), lp[mask].double()
    manual = (a - a.mean()) * (l_ - l_.mean())
    torch.testing.assert_close(cov[mask].double(), manual, atol=1e-6, rtol=1e-5)
    assert torch.isnan(cov[1, 8:]).all()
    share = positive_covariance_share(cov)
    assert share.item() == pytest.approx((manual > 0).double().mean().item())
    values, idx = top_covariance_tokens(cov, k=5)
    torch.testing.assert_close(values.double(), manual.sort(descending=True).values[:5])
    assert torch.equal(cov[idx[:, 0], idx[:, 1]], values)
    v2, idx2 = top_covariance_tokens(cov, fraction=0.1)  # ceil(0.1 * 44 valid) = 5
    assert v2.shape == (5,) and torch.equal(idx2, idx)
    v3, _ = top_covariance_tokens(cov)  # default 2e-4 of the tokens: at least one
    assert v3.shape == (1,) and v3.item() == values[0].item()


def _entropy(z):
    return Categorical(logits=z).entropy()


@pytest.mark.parametrize("device", DEVICES)
def test_covariance_predicts_entropy_change_of_a_policy_gradient_step(device):
    """First-order entropy change of a softmax (tabular, one state) policy.

    With pi = softmax(z): dH/dz_k = -pi_k (log pi_k + H), so for a logit change dz,
    dH = -sum_k pi_k (log pi_k - E_pi log pi) dz_k = -Cov_{a~pi}(log pi(a), dz_a).
    Exact policy gradient of J = E_pi[A] (A centred under pi) is dJ/dz_k = pi_k A_k, so a
    step of size eta gives dz = eta pi A and dH = -eta Cov(log pi, pi A) + O(eta^2)
    (Cui et al. 2025, Lemma 1 / Theorem 2). Natural policy gradient gives dz = eta A and
    dH = -eta Cov(log pi, A). A batch in which action a appears n_a times with
    z_a = log n_a makes the batch means over tokens equal the expectations under pi, so the
    per-token estimator's batch mean is exactly that covariance.
    """
    g = torch.Generator().manual_seed(5)
    counts = torch.randint(1, 40, (12,), generator=g)
    z = counts.double().log().to(device)
    pi = torch.softmax(z, -1)
    reward = torch.randn(12, generator=g, dtype=torch.float64).to(device)
    adv = reward - (pi * reward).sum()  # centred under pi
    actions = torch.repeat_interleave(torch.arange(12, device=device), counts.to(device))
    logp_tokens = torch.log(pi)[actions]

    # exact policy gradient, by autograd on the REINFORCE surrogate over the batch
    zz = z.clone().requires_grad_(True)
    surrogate = (torch.log_softmax(zz, -1)[actions] * adv[actions]).mean()
    (grad,) = torch.autograd.grad(surrogate, zz)
    torch.testing.assert_close(grad, pi * adv)  # the batch reproduces dJ/dz = pi A

    for step, adv_tokens in (
        (lambda eta: eta * grad, (pi * adv)[actions]),  # vanilla PG: Cov(log pi, pi A)
        (lambda eta: eta * adv, adv[actions]),  # natural PG: Cov(log pi, A)
    ):
        cov = entropy_advantage_covariance(logp_tokens, adv_tokens).mean()
        errors = []
        for eta in (0.02, 0.01):
            actual = _entropy(z + step(eta)) - _entropy(z)
            predicted = -eta * cov
            assert torch.sign(actual) == torch.sign(predicted) != 0
            assert abs(actual - predicted) <= 0.05 * abs(predicted)
            errors.append(abs(actual - predicted).item())
        assert errors[1] < errors[0] / 3  # second-order remainder: halving eta quarters it


# --------------------------------------------------------------------------------------
# answer entropy and the entropy-reward fit
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_answer_entropy(device):
    from scipy.stats import entropy as sp_entropy

    answers = [["12", "12", "7", None, "7", "7"], ["a"], ["x", "y", "z"], [3, 3, 3, 3]]
    got = answer_entropy(answers)
    expect = [sp_entropy([2, 3, 1]), 0.0, math.log(3), 0.0]
    np.testing.assert_allclose(got.numpy(), expect, rtol=1e-6, atol=1e-7)
    ids = torch.tensor([[5, 5, 9, 1, 9, 9], [4, 4, 4, 4, 4, 4], [1, 2, 3, 4, 5, 6]], device=device)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]], device=device)
    got = answer_entropy(ids, mask=mask, base=2)
    assert got.device.type == device
    expect = np.array([sp_entropy([2, 3, 1], base=2), 0.0, 1.0])
    np.testing.assert_allclose(got.cpu().numpy(), expect, rtol=1e-6, atol=1e-7)
    assert math.isnan(answer_entropy(ids, mask=torch.zeros_like(mask))[0].item())


@pytest.mark.parametrize("device", DEVICES)
def test_fit_entropy_reward_recovers_coefficients(device):
    rng = np.random.default_rng(0)
    a, b = 0.35, 0.82
    h = np.linspace(1.2, 0.05, 80) + rng.normal(0, 0.01, 80)
    r = -a * np.exp(h) + b + rng.normal(0, 0.005, 80)
    fit = fit_entropy_reward(torch.tensor(h, device=device), torch.tensor(r, device=device))
    assert fit["a"].device.type == device
    assert fit["a"].item() == pytest.approx(a, abs=0.01)
    assert fit["b"].item() == pytest.approx(b, abs=0.015)
    assert fit["ceiling"].item() == pytest.approx(b - a, abs=0.01)
    assert fit["r2"].item() > 0.99 and fit["rmse"].item() == pytest.approx(0.005, rel=0.3)
    # NaN pairs are left out; exact data give an exact fit
    h2 = np.array([1.0, 0.8, np.nan, 0.4, 0.1])
    exact = fit_entropy_reward(h2, -0.2 * np.exp(h2) + 0.7)
    assert exact["n"].item() == 4
    assert exact["a"].item() == pytest.approx(0.2) and exact["b"].item() == pytest.approx(0.7)
    assert exact["r2"].item() == pytest.approx(1.0)
    assert math.isnan(fit_entropy_reward([0.5, 0.5, 0.5], [0.1, 0.2, 0.3])["a"].item())


# --------------------------------------------------------------------------------------
# attention entropy
# --------------------------------------------------------------------------------------


def _causal_softmax(scores, mask=None):
    q, k = scores.shape[-2:]
    allowed = torch.ones(q, k, dtype=torch.bool, device=scores.device).tril(k - q)
    allowed = allowed.expand(scores.shape).clone()
    if mask is not None:
        allowed &= mask.bool()[:, None, None, :]
    return torch.softmax(scores.masked_fill(~allowed, NEG_INF), -1).nan_to_num(0.0)


@pytest.mark.parametrize("device", DEVICES)
def test_attention_entropy_by_hand_and_uniform(device):
    # one head, three queries, by hand
    a = torch.tensor([[[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.25, 0.25, 0.5]]]], device=device)
    out = attention_entropy(a, reduce="none")
    rows = torch.tensor([0.0, math.log(2), 1.5 * math.log(2)], device=device)
    torch.testing.assert_close(out["entropy"][0, 0], rows)
    norm = out["entropy_norm"][0, 0]
    assert math.isnan(norm[0].item())  # row 0: maximum log 1 = 0, undefined
    torch.testing.assert_close(
        norm[1:], torch.stack([rows[1] / math.log(2), rows[2] / math.log(3)])
    )
    mean = attention_entropy(a)
    assert mean["entropy"].item() == pytest.approx(rows.mean().item(), rel=1e-6)
    assert mean["entropy_norm"].item() == pytest.approx(norm[1:].mean().item(), rel=1e-6)
    # uniform causal attention: normalised entropy 1 per head, also in bf16 and with padding
    u = _causal_softmax(torch.zeros(2, 3, 7, 7, device=device))
    torch.testing.assert_close(attention_entropy(u)["entropy_norm"], torch.ones(3, device=device))
    torch.testing.assert_close(
        attention_entropy(u.bfloat16())["entropy_norm"],
        torch.ones(3, device=device),
        atol=1e-2,
        rtol=0,
    )
    pad = torch.ones(2, 7, dtype=torch.long, device=device)
    pad[1, :3] = 0  # left padding
    up = _causal_softmax(torch.zeros(2, 3, 7, 7, device=device), pad)
    res = attention_entropy(up, mask=pad)
    torch.testing.assert_close(res["entropy_norm"], torch.ones(3, device=device))
    raw = res["entropy"]
    expect = (sum(math.log(i + 1) for i in range(7)) + sum(math.log(i + 1) for i in range(4))) / 11
    torch.testing.assert_close(raw, torch.full((3,), expect, device=device))
    # bidirectional uniform attention
    ub = torch.full((1, 2, 5, 5), 0.2, device=device)
    torch.testing.assert_close(
        attention_entropy(ub, causal=False)["entropy_norm"], torch.ones(2, device=device)
    )


@pytest.mark.parametrize("device", DEVICES)
def test_attention_entropy_random_and_layers(device):
    g = torch.Generator().manual_seed(6)
    scores = (torch.randn(2, 4, 6, 9, generator=g) * 3).to(device)  # q < k: cached keys
    a = _causal_softmax(scores)
    out = attention_entropy(a, reduce="none", chunk_bytes=64)
    ref = Categorical(probs=a.double()).entropy()
    torch.testing.assert_close(out["entropy"].double(), ref, atol=1e-6, rtol=1e-5)
    n_keys = torch.arange(4, 10, device=device, dtype=torch.float64)  # query i sees 3 + i + 1
    torch.testing.assert_close(
        out["entropy_norm"].double(), ref / n_keys.log(), atol=1e-6, rtol=1e-5
    )
    per_head = attention_entropy([a, a.flip(1)], base=2)
    assert per_head["entropy"].shape == (2, 4)
    torch.testing.assert_close(
        per_head["entropy"][0].double(), ref.mean(dim=(0, 2)) / math.log(2), atol=1e-6, rtol=1e-5
    )
    torch.testing.assert_close(per_head["entropy"][1], per_head["entropy"][0].flip(0))


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------


def test_bad_input_names_the_argument():
    z = torch.zeros(2, 3, 5)
    cases = [
        (lambda: token_entropy(torch.zeros(2, 3, 5, dtype=torch.long)), "logits"),
        (lambda: token_entropy(torch.zeros(2, 0)), "logits"),
        (lambda: token_entropy(z, mask=torch.ones(3, 2)), "mask"),
        (lambda: token_entropy(z, temperature=0.0), "temperature"),
        (lambda: token_entropy(z, base=1), "base"),
        (lambda: token_entropy(z, chunk_size=0), "chunk_size"),
        (lambda: topk_mass(z, k=6), "k"),
        (lambda: token_stats(z, stats=("nope",)), "stats"),
        (lambda: token_stats(z, stats=("logprob",)), "targets"),
        (lambda: token_logprobs(z, torch.zeros(2, 3)), "targets"),
        (lambda: token_logprobs(z, torch.zeros(2, 4, dtype=torch.long)), "targets"),
        (lambda: masked_quantiles(torch.ones(3), 1.5), "q"),
        (lambda: masked_mean(torch.ones(3), torch.ones(4)), "mask"),
        (lambda: entropy_advantage_covariance(torch.ones(2, 3), torch.ones(3)), "advantages"),
        (lambda: top_covariance_tokens(torch.ones(4), fraction=2.0), "fraction"),
        (lambda: fit_entropy_reward([1.0, 2.0], [1.0]), "reward"),
        (lambda: fit_entropy_reward([1.0], [1.0]), "entropy"),
        (lambda: answer_entropy(torch.ones(2, 2)), "answers"),
        (lambda: attention_entropy(torch.ones(2, 3, 3)), "attn"),
        (lambda: attention_entropy(torch.ones(1, 1, 3, 3), mask=torch.ones(1, 4)), "mask"),
        (lambda: attention_entropy(torch.ones(1, 1, 3, 3), reduce="sum"), "reduce"),
    ]
    for fn, name in cases:
        with pytest.raises(ValueError, match=rf"^{name}:"):
            fn()
    with pytest.raises(TypeError, match=r"^logits:"):
        token_entropy("not logits")
    with pytest.raises(TypeError, match=r"^answers:"):
        answer_entropy([["a", ["unhashable"]]])


def test_doctests():
    from diagnostics.estimators import attention, rl, tokens

    attempted = 0
    for module in (tokens, rl, attention):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted > 10
