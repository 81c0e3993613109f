"""SRModule: every scale's branches learn under multi-scale training; checkpoints load weights_only."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from mdrn.data import SRDataModule
from mdrn.models import MDRN, model_spec
from mdrn.training.module import SRModule


def _dm(tmp_path: Path, scales=(2, 3, 4)) -> SRDataModule:
    return SRDataModule(
        train=[{"name": "sample", "kind": "sample", "split": "train"}],
        val=[{"name": "sample", "kind": "sample", "split": "test", "limit": 1}],
        test=[],
        data_dir=str(tmp_path / "data"),
        scales=scales,
        batch_size=2,
        batches_per_epoch=12,
        patch_size=16,
    )


def test_every_branch_trains_and_checkpoint(tmp_path: Path) -> None:
    L.seed_everything(0)
    net = MDRN(n_resblocks=1, n_feats=8, scales=(2, 3, 4))
    module = SRModule(net, lr=1e-3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainer = L.Trainer(accelerator="cpu", max_steps=12, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, use_distributed_sampler=False,
                        num_sanity_val_steps=0, limit_val_batches=1)  # fmt: skip
    dm = _dm(tmp_path)
    trainer.fit(module, datamodule=dm)
    drawn = {dm.batch_sampler.scale_of(b) for b in range(12)}
    assert drawn == {2, 3, 4}
    after = net.state_dict()
    for s in (2, 3, 4):
        for prefix in (f"pre_process.x{s}.", f"upsample.x{s}."):
            keys = [k for k in after if k.startswith(prefix)]
            assert keys, prefix
            assert all(
                not torch.equal(before[k], after[k]) for k in keys if after[k].dtype.is_floating_point
            ), prefix
    metrics = trainer.callback_metrics
    assert {"val/sample_x2/psnr", "val/sample_x3/ssim", "val/psnr"} <= set(metrics)
    assert metrics["val/sample_x2/psnr"].dtype == torch.float64
    # the held-out image is 16-bit CT: each loader's metric is made with its set's bit depth (peak 65535)
    assert dm.eval_bit_depths("val") == [16, 16, 16]
    assert {module.metrics[f"val_sample_x{s}"].bit_depth for s in (2, 3, 4)} == {16}
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    data = torch.load(ckpt, weights_only=True)
    assert data["mdrn_arch"] == model_spec(net)
    assert data["hyper_parameters"]["net_spec"] == model_spec(net)
    assert all(k.startswith(("net.",)) for k in data["state_dict"])


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_scale_gradients_reach_branch() -> None:
    net = MDRN(n_resblocks=1, n_feats=8, scales=(2, 3, 4))
    module = SRModule(net)
    for s in (2, 3, 4):
        net.zero_grad()
        batch = {
            "lr": torch.rand(2, 3, 8, 8),
            "hr": torch.rand(2, 3, 8 * s, 8 * s),
            "scale": torch.tensor([s, s]),
        }
        module.training_step(batch, 0).backward()
        for name, p in net.named_parameters():
            has = p.grad is not None and p.grad.abs().sum() > 0
            if f".x{s}." in name:
                assert has, name
            elif name.startswith(("pre_process.", "upsample.")):
                assert not has, name
