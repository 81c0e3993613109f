"""Data: decoded-image cache, training/evaluation datasets, ``SRDataModule``, downloads, sample data."""

from mdrn.data.cache import CachedImage, CacheError, ImageCache
from mdrn.data.datamodule import SRDataModule, resolve_source
from mdrn.data.datasets import EvalDataset, ScaleBatchSampler, TrainPatchDataset
from mdrn.data.sources import (
    DataNotFoundError,
    benchmark_files,
    div2k_files,
    list_images,
    prepare_benchmarks,
    prepare_div2k,
    prepare_sample,
    sample_files,
)

__all__ = [
    "CacheError",
    "CachedImage",
    "DataNotFoundError",
    "EvalDataset",
    "ImageCache",
    "SRDataModule",
    "ScaleBatchSampler",
    "TrainPatchDataset",
    "benchmark_files",
    "div2k_files",
    "list_images",
    "prepare_benchmarks",
    "prepare_div2k",
    "prepare_sample",
    "resolve_source",
    "sample_files",
]
