"""Write the images the clinician tools' peak memory is measured on, and print the measuring commands.

- ``bomb.png``: 140 kB, a valid PNG declaring 12000x12000 pixels (144 MP, over the 100 MP limit);
- ``gray8_10000.png``: 10000x10000 8-bit gray (100 MP, at the limit);
- ``gray16_6000.png``: 6000x6000 16-bit gray (36 MP), for the shipped model.

The images are written band by band (mdrn.io.images.write_bands), so making them needs little memory too.

Usage: python scripts/memory_inputs.py [FOLDER]   (default: ./memory_inputs)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from medical_data import make_png_bomb  # noqa: E402

from mdrn.io.images import write_bands  # noqa: E402


def _texture(side: int, bits: int, rows: int = 500):
    """Bands of a smooth pattern plus noise (compresses like a scan, not like a constant)."""
    rng = np.random.default_rng(0)
    mid, amp, noise = (128, 60, 8) if bits == 8 else (30000, 8000, 300)
    for r in range(0, side, rows):
        y, x = np.mgrid[r : min(side, r + rows), :side]
        band = mid + amp * np.sin(x / 37.0) * np.cos(y / 53.0) + rng.normal(0, noise, y.shape)
        yield band.clip(0, (1 << bits) - 1).astype(np.uint8 if bits == 8 else np.uint16)


def main() -> int:
    """Write the three images and print the commands."""
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "memory_inputs")
    folder.mkdir(parents=True, exist_ok=True)
    make_png_bomb(folder / "bomb.png")
    for name, side, bits in (("gray8_10000.png", 10000, 8), ("gray16_6000.png", 6000, 16)):
        if not (folder / name).exists():
            write_bands(
                folder / name, _texture(side, bits), height=side, width=side, channels=1, bit_depth=bits
            )
    out = folder / "out"
    print("peak memory (Maximum resident set size) of:")
    print(f"  /usr/bin/time -v mdrn-upscale {folder / 'bomb.png'} --scale 2 -o {out}")
    print(
        f"  /usr/bin/time -v mdrn-upscale {folder / 'gray8_10000.png'} --scale 2 --weights bicubic -o {out}"
    )
    print(f"  /usr/bin/time -v mdrn-upscale {folder / 'gray16_6000.png'} --scale 2 -o {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
