"""mdrn's networks for spandrel (the loader of chaiNNer and ComfyUI): ``import mdrn.spandrel`` registers them.

After the import, ``spandrel.ModelLoader().load_from_file(path)`` (and ``MAIN_REGISTRY.load(state_dict)``,
which ComfyUI calls) reads:

* the safetensors files mdrn writes (:func:`mdrn.weights.save_model`: the architecture is a tensor
  ``mdrn_arch`` in the file, since spandrel never sees a file's metadata), MDRN and EDSR, with or without
  the bicubic low-frequency path (``bicubic_skip``), gray or RGB;
* the shipped ``mdrn/pretrained/mdrn_small.safetensors`` (recognised by its tensors: it predates the
  ``mdrn_arch`` tensor);
* the official EDSR-PyTorch checkpoints (MDSR, MDSR-baseline, EDSR, EDSR-baseline ``.pt``), detected from
  keys and shapes by :func:`mdrn.weights.convert_official`.

Detection is strict (:func:`mdrn.weights.identify_state_dict`: the tensors must fit the layout exactly)
and runs after spandrel's own architectures, so no file they read changes hands. The descriptor's model
is the mdrn network itself (the same forward as ``mdrn.weights.load_model``), run by spandrel's call at
one scale: spandrel models serve one scale, an MDRN/MDSR file several. The descriptor serves the
file's smallest scale (x2 for mdrn_small and MDSR); :func:`descriptor` picks another in Python, and
``python -m mdrn.spandrel export SRC DST --scale 4`` writes a file holding only that scale's branch, which
any spandrel user (ComfyUI, chaiNNer) then loads at x4. Inputs of any size (1 pixel and up) work;
``tiling`` is SUPPORTED; fp16 is not claimed (the features run on the 0..255 scale), bfloat16 is.

This module imports spandrel through :func:`mdrn.models.spandrel_net.import_spandrel` (no torchvision
needed); without spandrel it raises :class:`mdrn.models.spandrel_net.SpandrelUnavailableError`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mdrn.models import EDSR, MDRN, build_model, model_spec
from mdrn.models.blocks import SRNet
from mdrn.models.spandrel_net import import_spandrel
from mdrn.models.window import rule_of
from mdrn.weights import SPEC_TENSOR, CheckpointError, identify_state_dict, load_model, save_model

spandrel = import_spandrel()

__all__ = ["ARCHITECTURE", "MdrnArch", "descriptor", "main", "single_scale"]

#: The architectures this module registers (what ``identify_state_dict`` may return).
ARCHS = ("MDRN", "EDSR")


def _looks_like_mdrn(state: Mapping[str, Any]) -> bool:
    """Cheap key test: a ``mdrn_arch`` tensor, mdrn's own layout, or the official EDSR-PyTorch one."""
    if SPEC_TENSOR in state:
        return True
    keys = set(state)
    if {"head.weight", "tail.weight"} <= keys:  # ours (shipped files before the mdrn_arch tensor)
        return any(k.startswith("upsample.") for k in keys)
    if "head.0.weight" in keys:  # official: MDSR pre_process / EDSR tail.0 upsampler
        return "pre_process.0.0.body.0.weight" in keys or "tail.0.0.weight" in keys
    return False


def _detect(state: Mapping[str, Any]) -> bool:
    """True for a state dict whose architecture mdrn identifies exactly (never raises)."""
    if not _looks_like_mdrn(state):
        return False
    if SPEC_TENSOR in state or "head.0.weight" in state:
        try:
            spec, _ = identify_state_dict(state)
        except (CheckpointError, ValueError, KeyError, AttributeError, TypeError):
            return False
        return spec["arch"] in ARCHS
    return True  # our layout without the tensor: ``load`` says whether it is a shipped model, or what to do


class MdrnArch(spandrel.Architecture):
    """spandrel ``Architecture`` of mdrn's MDRN/MDSR and EDSR state dicts (ours and the official ones)."""

    def __init__(self) -> None:
        super().__init__(id="mdrn", name="MDRN/MDSR/EDSR (mdrn)", detect=_detect)

    def load(self, state_dict: Mapping[str, Any]) -> Any:
        """The ``ImageModelDescriptor`` of the network in ``state_dict``, at its smallest scale."""
        spec, state = identify_state_dict(state_dict)
        if spec["arch"] not in ARCHS:
            raise CheckpointError(f"<state_dict>: a {spec['arch']} network; spandrel reads mdrn's {ARCHS}")
        net = build_model(spec)
        return _descriptor(net, state, min(net.scales))


#: The one instance registered with spandrel's ``MAIN_REGISTRY``.
ARCHITECTURE = MdrnArch()


def _descriptor(net: SRNet, state: Mapping[str, Any], scale: int) -> Any:
    """spandrel's descriptor of ``net`` with weights ``state``, called at ``scale``."""
    if scale not in net.scales:
        raise ValueError(f"{type(net).__name__} has no x{scale} branch: it serves scales {list(net.scales)}")
    args = net.spec_args
    tags = [type(net).__name__, f"{args['n_resblocks']}nb", f"{args['n_feats']}nf"]
    tags += [f"x{scale} of " + "/".join(f"x{s}" for s in net.scales)] if len(net.scales) > 1 else []
    tags += ["bicubic_skip"] if args.get("bicubic_skip") else []
    tags += [f"{rule_of(net).mode} window"] if rule_of(net).active else []
    return spandrel.ImageModelDescriptor(
        net,
        dict(state),
        architecture=ARCHITECTURE,
        purpose="SR",
        tags=tags,
        supports_half=False,
        supports_bfloat16=True,
        scale=int(scale),
        input_channels=net.n_colors,
        output_channels=net.n_colors,
        size_requirements=spandrel.SizeRequirements(minimum=1),
        tiling=spandrel.ModelTiling.SUPPORTED,
        call_fn=lambda model, image: _call(model, image, int(scale)),
    )


def _call(net: SRNet, image: torch.Tensor, scale: int) -> torch.Tensor:
    """The network on what spandrel passes, through its input window (fitted to that image: where the host
    cuts an image into tiles, to each tile) when it was trained with one."""
    rule = rule_of(net)
    if not rule.active:
        return net(image, scale)
    win = rule.fit(image)
    return win.invert_(net(win.apply(image), scale))


def descriptor(net_or_path: SRNet | str | os.PathLike[str], scale: int | None = None) -> Any:
    """spandrel's ``ImageModelDescriptor`` of an mdrn MDRN/EDSR network, file or name (``"mdrn_small"``)
    at ``scale`` (default: its smallest)."""
    net = net_or_path if isinstance(net_or_path, SRNet) else load_model(net_or_path)
    if not isinstance(net, (MDRN, EDSR)):
        raise ValueError(f"spandrel reads mdrn's {ARCHS} networks, not {type(net).__name__}")
    return _descriptor(net, net.state_dict(), min(net.scales) if scale is None else int(scale)).eval()


def single_scale(net: SRNet, scale: int) -> SRNet:
    """The MDRN holding only ``net``'s branch of ``scale`` (the same output at that scale); EDSR as is."""
    if scale not in net.scales:
        raise ValueError(f"{type(net).__name__} has no x{scale} branch: it serves scales {list(net.scales)}")
    if len(net.scales) == 1:
        return net
    spec = model_spec(net)
    one = build_model({**spec, "args": {**spec["args"], "scales": [int(scale)]}})  # input window kept
    state = net.state_dict()
    one.load_state_dict({k: state[k] for k in one.state_dict()}, strict=True)
    return one.eval()


spandrel.MAIN_REGISTRY.add(spandrel.ArchSupport.from_architecture(ARCHITECTURE), ignore_duplicates=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mdrn.spandrel export SRC DST [--scale S] [--overwrite]``."""
    parser = argparse.ArgumentParser(
        prog="python -m mdrn.spandrel",
        description="Write an mdrn MDRN/EDSR model as a file spandrel (chaiNNer, ComfyUI) loads.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="write SRC (file or name, e.g. mdrn_small) for spandrel")
    p.add_argument("src", help="an mdrn weights file or name (mdrn_small, mdsr, ...)")
    p.add_argument("dst", help="output .safetensors file")
    p.add_argument(
        "--scale", type=int, default=None, help="keep only this scale (default: all; spandrel: smallest)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    args = parser.parse_args(argv)
    try:
        net = load_model(args.src)
        if not isinstance(net, (MDRN, EDSR)):
            raise ValueError(f"{args.src}: a {type(net).__name__}; spandrel reads mdrn's {ARCHS} networks")
        if args.scale is not None:
            net = single_scale(net, args.scale)
        out = save_model(net, args.dst, overwrite=args.overwrite)
        check = spandrel.ModelLoader().load_from_file(str(out))
    except (CheckpointError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    scales = "/".join(f"x{s}" for s in net.scales)
    name = type(net).__name__
    print(
        f"wrote {Path(out)}: {name} {scales}; spandrel loads it at x{check.scale} ({', '.join(check.tags)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
