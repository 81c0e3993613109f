"""ONNX export: onnxruntime agrees with PyTorch within 1e-4 on sizes other than the export size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mdrn import export
from mdrn.export import check_onnx, export_onnx, main
from mdrn.io.images import write_image
from mdrn.models import MDRN
from mdrn.weights import save_model

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("n_colors", [1])  # gray, the medical case (one export: ~10 s)
def test_onnx_matches_pytorch(tmp_path, capsys, n_colors: int) -> None:
    """The network exports as its forward; an input window it was trained with is stated (metadata, note)."""
    import json

    import onnx

    from mdrn.models.window import set_rule

    torch.manual_seed(0)
    net = set_rule(MDRN(n_resblocks=2, n_feats=16, scales=(2, 3, 4), n_colors=n_colors).eval(), "percentile")
    weights = save_model(net, tmp_path / "tiny.safetensors")
    out = tmp_path / "tiny_x3.onnx"
    assert main(["--weights", str(weights), "--scale", "3", str(out)]) == 0
    assert (
        "note: the network was trained with an input window (percentile 0.1..99.9" in capsys.readouterr().out
    )
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["mdrn_input_window"])["mode"] == "percentile"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for shape in [(1, n_colors, 21, 34), (2, n_colors, 9, 13)]:  # dynamic batch, height and width
        x = torch.rand(*shape)
        got = session.run(["sr"], {"lr": x.numpy()})[0]
        with torch.no_grad():
            ref = net(x, 3).numpy()
        assert got.shape == ref.shape == (shape[0], n_colors, shape[2] * 3, shape[3] * 3)
        assert np.abs(got - ref).max() <= 1e-4


def test_export_refuses_missing_scale_and_existing_file(tmp_path, capsys) -> None:
    net = MDRN(n_resblocks=1, n_feats=8, scales=(2,)).eval()
    weights = save_model(net, tmp_path / "x2.safetensors")
    assert main(["--weights", str(weights), "--scale", "4", str(tmp_path / "a.onnx")]) == 1
    assert "x4" in capsys.readouterr().err
    assert not (tmp_path / "a.onnx").exists()
    (tmp_path / "b.onnx").write_bytes(b"keep")
    assert main(["--weights", str(weights), "--scale", "2", str(tmp_path / "b.onnx")]) == 1
    assert (tmp_path / "b.onnx").read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.onnx", "x2.safetensors"]


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 4])
def test_the_shipped_model_exports_with_dynamic_height_and_width(tmp_path, capsys, scale: int) -> None:
    # its bicubic low-frequency path computes the resize weights from the image size inside the graph
    from pydicom.data import get_testdata_file

    from mdrn.weights import DEFAULT_MODEL, load_model

    out = tmp_path / f"shipped_x{scale}.onnx"
    real = get_testdata_file("CT_small.dcm")  # a 16-bit CT slice, 128x128
    assert main(["--weights", DEFAULT_MODEL, "--scale", str(scale), str(out), "--check", real]) == 0
    printed = capsys.readouterr().out
    print(printed)  # the differences, for the log
    lines = [line for line in printed.splitlines() if line.startswith("max |ONNX Runtime - PyTorch|")]
    assert len(lines) == 2 and "random" in lines[0] and "CT_small.dcm" in lines[1]
    assert all(float(line.rsplit(": ", 1)[1]) <= 1e-5 for line in lines)
    net = load_model(DEFAULT_MODEL)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 37, 50), (2, 3, 20, 16)]:  # dynamic batch, height and width
        x = torch.rand(*shape)
        got = session.run(["sr"], {"lr": x.numpy()})[0]
        with torch.no_grad():
            ref = net(x, scale).numpy()
        assert got.shape == ref.shape == (shape[0], 3, shape[2] * scale, shape[3] * scale)
        assert np.abs(got - ref).max() <= 1e-5


def test_y_channel_networks_export_rgb_at_odd_sizes(tmp_path, capsys) -> None:
    """VDSR/SRCNN on RGB go back from YCbCr inside the graph: the colour inverse must be exportable."""
    from mdrn.models import VDSR

    torch.manual_seed(0)
    net = VDSR(depth=3, n_feats=8).eval()
    weights = save_model(net, tmp_path / "vdsr.safetensors")
    out = tmp_path / "vdsr_x3.onnx"
    assert main(["--weights", str(weights), "--scale", "3", str(out)]) == 0, capsys.readouterr().err
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 17, 23)
    got = session.run(["sr"], {"lr": x.numpy()})[0]
    with torch.no_grad():
        ref = net(x, 3).numpy()
    assert got.shape == ref.shape == (1, 3, 51, 69)
    assert np.abs(got - ref).max() <= 1e-5


def test_a_network_the_exporter_cannot_convert_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    """The exporter's failure (pages of text, terminal colour codes, progress lines) is one error line
    naming the weights; nothing is written."""

    class Inverts(torch.nn.Module):
        scales = (2,)
        n_colors = 1

        def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
            m = x[0, 0, :2, :2] + torch.eye(2)
            return torch.nn.functional.interpolate(x, scale_factor=scale) * torch.linalg.inv(m)[0, 0]

    import mdrn.upscale

    monkeypatch.setattr(mdrn.upscale, "load_network", lambda weights, scale: Inverts())
    out = tmp_path / "net.onnx"
    assert main([str(out), "--weights", "made_up.pt", "--scale", "2"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: made_up.pt: ") and "\x1b[" not in err[0], err
    assert captured.out == "" and not out.exists()


@pytest.mark.parametrize("package", ["onnx", "onnxscript"])
def test_without_the_export_extra_the_error_names_what_to_install(tmp_path, capsys, monkeypatch, package):
    # what torch.onnx raises where pip install 'mdrn[export]' never ran (sys.modules[package] = None does it
    # in a fresh process; here an earlier test may have imported the package already)
    def export_onnx(*args, **kwargs):
        raise ModuleNotFoundError(f"No module named {package!r}", name=package)

    monkeypatch.setattr(export, "export_onnx", export_onnx)
    assert main(["--weights", "mdrn_small", "--scale", "2", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: the ONNX export needs {package}, not installed here: pip install 'mdrn[export]'"
    assert not list(tmp_path.iterdir())


def test_check_onnx_refuses_an_image_the_network_refuses(tmp_path, capfd) -> None:
    """RLFN's 15x15 minimum is not in the graph: the check says so in one line instead of ONNX Runtime."""
    from mdrn.models import RLFN

    net = RLFN(n_feats=8, n_blocks=1, esa_channels=4, scale=2).eval()
    path = export_onnx(net, 2, tmp_path / "rlfn.onnx")
    write_image(tmp_path / "tiny.png", np.zeros((3, 5, 3), np.uint8), bit_depth=8)
    with pytest.raises(ValueError, match=r"^tiny\.png \(5x3\): RLFN needs at least 15x15"):
        check_onnx(path, net, 2, [tmp_path / "tiny.png"])
    assert "ONNXRuntimeError" not in capfd.readouterr().err
