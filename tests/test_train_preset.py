"""Training presets (mdrn.perf.TRAIN_PRESETS): the compiled residual body serves every scale with one
compilation, evaluation runs eagerly whatever the image size, state_dict keys never change, and a preset
that needs CUDA is refused elsewhere with one clear message."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

import mdrn.perf
from mdrn.data import SRDataModule
from mdrn.models import MDRN
from mdrn.perf import TRAIN_PRESETS, apply_train_preset, resolve_train_preset
from mdrn.training.module import SRModule


def test_auto_resolves_per_device_and_cuda_graphs_are_refused_on_cpu() -> None:
    assert resolve_train_preset("auto", "cpu").name == "eager"
    assert resolve_train_preset("auto", "cuda").name == "cudagraphs"
    assert resolve_train_preset("auto", "cuda", world_size=2).name == "eager"  # DDP stays eager
    assert resolve_train_preset("auto", "cuda", has_body=False).name == "eager"  # SRCNN, VDSR: not measured
    assert resolve_train_preset("compiled", "cpu").compile_mode == "default"
    with pytest.raises(ValueError, match="needs a CUDA device; this run is on cpu"):
        resolve_train_preset("cudagraphs", "cpu")
    with pytest.raises(ValueError, match="unknown train_preset 'fast'"):
        resolve_train_preset("fast", "cpu")
    with pytest.raises(ValueError, match="unknown train_preset"):
        SRModule(MDRN(n_resblocks=1, n_feats=8, scales=(2,)), train_preset="fast")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        apply_train_preset(MDRN(n_resblocks=1, n_feats=8, scales=(2,)), TRAIN_PRESETS["cudagraphs"], "cpu")
    assert TRAIN_PRESETS["cudagraphs"].cuda_graphs and not TRAIN_PRESETS["compiled"].cuda_graphs


def test_eager_preset_compiles_nothing() -> None:
    net = MDRN(n_resblocks=1, n_feats=8, scales=(2,))
    assert apply_train_preset(net, TRAIN_PRESETS["eager"], "cpu") is None
    assert net.body._compiled_call_impl is None


def _fit(tmp_path: Path, data: Path, preset: str, accelerator: str) -> tuple[SRModule, L.Trainer, list[str]]:
    """A tiny 3-scale MDRN trained 9 steps with ``preset``, validated on two CT/MR images of two sizes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: a second thread on a loaded machine costs 40x
    try:
        return _fit_threads(tmp_path, data, preset, accelerator)
    finally:
        torch.set_num_threads(threads)


def _fit_threads(
    tmp_path: Path, data: Path, preset: str, accelerator: str
) -> tuple[SRModule, L.Trainer, list[str]]:
    """:func:`_fit` with the thread count set."""
    L.seed_everything(0)
    net = MDRN(n_resblocks=2, n_feats=8, scales=(2, 3, 4), bicubic_skip=True)
    keys = list(net.state_dict())
    module = SRModule(net, lr=1e-3, train_preset=preset, save_images=0)
    dm = SRDataModule(
        train=[{"name": "sample", "kind": "sample", "split": "train"}],
        val=[{"name": "s16", "kind": "sample", "split": "test_16bit", "limit": 2}],
        test=[],
        data_dir=str(data),
        scales=(2, 3, 4),
        batch_size=2,
        batches_per_epoch=9,
        patch_size=12,
    )
    trainer = L.Trainer(accelerator=accelerator, devices=1, max_steps=9, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        use_distributed_sampler=False, num_sanity_val_steps=0,
                        enable_checkpointing=False)  # fmt: skip
    trainer.fit(module, datamodule=dm)
    assert {dm.batch_sampler.scale_of(b) for b in range(9)} == {2, 3, 4}
    return module, trainer, keys


def test_compiled_body_one_compilation_for_every_scale_and_eager_validation(
    tmp_path: Path, sample_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    monkeypatch.setattr(mdrn.perf, "TRAIN_COMPILE_BACKEND", counter)
    torch._dynamo.reset()
    try:
        module, trainer, keys = _fit(tmp_path, sample_data, "compiled", "cpu")
    finally:
        torch._dynamo.reset()
    assert module.preset is not None and module.preset.name == "compiled"
    assert module._compiled is module.net.body
    # the body's input has one shape at x2, x3 and x4: one compilation; the validation images (two sizes,
    # three scales) ran eagerly and compiled nothing more
    assert counter.frame_count == 1
    assert {"val/s16_x2/psnr", "val/s16_x4/psnr"} <= set(trainer.callback_metrics)
    assert list(module.net.state_dict()) == keys  # compiled in place: no _orig_mod. prefix
    assert module.net.body[0].body[0].weight.is_contiguous(memory_format=torch.channels_last) == (
        mdrn.perf.nhwc_training_pays()
    )
    opt = trainer.optimizers[0]
    assert opt.defaults["fused"] is True


def test_eager_default_on_cpu_keeps_the_old_loop(tmp_path: Path, sample_data: Path) -> None:
    module, trainer, _ = _fit(tmp_path, sample_data, "auto", "cpu")
    assert module.preset is not None and module.preset.name == "eager" and module._compiled is None
    assert not trainer.optimizers[0].defaults.get("fused")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graphs_preset_under_lightning(tmp_path: Path, sample_data: Path) -> None:
    """On CUDA, auto = the body compiled with CUDA graphs: no fallback, keys unchanged, eager validation."""
    torch._dynamo.reset()
    skips = mdrn.perf.cudagraph_skips()
    module, trainer, keys = _fit(tmp_path, sample_data, "auto", "gpu")
    assert module.preset is not None and module.preset.name == "cudagraphs"
    assert mdrn.perf.cudagraph_skips() == skips, "inductor fell back from CUDA graphs (see its log)"
    assert list(module.net.state_dict()) == keys
    assert {"val/s16_x2/psnr", "val/s16_x4/psnr"} <= set(trainer.callback_metrics)
    assert torch.isfinite(trainer.callback_metrics["val/psnr"])
