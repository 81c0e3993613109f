"""NIfTI volumes enlarged in-plane slice by slice: header, data type, affine, planes, bad files."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from medical_data import make_nifti

from mdrn.clinical.enlarge import UpscaleOptions, upscale_image
from mdrn.clinical.inputs import open_inputs
from mdrn.io.images import ImageReadError
from mdrn.io.nifti import NiftiVolume
from mdrn.models import Bicubic
from mdrn.upscale import main


def _enlarge(src: Path, out: Path, *extra: str) -> int:
    return main([str(src), "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q", *extra])


def _voxel_centre(affine: np.ndarray, ijk: tuple[float, ...]) -> np.ndarray:
    return affine[:3, :3] @ np.asarray(ijk, float) + affine[:3, 3]


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii"])
def test_int16_volume_keeps_type_scaling_header_and_geometry(tmp_path, name) -> None:
    data = make_nifti(tmp_path / name, np.int16)
    assert _enlarge(tmp_path / name, tmp_path / "out") == 0
    out = tmp_path / "out" / name.replace("ct.", "ct_x2_bicubic.")
    src, got = nib.load(tmp_path / name), nib.load(out)
    assert got.shape == (40, 48, 5) and got.get_data_dtype() == np.int16
    assert (got.dataobj.slope, got.dataobj.inter) == (2.0, -1024.0)
    assert got.header.get_xyzt_units() == src.header.get_xyzt_units()
    assert (int(got.header["qform_code"]), int(got.header["sform_code"])) == (1, 2)
    assert got.header.get_zooms() == pytest.approx((0.4, 0.4, 2.5))
    assert b"x2 bicubic" in got.header["descrip"].tobytes()
    # new voxel (i, j) sits at old voxel ((i + 0.5) / 2 - 0.5, (j + 0.5) / 2 - 0.5): same world point
    for i, j, k in [(0, 0, 0), (7, 30, 3)]:
        old = ((i + 0.5) / 2 - 0.5, (j + 0.5) / 2 - 0.5, k)
        np.testing.assert_allclose(
            _voxel_centre(got.affine, (i, j, k)), _voxel_centre(src.affine, old), atol=1e-5
        )
    raw = np.asarray(got.dataobj.get_unscaled())
    with NiftiVolume(tmp_path / name) as volume:
        for k in range(5):
            expected = upscale_image(Bicubic(scales=(2,)), volume.slice(k), UpscaleOptions(scale=2))
            np.testing.assert_array_equal(raw[:, :, k], volume.to_raw(expected))
    assert np.abs(raw[::2, ::2].astype(float) - data).mean() < 40  # the same anatomy, not another volume


def test_float_volume_in_an_anatomical_plane(tmp_path) -> None:
    make_nifti(tmp_path / "mr.nii", np.float32)
    assert _enlarge(tmp_path / "mr.nii", tmp_path / "out", "--plane", "sagittal") == 0
    src, got = nib.load(tmp_path / "mr.nii"), nib.load(tmp_path / "out" / "mr_x2_bicubic.nii")
    # the affine's axis codes are L, A, S: the sagittal plane is voxel axes j and k
    assert got.shape == (20, 48, 10) and got.get_data_dtype() == np.float32
    assert got.header.get_zooms() == pytest.approx((0.8, 0.4, 1.25))
    values, original = np.asarray(got.dataobj), np.asarray(src.dataobj)
    np.testing.assert_allclose(values.mean(), original.mean(), rtol=0.02)
    span = float(original.max() - original.min())
    with NiftiVolume(tmp_path / "mr.nii", plane="sagittal") as volume:
        expected = upscale_image(Bicubic(scales=(2,)), volume.slice(3), UpscaleOptions(scale=2))
        np.testing.assert_allclose(values[3], volume.to_raw(expected), atol=span / 65535)


def test_slices_are_images_in_the_plane(tmp_path) -> None:
    data = make_nifti(tmp_path / "v.nii", np.int16)
    (stack,) = open_inputs(tmp_path / "v.nii", plane="ij")
    with stack:
        assert stack.kind == "volume" and stack.n_slices == 5
        image = stack.slice(2)
        assert image.array.shape == (24, 20)  # rows along j, columns along i
        np.testing.assert_array_equal(image.array.astype(np.int64) - image.signed_offset, data[:, :, 2].T)
    (stack,) = open_inputs(tmp_path / "v.nii", plane="ik")
    with stack:
        assert stack.n_slices == 24 and stack.slice(0).array.shape == (5, 20)


def test_bad_volumes_give_one_clear_error(tmp_path) -> None:
    make_nifti(tmp_path / "v.nii", np.int16)
    cut = tmp_path / "cut.nii"
    cut.write_bytes((tmp_path / "v.nii").read_bytes()[:2000])
    with pytest.raises(ImageReadError, match="truncated"):
        NiftiVolume(cut)
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(b"not gzip data at all")
    with pytest.raises(ImageReadError, match="fake.nii.gz"):
        NiftiVolume(fake)
    with pytest.raises(ImageReadError, match="exceed the limit"):
        NiftiVolume(tmp_path / "v.nii", max_pixels=100)
    assert _enlarge(cut, tmp_path / "out") == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("length", [0, -5])
def test_a_volume_with_an_axis_of_length_0_gives_one_clear_error(tmp_path, capsys, length) -> None:
    make_nifti(tmp_path / "v.nii", np.int16)
    data = bytearray((tmp_path / "v.nii").read_bytes())
    data[44:46] = np.int16(length).tobytes()  # dim[2]: nibabel opens it as shape (20, length, 5)
    (tmp_path / "v.nii").write_bytes(bytes(data))
    assert _enlarge(tmp_path / "v.nii", tmp_path / "out") == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "v.nii" in err[0] and f"an axis of {length})" in err[0], err


def test_qform_and_sform_are_each_enlarged_from_their_own_matrix(tmp_path) -> None:
    # a scanner qform and an sform registered elsewhere (e.g. to a template): both stay, each enlarged
    data = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    sform = np.array([[0.8, 0, 0, -10], [0, -0.9, 0, 20], [0, 0, 3.0, 5], [0, 0, 0, 1]])
    qform = np.array([[-0.8, 0, 0, 10], [0, 0.9, 0, -20], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, sform)
    img.header.set_qform(qform, code=1)
    img.header.set_sform(sform, code=2)
    nib.save(img, tmp_path / "v.nii")
    assert _enlarge(tmp_path / "v.nii", tmp_path / "out") == 0
    got = nib.load(tmp_path / "out" / "v_x2_bicubic.nii").header
    for before, after in [(qform, got.get_qform()), (sform, got.get_sform())]:
        # the outer corners of the voxel grid are the same world points
        for old, new in [((-0.5, -0.5, -0.5), (-0.5, -0.5, -0.5)), ((5.5, 4.5, 3.5), (11.5, 9.5, 3.5))]:
            np.testing.assert_allclose(_voxel_centre(after, new), _voxel_centre(before, old), atol=1e-4)


@pytest.mark.parametrize("where", ["enlarging", "opening"])
def test_ctrl_c_leaves_no_decompressed_volume_in_the_temporary_folder(tmp_path, monkeypatch, where) -> None:
    import tempfile

    import mdrn.upscale

    for name in ("a.nii.gz", "b.nii.gz"):
        make_nifti(tmp_path / name, np.float32)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "enlarging":  # while the first volume is enlarged, the second already open
        monkeypatch.setattr(mdrn.upscale, "enlarge_stack", interrupt)
    else:  # while the second volume's values are read, the first already open
        calls = iter([NiftiVolume._value_mapping, interrupt])
        monkeypatch.setattr(NiftiVolume, "_value_mapping", lambda self: next(calls)(self))
    args = [str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"), "--scale", "2", "--weights", "bicubic"]
    code = main([*args, "-o", str(tmp_path / "out"), "-q"])
    assert code == 130  # one line, exit 130, wherever Ctrl-C came
    assert list(scratch.iterdir()) == []


def test_a_volume_dropped_without_close_leaves_no_decompressed_copy(tmp_path, monkeypatch) -> None:
    # a caller that forgets close() (a script, a test) left the .nii.gz's decompressed copy (patient data) in
    # the temporary folder for good; now it goes when the volume is collected
    import gc
    import tempfile

    make_nifti(tmp_path / "a.nii.gz")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    volume = NiftiVolume(tmp_path / "a.nii.gz")
    assert volume.slice(0).array.size and len(list(scratch.iterdir())) == 1
    del volume
    gc.collect()
    assert list(scratch.iterdir()) == []


_TERMINATED_WHILE_ENLARGING = """
import os, signal, sys, time
import mdrn.upscale

def terminated(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)  # what kill, timeout, systemd or a batch scheduler sends
    time.sleep(30)

mdrn.upscale.enlarge_stack = terminated
sys.exit(mdrn.upscale.main(sys.argv[1:]))
"""


def test_sigterm_leaves_no_decompressed_volume_nor_partial_output(tmp_path) -> None:
    # before, SIGTERM ended mdrn-upscale at once: the volume's decompressed copy (patient data) stayed in
    # the temporary folder and the partial outputs in the output folder
    import os
    import subprocess
    import sys

    for name in ("a.nii.gz", "b.nii.gz"):
        make_nifti(tmp_path / name, np.float32)
    scratch, out = tmp_path / "tmp", tmp_path / "out"
    scratch.mkdir()
    args = [str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"), "--scale", "2", "--weights", "bicubic"]
    proc = subprocess.run(
        [sys.executable, "-c", _TERMINATED_WHILE_ENLARGING, *args, "-o", str(out), "-q"],
        env={**os.environ, "TMPDIR": str(scratch)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 143, proc.stderr
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert list(scratch.iterdir()) == []
    assert list(out.iterdir()) == []


def test_nan_and_infinite_voxels_of_a_float_map_stay_where_they_were(tmp_path) -> None:
    # a researcher's map marks "outside" with NaN; +-inf are kept too, each over the s x s voxels it became
    data = np.random.default_rng(0).normal(100, 10, (8, 6, 2)).astype(np.float32)
    data[:3, :2, 0] = np.nan
    data[5, 4, 1], data[6, 1, 1] = np.inf, -np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "map.nii")
    assert _enlarge(tmp_path / "map.nii", tmp_path / "out") == 0
    got = np.asarray(nib.load(tmp_path / "out" / "map_x2_bicubic.nii").dataobj)
    big = np.repeat(np.repeat(data, 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(big))
    np.testing.assert_array_equal(got[np.isinf(big)], big[np.isinf(big)])
    finite = np.isfinite(big)
    assert np.isfinite(got[finite]).all()
    assert got[finite].min() >= np.nanmin(data[np.isfinite(data)]) - 1e-3
    assert got[finite].max() <= np.nanmax(data[np.isfinite(data)]) + 1e-3


def test_a_label_map_is_refused_not_interpolated_into_other_labels(tmp_path) -> None:
    # labels 0..3 came back with 4 and in-between labels (bicubic), a silently wrong segmentation
    labels = np.random.default_rng(0).integers(0, 4, (6, 5, 2)).astype(np.int16)
    img = nib.Nifti1Image(labels, np.eye(4))
    img.header.set_intent("label")
    nib.save(img, tmp_path / "seg.nii")
    with pytest.raises(ImageReadError, match="seg.nii: a NIfTI label map"):
        NiftiVolume(tmp_path / "seg.nii")
    assert _enlarge(tmp_path / "seg.nii", tmp_path / "out") == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
