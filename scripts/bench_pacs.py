"""The PACS round trip against files: ``mdrn-pacs enlarge`` through a local Orthanc vs ``mdrn-upscale``.

    python scripts/bench_pacs.py [--slices 20] [--size 256] [--repeat 3] [--models bicubic mdrn_small]

Makes a CT series of ``--slices`` slices of ``--size`` x ``--size`` (CT_small.dcm resampled, a different
offset per slice; pydicom-data), starts a private Orthanc with DICOMweb (``apt-get install orthanc
orthanc-dicomweb``), uploads the series, then times, alternately and ``--repeat`` times, the two commands
a user runs on the same slices, each in a fresh process (x2):
``mdrn-upscale FOLDER --scale 2 --weights M -o OUT`` (files in, files out) and
``mdrn-pacs enlarge --dicomweb URL --study UID --scale 2 --model M`` (QIDO-RS, WADO-RS, enlarge, STOW-RS;
the derived series is deleted from Orthanc between runs so that each run stores all of it). Prints the
median and the fastest wall time of each and the PACS path's overhead (issue 24's goal: at most 15%; a row
that misses it says so; ``--strict``: exit 1 then).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.15


def make_series(folder: Path, n: int, size: int) -> tuple[str, list[Path]]:
    """A CT series of ``n`` slices of ``size`` x ``size`` (16 bit, with geometry); returns its study UID."""
    import pydicom
    import torch
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    from mdrn.protocol.resize import imresize

    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    scale = size / int(base.Rows)
    pixels = imresize(torch.from_numpy(base.pixel_array.astype(np.float64))[None, None], size=(size, size))[
        0, 0
    ]
    files = []
    for k in range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 2.5 * k]
        ds.PixelSpacing = [float(v) / scale for v in ds.PixelSpacing]
        ds.Rows = ds.Columns = size
        ds.PixelData = np.clip(pixels.numpy().round() + 5 * k, -32768, 32767).astype(np.int16).tobytes()
        files.append(folder / f"IM{k:04d}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    return study, files


def _run(cmd: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({res.returncode}):\n{res.stderr[-2000:]}")
    return wall


def _delete_derived(pacs: object, study: str, source: str) -> None:
    found = pacs.rest(
        "POST", "/tools/find", json={"Level": "Series", "Query": {"StudyInstanceUID": study}, "Expand": True}
    )
    for s in found:
        if s["MainDicomTags"]["SeriesInstanceUID"] != source:
            pacs.rest("DELETE", f"/series/{s['ID']}")


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; print one row per model; with ``--strict``, exit 1 if a row misses the goal."""
    import pydicom
    import torch

    from mdrn.pacs.sandbox import LocalOrthanc

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slices", type=int, default=20)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["bicubic", "mdrn_small"])
    ap.add_argument("--strict", action="store_true", help="exit 1 if a row misses the 15%% goal")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mdrn-bench-pacs-"))
    try:
        study, files = make_series(work / "series", args.slices, args.size)
        source = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
        with LocalOrthanc() as pacs:
            for path in files:
                pacs.upload(path)
            print(
                f"{args.slices} slices {args.size}x{args.size}, x2; "
                f"{platform.processor() or platform.machine()}, "
                f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads); "
                f"Orthanc on 127.0.0.1; wall time of each command in a fresh process, {args.repeat} runs"
            )
            print(f"{'model':12} {'mdrn-upscale (s)':>22} {'mdrn-pacs enlarge (s)':>24} {'overhead':>9}")
            missed = 0
            for model in args.models:
                files_s, pacs_s = [], []
                for i in range(args.repeat):
                    out = work / f"out-{model}-{i}"
                    files_s.append(
                        _run(
                            [
                                sys.executable,
                                "-m",
                                "mdrn.upscale",
                                str(work / "series"),
                                "--scale",
                                "2",
                                "--weights",
                                model,
                                "-o",
                                str(out),
                                "-q",
                            ]
                        )
                    )
                    shutil.rmtree(out, ignore_errors=True)
                    _delete_derived(pacs, study, source)
                    pacs_s.append(
                        _run(
                            [
                                sys.executable,
                                "-m",
                                "mdrn.pacs",
                                "enlarge",
                                "--dicomweb",
                                pacs.dicomweb,
                                "--study",
                                study,
                                "--scale",
                                "2",
                                "--model",
                                model,
                                "-q",
                            ]
                        )
                    )
                f_med, p_med = statistics.median(files_s), statistics.median(pacs_s)
                overhead = p_med / f_med - 1
                missed += overhead > GOAL
                print(
                    f"{model:12} {f_med:8.2f} (fastest {min(files_s):6.2f}) "
                    f"{p_med:10.2f} (fastest {min(pacs_s):6.2f}) "
                    f"{overhead:+8.1%}{'' if overhead <= GOAL else '  over the 15% goal'}"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
