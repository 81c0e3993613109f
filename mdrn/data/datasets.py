"""Training patches with one random scale per batch, and evaluation images, read from the image cache.

Reproducibility: the content of training batch ``b`` (its scale, images, crop positions, flips) is a
pure function of ``(seed, b)``, where ``b`` counts batches since the start of training. Worker count,
prefetching and restarts do not change it, and resuming at global step ``b`` continues exactly.

DDP: every rank draws the same scale for a step (the scale depends only on ``(seed, b)``) and its own
images (``(seed, b, rank)``), so every rank runs the same branch; the other branches get no gradient at
that step on any rank (``conf/trainer/ddp.yaml`` sets ``find_unused_parameters`` for that).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mdrn.data.cache import CachedImage, ImageCache, patch_to_tensor
from mdrn.models.window import IntensityWindow, WindowRule
from mdrn.protocol.resize import modcrop

__all__ = ["EvalDataset", "ScaleBatchSampler", "TrainPatchDataset", "augment", "match_channels"]


def match_channels(x: torch.Tensor, n_colors: int, pick: int = 0) -> torch.Tensor:
    """Map (C, H, W) to ``n_colors`` channels: gray -> RGB replicated, RGB -> gray = channel ``pick``."""
    c = x.shape[0]
    if c == n_colors:
        return x
    if c == 1 and n_colors == 3:
        return x.expand(3, -1, -1).contiguous()
    if c == 3 and n_colors == 1:
        return x[pick : pick + 1]
    raise ValueError(f"cannot map a {c}-channel image to {n_colors} channels")


def augment(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 dihedral transforms (k in 0..7: k % 4 quarter turns, then a flip if k >= 4)."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


def _rng(*keys: int) -> np.random.Generator:
    """A numpy generator determined by integer keys."""
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in keys])


class ScaleBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Yields batches of ``(image index, scale, patch seed)``; one scale per batch, drawn from the seed.

    ``len`` is the number of batches per epoch on this rank (epoch length is independent of the
    number of images). Images are drawn with probability ``image_weights`` (a weighted union of
    datasets). ``start_batch`` (set when resuming) skips the batches already trained.
    ``repeat_batches`` > 0 (the ``overfit`` debug preset) repeats the first that many batches forever.
    """

    def __init__(
        self,
        n_images: int,
        batch_size: int,
        batches_per_epoch: int,
        scales: Sequence[int],
        scale_weights: Sequence[float] | None = None,
        image_weights: Sequence[float] | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        repeat_batches: int = 0,
    ) -> None:
        if batches_per_epoch < 1 or batch_size < 1 or n_images < 1:
            raise ValueError("ScaleBatchSampler needs images, a positive batch size and epoch length")
        self.n_images = n_images
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.scales = [int(s) for s in scales]
        w = np.ones(len(self.scales)) if scale_weights is None else np.asarray(scale_weights, dtype=float)
        if len(w) != len(self.scales) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"scale_weights {scale_weights} do not fit scales {self.scales}")
        self.scale_p = w / w.sum()
        iw = np.ones(n_images) if image_weights is None else np.asarray(image_weights, dtype=float)
        if len(iw) != n_images or (iw < 0).any() or iw.sum() <= 0:
            raise ValueError("image_weights must be one non-negative weight per image")
        self.image_p = iw / iw.sum()
        self.seed = int(seed)
        self.repeat_batches = int(repeat_batches or 0)
        self._rank, self._world = rank, world_size
        self.epoch = 0
        self.start_batch = 0  # global batch index to resume from (0: none)
        self._epoch_shift = 0  # sampler epoch - trainer epoch (a continued run that had ended mid-epoch)
        self.sampler = self  # Lightning calls dataloader.batch_sampler.sampler.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start."""
        self.epoch = int(epoch)

    def _dist(self) -> tuple[int, int]:
        """(rank, world size), from the arguments or torch.distributed."""
        if self._rank is not None:
            return self._rank, self._world or 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def scale_of(self, b: int) -> int:
        """The scale of global batch ``b`` (the same on every rank)."""
        return self.scales[int(_rng(self.seed, b, 0xA11).choice(len(self.scales), p=self.scale_p))]

    def batch(self, b: int, rank: int = 0) -> list[tuple[int, int, int]]:
        """The samples of global batch ``b`` on ``rank``."""
        if self.repeat_batches > 0:
            b %= self.repeat_batches
        scale = self.scale_of(b)
        g = _rng(self.seed, b, rank, 0xB7)
        idx = g.choice(self.n_images, size=self.batch_size, p=self.image_p)
        seeds = g.integers(0, 2**31 - 1, size=self.batch_size)
        return [(int(i), scale, int(s)) for i, s in zip(idx, seeds)]

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        rank, _ = self._dist()
        if self.start_batch:
            # a run that ended mid-epoch (max_steps) and is continued starts a new epoch of the trainer's at
            # ``start_batch``: the rest of that sampler epoch comes first, later epochs follow on from it
            self._epoch_shift = self.start_batch // self.batches_per_epoch - self.epoch
        first = (self.epoch + self._epoch_shift) * self.batches_per_epoch
        last = first + self.batches_per_epoch
        start = max(first, self.start_batch)
        self.start_batch = 0  # skipping applies once, to the resumed epoch
        for b in range(start, last):
            yield self.batch(b, rank)

    def __len__(self) -> int:
        return self.batches_per_epoch


class TrainPatchDataset(Dataset):
    """Aligned random (LR, HR) patches from cached images; indexed by ``(image, scale, patch seed)``.

    With an active ``window`` rule (:mod:`mdrn.models.window`, the network's ``input_window``) both
    patches are mapped by the window of their whole LR image at that scale, as inference maps a whole
    image: the network learns on the values it will see, and its loss is taken on that scale.
    """

    def __init__(
        self,
        caches: Sequence[ImageCache],
        patch_size: int = 48,
        n_colors: int = 3,
        augment: bool = True,
        window: WindowRule | str | None = None,
    ) -> None:
        self.caches = list(caches)
        self.patch_size = int(patch_size)
        self.n_colors = int(n_colors)
        self.augment = augment
        self.window = WindowRule.parse(window)
        self._windows: dict[tuple[int, int], IntensityWindow] = {}
        self._index = [(c, i) for c, cache in enumerate(self.caches) for i in range(len(cache))]

    def window_of(self, i: int, scale: int) -> IntensityWindow:
        """The window of image ``i``'s whole LR at ``scale`` (computed once per worker)."""
        key = (int(i), int(scale))
        if key not in self._windows:
            img = self.image(i)
            self._windows[key] = self.window.fit_many([img.lr[scale]], img.bit_depth)
        return self._windows[key]

    def __len__(self) -> int:
        return len(self._index)

    def image(self, i: int) -> CachedImage:
        """The i-th cached image of the union."""
        c, j = self._index[i]
        return self.caches[c].images[j]

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, torch.Tensor | int]:
        i, scale, seed = key
        img = self.image(i)
        lr, hr = img.lr[scale], img.hr
        p = self.patch_size
        h, w = lr.shape[:2]
        g = _rng(seed)
        if h < p or w < p:
            raise ValueError(f"{img.source}: LR x{scale} is {h}x{w}, smaller than the {p}x{p} patch")
        y, x = int(g.integers(0, h - p + 1)), int(g.integers(0, w - p + 1))
        lr_p = patch_to_tensor(lr[y : y + p, x : x + p], img.bit_depth)
        hr_p = patch_to_tensor(hr[y * scale : (y + p) * scale, x * scale : (x + p) * scale], img.bit_depth)
        if self.window.active:
            win = self.window_of(i, scale)
            lr_p, hr_p = win.apply(lr_p[None])[0], win.apply(hr_p[None])[0]
        pick = int(g.integers(0, 3))
        lr_p, hr_p = match_channels(lr_p, self.n_colors, pick), match_channels(hr_p, self.n_colors, pick)
        if self.augment:
            k = int(g.integers(0, 8))
            lr_p, hr_p = augment(lr_p, k), augment(hr_p, k)
        return {"lr": lr_p.contiguous(), "hr": hr_p.contiguous(), "scale": scale}


class EvalDataset(Dataset):
    """Whole images of one set at one scale: HR mod-cropped, LR = quantized MATLAB-bicubic degradation.

    The LR (network input) is float32; the HR is float64, its stored integers exact at any bit depth.
    """

    def __init__(self, cache: ImageCache, scale: int, name: str = "set") -> None:
        if scale not in cache.scales:
            raise ValueError(f"the cache of {name} has scales {cache.scales}, not x{scale}")
        self.cache = cache
        self.scale = int(scale)
        self.name = name

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int | str]:
        img = self.cache.images[i]
        # HR in float64: every n-bit value (16 bit included) exactly as stored, scored as
        # mdrn.protocol.metrics.score
        hr = patch_to_tensor(modcrop(np.asarray(img.hr), self.scale), img.bit_depth, torch.float64)
        lr = patch_to_tensor(img.lr[self.scale], img.bit_depth)
        return {
            "lr": lr,
            "hr": hr,
            "scale": self.scale,
            "bit_depth": img.bit_depth,
            "name": img.name,
            "index": i,
        }
