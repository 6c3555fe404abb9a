"""Camera raw reading (moto_vision.data.raw) and the DNG colour model (moto_vision.isp.dng)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from moto_vision.data.raw import RawReadError, read_raw, read_raw_metadata
from moto_vision.isp import dng
from tests.helpers.dng_captures import BLACK_LEVELS, CAMERA, WHITE_LEVEL, CaptureSpec, make_capture, write_dng

pytest.importorskip("rawpy")
pytest.importorskip("pidng")


def _flat_dng(path: Path, orientation: int = 1) -> Path:
    """A 32x48 RGGB mosaic with known values: R/G/B at 1000/2000/500 counts above black, one saturated quad."""
    counts = np.zeros((32, 48), np.uint16)
    counts[0::2, 0::2] = BLACK_LEVELS[0] + 1000
    counts[0::2, 1::2] = BLACK_LEVELS[1] + 2000
    counts[1::2, 0::2] = BLACK_LEVELS[2] + 2000
    counts[1::2, 1::2] = BLACK_LEVELS[3] + 500
    counts[0, 0] = WHITE_LEVEL  # the top-left quad (stored) has a clipped red photosite
    return write_dng(path, counts, CaptureSpec(orientation=orientation, iso=640), np.array([0.5, 1.0, 0.7]))


def test_black_level_per_channel_white_level_and_saturation(tmp_path: Path) -> None:
    capture = read_raw(_flat_dng(tmp_path / "flat.dng"))
    assert capture.image.shape == (3, 16, 24) and capture.image.dtype == torch.float32
    expected = [1000 / (WHITE_LEVEL - BLACK_LEVELS[0]), 2000 / (WHITE_LEVEL - 256), 500 / (WHITE_LEVEL - 258)]
    assert torch.allclose(capture.image[:, 4, 6], torch.tensor(expected), atol=1e-6)
    assert not capture.valid[0, 0] and capture.valid.sum() == 16 * 24 - 1
    meta = capture.metadata
    assert meta.black_level == (254.0, 256.0, 258.0, 256.0) and meta.white_level == WHITE_LEVEL
    assert meta.cfa_pattern == "RGGB" and (meta.width, meta.height) == (48, 32)


def test_orientation_is_applied(tmp_path: Path) -> None:
    upright = read_raw(_flat_dng(tmp_path / "a.dng", orientation=1))
    rotated = read_raw(_flat_dng(tmp_path / "b.dng", orientation=6))  # displayed = stored turned 90 deg clockwise
    assert rotated.image.shape == (3, 24, 16) and rotated.metadata.orientation == 6
    assert torch.equal(rotated.valid, torch.rot90(upright.valid, k=-1, dims=(0, 1)))
    assert not rotated.valid[0, -1]  # the stored top-left pixel is now top-right
    assert (rotated.metadata.width, rotated.metadata.height) == (32, 48)


def test_dng_metadata_record(tmp_path: Path) -> None:
    meta = read_raw_metadata(_flat_dng(tmp_path / "flat.dng"))
    assert meta.camera == "Moto Fixture Phone" and meta.iso == 640
    assert meta.exposure_time == pytest.approx(1 / 60) and meta.baseline_exposure == pytest.approx(-0.5)
    assert meta.f_number == pytest.approx(1.8)
    assert (meta.calibration_illuminant_1, meta.calibration_illuminant_2) == (17, 21)
    assert meta.neutral() == pytest.approx((0.5, 1.0, 0.7))
    matrices, ccts = meta.xyz_to_camera()
    assert ccts.tolist() == [2850.0, 6500.0]
    for matrix in matrices:  # a Luther camera: both calibration matrices are the camera's matrix up to scale
        ratio = matrix.numpy() / CAMERA
        assert np.allclose(ratio, ratio.mean(), rtol=2e-3)
    json_ready = meta.to_dict()
    assert json_ready["color_matrix_1"] and isinstance(json_ready["color_matrix_1"], list)


def test_demosaicking_on_request_matches_binning(tmp_path: Path) -> None:
    capture = make_capture(tmp_path / "scene.dng", CaptureSpec(size=(64, 96), seed=1))
    binned = read_raw(capture.path)
    full = read_raw(capture.path, demosaic="linear")
    assert full.image.shape == (3, 64, 96) and binned.image.shape == (3, 32, 48)
    assert torch.allclose(full.image.mean(dim=(1, 2)), binned.image.mean(dim=(1, 2)), rtol=0.02)
    with pytest.raises(ValueError, match="unknown demosaic"):
        read_raw(capture.path, demosaic="magic")


def test_broken_files_raise_one_clear_reason(tmp_path: Path) -> None:
    good = _flat_dng(tmp_path / "good.dng")
    (tmp_path / "cut.dng").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "text.dng").write_text("not a raw file")
    for name, code in (("cut.dng", "truncated"), ("text.dng", "unreadable"), ("gone.dng", "missing_file")):
        with pytest.raises(RawReadError) as caught:
            read_raw(tmp_path / name)
        assert caught.value.code == code and name in str(caught.value)


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "rawpy", None)  # as if rawpy were not installed
    with pytest.raises(ImportError, match=r"rawpy.*moto-vision\[capture\]"):
        read_raw(_flat_dng(tmp_path / "flat.dng"))


# ------------------------------------------------------------------------------------------------ DNG colour model
CM_A = np.array([[0.9210, -0.2955, -0.1055], [-0.5211, 1.3340, 0.2014], [-0.0981, 0.2212, 0.6140]])
CM_D65 = CAMERA


@pytest.mark.parametrize("neutral", [(0.45, 1.0, 0.8), (0.7, 1.0, 0.4), (0.35, 1.0, 0.95)])
def test_dng_colour_model_matches_colour_hdri(neutral: tuple[float, float, float]) -> None:
    colour_dng = pytest.importorskip("colour_hdri.models.dng")
    eye = np.eye(3)
    xy_ref = colour_dng.camera_neutral_to_xy(np.array(neutral), 2850, 6500, CM_A, CM_D65, eye, eye, np.ones(3))
    to_d50_ref = colour_dng.matrix_camera_space_to_XYZ(xy_ref, 2850, 6500, CM_A, CM_D65, eye, eye, np.ones(3), eye, eye)
    matrices, ccts = torch.tensor(np.stack([CM_A, CM_D65])), torch.tensor([2850.0, 6500.0])
    to_xyz, xy = dng.camera_to_xyz_matrix(torch.tensor(neutral), matrices, ccts)
    # colour-hdri finds the CCT with Robertson's method, we with the Kim et al. locus: xy agree to ~1e-5.
    assert np.allclose(xy.numpy(), xy_ref, atol=5e-5)
    d50 = torch.tensor([0.3457 / 0.3585, 1.0, (1 - 0.3457 - 0.3585) / 0.3585], dtype=torch.float64)
    white = torch.tensor([xy[0] / xy[1], 1.0, (1 - xy[0] - xy[1]) / xy[1]], dtype=torch.float64)
    ours = (dng.bradford_adaptation(white, d50) @ to_xyz).numpy()
    assert np.abs(ours - to_d50_ref).max() < 1e-3 * np.abs(to_d50_ref).max()


def test_interpolation_is_linear_in_inverse_cct_and_clamped() -> None:
    matrices = torch.stack([torch.eye(3), 2 * torch.eye(3)]).double()
    ccts = torch.tensor([2850.0, 6500.0])
    middle = 1 / (0.5 / 2850 + 0.5 / 6500)
    assert torch.allclose(dng.interpolate_xyz_to_camera(matrices, ccts, middle), 1.5 * torch.eye(3).double())
    assert torch.allclose(dng.interpolate_xyz_to_camera(matrices, ccts, 2000.0), torch.eye(3).double())
    assert torch.allclose(dng.interpolate_xyz_to_camera(matrices, ccts, 9000.0), 2 * torch.eye(3).double())


def test_preview_renders_the_neutral_grey_and_daylight_colours_right() -> None:
    matrices = torch.tensor(np.stack([CM_A, CM_D65]))[None]
    ccts = torch.tensor([[2850.0, 6500.0]])
    neutral = torch.tensor([[0.6, 1.0, 0.45]])
    # A grey surface under that light is the neutral's camera RGB: it must come out grey.
    grey = neutral[:, :, None, None].expand(1, 3, 4, 4) * 0.3
    out = dng.render_dng_preview(grey.float(), neutral.float(), matrices, ccts, exposure=1.0, tone=False)
    assert out.std(dim=1).max() < 1e-4 and 0.3 < float(out.mean()) < 0.9
    # Colorimetric matrix of a Luther camera under D65: camera -> XYZ is the camera matrix inverted.
    d65 = torch.tensor(np.linalg.solve(np.eye(3), CM_D65 @ np.array([0.9505, 1.0, 1.089])))
    to_xyz, _ = dng.camera_to_xyz_matrix(d65, torch.tensor(np.stack([CM_D65, CM_D65])), torch.tensor([6500.0, 6500.0]))
    assert np.allclose(to_xyz.numpy(), np.linalg.inv(CM_D65), atol=1e-9)
    # A capture without a colour matrix (NaN) is only white-balanced.
    unknown = dng.render_dng_preview(grey.float(), neutral.float(), torch.full((1, 2, 3, 3), float("nan")),
                                     torch.full((1, 2), float("nan")), exposure=1.0, tone=False)  # fmt: skip
    assert torch.isfinite(unknown).all() and unknown.std(dim=1).max() < 1e-4
