"""The public lightweight models' own weight files: where they are, and their keys in mdrn's layout.

``PEER_WEIGHTS`` names every file (``carn_m``, ``imdn_x2`` ... ``rlfn_s_x4``): its repository, the commit
it is pinned to, its path there, its sha256 and its licence; ``PeerWeights.url`` is the raw GitHub
address at that commit. :func:`peer_layout` tells an authors' state dict by its keys, and
:func:`convert_peer` returns the mdrn model spec (architecture arguments read from the shapes) and the
state dict in mdrn's keys. Checking that every tensor is there and no other (strict loading), the
download and the ``CheckpointError`` are :mod:`mdrn.weights`'s (``load_model("carn_m")``).

Key layouts (``module.`` prefixes of ``nn.DataParallel`` are removed first):

* CARN-M (nmhkahn/CARN-pytorch): ``entry``, ``b<i>.b1.body.<j>`` (the shared unit of block i),
  ``b<i>.c<k>.body.0``, ``c<k>.body.0``, ``upsample.up<s>.body.<j>``, ``exit``, and the fixed mean shifts
  ``sub_mean/add_mean.shifter`` (checked to be the DIV2K mean on [0, 1], then dropped: mdrn's are buffers);
* IMDN (Zheng222/IMDN): ``fea_conv``, ``IMDB<i>.c1..c5``, ``IMDB<i>.cca.conv_du.<0|2>``, ``c.0``,
  ``LR_conv``, ``upsampler.0``;
* RLFN / RLFN-S (bytedance/RLFN): ``conv_1``, ``block_<i>.c<1|2|3>_r``, ``block_<i>.c5``,
  ``block_<i>.esa.conv1|conv_f|conv2|conv3|conv4``, ``conv_2``, ``upsampler.0``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from mdrn.models.blocks import DIV2K_RGB_MEAN

__all__ = ["PEER_WEIGHTS", "PeerWeights", "convert_peer", "peer_layout"]


@dataclass(frozen=True)
class PeerWeights:
    """One authors' weight file: model, repository @ commit, path, sha256, licence."""

    model: str
    repo: str
    commit: str
    path: str
    sha256: str
    licence: str

    @property
    def url(self) -> str:
        """The raw GitHub address of the file at the pinned commit."""
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"

    @property
    def filename(self) -> str:
        """The file's name in its repository."""
        return self.path.rsplit("/", 1)[-1]


_CARN = ("nmhkahn/CARN-pytorch", "40d3514f81cccd680d846cd5ab07af35f2c8e0e2")
_IMDN = ("Zheng222/IMDN", "8f158e6a5ac9db6e5857d9159fd4a6c4214da574")
_RLFN = ("bytedance/RLFN", "bccfde91bf8b2de80789ec033a029e6f2a932330")
_NO_LICENCE = "no licence stated: not redistributable"

#: name -> the authors' file (``mdrn.weights.load_model(name)`` downloads it, checks the sha256, converts it)
PEER_WEIGHTS: dict[str, PeerWeights] = {
    "carn_m": PeerWeights(
        "CARN-M", *_CARN, "checkpoint/carn_m.pth",
        "d48a759a84509351facb6b7c6d5bd6edec98b98519b8c464ee4ab44d2ba964ff", "MIT",
    ),
    "imdn_x2": PeerWeights(
        "IMDN", *_IMDN, "checkpoints/IMDN_x2.pth",
        "740b39653592bd3f49955a21cd9e16f2d37f2c413368cc09327601b8fbe42ce1", _NO_LICENCE,
    ),
    "imdn_x3": PeerWeights(
        "IMDN", *_IMDN, "checkpoints/IMDN_x3.pth",
        "11b1716a19bc16e5e353e1db798d476169338e631eb170c82d765559888cb028", _NO_LICENCE,
    ),
    "imdn_x4": PeerWeights(
        "IMDN", *_IMDN, "checkpoints/IMDN_x4.pth",
        "e660c38221147217a136debeb99eb304d62d9c0f73ac421ed66281b619719714", _NO_LICENCE,
    ),
    "rlfn_x2": PeerWeights(
        "RLFN", *_RLFN, "model_zoo/rlfn_x2.pth",
        "eafe5d5feeb122022453595c06d79160facdc157ae88deb02a44c50f5eba2d41", "Apache-2.0",
    ),
    "rlfn_x4": PeerWeights(
        "RLFN", *_RLFN, "model_zoo/rlfn_x4.pth",
        "8c7edb57dfc89048bafba29d591d4c27d4099964b4a9e22df23d6dc257a637c0", "Apache-2.0",
    ),
    "rlfn_s_x2": PeerWeights(
        "RLFN-S", *_RLFN, "model_zoo/rlfn_s_x2.pth",
        "f5175f499f869c1b884c2552a1bcd6abd07ab352e3d8c8c9abe31b1deb60fe45", "Apache-2.0",
    ),
    "rlfn_s_x4": PeerWeights(
        "RLFN-S", *_RLFN, "model_zoo/rlfn_s_x4.pth",
        "f769c5a88433786b2db0c2b24da6ca6c92a24c62344b9354a390f8a74388e89d", "Apache-2.0",
    ),
}  # fmt: skip

#: layout -> keys that identify it (after removing ``module.``)
_MARKERS: dict[str, tuple[str, ...]] = {
    "CARN-M": ("entry.weight", "b1.b1.body.0.weight", "upsample.up2.body.0.weight"),
    "IMDN": ("fea_conv.weight", "IMDB1.c1.weight", "upsampler.0.weight"),
    "RLFN": ("conv_1.weight", "block_1.c1_r.weight", "block_1.esa.conv1.weight", "upsampler.0.weight"),
}

#: layout -> (authors' key pattern, mdrn key replacement), tried in order
_RENAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "CARN-M": (
        (r"^entry\.", "head."),
        (r"^b(\d+)\.b1\.body\.(\d+)\.", lambda m: f"blocks.{int(m[1]) - 1}.unit.body.{m[2]}."),
        (r"^b(\d+)\.c(\d+)\.body\.0\.", lambda m: f"blocks.{int(m[1]) - 1}.fuse.{int(m[2]) - 1}.0."),
        (r"^c(\d+)\.body\.0\.", lambda m: f"fuse.{int(m[1]) - 1}.0."),
        (r"^upsample\.up(\d+)\.body\.(\d+)\.", lambda m: f"upsample.x{m[1]}.{m[2]}."),
        (r"^exit\.", "tail."),
    ),
    "IMDN": (
        (r"^fea_conv\.", "head."),
        (r"^IMDB(\d+)\.c([1-4])\.", lambda m: f"blocks.{int(m[1]) - 1}.convs.{int(m[2]) - 1}."),
        (r"^IMDB(\d+)\.c5\.", lambda m: f"blocks.{int(m[1]) - 1}.fuse."),
        (r"^IMDB(\d+)\.cca\.conv_du\.([02])\.", lambda m: f"blocks.{int(m[1]) - 1}.attention.body.{m[2]}."),
        (r"^c\.0\.", "fuse."),
        (r"^LR_conv\.", "body_tail."),
        (r"^upsampler\.0\.", "upsample.0."),
    ),
    "RLFN": (
        (r"^conv_1\.", "head."),
        (r"^block_(\d+)\.c([123])_r\.", lambda m: f"blocks.{int(m[1]) - 1}.convs.{int(m[2]) - 1}."),
        (r"^block_(\d+)\.c5\.", lambda m: f"blocks.{int(m[1]) - 1}.fuse."),
        (r"^block_(\d+)\.esa\.(conv1|conv_f|conv2|conv3|conv4)\.",
         lambda m: f"blocks.{int(m[1]) - 1}.attention."
         + {"conv1": "reduce", "conv_f": "skip", "conv2": "down", "conv3": "mid", "conv4": "expand"}[m[2]]
         + "."),
        (r"^conv_2\.", "body_tail."),
        (r"^upsampler\.0\.", "upsample.0."),
    ),
}  # fmt: skip


def _strip_module(state: Mapping[str, Any]) -> dict[str, Any]:
    """Remove the ``module.`` prefix ``nn.DataParallel`` adds (when every key has it)."""
    state = dict(state)
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def peer_layout(state: Mapping[str, Any]) -> str | None:
    """The authors' layout of a state dict (``"CARN-M"``, ``"IMDN"``, ``"RLFN"``), or None."""
    keys = _strip_module(state)
    for layout, markers in _MARKERS.items():
        if all(k in keys for k in markers):
            return layout
    return None


def _shape(state: Mapping[str, Any], key: str, ndim: int = 4) -> tuple[int, ...]:
    """The shape of ``state[key]``; ValueError if it is missing or of another rank."""
    if key not in state or not hasattr(state[key], "shape"):
        raise ValueError(f"missing tensor '{key}'")
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise ValueError(f"'{key}' has shape {shape}, expected {ndim} dimensions")
    return shape


def _count(state: Mapping[str, Any], pattern: str) -> int:
    """Number of distinct indices ``pattern`` (one group) captures among the keys, checked to be 1..n."""
    found = sorted({int(m[1]) for k in state if (m := re.match(pattern, k))})
    if found != list(range(1, len(found) + 1)):
        raise ValueError(f"blocks numbered {found}, expected 1..{len(found)}")
    return len(found)


def _pixel_shuffle_scale(out_channels: int, key: str) -> int:
    """The scale s of a final conv with ``3 s^2`` output channels."""
    scale = math.isqrt(out_channels // 3)
    if out_channels % 3 or scale * scale * 3 != out_channels or scale < 2:
        raise ValueError(f"'{key}' has {out_channels} output channels, not 3 s^2 for a scale s >= 2")
    return scale


def _check_mean_shifts(state: dict[str, Any], source: str) -> None:
    """CARN's fixed mean shifts must be identity convs with bias -/+ the DIV2K mean (on [0, 1]); drop them."""
    mean = torch.tensor(DIV2K_RGB_MEAN, dtype=torch.float64)
    for name, sign in (("sub_mean", -1.0), ("add_mean", 1.0)):
        w, b = state.pop(f"{name}.shifter.weight", None), state.pop(f"{name}.shifter.bias", None)
        if w is None or b is None:
            raise ValueError(f"{source}: missing the fixed mean shift '{name}.shifter' of CARN")
        if tuple(w.shape) != (3, 3, 1, 1) or tuple(b.shape) != (3,):
            raise ValueError(f"{source}: '{name}.shifter' has shapes {tuple(w.shape)} / {tuple(b.shape)}")
        if w.device.type == "meta":
            continue
        if not (
            torch.allclose(w.double().view(3, 3), torch.eye(3, dtype=torch.float64), atol=1e-6)
            and torch.allclose(b.double(), sign * mean, atol=1e-4)
        ):
            raise ValueError(
                f"{source}: '{name}.shifter' is not the mean shift mdrn implements (identity, bias "
                f"{sign:+.0f} x {DIV2K_RGB_MEAN}); got bias {b.tolist()}"
            )


def _spec(layout: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """The mdrn model spec of an authors' state dict (``module.`` removed), read from its shapes."""
    if layout == "CARN-M":
        n_feats, _, _, _ = _shape(state, "entry.weight")
        group = n_feats // _shape(state, "b1.b1.body.0.weight")[1]
        scales = sorted({int(m[1]) for k in state if (m := re.match(r"^upsample\.up(\d+)\.", k))})
        n_blocks = _count(state, r"^b(\d+)\.b1\.body\.0\.weight$")
        return {"arch": "CARNM", "args": {"n_feats": n_feats, "group": group, "n_blocks": n_blocks,
                                          "scales": scales}}  # fmt: skip
    out = _shape(state, "upsampler.0.weight")[0]
    scale = _pixel_shuffle_scale(out, "upsampler.0.weight")
    if layout == "IMDN":
        n_feats = _shape(state, "fea_conv.weight")[0]
        n_blocks = _count(state, r"^IMDB(\d+)\.c1\.weight$")
        return {"arch": "IMDN", "args": {"n_feats": n_feats, "n_blocks": n_blocks, "scale": scale}}
    n_feats = _shape(state, "conv_1.weight")[0]
    n_blocks = _count(state, r"^block_(\d+)\.c1_r\.weight$")
    esa = _shape(state, "block_1.esa.conv1.weight")[0]
    args = {"n_feats": n_feats, "n_blocks": n_blocks, "esa_channels": esa, "scale": scale, "rgb_range": 255.0}
    return {"arch": "RLFN", "args": args}


def convert_peer(
    state: Mapping[str, Any], source: str = "<state_dict>"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (mdrn model spec, state dict in mdrn's keys) of an authors' CARN-M, IMDN or RLFN state dict.

    ``ValueError`` naming ``source`` for a state dict of no known layout, a key that fits none of its
    layout's names, or CARN mean shifts other than the DIV2K mean. Whether every tensor of the network is
    there, with its shape, is checked by the caller (``mdrn.weights``).
    """
    layout = peer_layout(state)
    if layout is None:
        raise ValueError(f"{source}: not a CARN-M, IMDN or RLFN state dict (first keys {list(state)[:5]})")
    state = _strip_module(state)
    try:
        spec = _spec(layout, state)
    except ValueError as exc:
        raise ValueError(f"{source}: {layout} layout: {exc}") from exc
    if layout == "CARN-M":
        _check_mean_shifts(state, source)
    out: dict[str, Any] = {}
    for key, value in state.items():
        for pattern, repl in _RENAMES[layout]:
            new, n = re.subn(pattern, repl, key, count=1)
            if n:
                out[new] = value
                break
        else:
            shape = tuple(getattr(value, "shape", ()))
            raise ValueError(f"{source}: key '{key}' (shape {shape}) fits no known {layout} layout")
    return spec, out
