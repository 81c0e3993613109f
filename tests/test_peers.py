"""The public lightweight models: CARN-M, IMDN, RLFN/RLFN-S networks, their authors' weight files (by path
and by name: download, sha256, cache), strict key conversion, and their published Set5 PSNR reproduced."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT, script, shared_path

from mdrn import weights
from mdrn.io.download import ChecksumError, NetworkUnavailableError
from mdrn.models import CARNM, IMDN, RLFN, build_model, model_spec
from mdrn.models.blocks import DIV2K_RGB_MEAN
from mdrn.models.inference import upscale
from mdrn.models.peers import PEER_WEIGHTS, convert_peer, peer_layout
from mdrn.weights import CheckpointError, load_model

# ------------------------------------------------------------------------------------------------------ #
# the authors' key layouts, written from their files' key lists (mdrn key pattern -> authors' key)

_TO_AUTHORS = {
    "CARNM": [
        (r"^head\.", "entry."),
        (r"^blocks\.(\d+)\.unit\.body\.(\d+)\.", lambda m: f"b{int(m[1]) + 1}.b1.body.{m[2]}."),
        (r"^blocks\.(\d+)\.fuse\.(\d+)\.0\.", lambda m: f"b{int(m[1]) + 1}.c{int(m[2]) + 1}.body.0."),
        (r"^fuse\.(\d+)\.0\.", lambda m: f"c{int(m[1]) + 1}.body.0."),
        (r"^upsample\.x(\d+)\.(\d+)\.", lambda m: f"upsample.up{m[1]}.body.{m[2]}."),
        (r"^tail\.", "exit."),
    ],
    "IMDN": [
        (r"^head\.", "fea_conv."),
        (r"^blocks\.(\d+)\.convs\.(\d+)\.", lambda m: f"IMDB{int(m[1]) + 1}.c{int(m[2]) + 1}."),
        (r"^blocks\.(\d+)\.fuse\.", lambda m: f"IMDB{int(m[1]) + 1}.c5."),
        (r"^blocks\.(\d+)\.attention\.body\.(\d+)\.", lambda m: f"IMDB{int(m[1]) + 1}.cca.conv_du.{m[2]}."),
        (r"^fuse\.", "c.0."),
        (r"^body_tail\.", "LR_conv."),
        (r"^upsample\.0\.", "upsampler.0."),
    ],
    "RLFN": [
        (r"^head\.", "conv_1."),
        (r"^blocks\.(\d+)\.convs\.(\d+)\.", lambda m: f"block_{int(m[1]) + 1}.c{int(m[2]) + 1}_r."),
        (r"^blocks\.(\d+)\.fuse\.", lambda m: f"block_{int(m[1]) + 1}.c5."),
        (
            r"^blocks\.(\d+)\.attention\.(\w+)\.",
            lambda m: (
                f"block_{int(m[1]) + 1}.esa."
                + {"reduce": "conv1", "skip": "conv_f", "down": "conv2", "mid": "conv3", "expand": "conv4"}[
                    m[2]
                ]
                + "."
            ),
        ),
        (r"^body_tail\.", "conv_2."),
        (r"^upsample\.0\.", "upsampler.0."),
    ],
}


def authors_state(net: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """``net``'s weights in its authors' key layout (CARN: with the fixed mean-shift convs they save)."""
    arch = type(net).__name__
    out = {}
    if arch == "CARNM":
        mean = torch.tensor(DIV2K_RGB_MEAN)
        for name, sign in (("sub_mean", -1), ("add_mean", 1)):
            out[f"{name}.shifter.weight"] = torch.eye(3).view(3, 3, 1, 1)
            out[f"{name}.shifter.bias"] = sign * mean
    for key, value in net.state_dict().items():
        for pattern, repl in _TO_AUTHORS[arch]:
            new, n = re.subn(pattern, repl, key, count=1)
            if n:
                out[new] = value.clone()
                break
        else:
            raise AssertionError(f"no authors' name for {key}")
    return {prefix + k: v for k, v in out.items()}


def tiny(kind: str) -> torch.nn.Module:
    """Small random networks of each family (weights perturbed away from the default init)."""
    torch.manual_seed(0)
    net = {
        "carn_m": lambda: CARNM(n_feats=8, group=2, n_blocks=2, scales=(2, 3, 4)),
        "imdn_x3": lambda: IMDN(n_feats=16, n_blocks=2, scale=3),
        "rlfn_x2": lambda: RLFN(n_feats=8, n_blocks=2, esa_channels=4, scale=2),
        "rlfn_s_x4": lambda: RLFN(n_feats=12, n_blocks=3, esa_channels=4, scale=4),
    }[kind]()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


KINDS = ["carn_m", "imdn_x3", "rlfn_x2", "rlfn_s_x4"]
#: the DataParallel prefix the authors' IMDN files carry
PREFIX = {"imdn_x3": "module."}


# ------------------------------------------------------------------------------------------------------ #
# networks


@pytest.mark.parametrize("kind", KINDS)
def test_networks_shapes_specs_and_scales(kind):
    net = tiny(kind)
    x = torch.rand(2, 3, 17, 19)
    with torch.no_grad():
        for s in net.scales:
            assert net(x, s).shape == (2, 3, 17 * s, 19 * s)
    rebuilt = build_model(json.loads(json.dumps(model_spec(net))))
    assert type(rebuilt) is type(net) and model_spec(rebuilt) == model_spec(net)
    with pytest.raises(ValueError, match="no x8 branch"):
        net(x, 8)
    with pytest.raises(ValueError, match="3 channels"):
        net(x[:, :1], net.scales[0])


def test_rlfn_rejects_images_too_small_for_its_attention():
    net = tiny("rlfn_x2")
    with pytest.raises(ValueError, match="at least 15x15"):
        net(torch.rand(1, 3, 14, 40), 2)


def test_gray_images_go_through_the_rgb_planes():
    net = tiny("imdn_x3")
    gray = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        expected = net(gray.expand(-1, 3, -1, -1), 3).mean(dim=1, keepdim=True)
    torch.testing.assert_close(upscale(net, gray, 3), expected)


def test_carn_m_shares_one_residual_unit_per_block():
    net = CARNM()
    units = [m for m in net.modules() if type(m).__name__ == "EfficientResidual"]
    assert len(units) == 3  # one per cascading block, applied three times each (recursive weights)
    assert net.blocks[0].unit.body[0].groups == 4


# ------------------------------------------------------------------------------------------------------ #
# the authors' files: detection, conversion, strict loading


@pytest.mark.parametrize("kind", KINDS)
def test_authors_layout_loads_by_path_with_the_same_output(tmp_path, kind):
    net = tiny(kind)
    path = tmp_path / f"{kind}.pth"
    torch.save(authors_state(net, PREFIX.get(kind, "")), path)
    loaded = load_model(path)
    assert model_spec(loaded) == model_spec(net)
    x = torch.rand(1, 3, 16, 18)
    with torch.no_grad():
        for s in net.scales:
            torch.testing.assert_close(loaded(x, s), net(x, s), rtol=0, atol=0)


def test_module_prefix_and_layout_detection():
    net = tiny("rlfn_x2")
    plain, wrapped = authors_state(net), authors_state(net, "module.")
    assert peer_layout(plain) == peer_layout(wrapped) == "RLFN"
    assert convert_peer(wrapped)[1].keys() == convert_peer(plain)[1].keys() == net.state_dict().keys()
    assert peer_layout({"head.0.weight": torch.zeros(1)}) is None


def test_missing_unexpected_and_misshapen_tensors_are_one_clear_error(tmp_path):
    state = authors_state(tiny("imdn_x3"), "module.")
    missing = dict(state)
    del missing["module.IMDB2.cca.conv_du.2.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing\.pth: missing 1 tensor.*blocks\.1\.attention"):
        load_model(tmp_path / "missing.pth")
    torch.save({**state, "module.IMDB1.c6.weight": torch.zeros(4, 4, 3, 3)}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"extra\.pth: key 'IMDB1\.c6\.weight' .* fits no known IMDN"):
        load_model(tmp_path / "extra.pth")
    torch.save({**state, "module.LR_conv.weight": torch.zeros(16, 16, 1, 1)}, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"shape\.pth: 'body_tail\.weight' has shape \(16, 16, 1, 1\)"):
        load_model(tmp_path / "shape.pth")
    rlfn = authors_state(tiny("rlfn_x2"))
    torch.save({**rlfn, "upsampler.0.weight": torch.zeros(10, 8, 3, 3)}, tmp_path / "up.pth")
    with pytest.raises(CheckpointError, match=r"up\.pth: RLFN layout: 'upsampler\.0\.weight' has 10 output"):
        load_model(tmp_path / "up.pth")


def test_carn_mean_shift_other_than_div2k_is_refused(tmp_path):
    state = authors_state(tiny("carn_m"))
    state["add_mean.shifter.bias"] = torch.tensor([0.5, 0.5, 0.5])
    torch.save(state, tmp_path / "carn.pth")
    with pytest.raises(CheckpointError, match=r"carn\.pth: 'add_mean\.shifter' is not the mean shift"):
        load_model(tmp_path / "carn.pth")
    del state["add_mean.shifter.bias"]
    torch.save(state, tmp_path / "carn.pth")
    with pytest.raises(CheckpointError, match=r"carn\.pth: missing the fixed mean shift 'add_mean"):
        load_model(tmp_path / "carn.pth")


# ------------------------------------------------------------------------------------------------------ #
# loading by name: download (pinned sha256), cache, no network


@pytest.fixture
def served_carn(tmp_path, monkeypatch):
    """A CARN-M file in the authors' layout served from a file:// URL as ``carn_m``; cache in tmp."""
    net = tiny("carn_m")
    src = tmp_path / "server" / "carn_m.pth"
    src.parent.mkdir()
    torch.save(authors_state(net), src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    peer = SimpleNamespace(url=src.as_uri(), sha256=digest, model="CARN-M", repo="x/y", licence="MIT")
    monkeypatch.setenv("MDRN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(weights.PEER_WEIGHTS, "carn_m", peer)
    return net, src, peer


def test_named_peer_is_downloaded_checked_and_cached(tmp_path, served_carn):
    net, src, _ = served_carn
    loaded = load_model("carn_m")
    assert (tmp_path / "cache" / "peers" / "carn_m.pth").is_file()
    x = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 3), net(x, 3), rtol=0, atol=0)
    src.unlink()  # the cached file is checked again and used: no download
    assert model_spec(load_model("carn_m")) == model_spec(net)


def test_named_peer_checksum_mismatch(served_carn, monkeypatch):
    _, _, peer = served_carn
    monkeypatch.setattr(peer, "sha256", "0" * 64)
    with pytest.raises(ChecksumError):
        load_model("carn_m")


def test_named_peer_without_network_says_what_to_download_and_where(tmp_path, served_carn, monkeypatch):
    _, src, peer = served_carn
    url = "http://127.0.0.1:9/checkpoint/carn_m.pth"  # nothing listens on the discard port
    monkeypatch.setattr(peer, "url", url)
    with pytest.raises(NetworkUnavailableError) as info:
        load_model("carn_m")
    dest = (tmp_path / "cache" / "peers" / "carn_m.pth").resolve()
    assert url in str(info.value) and str(dest) in str(info.value) and "licence: MIT" in str(info.value)
    dest.write_bytes(src.read_bytes())  # the user puts the file where the message says
    assert isinstance(load_model("carn_m"), CARNM)


def test_registry_points_at_pinned_commits_of_the_authors_repositories():
    assert set(PEER_WEIGHTS) == {"carn_m", *(f"imdn_x{s}" for s in (2, 3, 4)), "rlfn_x2", "rlfn_x4",
                                 "rlfn_s_x2", "rlfn_s_x4"}  # fmt: skip
    for name, peer in PEER_WEIGHTS.items():
        assert re.fullmatch(
            r"https://raw\.githubusercontent\.com/[\w-]+/[\w-]+/[0-9a-f]{40}/[\w/]+\.pth", peer.url
        )
        assert re.fullmatch(r"[0-9a-f]{64}", peer.sha256), name


# ------------------------------------------------------------------------------------------------------ #
# the real files (../shared/peers; CI has them)


def _readme() -> str:
    return shared_path("peers", "README.md").read_text()


def test_registry_matches_the_shared_readme():
    text = _readme()
    sums = dict(re.findall(r"^([0-9a-f]{64})  (\S+)\.pth$", text, re.M))
    assert {name: peer.sha256 for name, peer in PEER_WEIGHTS.items()} == {v: k for k, v in sums.items()}
    for peer in PEER_WEIGHTS.values():
        assert f"{peer.repo} @ {peer.commit}" in text


def test_published_figures_match_the_shared_readme():
    rows = re.findall(
        r"^\| ([\w,. ]+\.pth) \| ([\w-]+) .*? \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", _readme(), re.M
    )
    published = json.loads((ROOT / "experiments" / "published.json").read_text())["lightweight_peers"]
    assert {model for _, model, *_ in rows} == {k for k in published if not k.startswith("_")}
    for _, model, *sets in rows:
        for set_name, cell in zip(("Set5", "Set14", "B100"), sets, strict=True):
            figures = [v.split()[-1] for v in cell.split("/")]  # "RLFN 38.07 / - / 32.24"
            expected = {str(s): float(v) for s, v in zip((2, 3, 4), figures, strict=True) if v != "-"}
            assert {k: float(v) for k, v in published[model][set_name].items()} == expected, (model, set_name)


@pytest.mark.parametrize("name", list(PEER_WEIGHTS))
def test_real_file_layout_and_loading(name):
    path = shared_path("peers", f"{name}.pth")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PEER_WEIGHTS[name].sha256
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = load_model(path)
    # the authors' keys and shapes are exactly those of the network, written back in their layout
    prefix = "module." if all(k.startswith("module.") for k in state) else ""
    theirs = {k: tuple(v.shape) for k, v in state.items()}
    assert theirs == {k: tuple(v.shape) for k, v in authors_state(net, prefix).items()}
    assert net.scales == ((2, 3, 4) if name == "carn_m" else (int(name[-1]),))


@pytest.mark.slow
def test_published_set5_psnr_reproduced(capsys):
    shared = shared_path("peers").parent
    mod = script("check_peers")
    rows, failures = mod.check(shared, list(PEER_WEIGHTS))
    assert not failures, failures
    assert len(rows) == 10  # CARN-M x2/x3/x4, IMDN x2/x3/x4, RLFN and RLFN-S x2/x4
    for row in rows:
        if row["published"] is None:
            continue
        if (row["model"], row["scale"]) in mod.KNOWN:
            # measured here (scripts/check_peers.py): the released CARN-M is above the paper at x2 and x3
            assert row["psnr"] == pytest.approx({2: 37.695, 3: 34.068}[row["scale"]], abs=0.01)
        else:
            assert abs(row["diff"]) <= 0.05, row
    assert "MISMATCH" not in capsys.readouterr().out


def test_check_peers_exit_status(monkeypatch, capsys):
    shared = shared_path("peers").parent
    mod = script("check_peers")
    monkeypatch.setattr(
        mod, "set5_psnr", lambda net, d, s: {"psnr": 38.07, "ssim": 0.96, "psnr_uint8_y": 38.0}
    )
    assert mod.main(["--shared", str(shared), "--models", "rlfn_x2"]) == 0
    monkeypatch.setattr(
        mod, "set5_psnr", lambda net, d, s: {"psnr": 37.9, "ssim": 0.96, "psnr_uint8_y": 37.8}
    )
    assert mod.main(["--shared", str(shared), "--models", "rlfn_x2"]) == 1
    assert "MISMATCH: rlfn_x2 x2: 37.900 dB, published 38.07" in capsys.readouterr().out
    # CARN-M x2 is explained (KNOWN) only above the paper's figure
    monkeypatch.setattr(
        mod, "set5_psnr", lambda net, d, s: {"psnr": 37.40, "ssim": 0.96, "psnr_uint8_y": 37.3}
    )
    assert mod.main(["--shared", str(shared), "--models", "carn_m"]) == 1
    assert "MISMATCH: carn_m x2: 37.400 dB, published 37.53 (-0.130)" in capsys.readouterr().out
    assert mod.main(["--shared", str(Path("/nonexistent")), "--models", "rlfn_x2"]) == 1
    assert "no such file" in capsys.readouterr().out
