"""No invented texture: the lattice and overshoot measurements (mdrn.protocol.artefacts) and the balanced
sub-pixel upsampler (mdrn.models.blocks.Upsampler(balanced=True)) that keeps flat regions flat."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mdrn.models import MDRN, build_model, model_spec
from mdrn.models.blocks import Upsampler, balance_subpixel_, project_
from mdrn.protocol.artefacts import edge_overshoot, periodic_ratio
from mdrn.protocol.resize import degrade, imresize


def _flat_image(size: int = 240, seed: int = 0) -> torch.Tensor:
    """A smooth gray image (flat tissue) with a little noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return (0.4 + 0.05 * torch.sin(3 * xx + 2 * yy) + 0.002 * torch.randn(size, size, generator=g))[
        None, None
    ]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_periodic_ratio_is_near_one_for_noise_and_large_for_a_lattice(scale: int) -> None:
    bic = imresize(_flat_image(), scale)
    g = torch.Generator().manual_seed(1)
    noise = bic + 1e-3 * torch.randn(bic.shape, generator=g)
    assert periodic_ratio(noise, bic, scale) < 2.0
    phase = torch.zeros(scale, scale)
    phase[0, 0] = 1e-3  # one sub-pixel phase brighter than the others: a lattice of period `scale`
    lattice = noise + phase.repeat(bic.shape[-2] // scale, bic.shape[-1] // scale)
    assert periodic_ratio(lattice, bic, scale) > 5.0


def test_periodic_ratio_refuses_what_it_cannot_measure() -> None:
    with pytest.raises(ValueError, match="holds no 48x48 patch"):
        periodic_ratio(torch.rand(1, 1, 40, 40), torch.rand(1, 1, 40, 40), 2)
    with pytest.raises(ValueError, match="too small an image"):
        periodic_ratio(torch.rand(1, 1, 96, 50), torch.rand(1, 1, 96, 50), 2)
    with pytest.raises(ValueError, match="must be a multiple of the scale"):
        periodic_ratio(torch.rand(1, 1, 200, 200), torch.rand(1, 1, 200, 200), 3, patch=50)
    with pytest.raises(ValueError, match="differ in size"):
        periodic_ratio(torch.rand(1, 1, 200, 200), torch.rand(1, 1, 198, 200), 2)


def test_edge_overshoot_counts_rims_beyond_the_true_local_range() -> None:
    hr = torch.zeros(1, 1, 96, 96)
    hr[..., :, 48:] = 0.8  # a bright edge
    lr = degrade(hr, 2)
    bic = imresize(lr, 2)
    same = edge_overshoot(bic, bic, hr, 2)
    assert same.ratio == pytest.approx(1.0) and same.bicubic > 0  # bicubic's negative lobes overshoot
    assert same.within()
    rim = bic.clone()
    rim[..., :, 49:52] += 0.1  # a bright rim beside the edge: 12.5% of the 0.8 step
    worse = edge_overshoot(rim, bic, hr, 2)
    assert worse.ratio > 2.0 and worse.sr == pytest.approx(12.5, abs=2.0) and not worse.within()
    assert edge_overshoot(hr, bic, hr, 2).sr == 0.0  # the true image never leaves its own range


def test_balanced_upsampler_starts_as_nearest_neighbour_and_stays_flat_on_flat_input() -> None:
    torch.manual_seed(0)
    for scale in (2, 3, 4):
        up = Upsampler(scale, 4, balanced=True)
        f = torch.randn(1, 4, 6, 6)
        with torch.no_grad():
            y = up(f)
            # ICNR: each stage repeats one value over its r x r phases (nearest neighbour of its conv)
            first = up[0](f)
            r = up.stages[0][1]
            ps = torch.nn.functional.pixel_shuffle(first, r)
            torch.testing.assert_close(
                ps, torch.repeat_interleave(torch.repeat_interleave(ps[..., ::r, ::r], r, -2), r, -1)
            )
        assert y.shape[-1] == 6 * scale


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_balanced_mdrn_answers_flat_input_with_flat_output_after_training_steps(scale: int) -> None:
    torch.manual_seed(scale)
    net = MDRN(n_resblocks=1, n_feats=8, scales=(2, 3, 4), bicubic_skip=True, upsampler="balanced")
    plain = MDRN(n_resblocks=1, n_feats=8, scales=(2, 3, 4), bicubic_skip=True)
    plain.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(list(net.parameters()) + list(plain.parameters()), lr=1e-2)
    for _ in range(3):  # a few steps on random patches move the upsampler away from its start
        x = torch.rand(2, 3, 12, 12)
        loss = sum((m(x, scale) - imresize(x, scale) - 0.05).abs().mean() for m in (net, plain))
        opt.zero_grad()
        loss.backward()
        opt.step()
        project_(net)  # what SRModule.on_train_batch_end does
    flat = torch.full((1, 3, 64, 64), 0.3)
    c = slice(30 * scale, -30 * scale)
    with torch.no_grad():
        spread = float(net(flat, scale)[..., c, c].std(dim=(-1, -2)).max())
        spread_plain = float(plain(flat, scale)[..., c, c].std(dim=(-1, -2)).max())
    assert spread < 1e-6 < spread_plain


def test_projection_keeps_the_layer_a_plain_subpixel_convolution() -> None:
    conv = torch.nn.Conv2d(4, 16, 3, padding=1)
    before = conv.weight.detach().clone()
    balance_subpixel_(conv, 2)
    w = conv.weight.detach().view(4, 4, 4, 9).sum(-1)
    torch.testing.assert_close(w, w[:, :1].expand_as(w))
    balance_subpixel_(conv, 2)  # idempotent
    torch.testing.assert_close(conv.weight.detach().view(4, 4, 4, 9).sum(-1), w)
    assert float((conv.weight.detach() - before).abs().max()) > 0


def test_spec_records_a_balanced_upsampler_and_old_specs_still_build() -> None:
    net = MDRN(n_resblocks=1, n_feats=8, scales=(2,), upsampler="balanced")
    spec = model_spec(net)
    assert spec["args"]["upsampler"] == "balanced"
    assert build_model(spec).upsample["x2"].balanced
    old = model_spec(MDRN(n_resblocks=1, n_feats=8, scales=(2,)))
    assert "upsampler" not in old["args"] and not build_model(old).upsample["x2"].balanced
    with pytest.raises(ValueError, match="unknown upsampler 'nearest'"):
        MDRN(n_resblocks=1, n_feats=8, upsampler="nearest")


def test_training_module_projects_after_each_step() -> None:
    from mdrn.training.module import SRModule

    net = MDRN(n_resblocks=1, n_feats=8, scales=(2,), upsampler="balanced")
    module = SRModule(net)
    with torch.no_grad():
        net.upsample["x2"][0].weight.add_(torch.randn_like(net.upsample["x2"][0].weight))
    module.on_train_batch_end(None, None, 0)
    w = net.upsample["x2"][0].weight.detach().view(8, 4, 8, 9).sum(-1)
    np.testing.assert_allclose(w.numpy(), w[:, :1].expand_as(w).numpy(), atol=1e-5)
