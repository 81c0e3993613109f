"""A+ (mdrn.reproduce.aplus): a tiny model trained on two images beats bicubic on a held-out one; files
round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

from mdrn.protocol.color import rgb_to_ycbcr
from mdrn.protocol.metrics import quantize, score
from mdrn.protocol.resize import degrade, imresize, modcrop
from mdrn.reproduce.aplus import APlus, APlusSR, _conv_same, _nearest, feature_filters, omp

SCALE = 3


def _rgb(image: np.ndarray) -> torch.Tensor:
    """(1, 3, H, W) float64 in [0, 1] from a uint8 HWC array."""
    return torch.from_numpy(image.transpose(2, 0, 1).astype(np.float64) / 255.0)[None]


def _y(image: np.ndarray) -> torch.Tensor:
    return rgb_to_ycbcr(_rgb(image))[0, 0]


@pytest.fixture(scope="module")
def model() -> APlus:
    train = [_y(skdata.astronaut()), _y(skdata.coffee())]
    return APlus(SCALE, n_atoms=64, n_neighbors=512, ksvd_iters=4, n_levels=2, max_samples=60_000).fit(train)


def test_conv_same_matches_matlab_conv2() -> None:
    """conv2(x, k, 'same') = the full convolution from index ceil((n - 1) / 2), for odd and even kernels."""
    rng = np.random.default_rng(0)
    img = rng.random((7, 11))
    for scale in (2, 3):
        for kernel in feature_filters(scale):
            n = len(kernel)
            rows = np.stack([np.convolve(r, kernel)[n // 2 : n // 2 + img.shape[1]] for r in img])
            cols = np.stack([np.convolve(c, kernel)[n // 2 : n // 2 + img.shape[0]] for c in img.T]).T
            got_rows = _conv_same(torch.from_numpy(img), kernel, axis=1).numpy()
            got_cols = _conv_same(torch.from_numpy(img), kernel, axis=0).numpy()
            np.testing.assert_allclose(got_rows, rows, atol=1e-12)
            np.testing.assert_allclose(got_cols, cols, atol=1e-12)


def test_omp_recovers_sparse_codes() -> None:
    rng = np.random.default_rng(1)
    dictionary = rng.standard_normal((40, 200))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)
    idx = np.stack([rng.choice(40, 3, replace=False) for _ in range(50)])
    coef = rng.uniform(1.0, 2.0, (50, 3)) * rng.choice([-1, 1], (50, 3))
    x = np.einsum("nt,ntd->nd", coef, dictionary[idx])
    got_idx, got_coef, err = omp(x, dictionary, 3)
    assert err.max() < 1e-12
    recon = np.einsum("nt,ntd->nd", got_coef, dictionary[got_idx])
    np.testing.assert_allclose(recon, x, atol=1e-8)


def test_aplus_beats_bicubic_on_held_out_image(model: APlus) -> None:
    hr = modcrop(_rgb(skdata.chelsea()), SCALE)
    lr = quantize(degrade(hr, SCALE))
    net = APlusSR([model])
    assert net.scales == (SCALE,) and net.n_colors == 3
    sr = net(lr.float(), SCALE)
    assert sr.shape == hr.shape and sr.dtype == torch.float32
    p_aplus, s_aplus = score(sr, hr, scale=SCALE)
    p_bic, s_bic = score(imresize(lr, SCALE), hr, scale=SCALE)
    assert p_aplus.item() > p_bic.item() + 0.3, (p_aplus.item(), p_bic.item())
    assert s_aplus.item() > s_bic.item()


def test_gray_input_is_enlarged_as_y(model: APlus) -> None:
    y = modcrop(_y(skdata.chelsea()), SCALE)[None, None]
    lr = degrade(y, SCALE)
    out = APlusSR([model], n_colors=1)(lr, SCALE)
    np.testing.assert_allclose(out[0, 0].numpy(), model.predict(lr[0, 0]), atol=1e-6)


def test_save_load_round_trip(model: APlus, tmp_path) -> None:
    path = model.save(tmp_path / "aplus_x3.npz")
    with pytest.raises(FileExistsError):
        model.save(path)
    loaded = APlus.load(path)
    for name in ("pca", "atoms", "regressors"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert loaded._meta() == model._meta()
    lr = degrade(modcrop(_y(skdata.chelsea()), SCALE), SCALE)
    np.testing.assert_array_equal(loaded.predict(lr), model.predict(lr))
    assert APlusSR.from_dir(tmp_path).scales == (SCALE,)


def test_bad_inputs_raise_clear_errors(model: APlus, tmp_path) -> None:
    bad = tmp_path / "aplus_x2.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="aplus_x2.npz"):
        APlus.load(bad)
    net = APlusSR([model])
    with pytest.raises(ValueError, match="scales"):
        net(torch.rand(1, 3, 20, 20), 2)
    with pytest.raises(ValueError, match="2-D"):
        model.predict(np.zeros((2, 8, 8)))
    with pytest.raises(RuntimeError, match="not trained"):
        APlus(2).predict(np.zeros((8, 8)))


def test_nearest_is_exact_top_k() -> None:
    gen = torch.Generator().manual_seed(0)
    atoms = torch.nn.functional.normalize(torch.randn(16, 8, generator=gen), dim=1)
    samples = torch.nn.functional.normalize(torch.randn(5000, 8, generator=gen), dim=1)
    _, want = torch.topk((atoms @ samples.T).abs(), 100, dim=1)
    for margin in (1.25, 0.6):  # 0.6: thresholds too high for some atoms, which are searched exhaustively
        _, idx = _nearest(atoms, samples, 100, chunk=700, margin=margin)
        assert torch.equal(idx.sort(dim=1).values, want.sort(dim=1).values)
