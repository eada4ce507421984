"""Layer selection and names, output capture and reduction, cadences, the metric registry."""

from __future__ import annotations

import dataclasses
import socket
import sys

import pytest
import torch
from torch import nn

from probes import (
    Every,
    LogSpaced,
    Never,
    Steps,
    as_cadence,
    available_metrics,
    get_metric,
    named_layers,
    normalize_name,
    register_metric,
    select_layers,
    unregister_metric,
)
from probes.capture import Capture, extract_tensor, reduce_rows
from probes.layers import unwrap


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 2)
        self.act = nn.Tanh()

    def forward(self, x):
        return self.head(self.act(self.encoder(x)))


# ---------------------------------------------------------------- selection


def test_select_by_glob_type_callable_and_list():
    net = Net()
    assert list(select_layers(net, "encoder.*")) == ["encoder.0", "encoder.1", "encoder.2"]
    assert list(select_layers(net, "*")) == ["encoder", "head", "act"]  # one level
    assert list(select_layers(net, "**")) == [n for n, _ in named_layers(net) if n]
    assert list(select_layers(net, "encoder.[02]")) == ["encoder.0", "encoder.2"]
    assert list(select_layers(net, "e*.?")) == ["encoder.0", "encoder.1", "encoder.2"]
    assert list(select_layers(net, nn.Linear)) == ["encoder.0", "encoder.2", "head"]
    assert list(select_layers(net, lambda n, m: n.endswith("1"))) == ["encoder.1"]
    # a list is a union in model order, duplicates once
    assert list(select_layers(net, ["head", "encoder.0", nn.Tanh, "head"])) == [
        "encoder.0",
        "head",
        "act",
    ]
    # default: leaf modules with parameters
    assert list(select_layers(net)) == ["encoder.0", "encoder.2", "head"]
    assert select_layers(net, "head")["head"] is net.head


def test_no_match_lists_close_names():
    net = Net()
    with pytest.raises(ValueError, match=r"'encodr\.\*' matches no module.*closest names: encoder"):
        select_layers(net, "encodr.*")
    with pytest.raises(ValueError, match="module types in the model: .*Linear"):
        select_layers(net, nn.Conv2d)
    with pytest.raises(ValueError, match="'haed'.*head"):
        select_layers(net, ["head", "haed"])  # every entry must match
    with pytest.raises(TypeError, match="layers"):
        select_layers(net, 3)
    with pytest.raises(ValueError, match="at least one"):
        select_layers(net, [])


def test_normalize_name_strings():
    assert normalize_name("module.encoder.0") == "encoder.0"
    assert normalize_name("_orig_mod.encoder.0") == "encoder.0"
    assert normalize_name("module._fsdp_wrapped_module.layers.0._fsdp_wrapped_module.mlp") == (
        "layers.0.mlp"
    )
    assert normalize_name("encoder._checkpoint_wrapped_module.attn") == "encoder.attn"


class FakeFSDP(nn.Module):
    """Stands in for FSDP v1's wrapper (its child attribute is the wrapper's)."""

    def __init__(self, inner):
        super().__init__()
        self._fsdp_wrapped_module = inner

    def forward(self, *a, **k):
        return self._fsdp_wrapped_module(*a, **k)


class FakeCompiled(nn.Module):
    """Stands in for torch.compile's OptimizedModule (importing dynamo costs seconds)."""

    def __init__(self, inner):
        super().__init__()
        self._orig_mod = inner


def test_wrapped_models_keep_stable_names():
    net = Net()
    plain = [n for n, _ in named_layers(net)]
    compiled = FakeCompiled(net)
    assert [n for n, _ in named_layers(compiled)] == plain
    assert unwrap(compiled) is net
    dp = nn.DataParallel(net)
    assert [n for n, _ in named_layers(dp)] == plain
    fsdp_like = FakeFSDP(net)
    fsdp_like.encoder = None  # unrelated attribute is harmless
    net.encoder = FakeFSDP(net.encoder)
    names = [n for n, _ in named_layers(FakeFSDP(net))]
    assert names == plain
    assert list(select_layers(FakeFSDP(net), "encoder.*")) == [
        "encoder.0",
        "encoder.1",
        "encoder.2",
    ]
    # a pattern written with wrapper prefixes still finds the stable name
    assert list(select_layers(dp, "module.head")) == ["head"]


def test_a_real_child_called_module_is_kept():
    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.module = nn.Linear(2, 2)

    assert [n for n, _ in named_layers(Holder())] == ["", "module"]
    assert list(select_layers(Holder(), "module")) == ["module"]


@pytest.fixture
def single_process_group():
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_ddp_wrapper_names(single_process_group):
    net = Net()
    ddp = nn.parallel.DistributedDataParallel(net)
    assert [n for n, _ in named_layers(ddp)] == [n for n, _ in named_layers(net)]
    assert unwrap(ddp) is net
    assert list(select_layers(ddp, nn.Linear)) == ["encoder.0", "encoder.2", "head"]


# ---------------------------------------------------------------- capture


@dataclasses.dataclass
class Out:
    mask: None
    hidden: torch.Tensor


def test_extract_tensor_shapes():
    t = torch.ones(2, 3)
    assert extract_tensor(t) is t
    assert extract_tensor((None, (t, 1))) is t
    assert extract_tensor({"a": 1, "b": t}) is t
    assert extract_tensor(Out(None, t)) is t
    assert extract_tensor({"x": t, "y": torch.zeros(1)}, select="y").shape == (1,)
    assert extract_tensor((torch.zeros(1), t), select=1) is t
    assert extract_tensor(Out(None, t), select="hidden") is t
    assert extract_tensor((t,), select=lambda o: o[0] * 2).sum() == 12
    assert extract_tensor("text") is None


def test_extract_tensor_from_hf_model_output():
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_outputs import BaseModelOutput

    h = torch.randn(2, 3, 4)
    out = BaseModelOutput(last_hidden_state=h, hidden_states=None)
    assert extract_tensor(out) is h
    assert transformers is not None


def test_reduce_rows_modes():
    t = torch.arange(24.0).reshape(2, 3, 4)  # (B, T, D)
    z, idx = reduce_rows(t, reduce="mean")
    torch.testing.assert_close(z, t.mean(1))
    assert idx is None
    z, _ = reduce_rows(t, reduce="last")
    torch.testing.assert_close(z, t[:, -1])
    z, _ = reduce_rows(t, reduce="flatten")
    assert z.shape == (2, 12)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])  # right and left padding
    z, _ = reduce_rows(t, reduce="last", mask=mask)
    torch.testing.assert_close(z, torch.stack([t[0, 1], t[1, 2]]))
    z, _ = reduce_rows(t, reduce="mean", mask=mask)
    torch.testing.assert_close(z, torch.stack([t[0, :2].mean(0), t[1, 1:].mean(0)]))
    z, idx = reduce_rows(t, reduce="all", mask=mask)
    assert idx.tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(z, torch.stack([t[0, 0], t[0, 1], t[1, 1], t[1, 2]]))
    with pytest.raises(ValueError, match="reduce"):
        reduce_rows(t, reduce="max")


def test_conv_outputs_reduce_over_space_per_channel():
    conv = nn.Conv2d(2, 5, 3, padding=1)
    x = torch.randn(4, 2, 6, 6)
    cap = Capture({"conv": conv}, reduce="mean")
    with cap.attach():
        y = conv(x)
    z, idx = cap.results()["conv"]
    torch.testing.assert_close(z, y.detach().mean(dim=(2, 3)))
    assert idx.tolist() == [0, 1, 2, 3]
    assert not cap.attached and not conv._forward_hooks


def test_capture_accumulates_chunks_and_never_raises():
    lin = nn.Linear(3, 2)
    weird = nn.Identity()
    cap = Capture({"lin": lin, "weird": weird}).attach()
    cap.offset = 0
    lin(torch.randn(4, 3))
    cap.offset = 4
    lin(torch.randn(2, 3))
    weird("not a tensor")  # the hook fails quietly
    cap.detach()
    z, idx = cap.results()["lin"]
    assert z.shape == (6, 2) and idx.tolist() == [0, 1, 2, 3, 4, 5]
    assert "no tensor" in cap.errors["weird"]


def test_capture_upcasts_half_precision():
    lin = nn.Linear(3, 2).to(torch.bfloat16)
    cap = Capture({"lin": lin}).attach()
    lin(torch.randn(4, 3, dtype=torch.bfloat16))
    cap.detach()
    assert cap.results()["lin"][0].dtype == torch.float32


# ---------------------------------------------------------------- cadence


def test_cadences():
    assert [s for s in range(12) if Every(5).due(s)] == [0, 5, 10]
    assert [s for s in range(12) if Every(5, start=3).due(s)] == [3, 8]
    log = [s for s in range(1001) if LogSpaced(10).due(s)]
    assert log[:12] == [0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20]
    assert log[-1] == 1000 and len(log) == 1 + len({round(10 ** (k / 10)) for k in range(31)})
    # O(1) check agrees with the definition far out
    want = sorted({round(10 ** (k / 7)) for k in range(60)})
    assert [s for s in want if LogSpaced(7).due(s)] == want
    assert not any(LogSpaced(7).due(s) for s in range(2, 20000) if s not in set(want))
    assert Steps([3, 7]).due(7) and not Steps([3, 7]).due(4)
    assert not Never().due(0)
    assert as_cadence(10) == Every(10)
    assert isinstance(as_cadence("log"), LogSpaced)
    assert as_cadence([1, 2]).due(2)
    assert as_cadence(lambda s: s == 4).due(4)
    assert Every(10).scaled(10) == Every(100)
    for bad in (0, -1, "often", 1.5):
        with pytest.raises(ValueError):
            as_cadence(bad)


def test_next_due_agrees_with_due():
    # the monitor skips the steps before next_due: it must never skip a due step
    cadences = [Every(5), Every(7, start=12), LogSpaced(10), LogSpaced(3.5), Steps([0, 9, 40])]
    for c in cadences:
        due = [s for s in range(3000) if c.due(s)]
        for s in range(0, 2990, 7):
            want = next((d for d in due if d >= s), None)
            got = c.next_due(s)
            assert got == want or (want is None and got > 2990), (c, s, got, want)
    assert Never().next_due(5) == sys.maxsize and Steps([3]).next_due(4) == sys.maxsize
    # a custom cadence answers "this step": the monitor checks every step
    assert as_cadence(lambda s: s == 4).next_due(2) == 2


# ---------------------------------------------------------------- registry


def test_registry():
    assert {"act_stats", "effective_rank", "dse", "dsmi", "info_plane", "grad_norm"} <= set(
        available_metrics()
    )
    assert get_metric("dsmi").needs == {"y"} and get_metric("dsmi").slow
    assert get_metric("info_plane").needs == {"x", "y"}
    assert get_metric("act_stats").outputs[0] == "act/mean"

    @register_metric("test/uses_layer", overwrite=True)
    def f(z, layer, *, scale=1.0):
        return z.sum() * scale

    try:
        d = get_metric("test/uses_layer")
        assert (
            d.context == {"layer"} and d.params == {"scale"} and d.outputs == ("test/uses_layer",)
        )
        with pytest.raises(ValueError, match="already registered"):
            register_metric("test/uses_layer", f)
        with pytest.raises(TypeError, match="unknown option"):
            d.check_params({"sclae": 2})
    finally:
        unregister_metric("test/uses_layer")
    with pytest.raises(ValueError, match="scope"):
        register_metric("test/x", lambda z: z, scope="global")
    with pytest.raises(ValueError, match="did you mean 'dse'"):
        get_metric("dsee")
