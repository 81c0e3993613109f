"""Prepare ``.gpu_data/``: what ``scripts/gpu_learn.py`` trains and scores on, carried to the GPU machine.

A device call sends the repository's working tree and the ignored paths it names in ``carry``, 64 MiB in all;
``../shared`` stays behind. So this copies, from ``../shared/datasets`` (or ``$MDRN_SHARED``):

- ``T91/``: the T91 images the recipe trains on: those whose shorter side holds its largest HR patch
  (``conf/experiment/gpu_learn.yaml``: 48 x 4 = 192 px; the data module skips the smaller ones anyway);
- ``BSD200/``: the first ``--bsd200`` (75) BSD200 images by name, never 302003 (Set5's "woman" at another
  size): all 199 with the repository would not fit the 64 MiB;
- ``Set5/``: the five Set5 HR images (the test set; never trained or selected on);
- ``wheels/``: pure-Python wheels of hydra-core, omegaconf and antlr4 (the versions installed here), which
  ``scripts/gpu_checks.sh`` installs on the GPU machine only if its image lacks them (``--no-wheels``: none);

and writes ``MANIFEST.json`` (each file's size and sha256, the rule, the sources). Then it checks what a call
carries: the repository's tracked and untracked-not-ignored files plus this folder must stay under 64 MiB,
else it stops with the sizes. The sample data's training images are written on the GPU machine by
``mdrn.data`` itself (scikit-image ships them). General100 (named in issue 26) is not available offline here.

    python scripts/gpu_data.py              # = make gpu-data
    python scripts/gpu_data.py --check      # verify .gpu_data against its manifest (gpu_learn.py does this)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / ".gpu_data"
MANIFEST = "MANIFEST.json"
#: what one device call may carry: the working tree and the carried paths together
CARRY_LIMIT = 64 * 2**20
#: BSD200's image that is Set5's "woman" at another size
SET5_TWIN = "302003"
#: the recipe gpu_learn.py trains with (its largest HR patch decides which T91 images travel)
RECIPE = ROOT / "conf" / "experiment" / "gpu_learn.yaml"
#: BSD200 images carried by default (with the repository, under the 64 MiB with room to grow)
BSD200_DEFAULT = 75
#: the packages the training entry point needs that the GPU image may lack (pure Python)
WHEELS = ("hydra-core", "omegaconf", "antlr4-python3-runtime")
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


class DataError(RuntimeError):
    """The GPU data cannot be prepared or does not match its manifest (the message says what and where)."""


def _images(folder: Path) -> list[Path]:
    """The image files of ``folder`` (not recursive), sorted by name."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not found (the reference data ../shared, or MDRN_SHARED, must hold it)")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def sha256(path: Path) -> str:
    """The file's sha256 (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def recipe_min_side(recipe: Path = RECIPE) -> int:
    """The shorter side an image needs to give the recipe's largest HR patch (LR patch x largest scale)."""
    import yaml

    cfg = yaml.safe_load(recipe.read_text())
    return int(cfg["data"]["patch_size"]) * max(int(s) for s in cfg["model"]["net"]["scales"])


def _min_side(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return min(im.size)


def selection(
    shared: Path, bsd200: int = BSD200_DEFAULT, t91: int | None = None, min_side: int | None = None
) -> dict[str, list[Path]]:
    """The files of each folder: T91 (those at least ``min_side`` px, default the recipe's largest HR patch;
    the first ``t91`` of them, default all), BSD200's first ``bsd200`` without 302003, Set5."""
    ds = shared / "datasets"
    bsd = [p for p in _images(ds / "BSD200") if p.stem != SET5_TWIN]
    if bsd200 > len(bsd):
        raise DataError(f"--bsd200 {bsd200}: {ds / 'BSD200'} holds {len(bsd)} images besides {SET5_TWIN}")
    side = recipe_min_side() if min_side is None else min_side
    t91_files = [p for p in _images(ds / "T91") if _min_side(p) >= side]
    return {
        "T91": t91_files[: t91 or len(t91_files)],
        "BSD200": bsd[:bsd200],
        "Set5": _images(ds / "Set5"),
    }


def build(
    dest: Path = DEST,
    *,
    shared: Path,
    bsd200: int = BSD200_DEFAULT,
    t91: int | None = None,
    min_side: int | None = None,
    wheels: bool = True,
) -> dict:
    """Copy the selection into ``dest`` (replacing what was there), fetch the wheels, write the manifest."""
    side = recipe_min_side() if min_side is None else min_side
    chosen = selection(shared, bsd200, t91, side)
    tmp = dest.with_name(dest.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    files = {}
    for folder, paths in chosen.items():
        (tmp / folder).mkdir(parents=True)
        for p in paths:
            shutil.copyfile(p, tmp / folder / p.name)
    if wheels:
        _wheels(tmp / "wheels")
    for p in sorted(tmp.rglob("*")):
        if p.is_file():
            files[p.relative_to(tmp).as_posix()] = {"bytes": p.stat().st_size, "sha256": sha256(p)}
    manifest = {
        "rule": f"T91: {'all' if not t91 else f'the first {t91}'} of ../shared/datasets/T91 at least "
        f"{side} px on the shorter side (the recipe's largest HR patch); BSD200: the "
        f"first {bsd200} by name without {SET5_TWIN} (Set5's woman); Set5: all five (test only)",
        "shared": str(shared),
        "counts": {k: len(v) for k, v in chosen.items()},
        "files": files,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return manifest


def _wheels(folder: Path) -> None:
    """Wheels of :data:`WHEELS` at the versions installed here (``pip wheel``; needs the package index)."""
    folder.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={metadata.version(name)}" for name in WHEELS]
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(folder), *pins]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise DataError(
            f"pip wheel {' '.join(pins)} failed (no package index?); rerun with --no-wheels if the GPU image "
            f"has them (the last one did):\n{proc.stderr[-1500:]}"
        )


def verify(dest: Path = DEST) -> dict:
    """The manifest of ``dest`` once every file's size and sha256 match; else ``DataError`` naming each."""
    path = dest / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: missing; prepare it with `make gpu-data` (python scripts/gpu_data.py)")
    manifest = json.loads(path.read_text())
    problems = []
    for rel, facts in manifest["files"].items():
        p = dest / rel
        if not p.is_file():
            problems.append(f"{p}: missing")
        elif p.stat().st_size != facts["bytes"] or sha256(p) != facts["sha256"]:
            problems.append(f"{p}: differs from the manifest (size or sha256)")
    if problems:
        head = f"{dest} does not match {MANIFEST} ({len(problems)} files; `make gpu-data` rebuilds it):\n"
        raise DataError(head + "\n".join(problems[:20]))
    return manifest


def carried_bytes(root: Path = ROOT, dest: Path = DEST) -> dict[str, int] | None:
    """Bytes a device call carries: tracked and untracked-not-ignored files, and ``dest`` (None: no git)."""

    def listed(*args: str) -> int:
        out = subprocess.run(["git", "ls-files", "-z", *args], cwd=root, capture_output=True, check=True)
        names = [n for n in out.stdout.decode().split("\0") if n]
        return sum((root / n).stat().st_size for n in names if (root / n).is_file())

    try:
        tracked, untracked = listed(), listed("--others", "--exclude-standard")
    except (OSError, subprocess.CalledProcessError):
        return None
    data = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) if dest.is_dir() else 0
    return {"tracked": tracked, "untracked": untracked, "data": data, "total": tracked + untracked + data}


def check_carry(root: Path = ROOT, dest: Path = DEST, limit: int = CARRY_LIMIT) -> str:
    """A line on what a call carries; ``DataError`` when it is over ``limit``."""
    sizes = carried_bytes(root, dest)
    if sizes is None:
        return "not a git checkout: what a device call carries was not checked"
    mib = {k: v / 2**20 for k, v in sizes.items()}
    line = (
        f"a device call carries {mib['total']:.1f} MiB of {limit / 2**20:.0f}: repository "
        f"{mib['tracked']:.1f} (+ {mib['untracked']:.1f} untracked), {dest.name} {mib['data']:.1f}"
    )
    if sizes["total"] > limit:
        raise DataError(line + ": too much; rerun with a smaller --bsd200, or remove untracked files")
    return line


def main(argv: list[str] | None = None) -> int:
    """Command line: build (default) or --check."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=DEST, help=f"folder to write (default {DEST})")
    shared = Path(os.environ.get("MDRN_SHARED", ROOT.parent / "shared"))
    ap.add_argument("--shared", type=Path, default=shared, help=f"reference data (default {shared})")
    ap.add_argument(
        "--bsd200", type=int, default=BSD200_DEFAULT, help="BSD200 images to carry (first by name)"
    )
    ap.add_argument("--t91", type=int, default=None, help="T91 images to carry (default all large enough)")
    ap.add_argument("--no-wheels", action="store_true", help="no hydra/omegaconf/antlr4 wheels")
    ap.add_argument("--check", action="store_true", help="only verify the folder against its manifest")
    args = ap.parse_args(argv)
    try:
        if not args.check:
            wheels = not args.no_wheels
            m = build(args.dest, shared=args.shared, bsd200=args.bsd200, t91=args.t91, wheels=wheels)
            print(f"wrote {args.dest}: {m['counts']} images, {len(m['files'])} files; {m['rule']}")
        manifest = verify(args.dest)
        print(f"{args.dest}: {len(manifest['files'])} files match {MANIFEST}")
        print(check_carry(ROOT, args.dest))
    except DataError as err:
        print(f"gpu_data: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
