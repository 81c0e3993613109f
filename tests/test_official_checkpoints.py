"""Official EDSR-PyTorch checkpoints: detected architecture, key layouts, outputs vs the official model."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import script, shared_path

from mdrn.models import EDSR, MDRN, build_model, model_spec
from mdrn.weights import CheckpointError, convert_official, load_model, main

OFFICIAL = [
    "mdsr",
    "mdsr_baseline",
    "edsr_baseline_x2",
    "edsr_baseline_x3",
    "edsr_baseline_x4",
    "edsr_x2",
    "edsr_x3",
    "edsr_x4",
]
WITH_WEIGHTS = ["mdsr_baseline", "edsr_baseline_x2"]


def ref(*parts: str):
    return shared_path("reference", "edsr_pytorch", *parts)


@pytest.mark.parametrize("name", OFFICIAL)
def test_key_layout_maps_onto_our_modules(name):
    """Every official key of <name>.json is consumed and lands on a tensor of the same shape."""
    shapes = json.loads(ref(f"{name}.json").read_text())
    config = json.loads(ref("summary.json").read_text())[name]
    state = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    spec, ours = convert_official(state, source=name)
    args = spec["args"]
    assert spec["arch"] == ("MDRN" if name.startswith("mdsr") else "EDSR")
    assert args["n_resblocks"] == config["n_resblocks"] and args["n_feats"] == config["n_feats"]
    assert args["res_scale"] == config["res_scale"]
    assert (args["scales"] if spec["arch"] == "MDRN" else [args["scale"]]) == config["scale"]
    with torch.device("meta"):
        net = build_model(spec)
    target = net.state_dict()
    assert set(ours) == set(target)
    assert all(tuple(ours[k].shape) == tuple(target[k].shape) for k in target)
    mean_keys = {k for k in shapes if k.startswith(("sub_mean.", "add_mean."))}
    assert len(ours) == len(shapes) - len(mean_keys) and len(mean_keys) == 4
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == config["params_trainable"]


@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_outputs_match_official_at_every_scale(name):
    net = load_model(ref(f"{name}_seed0.pt"))
    io = torch.load(ref(f"{name}_io.pt"), map_location="cpu", weights_only=True)
    assert isinstance(net, MDRN if name.startswith("mdsr") else EDSR)
    assert set(net.scales) == set(io["output"])
    tolerance = script("check_official").OUTPUT_TOLERANCE  # 2e-4 on 0..255; measured 6.1e-5 to 9.2e-5
    with torch.no_grad():
        for scale, expected in io["output"].items():
            got = net(io["input"] / 255.0, scale) * 255.0
            assert got.shape == expected.shape
            diff = (got - expected).abs().max().item()
            assert diff <= tolerance, f"{name} x{scale}: max |ours - official| = {diff}"


def test_converted_file_gives_the_same_outputs(tmp_path, capsys):
    src = ref("mdsr_baseline_seed0.pt")
    dst = tmp_path / "mdsr_baseline.safetensors"
    assert main(["convert", str(src), str(dst)]) == 0
    a, b = load_model(src), load_model(dst)
    assert model_spec(a) == model_spec(b)
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        for s in (2, 3, 4):
            torch.testing.assert_close(a(x, s), b(x, s), rtol=0, atol=0)


@pytest.fixture(scope="module")
def mdsr_state():
    return torch.load(ref("mdsr_baseline_seed0.pt"), map_location="cpu", weights_only=True)


def test_missing_key_is_named(tmp_path, mdsr_state):
    state = dict(mdsr_state)
    del state["body.7.body.2.weight"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing.pt: missing 1 tensor.*'body.7.body.2.weight'"):
        load_model(tmp_path / "missing.pt")


def test_wrong_shape_is_named(tmp_path, mdsr_state):
    state = dict(mdsr_state)
    state["pre_process.1.0.body.0.weight"] = torch.zeros(64, 64, 3, 3)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(
        CheckpointError, match=r"shape.pt: 'pre_process.x3.0.body.0.weight' has shape \(64, 64, 3, 3\)"
    ):
        load_model(tmp_path / "shape.pt")
    state = dict(mdsr_state)
    state["upsample.1.0.weight"] = torch.zeros(100, 64, 3, 3)
    torch.save(state, tmp_path / "up.pt")
    with pytest.raises(CheckpointError, match=r"up.pt: upsample.1.0.weight has shape \(100, 64, 3, 3\)"):
        load_model(tmp_path / "up.pt")


def test_extra_or_foreign_key_is_named(tmp_path, mdsr_state):
    state = dict(mdsr_state, **{"attention.0.weight": torch.zeros(3)})
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(
        CheckpointError, match=r"extra.pt: key 'attention.0.weight' \(shape \(3,\)\) fits no known"
    ):
        load_model(tmp_path / "extra.pt")
    state = dict(mdsr_state, **{"pre_process.3.0.body.0.weight": torch.zeros(64, 64, 5, 5)})
    torch.save(state, tmp_path / "branch.pt")
    with pytest.raises(CheckpointError, match=r"branch.pt: key 'pre_process.3.0.body.0.weight'"):
        load_model(tmp_path / "branch.pt")


def test_other_architecture_is_rejected(tmp_path, mdsr_state):
    # an RCAN/RDN-like checkpoint (EDSR-PyTorch's other models share head.0 but not the rest)
    state = {k: v for k, v in mdsr_state.items() if k.startswith(("head.", "sub_mean.", "add_mean."))}
    state["body.0.body.0.body.0.weight"] = torch.zeros(64, 64, 3, 3)
    state["tail.0.0.weight"] = torch.zeros(256, 64, 3, 3)
    state["tail.0.0.bias"] = torch.zeros(256)
    state["tail.1.weight"] = torch.zeros(3, 64, 3, 3)
    state["tail.1.bias"] = torch.zeros(3)
    torch.save(state, tmp_path / "rcan.pt")
    with pytest.raises(CheckpointError, match=r"rcan.pt: .*'body.0.body.0.body.0.weight'"):
        load_model(tmp_path / "rcan.pt")
    vdsr_like = {f"net.{i}.weight": torch.zeros(64, 64, 3, 3) for i in range(0, 6, 2)}
    torch.save(vdsr_like, tmp_path / "vdsr.pt")
    with pytest.raises(CheckpointError, match="vdsr.pt: not an EDSR-PyTorch MDSR/EDSR state dict"):
        load_model(tmp_path / "vdsr.pt")


def test_urls_match_published_json():
    from mdrn.weights import OFFICIAL_URLS

    published = json.loads(shared_path("reference", "published.json").read_text())["official_weights"]
    assert {k: v for k, v in published.items() if not k.startswith("_")} == OFFICIAL_URLS
    summary = json.loads(ref("summary.json").read_text())
    assert {k: v["url"] for k, v in summary.items()} == OFFICIAL_URLS
