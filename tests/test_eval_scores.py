"""Lightning's validation/test scores are the protocol's: ``score()``'s values, fp32 under any precision.

- the scores logged by ``SRModule`` equal ``mdrn.protocol.metrics.score`` on the same images (8 and 16 bit,
HR as
  stored) to 1e-9 dB;
- a ``bf16-mixed`` trainer gives the same scores as a ``32-true`` one (the network runs in fp32 for
  evaluation), unless ``val_precision="bf16"`` asks for bf16 validation;
- a set whose score is not finite is an error naming the set and scale, never a silent drop.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from mdrn.data import SRDataModule, prepare_sample, sample_files
from mdrn.data.cache import make_lr
from mdrn.data.datamodule import EvalShard
from mdrn.io.images import image_to_tensor, read_image
from mdrn.models import MDRN, Bicubic
from mdrn.models.inference import upscale
from mdrn.protocol.metrics import score
from mdrn.protocol.resize import modcrop
from mdrn.training.module import SRModule
from mdrn.weights import DEFAULT_MODEL, load_model

# the same sets for validation and test on purpose here (scores compared stage by stage)
pytestmark = pytest.mark.filterwarnings("ignore:val and test sets share images")
SCALES = (2, 4)
#: one 8-bit set (a gray and an RGB image) and one 16-bit set (CT and MR), used for validation and test
SETS = [
    {"name": "v8", "kind": "sample", "split": "val_8bit"},
    {"name": "t16", "kind": "sample", "split": "test_16bit"},
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample data, written once for this module (its decoded-image cache is shared too)."""
    root = tmp_path_factory.mktemp("data")
    prepare_sample(root)
    return root


def _dm(data_dir: Path, sets: list[dict] = SETS) -> SRDataModule:
    return SRDataModule(val=sets, test=sets, data_dir=str(data_dir), scales=SCALES, download=False)


def _trainer(tmp_path: Path, precision: str = "32-true") -> L.Trainer:
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    return L.Trainer(accelerator="cpu", devices=1, precision=precision, default_root_dir=tmp_path, **quiet)


def _net() -> MDRN:
    torch.manual_seed(0)
    return MDRN(n_resblocks=1, n_feats=8, scales=SCALES)


def _scores(trainer: L.Trainer, module: SRModule, dm: SRDataModule) -> dict[str, float]:
    """The logged validation and test scores of ``module``: ``{"val/v8_x2/psnr": ..., "test/...": ...}``."""
    trainer.validate(module, datamodule=dm, verbose=False)
    out = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    trainer.test(module, datamodule=dm, verbose=False)
    return out | {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}


def _reference(net: nn.Module, data_dir: Path) -> dict[str, float]:
    """``score()`` on the same images, independently of the data pipeline: HR read as stored (float64)."""
    out: dict[str, float] = {}
    for src in SETS:
        files = sample_files(data_dir, src["split"])
        for s in SCALES:
            psnrs, ssims = [], []
            for f in files:
                img = read_image(f)
                hr = modcrop(image_to_tensor(img, torch.float64)[None], s)
                sr = upscale(net, make_lr(hr, s, img.bit_depth).float(), s)
                p, q = score(sr, hr, scale=s, bit_depth=img.bit_depth)
                psnrs.append(float(p))
                ssims.append(float(q))
            for stage in ("val", "test"):
                out[f"{stage}/{src['name']}_x{s}/psnr"] = sum(psnrs) / len(psnrs)
                out[f"{stage}/{src['name']}_x{s}/ssim"] = sum(ssims) / len(ssims)
    return out


def test_lightning_scores_equal_score(data_dir: Path, tmp_path: Path) -> None:
    net = _net()
    got = _scores(_trainer(tmp_path), SRModule(net, save_images=0), _dm(data_dir))
    ref = _reference(net, data_dir)
    assert {read_image(f).bit_depth for f in sample_files(data_dir, "test_16bit")} == {16}
    assert set(ref) <= set(got)
    worst = max(abs(got[k] - ref[k]) for k in ref)
    assert worst <= 1e-9, {k: got[k] - ref[k] for k in ref}
    for stage in ("val", "test"):  # val/psnr, test/psnr: the mean over the (set, scale) loaders
        mean = [v for k, v in ref.items() if k.startswith(f"{stage}/") and k.endswith("/psnr")]
        assert abs(got[f"{stage}/psnr"] - sum(mean) / len(mean)) <= 1e-9


def test_scores_do_not_depend_on_training_precision(data_dir: Path, tmp_path: Path) -> None:
    # a trained model (the shipped one): bf16 rounding moves its scores by 0.04 dB (preliminary
    # mdrn_small, 16-bit x2) to ~1 dB (mdrn_cpu); a random network's by ~0.002 dB (its error dwarfs it)
    net = load_model(DEFAULT_MODEL)
    sets = [{**SETS[0], "limit": 1}, SETS[1]]  # one 8-bit image (bf16 on CPU is slow), the 16-bit set
    fp32 = _scores(_trainer(tmp_path), SRModule(net, save_images=0), _dm(data_dir, sets))
    bf16 = _scores(_trainer(tmp_path, "bf16-mixed"), SRModule(net, save_images=0), _dm(data_dir, sets))
    assert set(fp32) == set(bf16) and len(fp32) == 2 * (2 * len(SCALES) * 2 + 1)
    diff = {k: abs(fp32[k] - bf16[k]) for k in fp32 if k.endswith("psnr")}
    assert max(diff.values()) <= 1e-3, diff
    # bf16 validation is an explicit option, announced, and it does change the validation scores
    module = SRModule(net, save_images=0, val_precision="bf16")
    with pytest.warns(UserWarning, match="val_precision=bf16"):
        _trainer(tmp_path, "bf16-mixed").validate(module, datamodule=_dm(data_dir, SETS[1:]), verbose=False)
    got = {k: float(v) for k, v in module.trainer.callback_metrics.items() if k.startswith("val/t16")}
    assert max(abs(v - fp32[k]) for k, v in got.items()) > 1e-3
    with pytest.raises(ValueError, match="val_precision"):
        SRModule(net, val_precision="16")


def _nan_on_small() -> Bicubic:
    """Bicubic, except NaN for inputs at most 40 pixels wide (16-bit MR at x2, both 16-bit images at x4)."""
    net = Bicubic(scales=SCALES)
    net.register_forward_hook(lambda m, args, y: y * float("nan") if args[0].shape[-1] <= 40 else y)
    return net


def test_non_finite_score_is_an_error(data_dir: Path, tmp_path: Path) -> None:
    module = SRModule(_nan_on_small(), save_images=0)
    with pytest.raises(FloatingPointError, match=r"val set 't16' x2: .* not finite"):
        _trainer(tmp_path).validate(module, datamodule=_dm(data_dir), verbose=False)

    # a set of which no rank scored an image (here: a one-image set seen as rank 1 of 2 sees it, only
    # EvalShard's padding) has no score to log: no error, no key (the DDP case stays handled)
    class Rank1Of2(SRDataModule):
        def _eval_loaders(self, stage: str) -> list[DataLoader]:
            return [DataLoader(EvalShard(dl.dataset, 1, 2)) for dl in super()._eval_loaders(stage)]

    one = [{"name": "one", "kind": "sample", "split": "test_16bit", "limit": 1}]
    dm = Rank1Of2(val=one, data_dir=str(data_dir), scales=SCALES, download=False)
    trainer = _trainer(tmp_path)
    trainer.validate(SRModule(_nan_on_small(), save_images=0), datamodule=dm, verbose=False)
    assert not [k for k in trainer.callback_metrics if k.startswith("val/")]
