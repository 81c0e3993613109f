"""The clinician runtime: backends (PyTorch, ONNX Runtime) with the same tiling and outputs, bf16 opt-in."""

from __future__ import annotations

import pytest
import torch

from mdrn.clinical.runtime import (
    AUTO_EXPORT_PIXELS,
    ONNX_TOLERANCE,
    onnxruntime_pays,
    precision_problem,
    prepare_network,
)
from mdrn.models import MDRN, SRCNN
from mdrn.models.inference import supports_two_stage, upscale
from mdrn.perf import amx_bf16_available


def _image(h: int = 40, w: int = 52, c: int = 1) -> torch.Tensor:
    return torch.rand(1, c, h, w, generator=torch.Generator().manual_seed(1))


def test_torch_backend_is_the_fast_path_with_the_same_output() -> None:
    torch.manual_seed(0)
    net = MDRN(n_resblocks=2, n_feats=8, scales=(2,), bicubic_skip=True).eval()
    with torch.no_grad():
        torch.nn.init.normal_(net.tail.weight, std=0.05)  # a network that adds detail
        ref = upscale(net, _image(), 2)
    prepared, runs_on = prepare_network(net, "cpu", backend="torch")
    assert runs_on == "PyTorch (cpu, fp32)" and prepared is net
    assert (upscale(prepared, _image(), 2, tile=16, memory=1 << 20) - ref).abs().max() <= 1e-5


@pytest.mark.slow
def test_onnxruntime_backend_same_tiles_and_outputs_within_the_tolerance(tmp_path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("MDRN_CACHE", str(tmp_path))
    torch.manual_seed(0)
    net = MDRN(n_resblocks=2, n_feats=8, scales=(2, 3), bicubic_skip=True).eval()
    with torch.no_grad():
        torch.nn.init.normal_(net.tail.weight, std=0.05)
    notes: list[str] = []
    onnx, runs_on = prepare_network(net, "cpu", backend="onnxruntime", scales=(3,), note=notes.append)
    assert runs_on == "ONNX Runtime (CPU, fp32)" and supports_two_stage(onnx)  # tiled in two stages as well
    assert len(notes) == 1 and "x3" in notes[0]  # one export line per scale
    assert sorted(p.name.split("-", 1)[1] for p in (tmp_path / "onnx").iterdir()) == [
        "features-x3.onnx",
        "reconstruct-x3.onnx",
    ]
    x = _image()
    with torch.no_grad():
        whole = net(x.expand(-1, 3, -1, -1), 3).mean(dim=1, keepdim=True)
    for tile, memory in ((None, None), (16, 1 << 20)):  # untiled, and small body tiles with sub-tiles
        got = upscale(onnx, x, 3, tile=tile, memory=memory)
        assert (got - whole).abs().max() <= ONNX_TOLERANCE
    # cached: a second preparation exports nothing
    notes.clear()
    prepare_network(net, "cpu", backend="onnxruntime", scales=(3,), note=notes.append)
    assert notes == []
    # a network without stages runs as one graph of its forward
    srcnn = SRCNN(scales=(2,), n_colors=1).eval()
    one, _ = prepare_network(srcnn, "cpu", backend="onnxruntime", scales=(2,))
    with torch.no_grad():
        assert (upscale(one, x, 2) - upscale(srcnn, x, 2)).abs().max() <= ONNX_TOLERANCE


def test_auto_uses_onnxruntime_only_where_it_pays(tmp_path, monkeypatch) -> None:
    import mdrn.clinical.runtime as runtime

    assert onnxruntime_pays("AVX2") and onnxruntime_pays("DEFAULT")
    assert not onnxruntime_pays("AVX512") and not onnxruntime_pays("AVX512_BF16")
    monkeypatch.setenv("MDRN_CACHE", str(tmp_path))
    net = MDRN(n_resblocks=1, n_feats=8, scales=(2,)).eval()
    monkeypatch.setattr(runtime, "onnxruntime_available", lambda: True)
    for pays, pixels in ((False, AUTO_EXPORT_PIXELS), (True, AUTO_EXPORT_PIXELS - 1)):
        monkeypatch.setattr(runtime, "onnxruntime_pays", lambda pays=pays: pays)
        _, runs_on = prepare_network(net, "cpu", job_pixels=pixels)
        assert runs_on.startswith("PyTorch")  # a CPU where PyTorch is faster, or a job too small to export
    assert not (tmp_path / "onnx").exists()


def test_bf16_where_the_cpu_has_amx_else_a_clear_refusal() -> None:
    with pytest.raises(ValueError, match="unknown precision"):
        prepare_network(MDRN(n_resblocks=1, n_feats=8, scales=(2,)), "cpu", precision="fp16")
    if not amx_bf16_available():
        problem = precision_problem("bf16", "cpu")
        assert problem is not None and "AMX" in problem and "--precision fp32" in problem
        with pytest.raises(ValueError, match="AMX"):
            prepare_network(MDRN(n_resblocks=1, n_feats=8, scales=(2,)), "cpu", precision="bf16")
        return
    assert precision_problem("bf16", "cpu") is None
    # an untrained network with the low-frequency path adds nothing: in bf16 its output is still the fp32
    # bicubic image, bit for bit (the bicubic image is never rounded to bf16's 8 significant bits)
    net = MDRN(n_resblocks=1, n_feats=8, scales=(2,), bicubic_skip=True).eval()
    bf16, runs_on = prepare_network(net, "cpu", backend="torch", precision="bf16")
    assert runs_on == "PyTorch (cpu, bf16 autocast)"
    x = _image(c=3)
    with torch.no_grad():
        assert torch.equal(upscale(bf16, x, 2), upscale(net, x, 2))
        torch.nn.init.normal_(net.tail.weight, std=0.05)
        diff = (upscale(bf16, x, 2, tile=16, memory=1 << 20) - upscale(net, x, 2)).abs().max()
    assert 0 < diff < 0.05  # bf16 arithmetic in the network: close, not equal


@pytest.mark.slow
def test_onnxruntime_backend_keeps_the_networks_input_window(tmp_path, monkeypatch) -> None:
    """A network trained with an input window (the shipped model) keeps it behind the ONNX backend: the
    wrapper reports the network's rule, and a narrow-range image comes out as PyTorch makes it."""
    pytest.importorskip("onnxruntime")
    from mdrn.models.window import rule_of, set_rule

    monkeypatch.setenv("MDRN_CACHE", str(tmp_path))
    torch.manual_seed(0)
    net = set_rule(MDRN(n_resblocks=2, n_feats=8, scales=(2,), bicubic_skip=True).eval(), "percentile")
    with torch.no_grad():
        torch.nn.init.normal_(net.tail.weight, std=0.05)
    onnx, _ = prepare_network(net, "cpu", backend="onnxruntime", scales=(2,))
    assert rule_of(onnx) == rule_of(net) and rule_of(net).active
    x = 0.40 + 0.03 * _image()  # a CT-like image: 3% of the range
    with torch.no_grad():
        ref, raw = upscale(net, x, 2), upscale(net, x, 2, window=None)
        assert (ref - raw).abs().max() > 10 * ONNX_TOLERANCE  # the window changes the output
        assert (upscale(onnx, x, 2, tile=16, memory=1 << 20) - ref).abs().max() <= ONNX_TOLERANCE


def test_bf16_runs_only_the_body_of_a_y_channel_network_in_bf16(monkeypatch) -> None:
    """VDSR/SRCNN: the bicubic, the colour conversions and the residual add stay fp32 under bf16 autocast.

    CUDA autocast runs the colour conversion's einsum in bf16 (measured: VDSR Set5 butterfly x3 29.898 dB
    against 29.920 with only the convolutions in bf16); CPU autocast leaves einsum alone, so this test checks
    that autocast is off where the steps run, and that the output is the fp32 pipeline around a bf16 body.
    """
    import mdrn.models.blocks as blocks
    from mdrn.models import VDSR

    seen: dict[str, list[bool]] = {}

    def spy(name: str):
        fn = getattr(blocks, name)

        def wrapped(*args, **kwargs):
            seen.setdefault(name, []).append(torch.is_autocast_enabled("cpu"))
            return fn(*args, **kwargs)

        return wrapped

    for name in ("imresize", "rgb_to_ycbcr", "ycbcr_to_rgb"):
        monkeypatch.setattr(blocks, name, spy(name))
    net = VDSR(depth=3, n_feats=8, scales=(2,)).eval()
    bf16, _ = prepare_network(net, "cpu", backend="torch", precision="bf16", allow_slow=True)
    x = _image(12, 10, c=3)
    with torch.no_grad():
        out = bf16(x, 2)
    assert seen == {"imresize": [False], "rgb_to_ycbcr": [False], "ycbcr_to_rgb": [False]}
    assert out.dtype == torch.float32
    with torch.no_grad():  # the reference: everything fp32 but the body, the body under bf16 autocast
        ycc = blocks.rgb_to_ycbcr(blocks.imresize(x, 2))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            body = net.net(ycc[:, :1]).float()
        ref = blocks.ycbcr_to_rgb(torch.cat([ycc[:, :1] + body, ycc[:, 1:]], dim=1))
    assert torch.equal(out, ref)


def test_a_too_small_image_is_the_networks_one_line_error_on_onnxruntime_too(tmp_path, monkeypatch, capfd):
    """RLFN needs 15x15 pixels: its exported graph lost that check, so ONNX Runtime failed in MaxPool."""
    pytest.importorskip("onnxruntime")
    from mdrn.models import RLFN

    monkeypatch.setenv("MDRN_CACHE", str(tmp_path))
    net = RLFN(n_feats=8, n_blocks=1, esa_channels=4, scale=2).eval()
    small = _image(3, 5, c=3)
    for backend in ("torch", "onnxruntime"):
        prepared, _ = prepare_network(net, "cpu", backend=backend, scales=(2,))
        with pytest.raises(ValueError, match=r"^RLFN needs at least 15x15 input pixels .*got 5x3$"):
            upscale(prepared, small, 2)
    assert "ONNXRuntimeError" not in capfd.readouterr().err  # nor ONNX Runtime's own log line


def test_a_corrupt_cached_export_is_exported_again_once(tmp_path, monkeypatch) -> None:
    """A cached file ORT cannot load was used as is: auto fell back to PyTorch, onnxruntime failed."""
    pytest.importorskip("onnxruntime")
    import mdrn.clinical.runtime as runtime

    monkeypatch.setenv("MDRN_CACHE", str(tmp_path))
    net = SRCNN(scales=(2,), n_colors=1).eval()
    prepare_network(net, "cpu", backend="onnxruntime", scales=(2,))
    (cached,) = (tmp_path / "onnx").iterdir()
    good = cached.read_bytes()
    monkeypatch.setattr(runtime, "onnxruntime_pays", lambda: True)
    x = _image()
    for backend in ("onnxruntime", "auto"):
        cached.write_bytes(good[: len(good) // 2])  # a truncated cache entry (a full disk, a killed copy)
        notes: list[str] = []
        one, runs_on = prepare_network(net, "cpu", backend=backend, scales=(2,), note=notes.append)
        assert runs_on == "ONNX Runtime (CPU, fp32)", notes
        assert len(notes) == 1 and "preparing the model for ONNX Runtime at x2" in notes[0]  # exported once
        assert cached.stat().st_size == len(good)
        with torch.no_grad():
            assert (upscale(one, x, 2) - upscale(net, x, 2)).abs().max() <= ONNX_TOLERANCE
