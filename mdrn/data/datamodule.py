"""``SRDataModule``: random-scale training patches from a weighted union of sources, per-(set, scale) eval."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from mdrn.data.cache import ImageCache
from mdrn.data.datasets import EvalDataset, ScaleBatchSampler, TrainPatchDataset
from mdrn.data.sources import (
    BENCHMARK_SETS,
    SAMPLE_SPLITS,
    DataNotFoundError,
    benchmark_files,
    bsd200_files,
    div2k_files,
    div2k_lr_dirs,
    list_images,
    prepare_benchmarks,
    prepare_bsd200,
    prepare_div2k,
    sample_files,
)

__all__ = [
    "EvalShard",
    "ResumableDataLoader",
    "SRDataModule",
    "select_files",
    "resolve_source",
    "shared_sets",
    "source_folder",
]

log = logging.getLogger(__name__)


def _get(src: Mapping[str, Any], key: str, default: Any = None) -> Any:
    return src[key] if key in src and src[key] is not None else default


def resolve_source(
    src: Mapping[str, Any], data_dir: Path, scales: Sequence[int], download: bool = False
) -> tuple[list[Path], dict[int, Path]]:
    """Files (and DIV2K LR folders) of one source spec ``{kind, name, path, split, include, exclude, limit}``.

    kinds: ``div2k`` (split train = 0001-0800, valid = 0801-0900), ``benchmark`` (Set5, Set14, B100,
    Urban100 under ``path`` or ``data_dir/benchmark``), ``folder`` (any image tree at ``path``),
    ``sample`` (embedded sample data, split train/val_8bit/val_12bit/test_8bit/test_16bit, ...), ``bsd200``
    (the 200 BSDS300 training images: ``path`` where present, else ``data_dir/BSD200``, downloaded).
    """
    kind = _get(src, "kind", "folder")
    lr_dirs: dict[int, Path] = {}
    if kind == "div2k":
        root = Path(_get(src, "path", data_dir))
        split = _get(src, "split", "train")
        if download:
            prepare_div2k(root, splits=(split,))
        files = div2k_files(root, split)
        lr_dirs = div2k_lr_dirs(root, split, scales) if _get(src, "use_div2k_lr", True) else {}
    elif kind == "benchmark":
        root = Path(_get(src, "path", data_dir / "benchmark"))
        if download and src["name"] in BENCHMARK_SETS:
            prepare_benchmarks(root, [src["name"]], downloads=data_dir / "downloads")
        files = benchmark_files(root, src["name"])
    elif kind == "folder":
        if _get(src, "path") is None:
            raise ValueError(f"data source {src.get('name')!r} of kind 'folder' needs a path")
        files = list_images(Path(src["path"]).expanduser())
    elif kind == "sample":
        files = sample_files(data_dir, _get(src, "split", "train"))
    elif kind == "bsd200":
        if download:
            try:
                files = bsd200_files(data_dir, _get(src, "path"))
            except DataNotFoundError:
                prepare_bsd200(data_dir)
        files = bsd200_files(data_dir, _get(src, "path"))
    else:
        raise ValueError(f"unknown data source kind {kind!r} (div2k, benchmark, folder, bsd200, sample)")
    files = select_files(
        files, include=_get(src, "include"), exclude=_get(src, "exclude"), name=src.get("name")
    )
    limit = _get(src, "limit")
    if limit:
        files = files[: int(limit)]
    return files, lr_dirs


def select_files(
    files: Sequence[Path],
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    name: str | None = None,
) -> list[Path]:
    """``files`` kept by a source's ``include`` / ``exclude`` lists of file stems (``"302003"``).

    ``include`` keeps only the named images, ``exclude`` drops them; a named stem that is not among the
    files raises ``ValueError`` (a typo must not silently keep a test image in the training data).
    """
    stems = {f.stem: f for f in files}
    for key, wanted in (("include", include), ("exclude", exclude)):
        unknown = sorted({str(s) for s in wanted or ()} - set(stems))
        if unknown:
            raise ValueError(f"data source {name!r}: {key} names images it does not have: {unknown}")
    out = list(files)
    if include is not None:
        keep = {str(s) for s in include}
        out = [f for f in out if f.stem in keep]
    if exclude:
        drop = {str(s) for s in exclude}
        out = [f for f in out if f.stem not in drop]
    return out


def source_folder(src: Mapping[str, Any], data_dir: Path) -> Path:
    """The folder a source's images come from (without reading it): sources in nested folders share images."""
    kind = _get(src, "kind", "folder")
    if kind == "div2k":
        split = _get(src, "split", "train")
        return (Path(_get(src, "path", data_dir)) / "DIV2K" / f"DIV2K_{split}_HR").resolve()
    if kind == "benchmark":
        return (Path(_get(src, "path", data_dir / "benchmark")) / str(src["name"])).resolve()
    if kind == "sample":
        return (Path(data_dir) / "sample" / SAMPLE_SPLITS.get(_get(src, "split", "train"), "?")).resolve()
    if kind == "bsd200":
        path = _get(src, "path")
        return (
            Path(path).expanduser() if path and Path(path).expanduser().is_dir() else data_dir / "BSD200"
        ).resolve()
    if _get(src, "path") is None:
        raise ValueError(f"data source {src.get('name')!r} of kind {kind!r} needs a path")
    return Path(str(src["path"])).expanduser().resolve()


def shared_sets(
    a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], data_dir: str | Path
) -> list[tuple[str, str]]:
    """``(name in a, name in b)`` of the sources that may share images: one's folder holds the other's.

    Used to keep validation (checkpoint selection) off the test images: DIV2K ``valid`` with any limit
    and DIV2K ``valid`` share images; a folder and its subfolder share images.
    """
    root = Path(data_dir).expanduser()
    out = []
    for sa in a:
        fa = source_folder(sa, root)
        for sb in b:
            fb = source_folder(sb, root)
            if fa.is_relative_to(fb) or fb.is_relative_to(fa):
                out.append((str(sa.get("name")), str(sb.get("name"))))
    return out


class EvalShard(Dataset):
    """Rank ``rank``'s share of an evaluation set: images rank, rank + world, ...; padded to equal length.

    Every rank gets ``ceil(n / world)`` items, so every rank runs the same evaluation loop (Lightning
    skips a loop with no batch, and the ranks' metric syncs would then mismatch); a padding item
    repeats an image with ``skip=True``, and the module does not score it.
    """

    def __init__(self, ds: Dataset, rank: int, world: int) -> None:
        self.ds = ds
        n = len(ds)  # type: ignore[arg-type]
        self.indices = list(range(rank, n, world))
        self.pad = -(-n // world) - len(self.indices)

    def __len__(self) -> int:
        return len(self.indices) + self.pad

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.ds[self.indices[i] if i < len(self.indices) else 0])
        item["skip"] = i >= len(self.indices)
        return item


class ResumableDataLoader(DataLoader):
    """The training loader; Lightning saves its position in checkpoints and restores it on resume.

    The position is the global index of the next batch (``position()``, from the trainer's step);
    batch ``b`` is a pure function of ``(seed, b)`` (:class:`ScaleBatchSampler`), so a run resumed
    mid-epoch draws exactly the batches an uninterrupted run would have drawn.
    """

    def __init__(self, *args: Any, position: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.position = position

    def state_dict(self) -> dict[str, Any]:
        """The global index of the next training batch, and the seed the batches derive from."""
        return {"next_batch": int(self.position()), "seed": int(self.batch_sampler.seed)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from the saved batch (before iteration starts)."""
        if int(state_dict.get("seed", self.batch_sampler.seed)) != self.batch_sampler.seed:
            log.warning(
                "resuming with data.seed=%s, saved with %s: the batches differ from the original run's",
                self.batch_sampler.seed,
                state_dict["seed"],
            )
        self.batch_sampler.start_batch = int(state_dict.get("next_batch", 0))


class SRDataModule(L.LightningDataModule):
    """Training patches (one random scale per batch) and validation/test loaders per (set, scale)."""

    def __init__(
        self,
        train: Sequence[Mapping[str, Any]] = (),
        val: Sequence[Mapping[str, Any]] = (),
        test: Sequence[Mapping[str, Any]] | None = None,
        data_dir: str = "data",
        cache_dir: str | None = None,
        scales: Sequence[int] | None = None,
        scale_weights: Sequence[float] | None = None,
        n_colors: int = 3,
        patch_size: int = 48,
        batch_size: int = 16,
        batches_per_epoch: int = 1000,
        num_workers: int = 0,
        seed: int = 0,
        download: bool = True,
        verify_cache: str = "size",
        pin_memory: bool = False,
        repeat_batches: int = 0,
        input_window: Any = None,
    ) -> None:
        super().__init__()
        #: the network's input window rule (mdrn.models.window): training patches are mapped by it
        self.input_window = input_window
        self.train_sources = [dict(s) for s in train]
        self.val_sources = [dict(s) for s in val]
        self.test_sources = [dict(s) for s in (val if test is None else test)]
        self.data_dir = Path(data_dir).expanduser()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.data_dir / "cache"
        self.scales = tuple(int(s) for s in (scales or (2, 3, 4)))
        self.scale_weights = list(scale_weights) if scale_weights is not None else None
        self.n_colors = int(n_colors)
        self.patch_size = int(patch_size)
        self.batch_size = int(batch_size)
        self.batches_per_epoch = int(batches_per_epoch)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.download = bool(download)
        self.verify_cache = verify_cache
        self.pin_memory = pin_memory
        self.repeat_batches = int(repeat_batches or 0)
        for key, value, least in (("patch_size", self.patch_size, 1), ("batch_size", self.batch_size, 1),
                                  ("batches_per_epoch", self.batches_per_epoch, 1),
                                  ("num_workers", self.num_workers, 0)):  # fmt: skip
            if value < least:
                raise ValueError(f"data.{key} must be at least {least}, got {value}")
        if not self.scales or min(self.scales) < 1:
            raise ValueError(f"data.scales must be integers of at least 1, got {list(self.scales)}")
        self._offline = False  # a download failed: do not try the network again in this run
        self._train_caches: list[tuple[ImageCache, float | None, str]] | None = None
        self._eval_caches: dict[str, dict[str, ImageCache]] = {}
        self.batch_sampler: ScaleBatchSampler | None = None
        for stage, sources in (("train", self.train_sources), ("val", self.val_sources)):
            shared = shared_sets(sources, self.test_sources, self.data_dir)
            if shared:
                pairs = ", ".join(f"{stage} {a!r} / test {t!r}" for a, t in shared)
                warnings.warn(
                    f"{stage} and test sets share images ({pairs}): test scores would come from a model "
                    f"{'trained' if stage == 'train' else 'chosen'} on test images; give disjoint sets",
                    stacklevel=2,
                )

    # ---------------------------------------------------------------------------------- caches
    def _caches(
        self, sources: Sequence[Mapping[str, Any]], download: bool
    ) -> list[tuple[ImageCache, Mapping]]:
        """One ImageCache per source (not built yet); one DataNotFoundError naming every missing source."""
        out, errors = [], []
        for src in sources:
            try:
                files, lr_dirs = resolve_source(
                    src, self.data_dir, self.scales, download=download and not self._offline
                )
            except DataNotFoundError as exc:
                errors.append(exc)
                self._offline |= exc.reason is not None
                continue
            out.append((ImageCache(files, self.cache_dir, self.scales, lr_dirs, self.verify_cache), src))
        if errors:
            raise DataNotFoundError.merge(errors, root=self.data_dir)
        return out

    def train_caches(self, download: bool = False) -> list[tuple[ImageCache, Mapping]]:
        """The caches of the training sources."""
        if self._train_caches is None:
            self._train_caches = self._caches(self.train_sources, download)
        return self._train_caches

    def eval_caches(self, stage: str, download: bool = False) -> list[tuple[ImageCache, Mapping]]:
        """The caches of the validation (``val``) or test (``test``) sets."""
        if stage not in self._eval_caches:
            sources = self.val_sources if stage == "val" else self.test_sources
            self._eval_caches[stage] = self._caches(sources, download)
        return self._eval_caches[stage]

    def prepare_data(self) -> None:
        """Download missing data (if allowed) and build every cache once (rank 0 of each node).

        Every source of every stage is looked for first, so that one error names all that is missing.
        """
        stages = [lambda: self.train_caches(self.download)]
        stages += [lambda stage=stage: self.eval_caches(stage, self.download) for stage in ("val", "test")]
        caches, errors = [], []
        for stage in stages:
            try:
                caches += stage()
            except DataNotFoundError as exc:
                errors.append(exc)
        if errors:
            raise DataNotFoundError.merge(errors, root=self.data_dir)
        for cache, _ in caches:
            cache.build()

    # ------------------------------------------------------------------------------- training
    def setup(self, stage: str | None = None) -> None:
        """Open the caches (memory-mapped) of the stage."""
        if stage in (None, "fit") and self.train_sources:
            caches = self.train_caches()
            usable, weights = [], []
            min_side = self.patch_size * max(self.scales)
            for cache, src in caches:
                keep = [i for i, im in enumerate(cache.images) if min(im.hr.shape[:2]) >= min_side]
                if len(keep) < len(cache):
                    skipped = [cache.images[i].name for i in range(len(cache)) if i not in keep]
                    name = src.get("name")
                    log.info("%s: skipping %s (smaller than %d px) for training", name, skipped, min_side)
                if not keep:
                    raise DataNotFoundError(
                        f"training source {src.get('name')!r} has no image >= {min_side} px"
                    )
                cache.files = [cache.files[i] for i in keep]
                cache._images = [cache.images[i] for i in keep]
                usable.append(cache)
                w = _get(src, "weight")
                weights.append([float(w) / len(keep)] * len(keep) if w is not None else [1.0] * len(keep))
            if any(_get(s, "weight") is not None for _, s in caches) and not all(
                _get(s, "weight") is not None for _, s in caches
            ):
                raise ValueError("give a weight to every training source or to none")
            self.train_set = TrainPatchDataset(
                usable, self.patch_size, self.n_colors, window=self.input_window
            )
            self.batch_sampler = ScaleBatchSampler(
                n_images=len(self.train_set),
                batch_size=self.batch_size,
                batches_per_epoch=self.batches_per_epoch,
                scales=self.scales,
                scale_weights=self.scale_weights,
                image_weights=[w for ws in weights for w in ws],
                seed=self.seed,
                repeat_batches=self.repeat_batches,
            )

    def train_dataloader(self) -> DataLoader:
        """Batches of one scale each; deterministic from the seed and the global batch index (resumable)."""
        if self.batch_sampler is None:
            self.setup("fit")
        return ResumableDataLoader(
            self.train_set,
            batch_sampler=self.batch_sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            position=self._next_batch,
        )

    def _next_batch(self) -> int:
        """The global index of the next training batch: batches trained so far (full epochs assumed)."""
        t = self.trainer
        return int(t.global_step) * int(t.accumulate_grad_batches) if t is not None else 0

    # ----------------------------------------------------------------------------- evaluation
    def eval_keys(self, stage: str) -> list[tuple[str, int]]:
        """``(set name, scale)`` of each validation/test loader, in loader order."""
        sources = self.val_sources if stage == "val" else self.test_sources
        return [(str(src["name"]), s) for src in sources for s in self.scales]

    def eval_bit_depths(self, stage: str) -> list[int]:
        """The bit depth of each validation/test loader (aligned with ``eval_keys``).

        A set must hold one bit depth: PSNR peaks differ (255 for 8 bit, 65535 for 16 bit), so the
        scores of an 8-bit and a 16-bit image cannot be averaged into one figure.
        """
        out = []
        for cache, src in self.eval_caches(stage):
            depths: dict[int, list[str]] = {}
            for im in cache.images:
                depths.setdefault(im.bit_depth, []).append(im.name)
            if len(depths) > 1:
                detail = "; ".join(f"{b} bit: {names[:4]}" for b, names in sorted(depths.items()))
                raise ValueError(
                    f"{stage} set {src.get('name')!r} mixes bit depths ({detail}); PSNR peaks differ, "
                    "so give one set per bit depth (e.g. two folder sources)"
                )
            out += [next(iter(depths))] * len(self.scales)
        return out

    def _eval_loaders(self, stage: str) -> list[DataLoader]:
        """One loader per (set, scale); sharded under DDP (each image scored once, on one rank)."""
        loaders = []
        for cache, src in self.eval_caches(stage):
            for s in self.scales:
                ds: Any = EvalDataset(cache, s, name=str(src["name"]))
                if torch.distributed.is_available() and torch.distributed.is_initialized():
                    ds = EvalShard(ds, torch.distributed.get_rank(), torch.distributed.get_world_size())
                loaders.append(DataLoader(ds, batch_size=1, num_workers=min(self.num_workers, 2)))
        return loaders

    def val_dataloader(self) -> list[DataLoader]:
        """Validation loaders, one per (set, scale) (see ``eval_keys('val')``)."""
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        """Test loaders, one per (set, scale) (see ``eval_keys('test')``)."""
        return self._eval_loaders("test")
