"""mdrn.weights: our safetensors, Lightning checkpoints, named official weights, x2 -> x4 transfer, CLI."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch

from mdrn import weights
from mdrn.io.download import ChecksumError, NetworkUnavailableError
from mdrn.models import EDSR, MDRN, SRCNN, VDSR, Bicubic, SRResNet, model_spec
from mdrn.weights import (
    CheckpointError,
    init_from_pretrained,
    load_model,
    main,
    read_checkpoint,
    save_model,
)


def tiny(cls):
    torch.manual_seed(0)
    return {
        MDRN: lambda: MDRN(n_resblocks=2, n_feats=8, scales=(2, 4)),
        EDSR: lambda: EDSR(n_resblocks=2, n_feats=8, scale=3, res_scale=0.5),
        SRResNet: lambda: SRResNet(n_resblocks=2, n_feats=8, scale=2),
        SRCNN: lambda: SRCNN(n1=8, n2=4, scales=(3,), n_colors=1),
        VDSR: lambda: VDSR(depth=3, n_feats=8),
        Bicubic: lambda: Bicubic(scales=(2, 3)),
    }[cls]()


def perturbed(net):
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return net


@pytest.mark.parametrize("cls", [MDRN, EDSR, SRResNet, SRCNN, VDSR, Bicubic])
def test_save_load_round_trip(tmp_path, cls):
    net = perturbed(tiny(cls)).eval()
    path = save_model(net, tmp_path / "w.safetensors")
    loaded = load_model(path)
    assert not loaded.training
    assert model_spec(loaded) == model_spec(net)
    x = torch.rand(1, net.n_colors, 6, 5)
    with torch.no_grad():
        for s in net.scales:
            torch.testing.assert_close(loaded(x, s), net(x, s), rtol=0, atol=0)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert json.loads(f.metadata()["mdrn_arch"]) == model_spec(net)


def test_save_does_not_overwrite_unless_asked(tmp_path):
    net, other = tiny(MDRN), perturbed(tiny(MDRN))
    path = save_model(net, tmp_path / "w.safetensors")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        save_model(other, path)
    assert path.read_bytes() == before
    save_model(other, path, overwrite=True)
    assert path.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]  # no temporary left behind


def test_safetensors_without_metadata_or_with_missing_tensor(tmp_path):
    from safetensors.torch import save_file

    net = tiny(EDSR)
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(plain))
    with pytest.raises(CheckpointError, match="plain.safetensors.*mdrn_arch"):
        load_model(plain)
    state = {k: v.contiguous() for k, v in net.state_dict().items() if k != "tail.bias"}
    partial = tmp_path / "partial.safetensors"
    save_file(state, str(partial), metadata={"mdrn_arch": json.dumps(model_spec(net))})
    with pytest.raises(CheckpointError, match="partial.safetensors.*missing.*'tail.bias'"):
        load_model(partial)
    wrong = tmp_path / "wrong.safetensors"
    other = {"arch": "EDSR", "args": {**model_spec(net)["args"], "n_feats": 16}}
    save_file(dict(net.state_dict()), str(wrong), metadata={"mdrn_arch": json.dumps(other)})
    with pytest.raises(CheckpointError, match=r"wrong.safetensors: '[a-z0-9.]+' has shape \(8.*expects \(16"):
        load_model(wrong)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"\x00" * 100])
def test_garbage_files_are_one_clear_error(tmp_path, content):
    for name in ("bad.pt", "bad.safetensors", "bad.ckpt"):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=name):
            load_model(path)


def test_a_spec_asking_for_more_blocks_than_tensors_is_refused_before_building(tmp_path):
    """A damaged or hostile spec (n_resblocks 16 -> 10**8) built 10**8 modules (a hang, gigabytes) before the
    tensors were compared; here 10**4, and the file is refused from its tensor count."""
    from safetensors.torch import save_file

    src = save_model(EDSR(n_resblocks=1, n_feats=8, scale=2), tmp_path / "ok.safetensors")
    spec, state = read_checkpoint(src)
    spec["args"]["n_resblocks"] = 10**4
    state[weights.SPEC_TENSOR] = weights._spec_tensor(spec)
    big = tmp_path / "big.safetensors"
    save_file(state, str(big), metadata={"mdrn_arch": json.dumps(spec, sort_keys=True)})
    with pytest.raises(CheckpointError, match=r"big.safetensors: architecture EDSR with \{'n_resblocks': 10"):
        read_checkpoint(big)


def test_non_dict_and_unknown_layout(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="list.pt: holds a list"):
        load_model(tmp_path / "list.pt")
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not an EDSR-PyTorch"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="not a known name"):
        load_model(tmp_path / "missing.pt")


def lightning_ckpt(net, path, with_arch=True):
    obj = {
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        "epoch": 3,
        "hyper_parameters": {"lr": 1e-4, "scales": [2, 4]},
    }
    if with_arch:
        obj["mdrn_arch"] = model_spec(net)
    torch.save(obj, path)
    return path


@pytest.mark.parametrize(
    "args",
    [
        {"n_resblocks": 10**7, "n_feats": 8, "scales": [2]},
        {"n_resblocks": 1, "n_feats": 8, "scales": [2] * 1000},
    ],
)
def test_a_spec_asking_for_more_blocks_than_the_file_holds_is_refused_before_building(
    tmp_path, monkeypatch, args
):
    # a file of a few hundred bytes whose spec asked for millions of blocks was built (on the meta device)
    # before its tensors were compared: hours and all the memory for one crafted file
    from safetensors.torch import save_file

    path = tmp_path / "crafted.safetensors"
    save_file(
        {"head.weight": torch.zeros(1)},
        str(path),
        metadata={"mdrn_arch": json.dumps({"arch": "MDRN", "args": args})},
    )

    def refuse(spec):
        raise AssertionError(f"built {spec}")

    monkeypatch.setattr(weights, "build_model", refuse)
    with pytest.raises(CheckpointError, match="cannot fit the 1 tensor"):
        load_model(path)


def test_lightning_checkpoint(tmp_path):
    net = perturbed(tiny(MDRN)).eval()
    loaded = load_model(lightning_ckpt(net, tmp_path / "last.ckpt"))
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 4), net(x, 4), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="nomark.ckpt: Lightning checkpoint without 'mdrn_arch'"):
        load_model(lightning_ckpt(net, tmp_path / "nomark.ckpt", with_arch=False))


def official_edsr_state(net: EDSR) -> dict[str, torch.Tensor]:
    """Our EDSR's weights under the official EDSR-PyTorch key names (with the fixed mean-shift convs)."""
    out = {}
    mean = torch.tensor([0.4488, 0.4371, 0.4040]) * 255
    for name, sign in (("sub_mean", -1), ("add_mean", 1)):
        out[f"{name}.weight"] = torch.eye(3).view(3, 3, 1, 1)
        out[f"{name}.bias"] = sign * mean
    for k, v in net.state_dict().items():
        k = k.replace("head.", "head.0.", 1) if k.startswith("head.") else k
        k = "tail.0." + k[len("upsample.") :] if k.startswith("upsample.") else k
        k = "tail.1." + k[len("tail.") :] if k.startswith("tail.") and not k.startswith("tail.0.") else k
        out[k] = v.clone()
    return out


def test_official_edsr_layout_loads_and_wrong_mean_shift_is_rejected(tmp_path):
    net = perturbed(EDSR(n_resblocks=2, n_feats=8, scale=2)).eval()
    state = official_edsr_state(net)
    torch.save(state, tmp_path / "official.pt")
    loaded = load_model(tmp_path / "official.pt")
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 2), net(x, 2))
    state["sub_mean.bias"] = -torch.tensor([0.4488, 0.4371, 0.4040])  # a model trained with rgb_range 1
    torch.save(state, tmp_path / "range1.pt")
    with pytest.raises(CheckpointError, match="range1.pt: sub_mean .*official mean shift"):
        load_model(tmp_path / "range1.pt")


@pytest.fixture
def fake_official(tmp_path, monkeypatch):
    """An official-layout EDSR file served from a file:// URL named like the real one; cache in tmp."""
    net = perturbed(EDSR(n_resblocks=2, n_feats=8, scale=2)).eval()
    src = tmp_path / "server" / "raw.pt"
    src.parent.mkdir()
    torch.save(official_edsr_state(net), src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    served = src.with_name(f"edsr_baseline_x2-{digest[:8]}.pt")
    shutil.move(src, served)
    monkeypatch.setenv("MDRN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(weights.OFFICIAL_URLS, "edsr_baseline_x2", served.as_uri())
    return net, served


def test_named_weights_download_convert_and_cache(tmp_path, fake_official, monkeypatch):
    net, served = fake_official
    loaded = load_model("edsr_baseline_x2")
    cached = tmp_path / "cache" / "edsr_baseline_x2.safetensors"
    assert cached.is_file()
    assert (tmp_path / "cache" / "official" / served.name).is_file()
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 2), net(x, 2))
    # afterwards the cache is used: no download at all
    served.unlink()

    def no_download(*args, **kwargs):
        raise AssertionError("download attempted although the converted weights are cached")

    monkeypatch.setattr(weights, "download_file", no_download)
    again = load_model("edsr_baseline_x2")
    assert model_spec(again) == model_spec(net)


def test_named_weights_checksum_mismatch(fake_official, monkeypatch):
    _, served = fake_official
    bad = served.with_name("edsr_baseline_x2-00000000.pt")
    shutil.copy(served, bad)
    monkeypatch.setitem(weights.OFFICIAL_URLS, "edsr_baseline_x2", bad.as_uri())
    with pytest.raises(ChecksumError, match="00000000"):
        load_model("edsr_baseline_x2")


def test_named_weights_without_network_says_what_to_download_and_where(tmp_path, fake_official, monkeypatch):
    _, served = fake_official
    url = "http://127.0.0.1:9/models/" + served.name  # nothing listens on the discard port
    monkeypatch.setitem(weights.OFFICIAL_URLS, "edsr_baseline_x2", url)
    with pytest.raises(NetworkUnavailableError) as info:
        load_model("edsr_baseline_x2")
    dest = (tmp_path / "cache" / "official" / served.name).resolve()
    assert url in str(info.value) and str(dest) in str(info.value)
    # the user puts the file where the message says; the next call picks it up
    shutil.copy(served, dest)
    assert isinstance(load_model("edsr_baseline_x2"), EDSR)


def test_official_urls_are_hub_named():
    assert set(weights.OFFICIAL_URLS) == {
        "mdsr",
        "mdsr_baseline",
        *(f"edsr_baseline_x{s}" for s in (2, 3, 4)),
        *(f"edsr_x{s}" for s in (2, 3, 4)),
    }
    for name, url in weights.OFFICIAL_URLS.items():
        assert url.rsplit("/", 1)[-1].startswith(name + "-")
        assert weights._HUB_HASH.search(url)


def test_cli_convert_and_info(tmp_path, capsys):
    net = perturbed(EDSR(n_resblocks=2, n_feats=8, scale=2))
    torch.save(official_edsr_state(net), tmp_path / "official.pt")
    dst = tmp_path / "ours.safetensors"
    assert main(["convert", str(tmp_path / "official.pt"), str(dst)]) == 0
    assert "wrote" in capsys.readouterr().out
    spec, _ = read_checkpoint(dst)
    assert spec == model_spec(net)
    assert main(["convert", str(tmp_path / "official.pt"), str(dst)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["info", str(dst)]) == 0
    out = capsys.readouterr().out
    n = sum(p.numel() for p in net.parameters())
    assert "arch: EDSR" in out and f"parameters: {n:,}" in out
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert main(["info", str(tmp_path / "junk.pt")]) == 1
    assert "junk.pt" in capsys.readouterr().err


# ---- x2 -> x3 / x4 transfer


def test_transfer_x2_to_x4_mdrn():
    source = perturbed(MDRN(n_resblocks=2, n_feats=8, scales=(2,)))
    torch.manual_seed(1)
    target = MDRN(n_resblocks=2, n_feats=8, scales=(4,))
    fresh_stage2 = target.upsample["x4"][2].weight.detach().clone()
    report = init_from_pretrained(target, source)
    s, t = source.state_dict(), target.state_dict()
    for k in ["head.weight", "body.0.body.0.weight", "body.2.bias", "tail.weight"]:
        assert torch.equal(t[k], s[k]) and (k, k) in report.copied
    assert torch.equal(t["pre_process.x4.1.body.2.weight"], s["pre_process.x2.1.body.2.weight"])
    assert torch.equal(t["upsample.x4.0.weight"], s["upsample.x2.0.weight"])
    assert ("upsample.x4.0.weight", "upsample.x2.0.weight") in report.copied
    assert torch.equal(t["upsample.x4.2.weight"], fresh_stage2)
    assert [k for k, _ in report.fresh] == ["upsample.x4.2.weight", "upsample.x4.2.bias"]
    assert report.skipped == []
    assert len(report.copied) + len(report.fresh) == len(t)
    text = str(report)
    assert (
        "fresh   upsample.x4.2.weight: no 'upsample.x4.2.weight' in source; no 'upsample.x2.2.weight'" in text
    )
    assert "copied  upsample.x4.0.weight <- upsample.x2.0.weight" in text


def test_transfer_x2_to_x3_keeps_upsampler_fresh_and_edsr():
    source = perturbed(MDRN(n_resblocks=1, n_feats=8, scales=(2, 4)))
    target = MDRN(n_resblocks=1, n_feats=8, scales=(3,))
    report = init_from_pretrained(target, source)
    assert {k for k, _ in report.fresh} == {"upsample.x3.0.weight", "upsample.x3.0.bias"}
    assert "source 'upsample.x2.0.weight' has shape (32, 8, 3, 3) != (72, 8, 3, 3)" in str(report)
    assert {k for k, _ in report.skipped} >= {"upsample.x2.0.weight", "pre_process.x4.0.body.0.weight"}
    e2, e4 = perturbed(EDSR(n_resblocks=1, n_feats=8, scale=2)), EDSR(n_resblocks=1, n_feats=8, scale=4)
    rep = init_from_pretrained(e4, e2)
    assert torch.equal(e4.upsample[0].weight, e2.upsample[0].weight)
    assert [k for k, _ in rep.fresh] == ["upsample.2.weight", "upsample.2.bias"]


def test_transfer_refuses_other_architectures():
    with pytest.raises(ValueError, match="cannot transfer EDSR weights into a MDRN"):
        init_from_pretrained(MDRN(n_resblocks=1, n_feats=8, scales=(4,)), EDSR(n_resblocks=1, n_feats=8))
    with pytest.raises(ValueError, match="nothing to transfer"):
        init_from_pretrained(
            MDRN(n_resblocks=1, n_feats=8, scales=(4,), n_colors=1), MDRN(n_resblocks=1, n_feats=16)
        )


def test_cli_checksum_mismatch_is_one_error_line(fake_official, monkeypatch, capsys):
    _, served = fake_official
    bad = served.with_name("edsr_baseline_x2-00000000.pt")
    shutil.copy(served, bad)
    monkeypatch.setitem(weights.OFFICIAL_URLS, "edsr_baseline_x2", bad.as_uri())
    assert main(["info", "edsr_baseline_x2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "does not start with 00000000" in err[-1]


def test_placed_file_failing_its_checksum_is_named_when_offline(tmp_path, fake_official, monkeypatch):
    # offline: the user puts a file where the message says, but a wrong one; the next error says so
    _, served = fake_official
    url = "http://127.0.0.1:9/models/" + served.name  # nothing listens on the discard port
    monkeypatch.setitem(weights.OFFICIAL_URLS, "edsr_baseline_x2", url)
    dest = tmp_path / "cache" / "official" / served.name
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"not the checkpoint")
    with pytest.raises(NetworkUnavailableError) as info:
        load_model("edsr_baseline_x2")
    assert "failed its check" in str(info.value) and "does not start with" in str(info.value)


def test_transfer_keeps_the_tail_fresh_where_bicubic_skip_differs():
    # official MDSR (tail = the whole image) into the paper's bicubic-skip MDRN (tail = high frequencies,
    # starting at zero): a copied tail would add a second image onto the bicubic one
    source = perturbed(MDRN(n_resblocks=1, n_feats=8, scales=(2,)))
    target = MDRN(n_resblocks=1, n_feats=8, scales=(4,), bicubic_skip=True)
    report = init_from_pretrained(target, source)
    assert {k for k, _ in report.fresh} >= {"tail.weight", "tail.bias"}
    assert "bicubic_skip" in dict(report.fresh)["tail.weight"]
    assert not target.tail.weight.any() and not target.tail.bias.any()  # still exactly bicubic
    assert ("head.weight", "head.weight") in report.copied
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(target(x, 4), target.low_frequency(x, 4))
    same = MDRN(n_resblocks=1, n_feats=8, scales=(4,))
    assert ("tail.weight", "tail.weight") in init_from_pretrained(same, source).copied


def test_a_huge_spec_tensor_is_refused_before_it_is_decoded(tmp_path):
    """The spec tensor was turned into a Python list whole (~36x its size in memory) before any check."""
    from safetensors.torch import save_file

    src = save_model(EDSR(n_resblocks=1, n_feats=8, scale=2), tmp_path / "ok.safetensors")
    _, state = read_checkpoint(src)
    state[weights.SPEC_TENSOR] = torch.full((2 << 20,), 32, dtype=torch.uint8)  # 2 MiB of spaces
    save_file(state, str(tmp_path / "huge.safetensors"))
    with pytest.raises(CheckpointError, match=r"huge.safetensors: tensor 'mdrn_arch' \(2,097,152 values\)"):
        read_checkpoint(tmp_path / "huge.safetensors")
