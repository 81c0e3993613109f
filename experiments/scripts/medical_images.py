"""Write the medical test images of Table 2 and Figs. 10-16 (no download: skimage, pydicom, pydicom-data).

The paper's own images (demodicosis, retinopathy, gastroscopy) are private. These stand in for them; none
of them is in the training images of ``data=sample`` (which trains on MR2_UNCR and 693_UNCR, not on these),
so every score is on held-out images. Each is written as PNG at its own bit depth (8, 10, 15 or 16 bit;
``mdrn.io.images`` records the depth in the PNG's sBIT chunk) so that PSNR uses the image's own peak (Eq. 4).

    python experiments/scripts/medical_images.py --out data/medical

writes two sets for ``python -m mdrn.evaluate eval.root=<out> 'eval.sets=[Medical_8bit,Medical_10to16bit]'``:
``<out>/Medical_8bit/*.png`` and ``<out>/Medical_10to16bit/*.png`` (PSNRs with peaks 255 and 1023..65535
are never averaged together), and prints what it wrote. Large images are centre-cropped to ``--size``
pixels so that the CPU runs stay short; the crop is recorded in ``<out>/images.json``.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

from mdrn.io.images import read_image, write_image

#: name -> (source, description); sources: "skimage:<function>" or "pydicom:<test file>"
IMAGES = {
    "retina_fundus": ("skimage:retina", "fundus photograph (retinopathy screening), RGB 8 bit"),
    "microaneurysms": ("skimage:microaneurysms", "fundus detail with microaneurysms, gray 8 bit"),
    "chest_xray_rg1": ("pydicom:RG1_UNCR.dcm", "chest radiograph, gray 15 bit (pydicom-data)"),
    "chest_xray_rg3": ("pydicom:RG3_UNCR.dcm", "chest radiograph, gray 10 bit (pydicom-data)"),
    "ct_small": ("pydicom:CT_small.dcm", "CT slice, gray 16 bit (pydicom)"),
    "ultrasound_us1": ("pydicom:US1_UNCR.dcm", "ultrasound, RGB 8 bit (pydicom-data)"),
}


def load(source: str) -> tuple[np.ndarray, int] | None:
    """Return (pixels, bit depth) of a source, or None if its package/file is not installed."""
    kind, name = source.split(":", 1)
    if kind == "skimage":
        import skimage.data

        return np.ascontiguousarray(getattr(skimage.data, name)()), 8
    from pydicom.data import get_testdata_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = get_testdata_file(name, download=False)
    if not path or not Path(path).exists():
        return None
    img = read_image(path)
    return img.array, img.bit_depth


def centre_crop(array: np.ndarray, size: int) -> tuple[np.ndarray, list[int]]:
    """Return the centre ``size x size`` crop (or the image if smaller) and its box [top, left, h, w]."""
    h, w = array.shape[:2]
    ch, cw = min(h, size), min(w, size)
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(array[top : top + ch, left : left + cw]), [top, left, ch, cw]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/medical"))
    parser.add_argument("--size", type=int, default=480, help="centre crop of larger images (pixels)")
    args = parser.parse_args()
    facts = {}
    for name, (source, about) in IMAGES.items():
        loaded = load(source)
        if loaded is None:
            print(f"{name}: {source} is not installed (pip install pydicom-data); skipped")
            continue
        array, bits = loaded
        crop, box = centre_crop(array, args.size)
        folder = args.out / ("Medical_8bit" if bits <= 8 else "Medical_10to16bit")
        write_image(folder / f"{name}.png", crop, bit_depth=bits, overwrite=True)
        facts[name] = {
            "source": source,
            "about": about,
            "bit_depth": bits,
            "original_shape": list(array.shape),
            "crop_top_left_h_w": box,
            "set": folder.name,
        }
        print(f"{name}: {about}; {array.shape} -> centre crop {crop.shape}, {bits} bit")
    (args.out / "images.json").write_text(json.dumps(facts, indent=2) + "\n")


if __name__ == "__main__":
    main()
