"""spandrel both ways (issue 25): any spandrel model in mdrn's protocol and tools; mdrn's models in spandrel.

The spandrel networks are built from spandrel's own classes with small random weights, saved as state
dicts (.pth and .safetensors) and loaded through mdrn; their output must equal spandrel's own call
(``ModelLoader().load_from_file(path)(image)``) within 1e-5.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, shared_path

from mdrn.models.spandrel_net import SpandrelNet, SpandrelUnavailableError, import_spandrel

try:
    spandrel = import_spandrel()
except SpandrelUnavailableError as exc:  # CI installs it (.ci/run): there this skip is a failure
    pytest.skip(str(exc), allow_module_level=True)

from mdrn.io.images import ImageData, image_to_tensor, read_image, tensor_to_array  # noqa: E402
from mdrn.models import EDSR, MDRN  # noqa: E402
from mdrn.models.inference import upscale  # noqa: E402
from mdrn.weights import SPEC_TENSOR, CheckpointError, load_model, save_model, shipped_path  # noqa: E402

ATOL = 1e-5
#: spandrel's SwinIR calls torch.meshgrid without ``indexing`` (its code, not ours)
pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),  # spandrel's .pt
]


def _builders() -> dict:
    """Small configurations of spandrel's own classes: (constructor, scale)."""
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.OmniSR import OmniSR
    from spandrel.architectures.RCAN import RCAN
    from spandrel.architectures.SAFMN import SAFMN
    from spandrel.architectures.SPAN import SPAN
    from spandrel.architectures.SwinIR import SwinIR

    def swinir(colors: int) -> torch.nn.Module:
        return SwinIR(img_size=16, in_chans=colors, embed_dim=12, depths=[2], num_heads=[2], window_size=4,
                      mlp_ratio=2.0, upscale=2, upsampler="pixelshuffledirect")  # fmt: skip

    return {
        "SwinIR": (lambda: swinir(3), 2),
        "SPAN": (lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=3), 3),
        "SAFMN": (lambda: SAFMN(dim=8, n_blocks=1, upscaling_factor=2), 2),
        "RCAN": (lambda: RCAN(scale=2, n_resgroups=1, n_resblocks=1, n_feats=16, reduction=4), 2),
        "OmniSR": (lambda: OmniSR(num_feat=16, block_num=1, window_size=4, res_num=1, up_scale=2), 2),
        "RealESRGANCompact": (lambda: Compact(num_feat=8, num_conv=2, upscale=4), 4),
        "SwinIR_gray": (lambda: swinir(1), 2),
    }


ARCHS = ["SwinIR", "SPAN", "SAFMN", "RCAN", "OmniSR", "RealESRGANCompact", "SwinIR_gray"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, int]]:
    """name -> (.pth, .safetensors, scale) of each small random network."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("spandrel")
    out = {}
    for name, (build, scale) in _builders().items():
        torch.manual_seed(0)
        net = build().eval()
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        state = {k: v.contiguous() for k, v in net.state_dict().items()}
        torch.save(state, folder / f"{name}.pth")
        save_file(state, str(folder / f"{name}.safetensors"))
        out[name] = (folder / f"{name}.pth", folder / f"{name}.safetensors", scale)
    return out


def _theirs(path: Path, x: torch.Tensor) -> torch.Tensor:
    """spandrel's own call on a copy of ``x`` (RCAN changes its input in place)."""
    return spandrel.ModelLoader().load_from_file(path)(x.clone())


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("fmt", [0, 1], ids=["pth", "safetensors"])
def test_any_spandrel_file_loads_through_mdrn_with_spandrels_output(files, name, fmt) -> None:
    path, scale = files[name][fmt], files[name][2]
    net = load_model(path)
    colors = 1 if name.endswith("gray") else 3
    assert isinstance(net, SpandrelNet) and type(net).__name__ == name.removesuffix("_gray")
    assert net.scales == (scale,) and net.n_colors == colors and not net.training
    torch.manual_seed(1)
    x = torch.rand(1, colors, 13, 19)  # 13: under SwinIR's and OmniSR's 16, not a multiple of SAFMN's 8
    before = x.clone()
    ours = upscale(net, x, scale)
    assert torch.equal(x, before)  # the caller's image is never changed
    assert ours.shape == (1, colors, 13 * scale, 19 * scale)
    torch.testing.assert_close(ours, _theirs(path, x), rtol=0, atol=ATOL)
    lacks = f"{type(net).__name__} has no x{scale + 1} branch.*scales \\[{scale}\\]"
    with pytest.raises(ValueError, match=lacks):
        net(x, scale + 1)


def test_gray_images_go_through_the_rgb_planes_and_rgb_through_a_gray_model(files) -> None:
    path, _, scale = files["RCAN"]
    net = load_model(path)
    gray = torch.rand(1, 1, 16, 12)
    rgb_out = _theirs(path, gray.expand(-1, 3, -1, -1).contiguous())
    torch.testing.assert_close(upscale(net, gray, scale), rgb_out.mean(1, keepdim=True), rtol=0, atol=ATOL)
    path, _, scale = files["SwinIR_gray"]
    rgb = torch.rand(1, 3, 16, 12)
    planes = torch.cat([_theirs(path, rgb[:, c : c + 1]) for c in range(3)], 1)
    torch.testing.assert_close(upscale(load_model(path), rgb, scale), planes, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", ["SPAN", "RealESRGANCompact"])
def test_convolution_only_models_tile_seamlessly(files, name) -> None:
    path, _, scale = files[name]
    net = load_model(path)
    x = torch.rand(1, 3, 26, 22)
    whole = upscale(net, x, scale)
    torch.testing.assert_close(upscale(net, x, scale, tile=13), whole, rtol=0, atol=ATOL)
    if name == "RealESRGANCompact":  # (SPAN fuses its weights at every call: 1 s each)
        ens = upscale(net, x[..., :12, :10], scale, ensemble=True)
        assert ens.shape == (1, 3, 12 * scale, 10 * scale) and torch.isfinite(ens).all()


@pytest.mark.parametrize("name", ["SwinIR", "SAFMN", "RCAN", "OmniSR"])
def test_tiles_pad_and_crop_like_the_whole_image(files, name) -> None:
    """Tiling composes with the padding: with context reaching the whole image, every tile (of any size, odd
    ones included) gives exactly the untiled result; with the default context it runs (approximately:
    attention and pooling see only their tile)."""
    path, _, scale = files[name]
    net = load_model(path)
    x = torch.rand(1, 3, 27, 21)
    whole = upscale(net, x, scale)
    torch.testing.assert_close(upscale(net, x, scale, tile=11, overlap=27), whole, rtol=0, atol=ATOL)
    tiled = upscale(net, x, scale, tile=11)
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()


def test_the_clinician_path_16_bit_bands_and_dicom(files, tmp_path) -> None:
    from PIL import Image
    from pydicom.data import get_testdata_file

    from mdrn.clinical.enlarge import UpscaleOptions, enlarge_bands
    from mdrn.upscale import main

    path, _, scale = files["RealESRGANCompact"]
    net = load_model(path)
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 65536, (30, 26), dtype=np.uint16)
    image = ImageData(arr, 16)
    opts = UpscaleOptions(scale=scale, tile=8, band_values=26 * scale * scale * 7)  # 7 input rows per band
    bands = list(enlarge_bands(net, image, opts))
    assert len(bands) == 5 and all(b.dtype == np.uint16 for b in bands)
    ref = tensor_to_array(_theirs(path, image_to_tensor(image)[None].expand(-1, 3, -1, -1)).mean(1)[0:1], 16)
    assert np.abs(np.concatenate(bands).astype(int) - ref.astype(int)).max() <= 1  # float rounding of ties
    Image.fromarray(arr).save(tmp_path / "gray16.png")
    out = tmp_path / "out"
    assert main([str(tmp_path / "gray16.png"), "--scale", str(scale), "--weights", str(path), "-o", str(out),
                 "-q"]) == 0  # fmt: skip
    got = read_image(out / f"gray16_x{scale}_{path.stem}.png")
    assert got.bit_depth == 16 and got.array.shape == (30 * scale, 26 * scale)
    assert np.abs(got.array.astype(int) - ref.astype(int)).max() <= 1  # its default tiles: 256 pixels
    dcm = Path(get_testdata_file("CT_small.dcm"))
    rcan = files["RCAN"][0]
    assert main([str(dcm), "--scale", "2", "--weights", str(rcan), "-o", str(out), "-q"]) == 0
    import pydicom

    ds = pydicom.dcmread(out / "CT_small_x2_RCAN.dcm")
    assert (ds.Rows, ds.Columns) == (256, 256) and "RCAN" in str(ds.get("DerivationDescription", ""))


def test_the_app_and_weights_info_take_a_spandrel_file(files, tmp_path, capsys) -> None:
    from PIL import Image

    from mdrn.app import process_files
    from mdrn.weights import main

    path, _, scale = files["SAFMN"]
    rgb = np.random.default_rng(0).integers(0, 256, (20, 18, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    results, errors = process_files([tmp_path / "in.png"], scale, str(path), tmp_path / "work")
    assert not errors and len(results) == 1 and results[0].model == "SAFMN"
    got = read_image(results[0].files[0])
    ref = tensor_to_array(_theirs(path, image_to_tensor(ImageData(rgb, 8))[None])[0], 8)
    assert np.abs(got.array.astype(int) - ref.astype(int)).max() <= 1
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "arch: SAFMN (spandrel)" in out and '"scales": [2]' in out and "parameters: " in out
    assert main(["convert", str(path), str(tmp_path / "x.safetensors")]) == 1
    assert "a spandrel SAFMN model; use the file as it is" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_scores_a_spandrel_file_on_set5(files, tmp_path) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from mdrn.data.cache import make_lr
    from mdrn.evaluate import evaluate
    from mdrn.protocol.metrics import score
    from mdrn.protocol.resize import modcrop

    path, _, scale = files["SAFMN"]
    root = shared_path("datasets")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        overrides = [f"weights={path}", f"eval.root={root}", "eval.sets=[Set5]"]
        cfg = compose(config_name="eval", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    rows = evaluate(cfg)
    assert len(rows) == 5 and {r["scale"] for r in rows} == {scale}  # its scale, read from the file
    row = next(r for r in rows if r["image"] == "bird.png")
    img = read_image(root / "Set5" / "bird.png")
    hr = modcrop(image_to_tensor(img, torch.float64)[None], scale)
    sr = _theirs(path, make_lr(hr, scale, 8).float())
    assert row["psnr"] == pytest.approx(float(score(sr, hr, scale=scale)[0][0]), abs=1e-6)


def test_a_file_nobody_knows_is_one_line_naming_it_and_the_architectures(tmp_path) -> None:
    torch.save({"encoder.conv.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "mystery.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "mystery.pth")
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{tmp_path / 'mystery.pth'}: ")
    assert f"spandrel {spandrel.__version__} knows no architecture" in text
    for arch in ("SwinIR", "SPAN", "SAFMN", "RCAN", "OmniSR", "HAT", "ESRGAN"):
        assert arch in text


def test_models_mdrn_cannot_run_are_refused_by_name(tmp_path) -> None:
    from spandrel.architectures.SPAN import SPAN

    x1 = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=1)
    torch.save(x1.state_dict(), tmp_path / "x1.pth")
    with pytest.raises(CheckpointError, match=r"x1.pth: .*SPAN model for restoration \(x1\).*x2 or more"):
        load_model(tmp_path / "x1.pth")


# ---------------------------------------------------------------------------------------------------- #
# importing spandrel without torchvision


def _python(code: str, tmp_path: Path, extra_path: Path | None = None) -> str:
    """Run ``code`` in a fresh interpreter (this checkout first on the path); return its stdout."""
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(p) for p in (extra_path, ROOT) if p] + [env.get("PYTHONPATH", "")]
    )
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


CHECK_IMPORT = """
    import importlib, sys
    from mdrn.models.spandrel_net import TorchvisionMissingError, import_spandrel
    spandrel = import_spandrel()
    assert len(spandrel.MAIN_REGISTRY) >= 40
    print("left:", sorted(k for k in sys.modules if k.split(".")[0] == "torchvision"))
    docs = {k: getattr(m, "__doc__", None) or "" for k, m in list(sys.modules.items())}
    print("placeholders:", [k for k, doc in docs.items() if "placeholder while spandrel" in doc])
    lama = importlib.import_module("spandrel.architectures.LaMa.__arch.LaMa")
    restore = importlib.import_module("spandrel.architectures.RestoreFormer")
    try:
        lama.rotate(None, 0.0)
        print("rotate:", lama.rotate.__module__)
    except TorchvisionMissingError as exc:
        print("missing:", exc)
    try:
        restore.tv_normalize(None, [0.5], [0.5])
    except TorchvisionMissingError as exc:
        print("missing:", exc)
    try:
        import torchvision
        print("torchvision:", torchvision.__file__)
    except ImportError as exc:
        print("no torchvision:", type(exc).__name__)
"""


def test_spandrel_imports_without_torchvision_and_leaves_no_fake_behind(tmp_path) -> None:
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("a torchvision is installed here; the fake-torchvision tests below cover both cases")
    out = _python(CHECK_IMPORT, tmp_path)
    assert "left: []" in out and "placeholders: []" in out and "no torchvision: ModuleNotFoundError" in out
    assert out.count("missing: torchvision.transforms.functional.") == 2
    assert "rotate is needed by this spandrel architecture (LaMa, RestoreFormer)" in out
    assert "normalize is needed" in out and "torchvision is not installed" in out


def _fake_torchvision(root: Path, functional: str) -> Path:
    pkg = root / "torchvision"
    (pkg / "transforms").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "transforms" / "__init__.py").write_text("")
    (pkg / "transforms" / "functional.py").write_text(textwrap.dedent(functional))
    return root


def test_a_working_torchvision_is_the_one_spandrel_gets(tmp_path) -> None:
    site = _fake_torchvision(tmp_path / "site", """
        InterpolationMode = type("InterpolationMode", (), {"BILINEAR": 2})
        def rotate(x, angle, mode=None, fill=0):
            return x
        def normalize(x, mean, std):
            return x
    """)  # fmt: skip
    out = _python(CHECK_IMPORT, tmp_path, site)
    assert "rotate: torchvision.transforms.functional" in out and "missing:" not in out
    assert f"torchvision: {site / 'torchvision' / '__init__.py'}" in out
    assert "'torchvision.transforms.functional'" in out and "placeholders: []" in out  # the real one stays


def test_a_torchvision_that_does_not_import_is_stood_in_for(tmp_path) -> None:
    site = _fake_torchvision(
        tmp_path / "site", 'raise RuntimeError("operator torchvision::nms does not exist")\n'
    )
    out = _python(CHECK_IMPORT, tmp_path, site)
    # the broken install's own packages (they imported) stay as they were; none of the placeholders
    assert "left: ['torchvision', 'torchvision.transforms']" in out and "placeholders: []" in out
    assert out.count("missing:") == 2 and "torchvision does not import (RuntimeError: operator" in out


def test_without_spandrel_a_foreign_file_says_how_to_install_it(files, tmp_path) -> None:
    out = _python(f"""
        import sys
        sys.modules["spandrel"] = None  # as if not installed
        from mdrn.weights import CheckpointError, load_model
        try:
            load_model({str(files["SPAN"][0])!r})
        except CheckpointError as exc:
            print(exc)
    """, tmp_path)  # fmt: skip
    assert "SPAN.pth: " in out and "load with spandrel, which is not installed" in out
    assert "pip install 'mdrn[spandrel]'" in out


# ---------------------------------------------------------------------------------------------------- #
# mdrn's models in spandrel


@pytest.fixture(scope="module")
def registered():
    import mdrn.spandrel

    return mdrn.spandrel


def test_registration_runs_after_spandrels_own_architectures(registered, files) -> None:
    order = spandrel.MAIN_REGISTRY.architectures("detection")
    assert order[-1].architecture is registered.ARCHITECTURE
    import importlib

    importlib.reload(registered)  # a second registration is ignored
    assert sum(a.architecture.id == "mdrn" for a in spandrel.MAIN_REGISTRY.architectures()) == 1
    d = spandrel.ModelLoader().load_from_file(files["SwinIR"][0])  # spandrel's own files: unchanged
    assert d.architecture.name == "SwinIR"


def test_spandrel_loads_the_shipped_model_with_mdrns_output(registered) -> None:
    d = spandrel.ModelLoader().load_from_file(str(shipped_path("mdrn_small")))
    assert d.architecture is registered.ARCHITECTURE and d.purpose == "SR"
    assert d.scale == 2 and d.input_channels == d.output_channels == 3
    assert "bicubic_skip" in d.tags and "x2 of x2/x3/x4" in d.tags
    net = load_model("mdrn_small")
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():  # mdrn's output: upscale() applies the network's own input window, if it has one
        torch.testing.assert_close(d(x), upscale(net, x, 2).clamp(0, 1), rtol=0, atol=ATOL)
    x4 = registered.descriptor("mdrn_small", 4)
    with torch.no_grad():
        torch.testing.assert_close(x4(x), upscale(net, x, 4).clamp(0, 1), rtol=0, atol=ATOL)
    one = torch.rand(1, 3, 1, 1)  # any size
    assert d(one).shape == (1, 3, 2, 2)


def test_a_model_trained_with_an_input_window_keeps_it_in_spandrel(registered, tmp_path) -> None:
    """The window travels in the spec tensor; spandrel's call maps what it is given as mdrn maps an image."""
    from mdrn.models.window import set_rule

    torch.manual_seed(0)
    net = set_rule(MDRN(n_resblocks=1, n_feats=8, scales=(2, 3), bicubic_skip=True).eval(), "percentile")
    torch.nn.init.normal_(net.tail.weight, std=0.05)
    path = save_model(net, tmp_path / "windowed.safetensors")
    d = spandrel.ModelLoader().load_from_file(str(path))
    assert "percentile window" in d.tags
    x = 0.5 + 0.02 * torch.rand(1, 3, 15, 12)  # a narrow range, as a 16-bit CT
    with torch.no_grad():
        torch.testing.assert_close(d(x), upscale(net, x, 2).clamp(0, 1), rtol=0, atol=ATOL)
        assert float((d(x) - net(x, 2).clamp(0, 1)).abs().max()) > 1e-4  # not the raw network


@pytest.mark.parametrize("name", ["mdsr_baseline", "edsr_baseline_x2"])
def test_spandrel_loads_official_edsr_pytorch_checkpoints(registered, name) -> None:
    path = shared_path("reference", "edsr_pytorch", f"{name}_seed0.pt")
    io = torch.load(shared_path("reference", "edsr_pytorch", f"{name}_io.pt"), weights_only=True)
    d = spandrel.ModelLoader().load_from_file(path)
    assert d.scale == 2 and d.tags[0] == ("MDRN" if name.startswith("mdsr") else "EDSR")
    x = io["input"] / 255
    net = load_model(path)
    with torch.no_grad():
        torch.testing.assert_close(d(x), net(x, 2).clamp(0, 1), rtol=0, atol=ATOL)
        raw = d.model(x, 2) * 255  # the official output, unclamped, on 0..255
    torch.testing.assert_close(raw, io["output"][2], rtol=0, atol=1e-3)


@pytest.mark.parametrize(
    "net",
    [
        MDRN(n_resblocks=2, n_feats=8, scales=(2, 3), bicubic_skip=True),
        MDRN(n_resblocks=1, n_feats=8, scales=(4,), n_colors=1),
        EDSR(n_resblocks=2, n_feats=8, scale=3, bicubic_skip=True),
        EDSR(n_resblocks=1, n_feats=8, scale=2, n_colors=1, res_scale=0.1),
    ],
    ids=["mdrn-skip-x2x3", "mdrn-gray-x4", "edsr-skip-x3", "edsr-gray"],
)
def test_files_mdrn_writes_load_in_spandrel(registered, tmp_path, net) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    net.eval()
    path = save_model(net, tmp_path / "w.safetensors")
    d = spandrel.ModelLoader().load_from_file(path)
    s = min(net.scales)
    assert d.scale == s and d.input_channels == net.n_colors
    assert ("bicubic_skip" in d.tags) == net.bicubic_skip
    x = torch.rand(1, net.n_colors, 9, 14)
    with torch.no_grad():
        torch.testing.assert_close(d(x), net(x, s).clamp(0, 1), rtol=0, atol=ATOL)
    assert load_model(path).spec_args == net.spec_args  # and mdrn still reads its own file


def test_export_one_scale_for_spandrel_users(registered, tmp_path, capsys) -> None:
    out = tmp_path / "mdrn_small_x4.safetensors"
    assert registered.main(["export", "mdrn_small", str(out), "--scale", "4"]) == 0
    assert "spandrel loads it at x4" in capsys.readouterr().out
    d = spandrel.ModelLoader().load_from_file(out)
    assert d.scale == 4 and load_model(out).scales == (4,)
    assert "percentile window" in d.tags  # the input window mdrn_small was trained with is kept
    x = 0.5 + 0.02 * torch.rand(1, 3, 10, 12)  # a narrow range, as a 16-bit CT: the window matters
    with torch.no_grad():  # mdrn's output at x4, not the raw network's
        want = upscale(load_model("mdrn_small"), x, 4).clamp(0, 1)
        torch.testing.assert_close(d(x), want, rtol=0, atol=ATOL)
    assert registered.main(["export", "mdrn_small", str(out), "--scale", "4"]) == 1  # never overwritten
    assert "already exists" in capsys.readouterr().err
    assert registered.main(["export", "mdrn_small", str(tmp_path / "x8.safetensors"), "--scale", "8"]) == 1
    assert "no x8 branch" in capsys.readouterr().err


def test_an_older_mdrn_file_says_how_to_make_it_readable(registered, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    net = MDRN(n_resblocks=1, n_feats=8, scales=(2,), bicubic_skip=True).eval()
    path = save_model(net, tmp_path / "new.safetensors")
    state = {k: v for k, v in load_file(path).items() if k != SPEC_TENSOR}
    meta = {"mdrn_arch": json.dumps({"arch": "MDRN", "args": net.spec_args | {"scales": [2]}})}
    save_file(state, str(tmp_path / "old.safetensors"), metadata=meta)  # as mdrn wrote before
    with pytest.raises(ValueError, match="no 'mdrn_arch' tensor.*python -m mdrn.weights convert"):
        spandrel.ModelLoader().load_from_file(tmp_path / "old.safetensors")
    assert load_model(tmp_path / "old.safetensors").bicubic_skip  # mdrn reads it (metadata)
    from mdrn.weights import main

    assert main(["convert", str(tmp_path / "old.safetensors"), str(tmp_path / "again.safetensors")]) == 0
    assert spandrel.ModelLoader().load_from_file(tmp_path / "again.safetensors").model.bicubic_skip


def test_metadata_and_tensor_must_agree(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    net = EDSR(n_resblocks=1, n_feats=8, scale=2).eval()
    path = save_model(net, tmp_path / "w.safetensors")
    state = load_file(path)
    other = {"arch": "EDSR", "args": net.spec_args | {"bicubic_skip": True}}
    save_file(state, str(tmp_path / "bad.safetensors"), metadata={"mdrn_arch": json.dumps(other)})
    with pytest.raises(CheckpointError, match="bad.safetensors: metadata 'mdrn_arch' .* differ"):
        load_model(tmp_path / "bad.safetensors")
    save_file(state, str(tmp_path / "nometa.safetensors"))  # the tensor alone suffices
    assert load_model(tmp_path / "nometa.safetensors").spec_args == net.spec_args
