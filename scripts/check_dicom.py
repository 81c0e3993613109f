"""Print what a PACS would see of enlarged DICOMs: dciodvfy errors before/after, and a derived series' tags.

For each pydicom test file: enlarge x2 with ``mdrn-upscale`` (the default model unless ``--weights``),
run dciodvfy (dicom3tools) on the input and on the output and print the number of errors of each and
the errors the output has that the input had not. Then enlarge a five-slice CT series made from
CT_small.dcm, import the result as a series and print the tags of each slice next to its source's.

Usage: python scripts/check_dicom.py [--weights NAME_OR_FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path

import pydicom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from medical_data import DCIODVFY_KNOWN, dciodvfy_errors, dicom_file, make_ct_series  # noqa: E402

from mdrn.clinical.enlarge import model_name  # noqa: E402
from mdrn.clinical.inputs import open_inputs  # noqa: E402
from mdrn.upscale import main as enlarge  # noqa: E402
from mdrn.weights import DEFAULT_MODEL  # noqa: E402


def upscale(args: list[str]) -> int:
    """``mdrn-upscale`` without its "wrote ..." lines."""
    with contextlib.redirect_stdout(io.StringIO()):
        return enlarge(args)


FILES = [
    "CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "RG1_UNCR.dcm",
    "US1_UNCR.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm", "examples_overlay.dcm", "emri_small.dcm",
]  # fmt: skip
TAGS = ["SeriesInstanceUID", "SOPInstanceUID", "InstanceNumber", "ImageType", "Rows", "PixelSpacing",
        "ImagePositionPatient", "SeriesDescription"]  # fmt: skip


def main() -> int:
    """Run the checks and print them."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=DEFAULT_MODEL)
    args = p.parse_args()
    model = model_name(args.weights)
    prefix, modules = DCIODVFY_KNOWN
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        print(f"dciodvfy errors, input -> x2 {model} output (new errors listed; known dciodvfy/PS3.3 "
              "disagreements counted apart)")  # fmt: skip
        for name in FILES:
            src = dicom_file(name)
            upscale([str(src), "--scale", "2", "--weights", args.weights, "-o", str(out), "-q"])
            before = dciodvfy_errors(src)
            after = dciodvfy_errors(out / f"{src.stem}_x2_{model}.dcm")
            new = [e for e in after if e not in before]
            known = [e for e in new if e.startswith(f"Error - {prefix}") and e.endswith(modules)]
            print(f"  {name:24s} {len(before):3d} -> {len(after):3d}  new: {len(new) - len(known)}"
                  + (f" (+{len(known)} known)" if known else ""))  # fmt: skip
            for line in (e for e in new if e not in known):
                print(f"      {line}")
        sources = make_ct_series(out / "CT", 5)
        upscale(
            [str(out / "CT"), "--scale", "2", "--weights", args.weights, "-o", str(out / "enlarged"), "-q"]
        )
        (series,) = open_inputs(out / "enlarged" / f"CT_x2_{model}")
        by_number = {int(pydicom.dcmread(p).InstanceNumber): pydicom.dcmread(p) for p in sources}
        print(f"\nimported {series.path.name}: {series.kind} of {series.n_slices} slices")
        for path in series.files:
            got = pydicom.dcmread(path)
            src = by_number[int(got.InstanceNumber)]
            print(f"  {path.name}")
            for tag in TAGS:
                print(f"    {tag:22s} {str(src.get(tag, '-')):66.66s} -> {got.get(tag, '-')}")
        print(f"  StudyInstanceUID kept: {got.StudyInstanceUID == src.StudyInstanceUID}; "
              f"FrameOfReferenceUID kept: {got.FrameOfReferenceUID == src.FrameOfReferenceUID}")  # fmt: skip
        print(f"  SourceImageSequence -> source SOP instance: "
              f"{got.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID}")  # fmt: skip
        print(f"  DerivationDescription: {got.DerivationDescription}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
