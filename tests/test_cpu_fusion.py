"""CPU inference with fused residual blocks (mdrn.models.cpu_fusion): the same outputs, used only where
it computes what the module computes, dropped when the weights change."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from mdrn.models import EDSR, MDRN, SRResNet, cpu_fusion
from mdrn.models.cpu_fusion import FusedResBlock, fuse_resblocks, unfuse_resblocks
from mdrn.perf import inference_context, prepare_for_inference

pytestmark = pytest.mark.skipif(
    not cpu_fusion.available(), reason="this torch build lacks oneDNN's fused ops"
)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the fused blocks' calls."""
    seen: list[int] = []
    original = FusedResBlock.__call__

    def spy(self: FusedResBlock, x: torch.Tensor) -> torch.Tensor:
        seen.append(1)
        return original(self, x)

    monkeypatch.setattr(FusedResBlock, "__call__", spy)
    return seen


def _pair(net: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(unfused, fused) copies of ``net`` on the CPU fast path."""
    plain = prepare_for_inference(copy.deepcopy(net), "cpu")
    unfuse_resblocks(plain)
    fused = prepare_for_inference(copy.deepcopy(net), "cpu")
    return plain, fused


@pytest.mark.parametrize(
    ("net", "shape", "scales"),
    [
        (MDRN(n_resblocks=3, n_feats=16, scales=(2, 3, 4)), (1, 3, 20, 20), (2, 3, 4)),
        (MDRN(n_resblocks=2, n_feats=8, scales=(2, 4), bicubic_skip=True), (2, 3, 17, 23), (2, 4)),
        (MDRN(n_resblocks=2, n_feats=8, scales=(3,), n_colors=1), (1, 1, 13, 31), (3,)),
        (EDSR(n_resblocks=2, n_feats=16, scale=2), (1, 3, 9, 12), (2,)),
    ],
)
def test_fused_blocks_give_the_unfused_outputs(net, shape, scales, calls: list[int]) -> None:
    torch.manual_seed(0)
    for p in net.parameters():  # non-zero everywhere (a bicubic_skip tail starts at zero)
        p.data.uniform_(-0.2, 0.2)
    plain, fused = _pair(net)
    assert fuse_resblocks(copy.deepcopy(net)) > 0
    assert list(fused.state_dict()) == list(net.state_dict())  # a plain attribute, not a submodule
    x = torch.rand(shape)
    for s in scales:
        with inference_context("cpu"):
            a, b = plain(x, s), fused(x, s)
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    assert calls  # the fused form ran (the body's input is channels-last after the NHWC head)


def test_fused_form_only_where_it_computes_the_same(calls: list[int]) -> None:
    """Autograd, training mode, autocast and float64 run the module's own forward."""
    torch.manual_seed(0)
    net = prepare_for_inference(MDRN(n_resblocks=2, n_feats=8, scales=(2,)), "cpu")
    x = torch.rand(1, 3, 12, 12)
    out = net(x.requires_grad_(True), 2)  # grad enabled: unfused, and differentiable
    out.sum().backward()
    assert x.grad is not None and not calls
    with torch.no_grad():
        net.train()
        net(x, 2)
        net.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            net(x, 2)
        net.double()(x.double(), 2)
    assert not calls


def test_changed_weights_drop_the_fused_form(calls: list[int]) -> None:
    torch.manual_seed(0)
    net = prepare_for_inference(MDRN(n_resblocks=2, n_feats=8, scales=(2,)), "cpu")
    other = MDRN(n_resblocks=2, n_feats=8, scales=(2,))  # other random weights
    x = torch.rand(1, 3, 10, 14)
    with inference_context("cpu"):
        net(x, 2)
        assert calls
        net.load_state_dict(other.state_dict())  # written in place: version counters change
        calls.clear()
        torch.testing.assert_close(net(x, 2), other.eval()(x, 2), rtol=0, atol=1e-6)
        assert not calls
        fuse_resblocks(net)  # fused again from the new weights
        torch.testing.assert_close(net(x, 2), other(x, 2), rtol=0, atol=1e-6)
        assert calls
        calls.clear()
        net(x, 2)
        n_fused = len(calls)
        block = net.body[0]
        block.body[0].weight.data = torch.zeros_like(block.body[0].weight)  # new storage, no version bump
        calls.clear()
        out = net(x, 2)
        assert len(calls) == n_fused - 1  # that block's fused form was dropped, the others still run
    ref = copy.deepcopy(net)  # deep copies run unfused
    unfuse_resblocks(ref)
    with inference_context("cpu"):
        torch.testing.assert_close(out, ref(x, 2), rtol=0, atol=1e-6)


def test_copies_and_whole_module_saves_run_unfused() -> None:
    torch.manual_seed(0)
    net = prepare_for_inference(MDRN(n_resblocks=2, n_feats=8, scales=(2,)), "cpu")
    x = torch.rand(1, 3, 11, 11)
    with inference_context("cpu"):
        ref = net(x, 2)
        clone = copy.deepcopy(net)
        buf = io.BytesIO()
        torch.save(net, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)  # the test's own file: a whole pickled module
        for m in (clone, loaded):
            torch.testing.assert_close(m(x, 2), ref, rtol=0, atol=1e-6)


def test_blocks_that_cannot_fuse_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fuse_resblocks(SRResNet(n_resblocks=2, n_feats=8, scale=2)) == 0  # batch norm, PReLU
    assert fuse_resblocks(EDSR(n_resblocks=2, n_feats=8, scale=2, res_scale=0.1)) == 0
    monkeypatch.setattr(cpu_fusion, "available", lambda: False)
    assert fuse_resblocks(MDRN(n_resblocks=2, n_feats=8, scales=(2,))) == 0
