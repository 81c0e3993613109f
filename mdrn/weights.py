"""Checkpoints: load any supported file into a ready network, save ours, transfer x2 weights to x3/x4.

Formats :func:`load_model` reads (the user names nothing else):

* ours: ``.safetensors`` whose metadata ``mdrn_arch`` holds the JSON of :func:`mdrn.models.model_spec`;
* Lightning ``.ckpt`` written by ``SRModule``: ``state_dict`` keys prefixed ``net.``, top-level ``mdrn_arch``;
* official EDSR-PyTorch state dicts of MDSR, MDSR-baseline, EDSR and EDSR-baseline, the architecture
  detected from keys and shapes (blocks, filters, colours, scales from the upsampler shapes). The residual
  scaling cannot be read from weights: EDSR with 256 filters gets 0.1, everything else 1.0, as in the
  official configurations;
* ``VDSR_Official.mat`` (MATLAB v5, ``model.weight{1..20}`` [3, 3, Cin, Cout], ``model.bias{1..20}``);
* a name: ``mdsr``, ``mdsr_baseline``, ``edsr_baseline_x2/x3/x4``, ``edsr_x2/x3/x4``: the official file is
  downloaded (sha256 prefix of its name checked, torch.hub convention), converted to our format in the
  cache folder (``$MDRN_CACHE`` or ``~/.cache/mdrn``) and read from there afterwards;
* the public lightweight models' own files (CARN-M, IMDN, RLFN, RLFN-S; :mod:`mdrn.models.peers`), detected
  from their keys (``module.`` prefixes removed), given as a path or by name (``carn_m``, ``imdn_x2/x3/x4``,
  ``rlfn_x2/x4``, ``rlfn_s_x2/x4``: downloaded from the authors' repository at a pinned commit, its full
  sha256 checked, kept in ``<cache>/peers/``);
* a shipped name (``SHIPPED_MODELS``; ``DEFAULT_MODEL`` = ``mdrn_small``): a model trained by this
  project and stored inside the package (``mdrn/pretrained/<name>.safetensors``, its model card
  ``<name>.md`` beside it); no network needed;
* any other state dict (``.pth``, ``.pt``, ``.ckpt``, ``.safetensors``) that spandrel reads (SwinIR, HAT,
  SPAN, SAFMN, OmniSR, RCAN, Real-ESRGAN, ... with the optional ``mdrn[spandrel]``), as a
  :class:`mdrn.models.spandrel_net.SpandrelNet` (its scale and colours read from the file).

Every load is strict: a key or shape that fits no known layout raises :class:`CheckpointError` naming
the key/shape and the file (and, for a file neither mdrn nor spandrel knows, the architectures spandrel
reads). The safetensors files :func:`save_model` writes carry the architecture twice: in the metadata
``mdrn_arch`` and as a tensor ``mdrn_arch`` (its UTF-8 JSON as uint8), because tools that pass only the
tensors on (spandrel, ComfyUI) lose the metadata; :func:`identify_state_dict` reads a state dict's
architecture from its tensors alone. CLI: ``python -m mdrn.weights convert SRC DST`` and ``... info FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mdrn.io.download import ChecksumError, NetworkUnavailableError, download_file
from mdrn.io.images import atomic_write
from mdrn.models import build_model, model_spec
from mdrn.models.blocks import DIV2K_RGB_MEAN
from mdrn.models.mdrn import branch_key
from mdrn.models.peers import PEER_WEIGHTS, convert_peer, peer_layout
from mdrn.models.spandrel_net import (
    INSTALL_HINT,
    ForeignModelError,
    SpandrelNet,
    SpandrelUnavailableError,
    read_spandrel,
)
from mdrn.models.transfer import TransferReport, init_from_pretrained

__all__ = [
    "DEFAULT_MODEL",
    "OFFICIAL_URLS",
    "SHIPPED_MODELS",
    "CheckpointError",
    "TransferReport",
    "cache_dir",
    "SPEC_TENSOR",
    "convert_official",
    "identify_state_dict",
    "init_from_pretrained",
    "load_model",
    "main",
    "read_checkpoint",
    "save_model",
    "shipped_path",
]

#: Official EDSR-PyTorch checkpoints (src/model/edsr.py, mdsr.py); the hex part starts the sha256.
OFFICIAL_URLS: dict[str, str] = {
    "edsr_baseline_x2": "https://cv.snu.ac.kr/research/EDSR/models/edsr_baseline_x2-1bc95232.pt",
    "edsr_baseline_x3": "https://cv.snu.ac.kr/research/EDSR/models/edsr_baseline_x3-abf2a44e.pt",
    "edsr_baseline_x4": "https://cv.snu.ac.kr/research/EDSR/models/edsr_baseline_x4-6b446fab.pt",
    "edsr_x2": "https://cv.snu.ac.kr/research/EDSR/models/edsr_x2-0edfb8a3.pt",
    "edsr_x3": "https://cv.snu.ac.kr/research/EDSR/models/edsr_x3-ea3ef2c6.pt",
    "edsr_x4": "https://cv.snu.ac.kr/research/EDSR/models/edsr_x4-4f62e9ef.pt",
    "mdsr_baseline": "https://cv.snu.ac.kr/research/EDSR/models/mdsr_baseline-a00cab12.pt",
    "mdsr": "https://cv.snu.ac.kr/research/EDSR/models/mdsr-4a78bedf.pt",
}
#: Models trained by this project and shipped inside the package (name -> what it is).
SHIPPED_MODELS: dict[str, str] = {
    "mdrn_small": "multi-scale MDRN with the bicubic low-frequency path, x2/x3/x4, RGB and gray, 8-16 bit, "
    "each image (or series) fed through its own percentile window (v2)",
    "mdrn_small_v1": "the first mdrn_small (v1): the same network fed raw values, plain sub-pixel "
    "upsamplers, kept for comparison",
}
#: The model the command line and the app use when none is chosen.
DEFAULT_MODEL = "mdrn_small"
#: Where the shipped models live (package data).
PRETRAINED_DIR = Path(__file__).resolve().with_name("pretrained")
#: The official networks' scale order: MDSR index i -> scale (2, 3, 4)[i].
OFFICIAL_MDSR_SCALES: tuple[int, ...] = (2, 3, 4)
#: The official networks work on 0..255 (``rgb_range`` 255).
OFFICIAL_RGB_RANGE = 255.0

#: The tensor of our files that holds ``model_spec(net)`` as UTF-8 JSON (uint8), beside the metadata.
SPEC_TENSOR = "mdrn_arch"
#: The largest ``SPEC_TENSOR`` read (its JSON is a few hundred bytes).
_SPEC_MAX_BYTES = 1 << 20

_HUB_HASH = re.compile(r"-([0-9a-fA-F]{8,64})\.[A-Za-z0-9]+$")


class CheckpointError(ValueError):
    """A checkpoint of an unknown or other architecture, or a corrupt one (message: file and problem)."""


class _NotOurs(CheckpointError):
    """A readable state dict in none of mdrn's layouts (``state``: its tensors, for spandrel to try)."""

    def __init__(self, source: str, problem: str, state: Mapping[str, Any]) -> None:
        super().__init__(f"{source}: {problem}")
        self.source, self.problem, self.state = source, problem, state


def _spec_tensor(spec: dict) -> torch.Tensor:
    """``spec`` as the uint8 tensor ``SPEC_TENSOR`` (UTF-8 JSON, sorted keys)."""
    data = json.dumps(spec, sort_keys=True).encode()
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def _spec_from_tensor(value: Any, source: str) -> dict:
    """The model spec held by a ``SPEC_TENSOR`` tensor."""
    size = getattr(value, "numel", lambda: 0)()
    if size > _SPEC_MAX_BYTES:  # a spec is a few hundred bytes; decoding a huge one takes ~36x its size
        raise CheckpointError(f"{source}: tensor '{SPEC_TENSOR}' ({size:,} values) is not an mdrn model spec")
    try:
        spec = json.loads(bytes(value.to(torch.uint8).reshape(-1).tolist()).decode())
    except (AttributeError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: tensor '{SPEC_TENSOR}' is not an mdrn model spec ({exc})") from exc
    if not isinstance(spec, dict) or "arch" not in spec:
        raise CheckpointError(f"{source}: tensor '{SPEC_TENSOR}' holds {spec!r}, not an mdrn model spec")
    return spec


# ---------------------------------------------------------------------------------------------------- #
# our format


def save_model(net: nn.Module, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``net`` as safetensors with metadata ``mdrn_arch`` = JSON ``model_spec(net)`` (atomic)."""
    from safetensors.torch import save_file

    spec = json.dumps(model_spec(net), sort_keys=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    tensors[SPEC_TENSOR] = _spec_tensor(model_spec(net))  # for tools that drop the metadata (spandrel)
    return atomic_write(
        path, lambda tmp: save_file(tensors, str(tmp), metadata={"mdrn_arch": spec}), overwrite=overwrite
    )


def _read_safetensors(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Return (spec, state_dict) of one of our safetensors files."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    held = _spec_from_tensor(state.pop(SPEC_TENSOR), str(path)) if SPEC_TENSOR in state else None
    if "mdrn_arch" not in meta:
        if held is not None:
            return held, state
        problem = "safetensors file without 'mdrn_arch' metadata (not written by mdrn.weights.save_model)"
        raise _NotOurs(str(path), problem, state)
    try:
        spec = json.loads(meta["mdrn_arch"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: metadata 'mdrn_arch' is not valid JSON ({exc})") from exc
    if held is not None and held != spec:
        raise CheckpointError(f"{path}: metadata 'mdrn_arch' {spec} and tensor '{SPEC_TENSOR}' {held} differ")
    return spec, state


# ---------------------------------------------------------------------------------------------------- #
# official EDSR-PyTorch state dicts


def _shape(t: Any) -> tuple[int, ...]:
    """Shape of a tensor-like value as a tuple."""
    return tuple(t.shape)


def _check_mean_shift(state: Mapping[str, Any], source: str) -> None:
    """Check the official fixed mean-shift convs (if present) are the ones mdrn hard-codes (rgb_range 255)."""
    mean = torch.tensor(DIV2K_RGB_MEAN, dtype=torch.float64) * OFFICIAL_RGB_RANGE
    for name, sign in (("sub_mean", -1.0), ("add_mean", 1.0)):
        w, b = state.get(f"{name}.weight"), state.get(f"{name}.bias")
        if w is None and b is None:
            continue
        if w is None or b is None or _shape(w) != (3, 3, 1, 1) or _shape(b) != (3,):
            raise CheckpointError(
                f"{source}: {name} has shapes {None if w is None else _shape(w)} / "
                f"{None if b is None else _shape(b)}, expected (3, 3, 1, 1) / (3,)"
            )
        if w.device.type == "meta":
            continue
        ok_w = torch.allclose(w.double().view(3, 3), torch.eye(3, dtype=torch.float64), atol=1e-6)
        ok_b = torch.allclose(b.double(), sign * mean, atol=1e-3)
        if not (ok_w and ok_b):
            raise CheckpointError(
                f"{source}: {name} is weight {w.view(3, 3).tolist()} bias {b.tolist()}; mdrn supports only "
                f"the official mean shift (identity, bias {sign:+.0f} x 255 x DIV2K mean {DIV2K_RGB_MEAN}, "
                "rgb_range 255, rgb_std 1)"
            )


def _count_indexed(keys: Sequence[str], pattern: str) -> list[int]:
    """Return the sorted distinct integers captured by ``pattern`` (one group) over ``keys``."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def _upsampler_scale(state: Mapping[str, Any], prefix: str, n_feats: int, source: str) -> int:
    """Return the scale of an official upsampler from its conv shapes (4F -> x2, 9F -> x3 per stage)."""
    stages = _count_indexed(list(state), re.escape(prefix) + r"(\d+)\.weight$")
    if not stages or stages != list(range(0, 2 * len(stages), 2)):
        raise CheckpointError(f"{source}: upsampler '{prefix}' has conv indices {stages}, expected 0, 2, ...")
    scale = 1
    for i in stages:
        out_ch = _shape(state[f"{prefix}{i}.weight"])[0]
        ratio = {4 * n_feats: 2, 9 * n_feats: 3}.get(out_ch)
        if ratio is None:
            raise CheckpointError(
                f"{source}: {prefix}{i}.weight has shape {_shape(state[f'{prefix}{i}.weight'])}: "
                f"{out_ch} output channels is neither 4 x {n_feats} (x2) nor 9 x {n_feats} (x3)"
            )
        scale *= ratio
    return scale


def convert_official(state: Mapping[str, Any], source: str = "<state_dict>") -> tuple[dict, dict[str, Any]]:
    """Detect the official MDSR/EDSR architecture of ``state`` and return (spec, state_dict in our keys).

    Works on real or meta tensors. Raises :class:`CheckpointError` naming ``source`` and the first key
    or shape that fits no known layout; every key must be used and every module tensor provided.
    """
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    if "head.0.weight" not in state:
        raise CheckpointError(
            f"{source}: not an EDSR-PyTorch MDSR/EDSR state dict (no 'head.0.weight'; first keys "
            f"{list(state)[:5]})"
        )
    head = _shape(state["head.0.weight"])
    if len(head) != 4 or head[2:] != (3, 3):
        raise CheckpointError(f"{source}: head.0.weight has shape {head}, expected (F, C, 3, 3)")
    n_feats, n_colors = head[0], head[1]
    n_resblocks = len(_count_indexed(list(state), r"body\.(\d+)\.body\.0\.weight$"))
    _check_mean_shift(state, source)
    rename: list[tuple[str, str]] = [(r"^head\.0\.", "head."), (r"^body\.", "body.")]
    if "pre_process.0.0.body.0.weight" in state:
        branches = _count_indexed(list(state), r"upsample\.(\d+)\.")
        if len(branches) > len(OFFICIAL_MDSR_SCALES) or branches != list(range(len(branches))):
            raise CheckpointError(f"{source}: MDSR upsample branches {branches}, expected 0..2")
        scales = [_upsampler_scale(state, f"upsample.{i}.", n_feats, source) for i in branches]
        for i, s in enumerate(scales):
            rename.append((rf"^pre_process\.{i}\.", f"pre_process.{branch_key(s)}."))
            rename.append((rf"^upsample\.{i}\.", f"upsample.{branch_key(s)}."))
        rename.append((r"^tail\.0\.", "tail."))
        spec = {
            "arch": "MDRN",
            "args": dict(
                n_resblocks=n_resblocks, n_feats=n_feats, scales=scales, res_scale=1.0, n_colors=n_colors
            ),
        }
    elif "tail.0.0.weight" in state:
        scale = _upsampler_scale(state, "tail.0.", n_feats, source)
        rename += [(r"^tail\.0\.", "upsample."), (r"^tail\.1\.", "tail.")]
        res_scale = 0.1 if n_feats == 256 else 1.0  # official configs: only the 256-filter EDSR uses 0.1
        spec = {
            "arch": "EDSR",
            "args": dict(
                n_resblocks=n_resblocks, n_feats=n_feats, res_scale=res_scale, scale=scale, n_colors=n_colors
            ),
        }
    else:
        raise CheckpointError(
            f"{source}: has 'head.0.weight' but neither MDSR 'pre_process.0.0.body.0.weight' nor EDSR "
            "'tail.0.0.weight'; unknown EDSR-PyTorch model"
        )
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith(("sub_mean.", "add_mean.")):
            continue
        for pattern, repl in rename:
            if re.match(pattern, key):
                out[re.sub(pattern, repl, key, count=1)] = value
                break
        else:
            raise CheckpointError(
                f"{source}: key '{key}' (shape {_shape(value)}) fits no known {spec['arch']} layout"
            )
    _match_module(spec, out, source)
    return spec, out


def _match_module(spec: dict, state: Mapping[str, Any], source: str) -> None:
    """Check ``state`` provides exactly the tensors (names and shapes) of ``build_model(spec)``."""
    args = spec.get("args") if isinstance(spec, dict) else None
    if isinstance(args, dict):  # each block and scale branch holds weights: a spec claiming more is refused
        # before anything is built (a file of a few bytes could ask for millions of blocks: hours, all memory)
        counts = {k: args[k] for k in ("n_resblocks", "depth", "n_blocks") if isinstance(args.get(k), int)}
        if spec.get("arch") != "Bicubic" and isinstance(args.get("scales"), list | tuple):
            counts["scales"] = len(args["scales"])
        too_many = {k: n for k, n in counts.items() if n > len(state)}
        if too_many:
            raise CheckpointError(
                f"{source}: architecture {spec.get('arch')} with {too_many} cannot fit the {len(state)} "
                "tensor(s) of this file"
            )
    try:
        with torch.device("meta"):
            ref = build_model(spec).state_dict()
    except ValueError as exc:
        raise CheckpointError(f"{source}: architecture {spec} cannot be built ({exc})") from exc
    for key, value in state.items():
        if key not in ref:
            raise CheckpointError(
                f"{source}: unexpected key '{key}' (shape {_shape(value)}) for {spec['arch']} {spec['args']}"
            )
        if _shape(value) != _shape(ref[key]):
            raise CheckpointError(
                f"{source}: '{key}' has shape {_shape(value)}, {spec['arch']} {spec['args']} expects "
                f"{_shape(ref[key])}"
            )
    missing = [k for k in ref if k not in state]
    if missing:
        raise CheckpointError(
            f"{source}: missing {len(missing)} tensor(s) of {spec['arch']} {spec['args']}, "
            f"e.g. '{missing[0]}' {_shape(ref[missing[0]])}"
        )


# ---------------------------------------------------------------------------------------------------- #
# VDSR official MATLAB weights


def _read_vdsr_mat(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Return (spec, state_dict) of the official VDSR MATLAB weights (``model.weight/bias{1..20}``)."""
    import numpy as np
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
        weights, biases = mat["model"]["weight"][0, 0], mat["model"]["bias"][0, 0]
    except Exception as exc:  # noqa: BLE001 - any parse failure is one clear error
        raise CheckpointError(
            f"{path}: not a VDSR MATLAB file with model.weight / model.bias ({exc})"
        ) from exc
    depth = weights.size
    if depth < 2 or biases.size != depth:
        raise CheckpointError(f"{path}: {depth} weights and {biases.size} biases; expected equal, >= 2")
    state: dict[str, torch.Tensor] = {}
    n_feats = None
    for i in range(depth):
        w = np.asarray(weights.flat[i], dtype=np.float32)
        b = np.asarray(biases.flat[i], dtype=np.float32).reshape(-1)
        if w.ndim == 3:  # MATLAB drops a trailing singleton (Cout = 1 in the last layer)
            w = w[..., None]
        if w.ndim != 4 or w.shape[:2] != (3, 3) or w.shape[3] != b.size:
            raise CheckpointError(f"{path}: model.weight{{{i + 1}}} has shape {w.shape}, bias {b.shape}")
        n_feats = n_feats or w.shape[3]
        state[f"net.{2 * i}.weight"] = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
        state[f"net.{2 * i}.bias"] = torch.from_numpy(b.copy())
    spec = {
        "arch": "VDSR",
        "args": {"depth": depth, "n_feats": int(n_feats), "scales": [2, 3, 4], "n_colors": 3},
    }
    return spec, state


# ---------------------------------------------------------------------------------------------------- #
# dispatch


def _torch_load_tensors(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``, its failures as one line: a file holding Python objects
    besides tensors is refused as such (never the advice to load it with weights_only=False)."""
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on the pickle protocol
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        named = re.search(r"GLOBAL ([\w.]+)", str(exc))
        detail = str(exc).split("WeightsUnpickler error:", 1)[-1].split("Check the documentation")[0]
        detail = f"a pickled {named.group(1)}" if named else " ".join(detail.split()) or type(exc).__name__
        raise CheckpointError(
            f"{path}: holds Python objects besides tensors ({detail}); refused, since loading it could run "
            "code: save its state_dict (tensors only) where it was made"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        first = str(exc).split(". ", 1)[0].strip() or type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch file ({first})") from exc


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict, dict[str, Any]]:
    """Read any supported checkpoint file and return (model spec, state_dict in our keys), checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix.lower() == ".mat" or head.startswith(b"MATLAB"):
        spec, state = _read_vdsr_mat(path)
    elif path.suffix.lower() == ".safetensors":
        try:
            spec, state = _read_safetensors(path)
        except _NotOurs as exc:  # no metadata: the tensors may still say (SPEC_TENSOR, official layout)
            return _identify(path, exc.state, exc.problem)
    else:
        obj = _torch_load_tensors(path)
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict or checkpoint")
        if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
            if "mdrn_arch" not in obj:
                problem = "Lightning checkpoint without 'mdrn_arch' (not written by mdrn's SRModule)"
                raise _NotOurs(str(path), problem, obj)
            spec = dict(obj["mdrn_arch"])
            state = {k[4:]: v for k, v in obj["state_dict"].items() if k.startswith("net.")}
            if not state:
                raise CheckpointError(f"{path}: Lightning checkpoint without 'net.' weights")
        elif peer_layout(obj) is not None:
            try:
                spec, state = convert_peer(obj, source=str(path))
            except ValueError as exc:
                raise CheckpointError(str(exc)) from exc
        else:
            return _identify(path, obj)
    _match_module(spec, state, str(path))
    return spec, state


def _identify(path: Path, state: Mapping[str, Any], problem: str | None = None) -> tuple[dict, dict]:
    """``identify_state_dict`` of a file's state dict, else ``_NotOurs`` (``problem``, else its reason)."""
    try:
        return identify_state_dict(state, str(path))
    except CheckpointError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        keep = problem is not None and not reason.startswith("an mdrn state dict")
        raise _NotOurs(str(path), problem if keep else reason, state) from None


def _shipped_state(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(spec, tensors) of a shipped model's file."""
    return _read_safetensors(shipped_path(name))


def identify_state_dict(
    state: Mapping[str, Any], source: str = "<state_dict>"
) -> tuple[dict, dict[str, Any]]:
    """The architecture of a bare state dict, from its tensors alone: (model spec, state in our keys).

    For tools that hand on only the tensors of a file (spandrel, ComfyUI): a ``SPEC_TENSOR`` tensor (the
    files :func:`save_model` writes), an official EDSR-PyTorch layout (:func:`convert_official`), or the
    tensors of a shipped model (whose file predates ``SPEC_TENSOR``). Another state dict in mdrn's own
    layout cannot be told apart (``bicubic_skip`` changes no tensor): :class:`CheckpointError` says how
    to re-save it; any other state dict: :func:`convert_official`'s :class:`CheckpointError`.
    """
    state = dict(state)
    if SPEC_TENSOR in state:
        spec = _spec_from_tensor(state.pop(SPEC_TENSOR), source)
        _match_module(spec, state, source)
        return spec, state
    if "head.weight" not in state:
        return convert_official(state, source)
    for name in SHIPPED_MODELS:
        spec, shipped = _shipped_state(name)
        if shipped.keys() == state.keys() and all(
            isinstance(state[k], torch.Tensor)
            and state[k].shape == v.shape
            and torch.equal(state[k].cpu(), v)
            for k, v in shipped.items()
        ):
            return spec, state
    raise CheckpointError(
        f"{source}: an mdrn state dict without its architecture (no '{SPEC_TENSOR}' tensor; a file mdrn "
        "wrote before it stored one there keeps it in its metadata: python -m mdrn.weights convert FILE "
        "NEW.safetensors writes both)"
    )


def cache_dir() -> Path:
    """Return the folder for downloaded/converted weights: ``$MDRN_CACHE`` or ``~/.cache/mdrn``."""
    return Path(os.environ.get("MDRN_CACHE") or Path.home() / ".cache" / "mdrn")


def shipped_path(name: str) -> Path:
    """The safetensors file of a shipped model (``SHIPPED_MODELS``); its model card is the .md beside it."""
    if name not in SHIPPED_MODELS:
        raise KeyError(f"{name!r} is not a shipped model ({sorted(SHIPPED_MODELS)})")
    path = PRETRAINED_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: the shipped model {name!r} is missing from this installation")
    return path


def _named_weights(name: str) -> Path:
    """Return our cached safetensors for an official name, downloading and converting it if needed."""
    converted = cache_dir() / f"{name}.safetensors"
    if converted.is_file():
        return converted
    url = OFFICIAL_URLS[name]
    filename = url.rsplit("/", 1)[-1]
    match = _HUB_HASH.search(filename)
    raw = cache_dir() / "official" / filename
    try:
        download_file(url, raw, sha256_prefix=match.group(1) if match else None)
    except NetworkUnavailableError as exc:
        raise NetworkUnavailableError(
            url,
            raw,
            f"{exc.reason}; needed for weights {name!r}; once the file is there, the next call converts it",
        ) from exc
    spec, state = read_checkpoint(raw)
    net = build_model(spec)
    net.load_state_dict(state, strict=True)
    return save_model(net, converted, overwrite=True)


def _peer_weights(name: str) -> Path:
    """Return the authors' file of a peer model (``PEER_WEIGHTS``), downloaded and checked if needed."""
    peer = PEER_WEIGHTS[name]
    raw = cache_dir() / "peers" / f"{name}.pth"
    try:
        return download_file(peer.url, raw, sha256=peer.sha256)
    except NetworkUnavailableError as exc:
        raise NetworkUnavailableError(
            peer.url,
            raw,
            f"{exc.reason}; needed for weights {name!r} ({peer.model}, {peer.repo}; licence: {peer.licence})",
        ) from exc


def load_model(
    path_or_name: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Return the network stored in a file (any supported format) or named (``"mdrn_small"``, ``"mdsr"``,
    ``"carn_m"``...), in eval mode."""
    key = str(path_or_name)
    if not Path(key).exists() and key in SHIPPED_MODELS:
        path = shipped_path(key)
    elif not Path(key).exists() and key in OFFICIAL_URLS:
        path = _named_weights(key)
    elif not Path(key).exists() and key in PEER_WEIGHTS:
        path = _peer_weights(key)
    elif not Path(key).exists():
        raise FileNotFoundError(
            f"{key}: no such checkpoint file, and not a known name "
            f"({sorted(SHIPPED_MODELS) + sorted(OFFICIAL_URLS) + sorted(PEER_WEIGHTS)})"
        )
    else:
        path = Path(key)
    try:
        spec, state = read_checkpoint(path)
    except _NotOurs as exc:
        return _read_foreign(exc).to(map_location).eval()
    net = build_model(spec)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit {spec['arch']} {spec['args']} ({exc})") from exc
    return net.to(map_location).eval()


def _read_foreign(exc: _NotOurs) -> nn.Module:
    """The network spandrel reads from a state dict none of mdrn's readers knows (``exc``: mdrn's reason)."""
    try:
        return read_spandrel(exc.state, exc.source)
    except SpandrelUnavailableError as err:
        why = "is not installed" if "not installed" in str(err) else f"does not import ({err})"
        raise CheckpointError(
            f"{exc}; other architectures (SwinIR, HAT, SPAN, RCAN, ...) load with spandrel, which {why}: "
            f"{INSTALL_HINT}"
        ) from None
    except ForeignModelError as err:
        raise CheckpointError(f"{exc}; {str(err).removeprefix(exc.source + ': ')}") from None


# ---------------------------------------------------------------------------------------------------- #
# command line


def _count_params(net: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mdrn.weights convert SRC DST [--overwrite]`` / ``info FILE``."""
    parser = argparse.ArgumentParser(prog="python -m mdrn.weights", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_conv = sub.add_parser("convert", help="convert any supported checkpoint (or name) to mdrn safetensors")
    p_conv.add_argument("src", help="checkpoint file or official name (mdsr, edsr_baseline_x2, ...)")
    p_conv.add_argument("dst", help="output .safetensors file")
    p_conv.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    p_info = sub.add_parser("info", help="print the architecture and parameter count of a checkpoint")
    p_info.add_argument("file", help="checkpoint file or official name")
    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            net = load_model(args.src)
            if isinstance(net, SpandrelNet):  # its own file is its format
                raise CheckpointError(
                    f"{args.src}: a spandrel {type(net).__name__} model; use the file as it is"
                )
            out = save_model(net, args.dst, overwrite=args.overwrite)
            print(f"wrote {out}: {json.dumps(model_spec(net))}, {_count_params(net):,} parameters")
        else:
            net = load_model(args.file)
            if isinstance(net, SpandrelNet):
                spec = {"arch": f"{type(net).__name__} (spandrel)", "args": {"scales": list(net.scales),
                        "n_colors": net.n_colors, "tags": net.tags}}  # fmt: skip
            else:
                spec = model_spec(net)
            print(
                f"arch: {spec['arch']}\nargs: {json.dumps(spec['args'])}\nparameters: {_count_params(net):,}"
            )
    except (CheckpointError, OSError, NetworkUnavailableError, ChecksumError) as exc:  # one line each
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
