"""``SRModule``: the LightningModule training and evaluating any mdrn network (one scale per batch)."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from mdrn.io.images import atomic_write, tensor_to_array, write_image
from mdrn.models import model_spec
from mdrn.models.blocks import project_
from mdrn.models.inference import upscale
from mdrn.models.window import set_rule
from mdrn.perf import (
    TRAIN_PRESETS,
    TrainPreset,
    apply_train_preset,
    cudagraph_skips,
    eager_calls,
    resolve_train_preset,
    start_train_step,
)
from mdrn.protocol.metrics import SRMetric

__all__ = ["EVAL_PRECISIONS", "LOSSES", "LR_SCHEDULES", "PRESETS", "AtomicCheckpointIO", "SRModule"]

LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss, "smooth_l1": F.smooth_l1_loss}
#: learning-rate schedules: ``step`` multiplies by ``lr_gamma`` every ``lr_step`` iterations (EDSR/MDSR);
#: ``cosine`` decays from ``lr`` to 0 over the trainer's ``max_steps``
LR_SCHEDULES = ("step", "cosine")
#: precision of the network during validation: ``"32"`` (fp32, autocast off, whatever the trainer's
#: precision: the protocol's numbers) or ``"bf16"`` (bf16 autocast, faster on GPUs, scores labelled as such);
#: the test stage always runs in fp32
EVAL_PRECISIONS = ("32", "bf16")
#: ``train_preset`` values: ``auto`` or a preset of :data:`mdrn.perf.TRAIN_PRESETS`
PRESETS = ("auto", *TRAIN_PRESETS)

log = logging.getLogger("mdrn.train")


def _nothing() -> contextlib.AbstractContextManager:
    """An empty context (the evaluation of a network that is not compiled)."""
    return contextlib.nullcontext()


def _plain(value: Any) -> Any:
    """OmegaConf containers -> plain Python containers (so checkpoints load with weights_only=True)."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, tuple):
        return list(value)
    return value


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO writing a local ``.ckpt`` to a temporary file, then ``os.replace``.

    A SIGKILL during a save leaves the previous ``last.ckpt`` intact (never a half-written file).
    Remote paths (``s3://``...) use Lightning's own writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        """Save ``checkpoint`` to ``path`` atomically (local files)."""
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())

        atomic_write(path, write, overwrite=True)


class SRModule(L.LightningModule):
    """Trains ``net`` with an L1 (configurable) loss and Adam with step decay; scores per (set, scale).

    Validation/test loaders are matched to ``(set, scale)`` through the datamodule's ``eval_keys``;
    each loader has one :class:`mdrn.protocol.metrics.SRMetric`, logged as ``val/<set>_x<s>/psnr`` and
    ``.../ssim`` (float64, computed outside autocast), plus ``val/psnr``, their mean over loaders.
    The network runs in fp32 for evaluation under any trainer precision (``bf16-mixed`` included):
    always for test, and for validation unless ``val_precision="bf16"`` (an explicit option for speed,
    announced by a warning). A set whose score is not finite raises ``FloatingPointError``.
    ``train_preset`` (:data:`mdrn.perf.TRAIN_PRESETS`; ``auto``: CUDA graphs on one CUDA device, else
    eager) says how the network runs for training: the compiled body, its layout and Adam's loop; it is
    applied when fitting starts, announced in the log, and evaluation always runs the network eagerly.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: str = "l1",
        lr: float = 1e-4,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        lr_step: int = 200_000,
        lr_gamma: float = 0.5,
        lr_schedule: str = "step",
        self_ensemble: bool = False,
        tile: int | None = None,
        init_from: str | None = None,
        save_images: int = 2,
        log_images: bool = False,
        output_dir: str | None = None,
        val_precision: str = "32",
        input_window: Any = None,
        train_preset: str = "auto",
    ) -> None:
        super().__init__()
        if train_preset not in PRESETS:
            raise ValueError(f"unknown train_preset {train_preset!r}; known: {list(PRESETS)}")
        val_precision = str(val_precision)
        if val_precision not in EVAL_PRECISIONS:
            raise ValueError(f"unknown val_precision {val_precision!r}; known: {list(EVAL_PRECISIONS)}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; known: {sorted(LOSSES)}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {lr_schedule!r}; known: {list(LR_SCHEDULES)}")
        self.net = net
        if input_window is not None:  # the rule the network is trained with, recorded in its spec
            set_rule(self.net, _plain(input_window))
        self.init_report: str | None = None
        if init_from:
            from mdrn.weights import init_from_pretrained, load_model

            try:
                report = init_from_pretrained(self.net, load_model(init_from))
            except (ValueError, FileNotFoundError) as exc:  # another architecture, no such file...
                why = str(exc).removeprefix(f"{init_from}: ")
                raise ValueError(f"model.init_from={init_from}: {why}") from None
            self.init_report = f"initialised from {init_from}: {report}"
            project_(self.net)  # the copied weights meet this network's constraints
        self.save_hyperparameters(
            {
                "loss": loss,
                "lr": float(lr),
                "betas": [float(b) for b in _plain(betas)],
                "weight_decay": float(weight_decay),
                "lr_step": int(lr_step),
                "lr_gamma": float(lr_gamma),
                "lr_schedule": str(lr_schedule),
                "self_ensemble": bool(self_ensemble),
                "tile": tile,
                "init_from": None if init_from is None else str(init_from),
                "save_images": int(save_images),
                "log_images": bool(log_images),
                "val_precision": val_precision,
                "train_preset": str(train_preset),
                "net_spec": model_spec(net),
            }
        )
        self.output_dir = output_dir
        self.loss_fn = LOSSES[loss]
        self.metrics = nn.ModuleDict()
        self._keys: dict[str, list[tuple[str, int]]] = {}
        # under DDP a small evaluation set may leave a rank without images (its metric still syncs)
        self.allow_zero_length_dataloader_with_multiple_devices = True
        #: the resolved training preset (at ``configure_optimizers``) and the part it compiled
        self.preset: TrainPreset | None = None
        self._compiled: nn.Module | None = None
        self._graph_skips = 0

    # ----------------------------------------------------------------------------------- core
    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """The network's output for ``x`` at ``scale``."""
        return self.net(x, scale)

    @property
    def scales(self) -> tuple[int, ...]:
        """The scales the network serves."""
        return tuple(self.net.scales)

    def _resolve_preset(self) -> TrainPreset:
        """The training preset for this run's device and number of processes (resolved once)."""
        if self.preset is None:
            world = int(self.trainer.world_size) if self._trainer is not None else 1
            body = isinstance(getattr(self.net, "body", None), nn.Module)
            name = self.hparams.get("train_preset", "auto")
            self.preset = resolve_train_preset(name, self.device, world, has_body=body)
        return self.preset

    def on_fit_start(self) -> None:
        """Apply the training preset (layout, compiled body) on the run's device; say which it is."""
        preset = self._resolve_preset()
        if self._compiled is None:
            self._compiled = apply_train_preset(self.net, preset, self.device)
            self._graph_skips = cudagraph_skips()
        if self.trainer.is_global_zero:
            log.info("mdrn: training preset %s: %s", preset.name, preset.description)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One step at the batch's (single) scale."""
        start_train_step(self.preset)
        scales = batch["scale"]
        scale = int(scales[0])
        if isinstance(scales, torch.Tensor) and bool((scales != scale).any()):
            raise ValueError(f"a training batch mixes scales {scales.unique().tolist()}")
        sr = self.net(batch["lr"], scale)
        loss = self.loss_fn(sr, batch["hr"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self.log(f"train/loss_x{scale}", loss, on_step=True, on_epoch=False)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Keep the network's constraints after the optimizer step (e.g. a balanced upsampler's phases).

        With CUDA graphs, a fallback of inductor to graph-free code is logged as a warning (once)."""
        project_(self.net)
        if self.preset is not None and self.preset.cuda_graphs and self._graph_skips >= 0:
            skipped = cudagraph_skips() - self._graph_skips
            if skipped > 0:
                self._graph_skips = -1
                warnings.warn(
                    f"train_preset={self.preset.name}: inductor skipped CUDA graphs {skipped} time(s) "
                    "(its log lines 'skipping cudagraphs due to ...' say why): the body runs compiled "
                    "without CUDA graphs, slower than the preset measures",
                    stacklevel=1,
                )

    def configure_optimizers(self) -> Any:
        """Adam (betas 0.9/0.999) and the schedule: step (x ``lr_gamma`` every ``lr_step``) or cosine."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return None
        hp = self.hparams
        fused = True if self._trainer is not None and self._resolve_preset().fused_adam else None
        opt = torch.optim.Adam(
            params, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay, fused=fused
        )
        if hp.get("lr_schedule", "step") == "cosine":
            total = int(self.trainer.max_steps) if self.trainer is not None else -1
            if total < 1:
                raise ValueError("lr_schedule=cosine needs trainer.max_steps (the length of the decay)")
            sched: Any = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        else:
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.lr_step, gamma=hp.lr_gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the architecture so ``mdrn.weights.load_model`` rebuilds the net from the .ckpt alone."""
        checkpoint["mdrn_arch"] = model_spec(self.net)

    # ----------------------------------------------------------------------------- evaluation
    def _eval_keys(self, stage: str) -> list[tuple[str, int]]:
        """(set, scale) per loader, from the datamodule (or one anonymous loader per scale)."""
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "eval_keys"):
            return list(dm.eval_keys(stage))
        return [("set", s) for s in self.scales]

    def _eval_bit_depths(self, stage: str, n: int) -> list[int | None]:
        """Bit depth per loader from the datamodule (None: taken from the loader's first image)."""
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "eval_bit_depths"):
            return [int(b) for b in dm.eval_bit_depths(stage)]
        return [None] * n

    def _metric(self, stage: str, name: str, scale: int, bit_depth: int) -> SRMetric:
        """The loader's metric, made for its set's bit depth (one peak value per set)."""
        key = f"{stage}_{name}_x{scale}"
        if key not in self.metrics or self.metrics[key].bit_depth != bit_depth:
            self.metrics[key] = SRMetric(scale=scale, bit_depth=bit_depth).to(self.device)
        return self.metrics[key]

    def _start_eval(self, stage: str) -> None:
        """Fresh metric objects, one per loader, each with its set's bit depth."""
        keys = self._eval_keys(stage)
        self._keys[stage] = keys
        for (name, s), bits in zip(keys, self._eval_bit_depths(stage, len(keys))):
            key = f"{stage}_{name}_x{s}"
            if bits is not None:
                self._metric(stage, name, s, bits)
            elif key in self.metrics:
                del self.metrics[key]  # made at the loader's first image
            if key in self.metrics:
                self.metrics[key].reset()

    def on_validation_epoch_start(self) -> None:
        """Reset the validation metrics."""
        if self.hparams.get("val_precision", "32") == "bf16" and not getattr(self, "_warned_bf16", False):
            self._warned_bf16 = True
            warnings.warn(
                "val_precision=bf16: validation scores (val/..., and the checkpoint chosen on them) come "
                "from the network under bf16 autocast, not the protocol's fp32 numbers; test stays fp32",
                stacklevel=1,
            )
        self._start_eval("val")

    def on_test_epoch_start(self) -> None:
        """Reset the test metrics."""
        self._start_eval("test")

    def _eval_step(self, stage: str, batch: dict[str, Any], dataloader_idx: int) -> None:
        """Super-resolve one image and add its score to the loader's metric."""
        name, scale = self._keys[stage][dataloader_idx]
        if "skip" in batch and bool(torch.as_tensor(batch["skip"]).any()):
            return  # DDP padding (mdrn.data.datamodule.EvalShard): this image is scored on another rank
        if int(batch["scale"][0]) != scale:
            raise ValueError(
                f"loader {dataloader_idx} ({name} x{scale}) gave a x{int(batch['scale'][0])} batch"
            )
        ensemble = bool(self.hparams.self_ensemble) and stage == "test"
        with self._eval_autocast(stage), eager_calls() if self._compiled is not None else _nothing():
            sr = upscale(self.net, batch["lr"], scale, tile=self.hparams.tile, ensemble=ensemble)
        bits = [int(b) for b in batch["bit_depth"]]
        key = f"{stage}_{name}_x{scale}"
        metric = self.metrics[key] if key in self.metrics else self._metric(stage, name, scale, bits[0])
        if any(b != metric.bit_depth for b in bits):
            raise ValueError(
                f"{stage} set {name!r} x{scale}: a {bits}-bit image in a {metric.bit_depth}-bit set; "
                "PSNR peaks differ, so give one set per bit depth"
            )
        bit_depth = metric.bit_depth
        with torch.autocast(device_type=self.device.type, enabled=False):
            metric.update(sr.float(), batch["hr"])
        if stage == "test" and int(batch["index"][0]) < self.hparams.save_images:
            self._save_image(sr, name, scale, str(batch["name"][0]), bit_depth)

    def _eval_autocast(self, stage: str) -> torch.autocast:
        """The autocast state the network is evaluated under: off (fp32), or bf16 if asked for validation.

        It overrides the trainer's (e.g. ``bf16-mixed``) autocast: scores never depend on the training
        precision unless ``val_precision="bf16"`` says so.
        """
        if stage == "val" and self.hparams.get("val_precision", "32") == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=self.device.type, enabled=False)

    def _save_image(self, sr: torch.Tensor, name: str, scale: int, image: str, bit_depth: int) -> None:
        """Write a sample SR image to the run's output folder (never uploaded unless log_images)."""
        if self.output_dir is None:
            return
        path = Path(self.output_dir) / "samples" / f"{name}_x{scale}" / f"{image}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        array = tensor_to_array(sr.float().cpu(), bit_depth)
        write_image(path, array, bit_depth=bit_depth, overwrite=True)
        if self.hparams.log_images:
            from lightning.pytorch.loggers import WandbLogger

            for logger in self.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(key=f"samples/{name}_x{scale}/{image}", images=[str(path)])

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        """Score one validation image."""
        self._eval_step("val", batch, dataloader_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        """Score one test image (x8 self-ensemble if enabled)."""
        self._eval_step("test", batch, dataloader_idx)

    def _end_eval(self, stage: str) -> dict[str, float]:
        """Log per-(set, scale) PSNR/SSIM and their mean PSNR; return them."""
        out: dict[str, float] = {}
        psnrs = []
        for name, s in self._keys.get(stage, []):
            metric = self.metrics[f"{stage}_{name}_x{s}"] if f"{stage}_{name}_x{s}" in self.metrics else None
            if metric is None:
                continue
            with warnings.catch_warnings():  # a rank without images of this set: compute still syncs
                warnings.filterwarnings("ignore", message=".*before the ``update`` method.*")
                values = metric.compute()
            if not (torch.isfinite(values["psnr"]) and torch.isfinite(values["ssim"])):
                # identical on every rank after the sync, so every rank takes this branch (and the reduce)
                seen = int(self.trainer.strategy.reduce(metric.count.double(), reduce_op="sum"))
                if seen == 0:
                    continue  # no image of this set on any rank (e.g. limit_val_batches): nothing to log
                bad = int(self.trainer.strategy.reduce(metric.nonfinite.double(), reduce_op="sum"))
                raise FloatingPointError(
                    f"{stage} set {name!r} x{s}: mean PSNR {float(values['psnr'])} dB, SSIM "
                    f"{float(values['ssim'])} over {seen} image(s) is not finite: NaN means the network "
                    f"output NaN/inf ({bad} image(s) here; diverged training?); +inf PSNR means an SR image "
                    "equal to its HR"
                )
            for k in ("psnr", "ssim"):
                out[f"{stage}/{name}_x{s}/{k}"] = float(values[k])
                self.log(f"{stage}/{name}_x{s}/{k}", values[k], add_dataloader_idx=False, sync_dist=False)
            psnrs.append(values["psnr"])
        if psnrs:
            mean = torch.stack(psnrs).mean()
            out[f"{stage}/psnr"] = float(mean)
            self.log(f"{stage}/psnr", mean, prog_bar=stage == "val", add_dataloader_idx=False)
        return out

    def on_validation_epoch_end(self) -> None:
        """Log the validation scores."""
        self._end_eval("val")

    def on_test_epoch_end(self) -> None:
        """Log the test scores."""
        self.test_results = self._end_eval("test")
