"""AWB data: real-format indexers and readers on generated fixtures, synthetic scenes, the datamodule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from moto_vision.data import AWBDataModule
from moto_vision.data.awb.datamodule import relight
from moto_vision.data.awb.datasets import RawAWBDataset
from moto_vision.data.awb.formats import read_raw_record
from moto_vision.data.awb.synthetic import SyntheticAWBDataset
from moto_vision.data.records import format_names, get_indexer, write_split_manifest
from moto_vision.metrics import recovery_angular_error
from moto_vision.models import GrayWorld
from tests.helpers import awb_fixtures

RAW_FORMATS = ("gehler_shi", "nus8", "cube_plus", "simple_cube_pp")


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("awb_data")
    makers = {
        "gehler_shi": awb_fixtures.make_gehler_shi,
        "nus8": awb_fixtures.make_nus8,
        "cube_plus": awb_fixtures.make_cube_plus,
        "simple_cube_pp": awb_fixtures.make_simple_cube_pp,
        "photos": awb_fixtures.make_photos,
    }
    out = {}
    for name, make in makers.items():
        make(base / name)
        out[name] = base / name
    return out


def _gw_error(record) -> float:
    image, valid = read_raw_record(record)
    gt = torch.tensor(record.illuminant)[None]
    return recovery_angular_error(GrayWorld()(image[None]), gt).item()


def test_formats_are_registered() -> None:
    assert set(format_names("awb")) >= {*RAW_FORMATS, "photos"}


def test_gehler_shi_index(roots: dict[str, Path]) -> None:
    records = get_indexer("awb", "gehler_shi")(roots["gehler_shi"])
    assert [r.image.name for r in records] == sorted(r.image.name for r in records)
    canon_1d = [r for r in records if r.image.name.startswith("8D5U")]
    canon_5d = [r for r in records if r.image.name.startswith("IMG")]
    assert len(canon_1d) == 3 and len(canon_5d) == 6
    assert {r.extra["black_level"] for r in canon_1d} == {0} and {r.extra["black_level"] for r in canon_5d} == {129}
    assert {r.extra["saturation"] for r in records} == {3692}
    # te_split lists 1-based indices 1, 4, 7 for fold 0.
    assert [r.extra["fold"] for r in records] == [0, 1, 2] * 3
    assert len(records[0].extra["mask_polygons"][0]) == 4


def test_nus8_index(roots: dict[str, Path]) -> None:
    records = get_indexer("awb", "nus8")(roots["nus8"])
    assert len(records) == 6 and {r.extra["camera"] for r in records} == {"Canon600D", "SonyA57"}
    first = next(r for r in records if r.image.name == "Canon600D_0001.PNG")
    assert first.extra["black_level"] == 2048 and first.extra["saturation"] == 15279
    assert first.extra["mask_boxes"] == [[4, 20, 39, 60]]  # [y1, y2, x1, x2] 1-based inclusive -> slices


@pytest.mark.parametrize("fmt", RAW_FORMATS)
def test_official_preprocessing_removes_charts_and_clipped_pixels(roots: dict[str, Path], fmt: str) -> None:
    records = get_indexer("awb", fmt)(roots[fmt])
    for record in records:
        assert _gw_error(record) < 0.6, record.image  # sensor noise only (0.37-0.51 on these fixtures)
    # Without the chart mask and saturation handling the fixtures' traps ruin Gray World: the test can fail.
    record = records[0]
    record.extra = {
        **record.extra,
        "mask_polygons": [],
        "mask_boxes": [],
        "mask_boxes_relative": [],
        "saturation": 65535,
        "saturation_margin": 0,
    }
    assert _gw_error(record) > 2.0


def test_cube_plus_and_simple_cube_facts(roots: dict[str, Path]) -> None:
    cube = get_indexer("awb", "cube_plus")(roots["cube_plus"])
    assert [r.image.name for r in cube] == [f"{i}.PNG" for i in range(1, 7)]
    assert cube[0].extra["black_level"] == 2048 and cube[0].extra["saturation"] is None
    assert [r.extra["fold"] for r in cube] == [0, 1, 2, 0, 1, 2]
    simple = get_indexer("awb", "simple_cube_pp")(roots["simple_cube_pp"])
    assert [r.split for r in simple].count("test") == 3 and [r.split for r in simple].count("train") == 6


def test_bad_ground_truth_names_the_file(tmp_path: Path) -> None:
    awb_fixtures.make_cube_plus(tmp_path, n=3)
    gt = tmp_path / "cube+_gt.txt"
    lines = gt.read_text().splitlines()
    # A NaN or zero illuminant is that sample's problem: indexed as found, refused by the datamodule before
    # training with every such sample named (and the command that checks the whole dataset).
    lines[1] = "nan 0.4 0.3"
    lines[2] = "0.3 0.0 0.3"
    gt.write_text("\n".join(lines) + "\n")
    assert len(get_indexer("awb", "cube_plus")(tmp_path)) == 3
    with pytest.raises(ValueError, match=r"(?s)2 of 3 samples.*2.PNG: illuminant \[nan.*3.PNG: .*<= 0.*data check"):
        AWBDataModule(root=str(tmp_path), format="cube_plus", fold=None).setup("fit")
    lines[2] = "0.3 0.4 0.3"
    lines[1] = "0.3 0.4 0.3"
    gt.write_text("\n".join(lines) + "\n0.3 0.4 0.3\n")  # a 4th row without an image
    with pytest.raises(FileNotFoundError, match="4.PNG"):
        get_indexer("awb", "cube_plus")(tmp_path)


def test_gehler_row_count_mismatch_and_missing_coordinates(tmp_path: Path) -> None:
    awb_fixtures.make_gehler_shi(tmp_path, n_1d=1, n_5d=2)
    (tmp_path / "coordinates" / "IMG_0275_macbeth.txt").unlink()
    with pytest.raises(FileNotFoundError, match="IMG_0275_macbeth.txt"):
        get_indexer("awb", "gehler_shi")(tmp_path)
    (tmp_path / "images" / "IMG_0275.png").unlink()
    with pytest.raises(ValueError, match=r"real_illum_568\.\.mat: 3 ground-truth rows but 2 PNG"):
        get_indexer("awb", "gehler_shi")(tmp_path)


def test_corrupt_image_stops_setup_and_names_the_file(tmp_path: Path) -> None:
    awb_fixtures.make_simple_cube_pp(tmp_path, n_train=4, n_test=2)
    bad = sorted((tmp_path / "train" / "PNG").glob("*.png"))[1]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    data = AWBDataModule(root=str(tmp_path), format="simple_cube_pp", image_size=16, val_fraction=0.25)
    with pytest.raises(ValueError, match=bad.name):
        data.setup("fit")


def test_gehler_datamodule_uses_the_standard_folds(roots: dict[str, Path]) -> None:
    data = AWBDataModule(root=str(roots["gehler_shi"]), format="gehler_shi", fold=1, image_size=32, batch_size=4)
    data.setup("fit")
    test_names = {r.image.name for r in data.records["test"]}
    all_records = get_indexer("awb", "gehler_shi")(roots["gehler_shi"])
    assert test_names == {r.image.name for r in all_records if r.extra["fold"] == 1}
    train_names = {r.image.name for r in data.records["train"] + data.records["val"]}
    assert not test_names & train_names and len(test_names | train_names) == 9
    batch = next(iter(data.test_dataloader()))
    assert batch["image"].shape == (3, 3, 32, 32) and batch["valid"].shape == (3, 32, 32)
    assert torch.allclose(batch["illuminant"].norm(dim=1), torch.ones(3))
    assert isinstance(data.test_dataset, RawAWBDataset)


def test_split_manifest_overrides_folds(roots: dict[str, Path], tmp_path: Path) -> None:
    records = get_indexer("awb", "nus8")(roots["nus8"])
    manifest = write_split_manifest(
        {"train": records[:3], "val": records[3:4], "test": records[4:]}, roots["nus8"], tmp_path / "split"
    )
    data = AWBDataModule(root=str(roots["nus8"]), format="nus8", splits=str(manifest), image_size=16)
    data.setup("fit")
    assert [len(data.records[s]) for s in ("train", "val", "test")] == [3, 1, 2]


def test_photos_become_raw_pairs_through_held_out_cameras(roots: dict[str, Path]) -> None:
    data = AWBDataModule(
        root=str(roots["photos"]),
        format="photos",
        image_size=32,
        val_fraction=0.3,
        test_fraction=0.3,
        train_size=40,
        val_size=8,
        batch_size=2,
    )
    data.setup("fit")
    photos = {split: len(data.records[split]) for split in ("train", "val")}
    # Each photo gives round(size / photos) draws, at least one.
    assert len(data.train_dataset) == photos["train"] * max(1, round(40 / photos["train"]))
    assert len(data.val_dataset) == photos["val"] * max(1, round(8 / photos["val"]))
    sample_a, sample_b = data.val_dataset[0], data.val_dataset[0]
    assert torch.equal(sample_a["image"], sample_b["image"])  # fixed draws for evaluation
    assert not torch.equal(data.train_dataset[0]["image"], data.train_dataset[0]["image"])  # new draws in training
    assert sample_a["image"].shape == (3, 32, 32) and 0 <= sample_a["image"].min() and sample_a["image"].max() <= 1
    assert sample_a["illuminant"].norm().item() == pytest.approx(1.0, abs=1e-5)
    # Leave cameras out: every validation draw is one of the validation pool's cameras, none of the training pool's.
    val_matrices = data.camera_pools["val"].xyz_to_raw().float()
    train_matrices = data.camera_pools["train"].xyz_to_raw().float()
    for i in range(len(data.val_dataset)):
        camera = data.val_dataset[i]["camera"]
        assert torch.isclose(val_matrices, camera, atol=1e-5).flatten(1).all(1).any()
        assert not torch.isclose(train_matrices, camera, atol=1e-5).flatten(1).all(1).any()
    batch = next(iter(data.train_dataloader()))
    assert batch["camera"].shape == (2, 3, 3) and batch["image"].shape == (2, 3, 32, 32)
    assert data.val_dataset.photo(0).shape == (3, 32, 32)
    # One sensor: the camera roll seen through that camera only.
    one = AWBDataModule(root=str(roots["photos"]), format="photos", image_size=32, camera="Canon EOS R6")
    one.setup("fit")
    r6 = one.camera_pools["val"].xyz_to_raw()[0].float()
    assert all(torch.allclose(one.val_dataset[i]["camera"], r6, atol=1e-5) for i in range(len(one.val_dataset)))


def test_a_photo_is_relit_spectrally_through_the_sampled_camera() -> None:
    from moto_vision.data.awb.photo_scenes import render_photo
    from moto_vision.data.awb.synthetic import MondrianConfig
    from moto_vision.isp.cameras import CameraPool
    from moto_vision.isp.spectral import planck_spd, spectral_data

    camera = CameraPool.default().subset(["Canon EOS R6"])
    config = MondrianConfig(
        light_kinds=(0.0, 1.0, 0.0), planck_cct=(3000.0, 3000.0), tint_share=0.0, mixed_share=0.0, masked_share=0.0
    )
    # Independently: a 3000 K black body through the R6's sensitivities, and the spectra of pure red and blue.
    sensitivity, spectrum = camera.sensitivities[0], planck_spd(3000.0)
    light = torch.einsum("l,lc->c", spectrum, sensitivity)
    basis = spectral_data()["mallett_basis"]  # linear sRGB (r, g, b) -> reflectance spectrum
    red, blue = (torch.einsum("l,l,lc->c", basis[:, k], spectrum, sensitivity) for k in (0, 2))

    grey = torch.full((3, 48, 48), 0.5)
    for seed in range(4):
        out = render_photo(grey, torch.Generator().manual_seed(seed), camera, config=config)
        assert recovery_angular_error(out["illuminant"][None], light[None]).item() < 1e-3  # the label
        valid = out["valid"]
        mean = (out["image"] * valid).sum(dim=(1, 2)) / valid.sum()
        # A grey surface reflects every wavelength equally: it takes the light's colour, up to the noise.
        assert recovery_angular_error(mean[None], light[None]).item() < 0.5
        torch.testing.assert_close(out["camera"], camera.xyz_to_raw()[0].float())
    photo = torch.zeros(3, 16, 32)
    photo[0, :, :16], photo[2, :, 16:] = 0.6, 0.6
    out = render_photo(photo, torch.Generator().manual_seed(0), camera, config=config)
    assert out["valid"].all()
    seen_red, seen_blue = out["image"][:, :, :16].mean(dim=(1, 2)), out["image"][:, :, 16:].mean(dim=(1, 2))
    assert recovery_angular_error(seen_red[None], red[None]).item() < 1.0
    assert recovery_angular_error(seen_blue[None], blue[None]).item() < 1.0


def test_pool_camera_params_unprocess_photos_through_the_sampled_camera_and_light(monkeypatch) -> None:
    from moto_vision.data.awb.photo_scenes import pool_camera_params
    from moto_vision.data.awb.synthetic import CameraVariation, MondrianConfig
    from moto_vision.isp import process, unprocess
    from moto_vision.isp.cameras import CameraPool
    from moto_vision.isp.spectral import planck_spd, spectral_data

    camera = CameraPool.default().subset(["Canon EOS R6"])
    config = MondrianConfig(light_kinds=(0.0, 1.0, 0.0), planck_cct=(3000.0, 3000.0), tint_share=0.0, mixed_share=0.0)
    params = pool_camera_params(2, torch.Generator().manual_seed(0), camera, config=config)
    # Independently: a 3000 K black body through the R6's sensitivities, and the spectrum of pure red.
    sensitivity, spectrum = camera.sensitivities[0], planck_spd(3000.0)
    light = torch.einsum("l,lc->c", spectrum, sensitivity)
    red = torch.einsum("l,l,lc->c", spectral_data()["mallett_basis"][:, 0], spectrum, sensitivity)
    assert recovery_angular_error(params["illuminant"], light.expand(2, 3)).max() < 1e-3
    torch.testing.assert_close(params["xyz2cam"][0], camera.xyz_to_raw()[0].float())
    photo = torch.zeros(2, 3, 8, 16)
    photo[:, :, :, :8], photo[:, 0, :, 8:] = 0.5, 0.7  # sRGB grey on the left, red on the right
    raw, _ = unprocess(photo, params)
    assert recovery_angular_error(raw[:, :, :, :8].mean(dim=(2, 3)), light.expand(2, 3)).max() < 0.01
    assert recovery_angular_error(raw[:, :, :, 8:].mean(dim=(2, 3)), red.expand(2, 3)).max() < 0.1
    assert raw.amax(dim=(0, 2, 3)).max() <= 1.0
    # The parameters are those of isp.unprocess / process: the round trip gives the photo back.
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.8
    params = pool_camera_params(4, torch.Generator().manual_seed(2), CameraPool.default(), CameraVariation())
    torch.testing.assert_close(process(*unprocess(x, params)), x, atol=1e-4, rtol=0)
    # A lamp of one wavelength the blue channel does not see still gives finite gains (a sodium lamp's blue).
    spike = torch.zeros_like(spectrum)
    spike[19] = 1.0  # 590 nm
    narrow = CameraPool(
        ["narrow"], torch.stack([sensitivity[:, 0], sensitivity[:, 1], 0 * sensitivity[:, 2]], -1)[None]
    )
    lamp = MondrianConfig(light_kinds=(0.0, 0.0, 1.0), tint_share=0.0, mixed_share=0.0)
    monkeypatch.setitem(spectral_data(), "lights", spike[None])
    params = pool_camera_params(3, torch.Generator().manual_seed(0), narrow, config=lamp)
    assert all(torch.isfinite(value).all() for value in params.values())
    assert params["illuminant"][:, 2].max() < 1e-3


def test_synthetic_scenes_are_reproducible_and_hard_for_gray_world() -> None:
    a = SyntheticAWBDataset(48, 32, seed=3)
    b = SyntheticAWBDataset(48, 32, seed=3)
    b.preload()
    single = a[5]
    batch = b.__getitems__([4, 5, 6])
    assert torch.allclose(single["image"], batch[1]["image"], atol=2e-3)  # float16 cache
    assert torch.equal(single["illuminant"], batch[1]["illuminant"])
    items = a.__getitems__(list(range(48)))
    images = torch.stack([i["image"] for i in items])
    lights = torch.stack([i["illuminant"] for i in items])
    assert images.min() >= 0 and images.max() <= 1 and (lights > 0).all()
    # Coloured-dominant scenes: Gray World is far from perfect.
    assert recovery_angular_error(GrayWorld()(images), lights).median().item() > 3.0


def test_relight_and_isp_augmentation_keep_labels_consistent() -> None:
    data = AWBDataModule(
        image_size=16,
        augmentation="default",
        relight=1.0,
        spatial=True,
        train_size=8,
        val_size=8,
        test_size=8,
        preload=False,
    )
    g = torch.Generator().manual_seed(0)
    lights = torch.nn.functional.normalize(torch.rand(8, 3, generator=g) + 0.2, dim=1)
    lightness = torch.rand(8, 1, 4, 4, generator=g).repeat_interleave(4, 2).repeat_interleave(4, 3) * 0.5 + 0.1
    batch = {
        "image": lightness * lights[:, :, None, None],
        "illuminant": lights.clone(),
        "valid": torch.ones(8, 16, 16, dtype=torch.bool),
    }
    torch.manual_seed(0)
    out = data.augment_train_batch(batch, data.augmentations)
    assert not torch.allclose(out["illuminant"], lights)  # the labels really changed
    errors = recovery_angular_error(GrayWorld(saturation=1.01)(out["image"]), out["illuminant"])
    assert errors.max().item() < 2.0  # noise only; a wrong label update would be off by many degrees
    image, label = relight(batch["image"], lights, probability=0.0)
    assert torch.equal(label, lights)


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_max_normalize_divides_that_share_of_training_images_by_their_maximum(share: float) -> None:
    data = AWBDataModule(
        image_size=16, augmentation="none", relight=0.0, spatial=False, max_normalize=share, preload=False
    )
    g = torch.Generator().manual_seed(0)
    image = torch.rand(64, 3, 16, 16, generator=g) * 0.5 + 0.01  # no pixel near the sensor's white
    lights = torch.nn.functional.normalize(torch.rand(64, 3, generator=g) + 0.2, dim=1)
    batch = {"image": image.clone(), "illuminant": lights.clone(), "valid": torch.ones(64, 16, 16, dtype=torch.bool)}
    torch.manual_seed(0)
    out = data.augment_train_batch(batch, data.augmentations)
    peak = out["image"].flatten(1).amax(1)
    divided = torch.isclose(peak, torch.ones(64))
    assert torch.equal(out["illuminant"], lights)  # a scale leaves the light's colour as it is
    if share == 0.0:
        assert torch.equal(out["image"], image)
    elif share == 1.0:
        assert divided.all()
    else:
        assert 16 <= int(divided.sum()) <= 48  # about half of 64 (binomial, 4 standard deviations)
    scale = image.flatten(1).amax(1) / peak  # every image is its input up to a scale
    assert torch.allclose(out["image"] * scale[:, None, None, None], image, atol=1e-6)
    with pytest.raises(ValueError, match="max_normalize 1.5 is a share of the training images"):
        AWBDataModule(max_normalize=1.5)


def test_own_camera_format_registers_and_loads(tmp_path: Path) -> None:
    import numpy as np

    from moto_vision.data.records import SampleRecord, register_format

    rng = np.random.default_rng(0)
    rows = ["image,r,g,b"]
    for i in range(6):
        light = awb_fixtures._illuminant(rng)
        awb_fixtures.write_png16(
            tmp_path / "png" / f"cap_{i}.png", awb_fixtures.raw_scene(rng, (32, 48), light, 0, 65535)
        )
        rows.append(f"cap_{i},{light[0]},{light[1]},{light[2]}")
    (tmp_path / "gt.csv").write_text("\n".join(rows) + "\n")

    @register_format("awb", "test_mycam")
    def index_mycam(root: Path, **options) -> list[SampleRecord]:
        records = []
        for line in (root / "gt.csv").read_text().splitlines()[1:]:
            name, r, g, b = line.split(",")
            records.append(
                SampleRecord(
                    image=root / "png" / f"{name}.png",
                    illuminant=(float(r), float(g), float(b)),
                    group=name,
                    extra={"black_level": 0, "saturation": 65535},
                )
            )
        return records

    data = AWBDataModule(root=str(tmp_path), format="test_mycam", image_size=16, test_fraction=0.3, val_fraction=0.3)
    data.setup("fit")
    assert sum(len(data.records[s]) for s in ("train", "val", "test")) == 6 and data.records["test"]
    sample = data.train_dataset[0]
    assert recovery_angular_error(GrayWorld()(sample["image"][None]), sample["illuminant"][None]).item() < 0.5
    with pytest.raises(ValueError, match="unknown format 'mycam2'"):
        AWBDataModule(root=str(tmp_path), format="mycam2")
