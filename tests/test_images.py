"""One image decoder for every loader: each Pillow mode, 16-bit, alpha, CMYK, EXIF orientation and HEIC, read the
same by the shared decoder, the portrait, scene and AWB ``photos`` loaders and ``data check``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from moto_vision.data import images
from moto_vision.data.awb.datasets import PhotoAWBDataset
from moto_vision.data.curation import scan_dataset
from moto_vision.data.errors import MissingExtraError
from moto_vision.data.images import ImageReadError, decode_image, probe_image
from moto_vision.data.portrait.datasets import RecordsDataset
from moto_vision.data.portrait.formats import index_mask_folder
from moto_vision.data.records import SampleRecord
from moto_vision.data.scene.formats import SceneImages
from tests.helpers.image_modes import HEIGHT, WIDTH, write_modes

MODES = (
    "rgb grey grey16_png grey16be_tiff grey16le_tiff rgb16 rgba16 rgba la palette_transparent cmyk_tiff bilevel "
    "exif_rotated heic heic_rotated"
).split()
SIZE = min(WIDTH, HEIGHT)


@pytest.fixture(scope="module")
def modes(tmp_path_factory) -> dict[str, tuple[Path, np.ndarray]]:
    return write_modes(tmp_path_factory.mktemp("modes") / "images")


def _centre_square(expected: np.ndarray) -> np.ndarray:
    h, w = expected.shape[:2]
    top, left = (h - SIZE) // 2, (w - SIZE) // 2
    return expected[top : top + SIZE, left : left + SIZE]


def _chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)


def test_fixtures_cover_every_mode(modes):
    assert sorted(modes) == sorted(MODES)
    # The cases Pillow's own convert("RGB") gets wrong, so the decoder is what these tests check.
    wrong = {
        name
        for name, (path, expected) in modes.items()
        if np.asarray(Image.open(path).convert("RGB")).shape[:2] != expected.shape[:2]
        or np.abs(np.asarray(Image.open(path).convert("RGB")) / 255.0 - expected).max() > 0.02
    }
    assert {"grey16_png", "grey16be_tiff", "rgba", "la", "palette_transparent", "exif_rotated"} <= wrong


@pytest.mark.parametrize("name", MODES)
def test_shared_decoder_reads_every_mode(modes, name):
    path, expected = modes[name]
    info = probe_image(path)
    assert info.oriented_size == (expected.shape[1], expected.shape[0])
    decoded = decode_image(path)
    assert decoded.dtype == np.float32 and decoded.shape == expected.shape
    np.testing.assert_allclose(decoded, expected, atol=1e-6)


@pytest.mark.parametrize("name", MODES)
def test_portrait_loader_reads_every_mode(modes, name, tmp_path):
    path, expected = modes[name]
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / path.name).write_bytes(path.read_bytes())
    Image.fromarray(np.ones(expected.shape[:2], np.uint8)).save(tmp_path / "masks" / f"{path.stem}.png")
    (record,) = index_mask_folder(tmp_path)
    sample = RecordsDataset([record], image_size=max(WIDTH, HEIGHT), num_classes=2, binary=True)[0]
    inside = sample["mask"] != 255  # letterbox padding
    rows, cols = inside.any(1).nonzero().flatten(), inside.any(0).nonzero().flatten()
    picture = sample["image"][:, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    torch.testing.assert_close(picture, _chw(expected), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", MODES)
def test_scene_loader_reads_every_mode(modes, name):
    path, expected = modes[name]
    sample = SceneImages([SampleRecord(image=path, labels=["a"])], ["a", "b"], image_size=SIZE)[0]
    torch.testing.assert_close(sample["image"], _chw(_centre_square(expected)), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", MODES)
def test_awb_photo_loader_reads_every_mode(modes, name):
    path, expected = modes[name]
    photos = PhotoAWBDataset([SampleRecord(image=path)], image_size=SIZE)
    torch.testing.assert_close(photos.photo(0), _chw(_centre_square(expected)), atol=1e-6, rtol=0)


def test_data_check_reads_every_mode_as_the_loaders_do(modes, tmp_path):
    for name, (path, _) in modes.items():
        folder = tmp_path / ("a" if len(name) % 2 else "b")
        folder.mkdir(exist_ok=True)
        (folder / path.name).write_bytes(path.read_bytes())
    scan = scan_dataset(tmp_path, "scene", "image_folder", workers=1, progress=False, near_threshold=-1)
    assert not scan.errors, [f"{i.code} {i.path}: {i.message}" for i in scan.errors]
    by_name = {Path(r.image).stem: s for r, s in zip(scan.records, scan.stats)}
    for name, (path, expected) in modes.items():
        luma = float((expected @ np.array([0.2126, 0.7152, 0.0722])).mean())
        assert by_name[path.stem].luminance == pytest.approx(luma, abs=1e-4), name
    # Files the loader converts carry a warning that says how.
    notes = {i.path.split("/")[-1]: i.message for i in scan.warnings if i.code == "mode"}
    assert "alpha over black" in notes["rgba.png"] and "repeats it to RGB" in notes["grey16_png.png"]


def test_heic_reads_the_same_as_its_png(modes):
    # Lossless HEVC (4:4:4, identity matrix): the decoded HEIC equals the PNG of the same picture, rotation included.
    np.testing.assert_array_equal(decode_image(modes["heic"][0]), decode_image(modes["rgb"][0]))
    np.testing.assert_array_equal(decode_image(modes["heic_rotated"][0]), decode_image(modes["exif_rotated"][0]))


def test_heic_without_pillow_heif_names_the_extra(modes, monkeypatch):
    monkeypatch.setattr(images, "_heif_available", lambda: False)
    with pytest.raises(MissingExtraError, match=r"heic.heic.*pillow-heif.*moto-vision\[capture\]"):
        decode_image(modes["heic"][0])


def test_broken_files_get_the_data_check_codes(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.jpg", quality=95)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])  # the header is intact, the scan data is not
    cases = {
        "empty.png": ("unreadable", "empty file"),
        "cut.jpg": ("truncated", "truncated"),
        "gone.png": ("missing_file", "does not exist"),
    }
    for name, (code, words) in cases.items():
        with pytest.raises(ImageReadError, match=words) as caught:
            decode_image(tmp_path / name)
        assert caught.value.code == code and name in str(caught.value)
