"""Derived DICOM as PS3.3 expects: tags, geometry, series, multi-frame, transfer syntaxes, dciodvfy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from medical_data import DCIODVFY_KNOWN, dciodvfy_errors, dicom_file, make_ct_series

from mdrn.clinical.enlarge import UpscaleOptions, upscale_image
from mdrn.clinical.inputs import open_inputs
from mdrn.io.dicom import Derivation, check_volume_header, read_header, sort_series
from mdrn.io.images import ImageReadError, read_image
from mdrn.models import Bicubic
from mdrn.upscale import main


def _bicubic(image, scale: int = 2) -> np.ndarray:
    return upscale_image(Bicubic(scales=(scale,)), image, UpscaleOptions(scale=scale))


def _enlarge(src: Path, out: Path, *extra: str) -> int:
    return main([str(src), "--scale", "2", "--weights", "bicubic", "-o", str(out), "-q", *extra])


def test_derived_ct_tags_geometry_and_pixels(tmp_path) -> None:
    src = dicom_file("CT_small.dcm")
    assert _enlarge(src, tmp_path) == 0
    ref, got = pydicom.dcmread(src), pydicom.dcmread(tmp_path / "CT_small_x2_bicubic.dcm")
    assert got.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert got.SOPInstanceUID != ref.SOPInstanceUID
    assert got.file_meta.MediaStorageSOPInstanceUID == got.SOPInstanceUID
    assert got.SeriesInstanceUID != ref.SeriesInstanceUID
    for kept in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "InstanceNumber", "SOPClassUID",
                 "ImageOrientationPatient", "SliceLocation", "RescaleSlope", "RescaleIntercept"):  # fmt: skip
        assert got.get(kept) == ref.get(kept), kept
    assert list(got.ImageType) == ["DERIVED", "SECONDARY", *list(ref.ImageType)[2:]]
    assert (
        "x2" in got.DerivationDescription
        and "bicubic interpolation (no network)" in got.DerivationDescription
    )
    assert got.DerivationCodeSequence[0].CodeValue == "113085"
    source = got.SourceImageSequence[0]
    assert source.ReferencedSOPInstanceUID == ref.SOPInstanceUID
    assert source.ReferencedSOPClassUID == ref.SOPClassUID
    assert source.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    assert "enlarged x2" in got.SeriesDescription.lower() and "bicubic" in got.SeriesDescription
    assert (got.Rows, got.Columns) == (2 * ref.Rows, 2 * ref.Columns)
    np.testing.assert_allclose([float(v) for v in got.PixelSpacing], [float(v) / 2 for v in ref.PixelSpacing])
    # the new first pixel centre lies a quarter of an old pixel up and left of the old one (x2)
    row, col = (
        np.array(ref.ImageOrientationPatient[:3], float),
        np.array(ref.ImageOrientationPatient[3:], float),
    )
    dr, dc = (float(v) for v in ref.PixelSpacing)
    expected = np.array(ref.ImagePositionPatient, float) - 0.25 * (dc * row + dr * col)
    np.testing.assert_allclose([float(v) for v in got.ImagePositionPatient], expected, atol=1e-5)
    np.testing.assert_array_equal(
        read_image(tmp_path / "CT_small_x2_bicubic.dcm").array, _bicubic(read_image(src))
    )
    assert got.PixelRepresentation == 1 and got.BitsStored == ref.BitsStored


def test_position_follows_pixel_centres_for_any_scale(tmp_path) -> None:
    """Pixel (r, c) of the x3 image lies where MATLAB bicubic puts it: (r + 0.5) / 3 - 0.5 old pixels."""
    src = dicom_file("MR_small.dcm")
    assert main([str(src), "--scale", "3", "--weights", "bicubic", "-o", str(tmp_path), "-q"]) == 0
    ref, got = pydicom.dcmread(src), pydicom.dcmread(tmp_path / "MR_small_x3_bicubic.dcm")

    def world(ds, r: float, c: float) -> np.ndarray:
        iop = np.array(ds.ImageOrientationPatient, float)
        dr, dc = (float(v) for v in ds.PixelSpacing)
        return np.array(ds.ImagePositionPatient, float) + c * dc * iop[:3] + r * dr * iop[3:]

    for r, c in [(0, 0), (5, 17), (191, 191)]:
        np.testing.assert_allclose(
            world(got, r, c), world(ref, (r + 0.5) / 3 - 0.5, (c + 0.5) / 3 - 0.5), atol=1e-4
        )


def test_lossy_compression_is_kept_and_set(tmp_path) -> None:
    kept = dicom_file("JPEG2000.dcm")  # LossyImageCompression 01 with its ratio and method
    assert _enlarge(kept, tmp_path) == 0
    ref, got = pydicom.dcmread(kept), pydicom.dcmread(tmp_path / "JPEG2000_x2_bicubic.dcm")
    assert got.LossyImageCompression == "01"
    for tag in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
        assert got.get(tag) == ref.get(tag)
    # a JPEG-baseline source that does not say it was lossy: the derived image says so
    ds = pydicom.dcmread(dicom_file("SC_rgb_jpeg_dcmtk.dcm"))
    del ds.LossyImageCompression
    unflagged = tmp_path / "jpeg.dcm"
    ds.save_as(unflagged)
    assert _enlarge(unflagged, tmp_path) == 0
    got = pydicom.dcmread(tmp_path / "jpeg_x2_bicubic.dcm")
    assert got.LossyImageCompression == "01" and "ISO_10918_1" in list(got.LossyImageCompressionMethod)
    assert got.PhotometricInterpretation == "RGB" and got.SamplesPerPixel == 3


def test_big_endian_source_is_read_and_written_little_endian(tmp_path) -> None:
    assert _enlarge(dicom_file("MR_small_bigendian.dcm"), tmp_path) == 0
    got = read_image(tmp_path / "MR_small_bigendian_x2_bicubic.dcm")
    assert got.dicom.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    np.testing.assert_array_equal(got.array, _bicubic(read_image(dicom_file("MR_small.dcm"))))


def test_overlay_is_enlarged_with_the_image(tmp_path) -> None:
    src = dicom_file("examples_overlay.dcm")
    assert _enlarge(src, tmp_path) == 0
    ref, got = pydicom.dcmread(src), pydicom.dcmread(tmp_path / "examples_overlay_x2_bicubic.dcm")
    big = np.repeat(np.repeat(ref.overlay_array(0x6000), 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(got.overlay_array(0x6000), big)
    assert [int(v) for v in got[0x60000050].value] == [(int(v) - 1) * 2 + 1 for v in ref[0x60000050].value]
    assert "IconImageSequence" not in got  # a thumbnail of the source is not the enlarged image's


def test_multi_frame_is_enlarged_frame_by_frame(tmp_path) -> None:
    src = dicom_file("emri_small.dcm")
    assert _enlarge(src, tmp_path) == 0
    got = pydicom.dcmread(tmp_path / "emri_small_x2_bicubic.dcm")
    ref = pydicom.dcmread(src)
    assert int(got.NumberOfFrames) == int(ref.NumberOfFrames) == 10
    assert got.ImageType[0] == "DERIVED" and got.ImageType[1] == ref.ImageType[1]  # enhanced: value 2 kept
    (stack,) = open_inputs(src)
    for i in (0, 9):
        np.testing.assert_array_equal(got.pixel_array[i], _bicubic(stack.slice(i)))


def test_series_folder_becomes_one_derived_series(tmp_path) -> None:
    files = make_ct_series(tmp_path / "CT", 5)
    assert _enlarge(tmp_path / "CT", tmp_path / "out") == 0
    out = tmp_path / "out" / "CT_x2_bicubic"
    derived = {p.name: pydicom.dcmread(p) for p in sorted(out.iterdir())}
    assert sorted(derived) == sorted(f"{p.name}_x2_bicubic.dcm" for p in files)
    sources = {p.name: pydicom.dcmread(p) for p in files}
    assert len({ds.SeriesInstanceUID for ds in derived.values()}) == 1
    new_series = next(iter(derived.values())).SeriesInstanceUID
    assert new_series not in {ds.SeriesInstanceUID for ds in sources.values()}
    assert len({ds.SOPInstanceUID for ds in derived.values()}) == 5
    # a new series number too: a PACS lists the derived series apart from its source (source + 1000 x scale)
    numbers = {int(ds.SeriesNumber) for ds in sources.values()}
    assert {int(ds.SeriesNumber) for ds in derived.values()} == {n + 2000 for n in numbers}
    for name, ds in sources.items():
        got = derived[f"{name}_x2_bicubic.dcm"]
        assert got.InstanceNumber == ds.InstanceNumber
        assert got.SourceImageSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
        assert float(got.ImagePositionPatient[2]) == pytest.approx(float(ds.ImagePositionPatient[2]))
    # imported again, the derived series sorts along the slice normal like the source
    (stack,) = open_inputs(out)
    assert stack.kind == "series" and stack.n_slices == 5
    assert [int(pydicom.dcmread(p).InstanceNumber) for p in stack.files] == [1, 2, 3, 4, 5]


def test_series_sorting_falls_back_to_instance_number(tmp_path) -> None:
    files = make_ct_series(tmp_path / "CT", 3)
    headers = []
    for p in files:
        ds = pydicom.dcmread(p)
        del ds.ImagePositionPatient
        headers.append((p, ds))
    (group,) = sort_series(headers[::-1])
    assert [int(ds.InstanceNumber) for _, ds in group] == [1, 2, 3]


def test_derivation_gives_one_series_uid_per_source_series() -> None:
    how = Derivation(2, "bicubic interpolation (no network)", "bicubic")
    assert how.series_uid("1.2.3") == how.series_uid("1.2.3") != how.series_uid("1.2.4")


def test_not_dicom_truncated_and_over_the_limit(tmp_path) -> None:
    fake = tmp_path / "fake.dcm"
    fake.write_text("not a DICOM file\n")
    with pytest.raises(ImageReadError, match="not a DICOM file"):
        read_image(fake)
    data = dicom_file("CT_small.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-5000])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(cut)
    with pytest.raises(ImageReadError, match="exceed the limit"):
        read_image(dicom_file("CT_small.dcm"), max_pixels=128 * 127)
    cut_frames = tmp_path / "cut_frames.dcm"
    cut_frames.write_bytes(dicom_file("emri_small.dcm").read_bytes()[:-5000])
    assert _enlarge(cut_frames, tmp_path / "out") == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_image_cut_before_its_pixel_data_is_named_truncated_not_a_non_image(tmp_path) -> None:
    data = dicom_file("CT_small.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:4900])  # pydicom reads the elements before the cut
    with pytest.raises(ImageReadError, match=r"CT Image Storage object with no pixel data \(a truncated"):
        read_image(tmp_path / "cut.dcm")


def test_pixel_data_shorter_than_its_header_says_is_named(tmp_path) -> None:
    """Pixel data cut short inside a complete file, or NumberOfFrames above the frames stored: the
    stored and needed bytes, not the decoder's reshape error."""
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.PixelData = ds.PixelData[:100]
    short = tmp_path / "short.dcm"
    ds.save_as(short)
    with pytest.raises(
        ImageReadError, match=r"short.dcm: pixel data holds 100 bytes where 1 frame\(s\) of 128x128"
    ):
        read_image(short)
    ds = pydicom.dcmread(dicom_file("emri_small.dcm"))
    frames = int(ds.NumberOfFrames)
    ds.NumberOfFrames = frames + 1
    extra = tmp_path / "extra_frame.dcm"
    ds.save_as(extra)
    assert _enlarge(extra, tmp_path / "out") == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(ImageReadError, match=f"where {frames + 1} frame"):
        check_volume_header(extra, read_header(extra), None)


def test_a_damaged_element_gives_one_line_when_opened_not_a_traceback_when_copied(tmp_path, capsys) -> None:
    """A US value of 7 bytes: pydicom converts it only when used (copying the header into the output)."""
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.AcquisitionMatrix = [0, 128, 128, 0]
    ds.save_as(tmp_path / "ok.dcm")
    data = (tmp_path / "ok.dcm").read_bytes()
    at = data.index(b"\x18\x00\x10\x13US\x08\x00")
    (tmp_path / "bad.dcm").write_bytes(data[:at] + b"\x18\x00\x10\x13US\x07\x00" + data[at + 9 :])
    assert _enlarge(tmp_path / "bad.dcm", tmp_path / "out") == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "bad.dcm: damaged DICOM element (0018,1310)" in err[0], err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_compressed_file_claiming_a_billion_frames_gives_one_line(tmp_path, capsys) -> None:
    """Encapsulated pixel data is not checked against NumberOfFrames before decoding: the output would need
    an element over 4 GiB, whose length struct.pack refused with a traceback."""
    ds = pydicom.dcmread(dicom_file("MR_small_RLE.dcm"))
    ds.NumberOfFrames = 10**9
    ds.save_as(tmp_path / "frames.dcm")
    assert _enlarge(tmp_path / "frames.dcm", tmp_path / "out") == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "frames.dcm: 1000000000 frame(s) enlarged to 128x128" in err[0], err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


DCIODVFY_FILES = [
    "CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "RG1_UNCR.dcm",
    "US1_UNCR.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm", "examples_overlay.dcm", "emri_small.dcm",
]  # fmt: skip


@pytest.mark.parametrize("name", DCIODVFY_FILES)
def test_dciodvfy_finds_no_new_error(tmp_path, name) -> None:
    if shutil.which("dciodvfy") is None:
        if os.environ.get("CI"):
            pytest.fail("dciodvfy is missing in CI (apt-get install dicom3tools)")
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    src = dicom_file(name)
    assert _enlarge(src, tmp_path) == 0
    before = set(dciodvfy_errors(src))
    after = dciodvfy_errors(tmp_path / f"{src.stem}_x2_bicubic.dcm")
    prefix, modules = DCIODVFY_KNOWN
    new = [
        e
        for e in after
        if e not in before and not (e.startswith(f"Error - {prefix}") and e.endswith(modules))
    ]
    assert new == [], new


def test_enhanced_functional_groups_are_moved_and_rescaled(tmp_path) -> None:
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(dicom_file("emri_small.dcm"))
    item = Dataset
    shared = item()
    shared.PixelMeasuresSequence = [item()]
    shared.PixelMeasuresSequence[0].PixelSpacing = [0.8, 0.6]
    shared.PlaneOrientationSequence = [item()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal
    shared.MRImageFrameTypeSequence = [item()]
    shared.MRImageFrameTypeSequence[0].FrameType = ["ORIGINAL", "PRIMARY", "T1", "NONE"]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for k in range(int(ds.NumberOfFrames)):
        frame = item()
        frame.PlanePositionSequence = [item()]
        frame.PlanePositionSequence[0].ImagePositionPatient = [10.0 * k, -50.0, 40.0]
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    src = tmp_path / "enhanced.dcm"
    ds.save_as(src)
    assert _enlarge(src, tmp_path) == 0
    got = pydicom.dcmread(tmp_path / "enhanced_x2_bicubic.dcm")
    measures = got.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [0.4, 0.3]
    assert list(got.SharedFunctionalGroupsSequence[0].MRImageFrameTypeSequence[0].FrameType)[:2] == [
        "DERIVED",
        "PRIMARY",
    ]
    for k, frame in enumerate(got.PerFrameFunctionalGroupsSequence):
        # a quarter pixel back along the rows (+y, column spacing 0.6) and the columns (-z, row spacing 0.8)
        expected = [10.0 * k, -50.0 - 0.25 * 0.6, 40.0 + 0.25 * 0.8]
        np.testing.assert_allclose(
            [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient], expected
        )


def test_a_syntax_without_decoder_names_the_package_to_install(tmp_path, capsys) -> None:
    src = dicom_file("JPGLosslessP14SV1_1s_1f_8b.dcm")  # JPEG lossless: needs pylibjpeg-libjpeg or gdcm
    try:
        import pylibjpeg  # noqa: F401
    except ImportError:
        assert _enlarge(src, tmp_path) == 1
        (line,) = [e for e in capsys.readouterr().err.splitlines() if e.startswith("error:")]
        assert src.name in line and "pylibjpeg" in line
    else:
        assert _enlarge(src, tmp_path) == 0


def test_derived_series_number() -> None:
    from mdrn.io.dicom import derived_series_number

    assert derived_series_number(3, 2) == 2003 and derived_series_number("7", 4) == 4007
    assert derived_series_number(None, 2) == 2000 and derived_series_number("", 3) == 3000
    assert derived_series_number(-1, 2) == 2000 and derived_series_number(2**31 - 5, 2) == 2**31 - 1


def test_a_malformed_patient_value_is_not_printed_by_mdrn_upscale(tmp_path) -> None:
    """pydicom's validation warning quotes the value ("Invalid value for VR DA: '1945-08-17'"): mdrn-upscale
    (and mdrn-app, mdrn-pacs: the same quiet_value_warnings) must not put a patient's data on stderr."""
    import subprocess
    import sys

    from pydicom import config

    from mdrn.io.dicom import quiet_value_warnings

    with quiet_value_warnings():
        ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
        ds.PatientBirthDate = "1945-08-17"  # not a DA: pydicom warns, quoting it
        ds.save_as(tmp_path / "bd.dcm")
    assert config.settings.reading_validation_mode == config.WARN  # restored after the block
    cmd = [sys.executable, "-m", "mdrn.upscale", str(tmp_path / "bd.dcm"), "--scale", "2"]
    proc = subprocess.run(
        [*cmd, "--weights", "bicubic", "-o", str(tmp_path / "out"), "-q"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "1945-08-17" not in proc.stdout + proc.stderr
    assert pydicom.dcmread(next((tmp_path / "out").iterdir())).PatientBirthDate == "1945-08-17"


def test_uncompressed_ybr_full_422_is_read_as_rgb(tmp_path) -> None:
    # YBR_FULL_422 stores 2 bytes a pixel (two pixels share Cb and Cr): a valid file, not a short one
    src = dicom_file("SC_ybr_full_422_uncompressed.dcm")
    image = read_image(src)
    assert image.array.shape == (100, 100, 3) and image.photometric == "RGB"
    assert _enlarge(src, tmp_path) == 0
    got = pydicom.dcmread(tmp_path / "SC_ybr_full_422_uncompressed_x2_bicubic.dcm")
    assert got.PhotometricInterpretation == "RGB" and got.pixel_array.shape == (200, 200, 3)
    np.testing.assert_allclose(got.pixel_array[::2, ::2].mean(), image.array.mean(), atol=2)


def test_a_segmentation_is_refused_not_written_with_an_invalid_bit_depth(tmp_path, capsys) -> None:
    # a 1-bit BINARY segmentation came out as 8 bits allocated, 1 stored: invalid for the SEG IOD
    src = dicom_file("liver_1frame.dcm")
    assert pydicom.dcmread(src, stop_before_pixels=True).SOPClassUID.name == "Segmentation Storage"
    assert _enlarge(src, tmp_path / "out") == 1
    (line,) = [e for e in capsys.readouterr().err.splitlines() if e.startswith("error:")]
    assert src.name in line and "Segmentation" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_12_bit_jpeg_that_pillow_cannot_decode_names_the_decoder_to_install(tmp_path, capsys) -> None:
    # JPEG Extended with 12-bit samples (older CT/MR archives): Pillow is installed but reads 8 bits only
    src = dicom_file("JPGExtended.dcm")
    try:
        import pylibjpeg  # noqa: F401
    except ImportError:
        assert _enlarge(src, tmp_path) == 1
        (line,) = [e for e in capsys.readouterr().err.splitlines() if e.startswith("error:")]
        assert src.name in line and "JPEG Extended" in line and "pip install 'pylibjpeg" in line
    else:
        assert _enlarge(src, tmp_path) == 0


def test_a_patient_cd_export_is_searched_below_its_dicomdir(tmp_path, capsys) -> None:
    """A media export (DICOMDIR, slices in PT*/ST*/SE* folders with equal names): each series enlarged into
    the same folder tree, none lost to a name collision; a plain folder's subfolders are not searched."""
    from pydicom.fileset import FileSet

    fs = FileSet()
    for name in ("a", "b"):
        for f in make_ct_series(tmp_path / "staging" / name, 3):
            fs.add(f)
    cd = tmp_path / "cd"
    fs.write(cd)
    assert (cd / "DICOMDIR").is_file()
    assert _enlarge(cd, tmp_path / "out") == 0
    outputs = sorted((tmp_path / "out" / "cd_x2_bicubic").rglob("*.dcm"))
    assert len(outputs) == 6
    assert len({f.relative_to(tmp_path / "out" / "cd_x2_bicubic").parent for f in outputs}) == 2
    series = {pydicom.dcmread(f).SeriesInstanceUID for f in outputs}
    assert len(series) == 2
    for f in outputs:  # each output beside its place in the export's tree, from the slice of that name
        src = (
            cd
            / f.relative_to(tmp_path / "out" / "cd_x2_bicubic").parent
            / f.name.replace("_x2_bicubic.dcm", "")
        )
        assert (
            pydicom.dcmread(f).SourceImageSequence[0].ReferencedSOPInstanceUID
            == pydicom.dcmread(src).SOPInstanceUID
        )
    plain = tmp_path / "plain"
    make_ct_series(plain / "sub", 2)
    capsys.readouterr()
    assert _enlarge(plain, tmp_path / "out2") != 0
    assert "its subfolders are not searched" in capsys.readouterr().err
