"""mdrn.perf: FLOP counter against hand-counted layer shapes; fast defaults per device (GPU where CUDA)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mdrn.models import MDRN
from mdrn.perf import (
    count_flops,
    fast_path,
    inference_context,
    malloc_reuse,
    nhwc_training_pays,
    prepare_for_inference,
    prepare_for_training,
    set_malloc_reuse,
    training_defaults,
)


class _Tiny(nn.Module):
    """conv 3->8 (3x3) -> pixel shuffle x2 -> conv 2->3 (5x5, frozen) -> linear over the last dim."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(2, 3, 5, padding=2)
        self.b.requires_grad_(False)
        self.fc = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return self.fc(self.b(nn.functional.pixel_shuffle(self.a(x), scale)))


def test_count_flops_matches_hand_count():
    n, h, w = 2, 5, 6
    c = count_flops(_Tiny(), (n, 3, h, w), 2)
    fa = 2 * (3 * 9) * (n * 8 * h * w)  # 2 x weights per output x outputs
    fb = 2 * (2 * 25) * (n * 3 * 2 * h * 2 * w)
    ffc = 2 * 12 * (n * 3 * 2 * h * 4)
    assert [layer.forward for layer in c.layers] == [fa, fb, ffc]
    assert c.forward == fa + fb + ffc
    # a: weight grad, no input grad (the image); b: frozen, input grad; fc: both
    assert [(layer.weight_grad, layer.input_grad) for layer in c.layers] == [
        (True, False),
        (False, True),
        (True, True),
    ]
    assert c.training == 2 * fa + 2 * fb + 3 * ffc


def test_count_flops_mdrn_per_scale_and_untouched_net():
    net = MDRN(n_resblocks=2, n_feats=8, scales=(2, 4))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    n, h, w, f = 1, 7, 5, 8
    per_px = 2 * 3 * f * 9 + 4 * 2 * f * f * 25 + (2 * 2 + 1) * 2 * f * f * 9  # head, pre (5x5), body
    px = n * h * w
    up2 = 2 * f * 4 * f * 9 * px
    tail2 = 2 * f * 3 * 9 * 4 * px
    assert count_flops(net, (n, 3, h, w), 2).forward == per_px * px + up2 + tail2
    up4 = 2 * f * 4 * f * 9 * px * (1 + 4)
    tail4 = 2 * f * 3 * 9 * 16 * px
    assert count_flops(net, (n, 3, h, w), 4).forward == per_px * px + up4 + tail4
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].device.type == "cpu" for k in before)


def test_count_flops_rejects_bad_shape():
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(_Tiny(), (3, 4, 4), 2)


def test_cpu_defaults():
    p = fast_path("cpu")
    assert p.channels_last and not p.compile and p.autocast_dtype is None
    assert training_defaults("cpu")["precision"] == "32-true"
    assert training_defaults("cpu")["compile"] is False
    # NHWC training: measured faster with AVX-512 kernels, slower on AVX2
    assert training_defaults("cpu")["channels_last"] is nhwc_training_pays()
    assert training_defaults("cpu")["fused_adam"] is True


def test_malloc_reuse_switches_and_restores():
    import mdrn.perf as perf

    if not perf._malloc_tunable():
        pytest.skip("not glibc: malloc_reuse is a no-op")
    set_malloc_reuse(False)  # an earlier test's training step (prepare_for_training) left it on
    assert not perf._reuse["on"]
    with malloc_reuse():
        assert perf._reuse["on"]
        with malloc_reuse():  # nested: the outer block keeps it on
            big = torch.ones(40 << 20, dtype=torch.uint8)  # 40 MB: heap, not mmap, while on
        assert perf._reuse["on"]
        del big
    assert not perf._reuse["on"]
    with malloc_reuse(enabled=False):
        assert not perf._reuse["on"]
    # a process already switched on (a training run) stays on after a block
    assert set_malloc_reuse(True)
    try:
        with malloc_reuse():
            pass
        assert perf._reuse["on"]
    finally:
        set_malloc_reuse(False)


def test_prepare_for_inference_cpu_same_output_and_keys():
    torch.manual_seed(0)
    net = MDRN(n_resblocks=2, n_feats=16, scales=(2, 3))
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        ref = net(x, 3)
    keys = list(net.state_dict())
    fast = prepare_for_inference(net, "cpu")
    assert not fast.training
    assert fast.head.weight.is_contiguous(memory_format=torch.channels_last)
    assert list(fast.state_dict()) == keys
    with inference_context("cpu"):
        assert torch.is_inference_mode_enabled()
        out = fast(x, 3)
    assert out.dtype == torch.float32
    assert torch.allclose(out, ref, atol=1e-5)


def test_prepare_for_training_cpu_trains():
    torch.manual_seed(0)
    try:
        net = prepare_for_training(MDRN(n_resblocks=1, n_feats=8, scales=(2,)), "cpu")
        fmt = torch.channels_last if fast_path("cpu").train_channels_last else torch.contiguous_format
        assert net.head.weight.is_contiguous(memory_format=fmt)  # the layout measured faster for training
        x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
        loss = nn.functional.l1_loss(net(x, 2), y)
        loss.backward()
        assert net.head.weight.grad is not None and torch.isfinite(net.head.weight.grad).all()
    finally:
        set_malloc_reuse(False)  # prepare_for_training switched it on for the process


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fast_path_bf16_compiled_keeps_keys():
    p = fast_path("cuda")
    assert p.channels_last and p.compile and p.autocast_dtype == torch.bfloat16
    assert training_defaults("cuda")["precision"] == "bf16-mixed"
    torch.manual_seed(0)
    net = MDRN(n_resblocks=2, n_feats=16, scales=(2,))
    keys = list(net.state_dict())
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        ref = net(x, 2)
    fast = prepare_for_inference(net, "cuda")
    assert list(fast.state_dict()) == keys  # module.compile() in place: no _orig_mod. prefix
    with inference_context("cuda"):
        out = fast(x.cuda(), 2)
    assert out.shape == ref.shape
    assert (out.float().cpu() - ref).abs().max() < 0.05  # bf16: ~3 significant digits on [0, 1]


def test_amx_bf16_available_reads_the_cpu_flags(tmp_path):
    from mdrn.perf import amx_bf16_available

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    assert amx_bf16_available(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16x amx_tile\nbugs\t: amx_bf16\n")
    assert not amx_bf16_available(info)  # a whole flag of the flags line only
    assert not amx_bf16_available(tmp_path / "missing")
