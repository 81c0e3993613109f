"""Networks: parameter counts, shapes at every scale, clear errors, specs, shared blocks, Y-channel models."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mdrn.models import (
    EDSR,
    MDRN,
    SRCNN,
    VDSR,
    Bicubic,
    SRResNet,
    build_model,
    edsr,
    edsr_baseline,
    model_spec,
)
from mdrn.models.blocks import DIV2K_GRAY_MEAN, DIV2K_RGB_MEAN, ResBlock, Upsampler, scale_factors
from mdrn.protocol.color import rgb_to_ycbcr
from mdrn.protocol.resize import imresize


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def tiny_models() -> list[nn.Module]:
    return [
        MDRN(n_resblocks=2, n_feats=16),
        MDRN(n_resblocks=2, n_feats=16, scales=(4,), n_colors=1),
        EDSR(n_resblocks=2, n_feats=16, scale=3),
        SRResNet(n_resblocks=2, n_feats=16, scale=4),
        SRCNN(n1=16, n2=8),
        VDSR(depth=4, n_feats=16),
        Bicubic(),
    ]


# figures stated in issue 2 (the official EDSR-PyTorch counts; see also test_official_checkpoints.py)
@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (lambda: MDRN(), 7_953_987),
        (lambda: MDRN(n_resblocks=16), 3_227_203),
        (lambda: edsr_baseline(2), 1_369_859),
        (lambda: edsr_baseline(3), 1_554_499),
        (lambda: edsr_baseline(4), 1_517_571),
    ],
)
def test_parameter_counts(factory, expected):
    assert n_params(factory()) == expected


def test_edsr_final_parameter_count_on_meta():
    with torch.device("meta"):
        net = edsr(4)
    assert n_params(net) == 43_089_923
    assert all(b.res_scale == 0.1 for b in net.body if isinstance(b, ResBlock))


def test_mean_shift_is_not_trainable_and_not_saved():
    net = MDRN(n_resblocks=1, n_feats=8)
    assert not any("mean" in k for k in net.state_dict())
    assert torch.allclose(net.sub_mean.mean.flatten(), torch.tensor(DIV2K_RGB_MEAN))
    gray = MDRN(n_resblocks=1, n_feats=8, n_colors=1)
    assert gray.sub_mean.mean.numel() == 1
    assert gray.sub_mean.mean.item() == pytest.approx(DIV2K_GRAY_MEAN[0]) == pytest.approx(0.43682, abs=1e-5)


@pytest.mark.parametrize("net", tiny_models(), ids=lambda m: f"{type(m).__name__}{m.scales}c{m.n_colors}")
def test_output_shapes_every_scale(net):
    torch.manual_seed(0)
    x = torch.rand(2, net.n_colors, 10, 7)
    for scale in net.scales:
        with torch.no_grad():
            y = net(x, scale)
        assert y.shape == (2, net.n_colors, 10 * scale, 7 * scale)
        assert y.dtype == torch.float32 and torch.isfinite(y).all()


def test_mdrn_any_2a3b_scale_and_upsampler_stages():
    net = MDRN(n_resblocks=1, n_feats=8, scales=(2, 3, 4, 6, 8))
    x = torch.rand(1, 3, 5, 6)
    for s in net.scales:
        assert net(x, s).shape[-2:] == (5 * s, 6 * s)
    convs = {
        s: [m.out_channels for m in net.upsample[f"x{s}"] if isinstance(m, nn.Conv2d)] for s in net.scales
    }
    assert convs == {2: [32], 3: [72], 4: [32, 32], 6: [32, 72], 8: [32, 32, 32]}
    assert scale_factors(12) == [2, 2, 3]
    with pytest.raises(ValueError, match="2\\^a 3\\^b"):
        MDRN(n_resblocks=1, n_feats=8, scales=(5,))
    with pytest.raises(ValueError, match="2\\^a 3\\^b"):
        Upsampler(10, 8)


def test_branches_are_per_scale_moduledicts_and_body_shared():
    net = MDRN(n_resblocks=2, n_feats=8)
    assert isinstance(net.pre_process, nn.ModuleDict) and set(net.pre_process) == {"x2", "x3", "x4"}
    assert isinstance(net.upsample, nn.ModuleDict) and set(net.upsample) == {"x2", "x3", "x4"}
    assert net.pre_process["x2"][0].body[0].kernel_size == (5, 5)
    # the x3 output does not depend on the x2 branch, but does depend on the shared body
    x = torch.rand(1, 3, 6, 6)
    ref = net(x, 3).detach()
    with torch.no_grad():
        net.pre_process["x2"][0].body[0].weight.add_(1.0)
        net.upsample["x2"][0].weight.add_(1.0)
    assert torch.equal(net(x, 3), ref)
    with torch.no_grad():
        net.body[0].body[0].weight.add_(0.1)
    assert not torch.allclose(net(x, 3), ref)


@pytest.mark.parametrize("net", tiny_models(), ids=lambda m: type(m).__name__)
def test_scale_the_model_lacks_names_its_scales(net):
    x = torch.rand(1, net.n_colors, 8, 8)
    with pytest.raises(ValueError, match=r"serves scales \[" + ", ".join(map(str, net.scales))):
        net(x, 5)


@pytest.mark.parametrize("net", tiny_models(), ids=lambda m: type(m).__name__)
def test_wrong_channel_count_and_shape(net):
    with pytest.raises(ValueError, match="channels"):
        net(torch.rand(1, 2, 8, 8), net.scales[0])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        net(torch.rand(3, 8, 8), net.scales[0])
    with pytest.raises(ValueError, match="float"):
        net(torch.zeros(1, net.n_colors, 8, 8, dtype=torch.uint8), net.scales[0])
    for shape in [(1, net.n_colors, 0, 8), (1, net.n_colors, 8, 0)]:  # an empty image: not torch's conv error
        with pytest.raises(ValueError, match=r"empty image .*\(input shape"):
            net(torch.rand(*shape), net.scales[0])


def test_rgb_model_rejects_gray_and_gray_model_rejects_rgb():
    with pytest.raises(ValueError, match="expects 3 channels"):
        MDRN(n_resblocks=1, n_feats=8)(torch.rand(1, 1, 8, 8), 2)
    with pytest.raises(ValueError, match="expects 1 channels"):
        EDSR(n_resblocks=1, n_feats=8, n_colors=1)(torch.rand(1, 3, 8, 8), 2)
    with pytest.raises(ValueError, match="n_colors"):
        MDRN(n_colors=4)


def test_outputs_are_not_clamped():
    x = torch.zeros(1, 3, 8, 8)
    x[..., :, 4:] = 1.0  # a hard edge: bicubic over/undershoots
    y = Bicubic()(x, 2)
    assert y.max() > 1.0 and y.min() < 0.0
    torch.testing.assert_close(y, imresize(x, 2))


@pytest.mark.parametrize("net", tiny_models(), ids=lambda m: type(m).__name__)
def test_spec_round_trip_through_json(net):
    spec = model_spec(net)
    again = build_model(json.loads(json.dumps(spec)))
    assert type(again) is type(net)
    assert model_spec(again) == spec
    assert again.scales == net.scales and again.n_colors == net.n_colors
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in net.state_dict().items()
    }


def test_build_model_rejects_unknown_arch_and_args():
    with pytest.raises(ValueError, match="unknown architecture 'Nope'"):
        build_model({"arch": "Nope", "args": {}})
    with pytest.raises(ValueError, match="unknown architecture 'build_model'"):
        build_model({"arch": "build_model", "args": {}})
    with pytest.raises(ValueError, match="unknown architecture 'Module'"):
        build_model({"arch": "Module", "args": {}})
    with pytest.raises(ValueError, match="bad arguments for MDRN"):
        build_model({"arch": "MDRN", "args": {"n_blocks": 3}})
    with pytest.raises(ValueError, match="model_spec expects"):
        model_spec(nn.Conv2d(1, 1, 1))


def test_srresnet_layout():
    net = SRResNet()
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 16 * 2 + 1
    assert net.head[0].kernel_size == (9, 9) and net.tail.kernel_size == (9, 9)
    assert sum(isinstance(m, nn.PReLU) for m in net.modules()) == 1 + 16 + 2
    assert len([b for b in net.body if isinstance(b, ResBlock)]) == 16


def test_srcnn_and_vdsr_layout():
    srcnn = SRCNN()
    assert [m.kernel_size[0] for m in srcnn.net if isinstance(m, nn.Conv2d)] == [9, 1, 5]
    assert [m.out_channels for m in srcnn.net if isinstance(m, nn.Conv2d)] == [64, 32, 1]
    vdsr = VDSR()
    convs = [m for m in vdsr.net if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20 and all(c.kernel_size == (3, 3) for c in convs)


@pytest.mark.parametrize("cls", [SRCNN, VDSR])
def test_y_channel_models_keep_bicubic_chroma(cls):
    torch.manual_seed(0)
    net = cls(scales=(3,)) if cls is SRCNN else cls(depth=3, n_feats=8, scales=(3,))
    x = torch.rand(1, 3, 9, 8, dtype=torch.float64)
    net = net.double()
    with torch.no_grad():
        y = net(x, 3)
    up = rgb_to_ycbcr(imresize(x, 3))
    torch.testing.assert_close(rgb_to_ycbcr(y)[:, 1:], up[:, 1:])
    # gray input: the network runs on the gray values as Y, gray stays gray
    g = x[:, :1]
    with torch.no_grad():
        out_gray = net(g, 3)
        y_rgb = rgb_to_ycbcr(y)[:, :1]
        assert out_gray.shape == (1, 1, 27, 24)
        # the Y network is the same function on both paths
        expected = net.net(up[:, :1]) + (up[:, :1] if cls is VDSR else 0)
    torch.testing.assert_close(y_rgb, expected)


def test_vdsr_with_zero_residual_is_bicubic():
    net = VDSR(depth=3, n_feats=8)
    with torch.no_grad():
        net.net[-1].weight.zero_()
        net.net[-1].bias.zero_()
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(net.double()(x, 2), imresize(x, 2))
    torch.testing.assert_close(net(x[:, :1], 2), imresize(x[:, :1], 2))


# ------------------------------------------------------------------ the paper's low/high-frequency split
def skip_models() -> list[nn.Module]:
    return [
        MDRN(n_resblocks=2, n_feats=16, bicubic_skip=True),
        MDRN(n_resblocks=2, n_feats=8, scales=(3,), n_colors=1, bicubic_skip=True),
        EDSR(n_resblocks=2, n_feats=16, scale=4, bicubic_skip=True),
    ]


@pytest.mark.parametrize("net", skip_models(), ids=lambda n: f"{type(n).__name__}{n.scales}c{n.n_colors}")
def test_untrained_network_with_low_frequency_path_is_exactly_bicubic(net):
    torch.manual_seed(0)
    x = torch.rand(2, net.n_colors, 23, 17)
    for s in net.scales:
        out = net(x, s)
        assert torch.equal(out, imresize(x, s))  # zero tail: the high-frequency image is exactly 0
        assert torch.equal(net.low_frequency(x, s), imresize(x, s))
        hf = net.reconstruct(net.features(x, s), s)
        assert float(hf.abs().max()) == 0.0


def test_low_frequency_path_output_is_bicubic_plus_high_frequency_and_trains():
    torch.manual_seed(0)
    net = MDRN(n_resblocks=1, n_feats=8, scales=(2, 4), bicubic_skip=True)
    x, target = torch.rand(1, 3, 12, 12), torch.rand(1, 3, 24, 24)
    loss = (net(x, 2) - target).abs().mean()
    loss.backward()
    assert float(net.tail.weight.grad.abs().sum()) > 0  # the zero tail receives a gradient
    with torch.no_grad():
        net.tail.weight.normal_(std=0.05)
    hf = net.reconstruct(net.features(x, 4), 4)
    assert float(hf.abs().max()) > 0
    assert torch.allclose(net(x, 4), imresize(x, 4) + hf)


def test_low_frequency_path_is_recorded_in_the_spec_and_off_by_default():
    assert MDRN().bicubic_skip is False and edsr_baseline(2).bicubic_skip is False
    net = MDRN(n_resblocks=1, n_feats=8, bicubic_skip=True)
    spec = json.loads(json.dumps(model_spec(net)))
    assert spec["args"]["bicubic_skip"] is True
    assert build_model(spec).bicubic_skip is True
    # the official layouts keep their outputs: without the path the tail is not zero-initialised
    assert float(MDRN(n_resblocks=1, n_feats=8).tail.weight.abs().sum()) > 0
    # the same parameters either way (the path adds no weights)
    plain, skip = MDRN(n_resblocks=1, n_feats=8), MDRN(n_resblocks=1, n_feats=8, bicubic_skip=True)
    assert n_params(plain) == n_params(skip)
