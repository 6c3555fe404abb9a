"""Portrait data: synthetic portraits, the registered formats on tiny copies of their layouts, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moto_vision.data import PortraitDataModule
from moto_vision.data.portrait import (
    CELEBAMASK_HQ_CLASSES,
    PART_NAMES,
    PortraitDataError,
    RecordsDataset,
    SegmentationAugmentation,
    assign_splits,
    fit_to_square,
    flip_permutation,
    read_image,
    read_mask,
    render_portrait,
)
from moto_vision.data.records import SampleRecord, format_names, get_indexer, write_split_manifest
from tests.helpers import portrait_fixtures as fx


# ------------------------------------------------------------------------------------------- synthetic
def test_synthetic_is_reproducible_and_labelled():
    image, parts = render_portrait(7, 64)
    again, parts_again = render_portrait(7, 64)
    other, _ = render_portrait(8, 64)
    assert image.shape == (3, 64, 64) and parts.shape == (64, 64)
    assert torch.equal(image, again) and torch.equal(parts, parts_again)
    assert not torch.equal(image, other)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    face, face_parts = render_portrait(3, 96, framing="face")
    present = {PART_NAMES[i] for i in face_parts.unique().tolist()}
    assert {"background", "skin", "l_eye", "r_eye", "nose", "u_lip", "l_lip"} <= present


def test_synthetic_datamodule_splits_are_fixed_and_distinct():
    dm = PortraitDataModule(image_size=32, synthetic_train_size=6, synthetic_val_size=3, synthetic_test_size=3)
    dm.setup("fit")
    first = dm.val_dataset[0]
    dm2 = PortraitDataModule(image_size=32, synthetic_train_size=6, synthetic_val_size=3, synthetic_test_size=3)
    dm2.setup("fit")
    assert torch.equal(first["image"], dm2.val_dataset[0]["image"])
    assert not torch.equal(dm.train_dataset[0]["image"], first["image"])
    assert set(first["mask"].unique().tolist()) <= {0, 1}
    parts = PortraitDataModule(labels="parts", image_size=32)
    assert parts.num_classes == len(PART_NAMES) and parts.class_names == list(PART_NAMES)


# ------------------------------------------------------------------------------------------- formats
def test_formats_are_registered():
    assert {"mask_folder", "matting", "celebamask_hq", "lapa"} <= set(format_names("portrait"))


def test_mask_folder_pairs_splits_and_masks(tmp_path):
    root = fx.make_mask_folder(tmp_path / "flat")
    records = get_indexer("portrait", "mask_folder")(root)
    assert len(records) == 6 and all(r.split is None for r in records)
    mask = read_mask(records[0], 2, binary=True)
    top, left, bottom, right = fx.BOX
    assert mask[top:bottom, left:right].eq(1).all() and mask.sum() == (bottom - top) * (right - left)

    split_root = fx.make_mask_folder(tmp_path / "split", splits=True)
    splits = {r.split for r in get_indexer("portrait", "mask_folder")(split_root)}
    assert splits == {"train", "val"}

    # An image without a mask is that sample's problem: indexed (so `data check` reports it with the others) and
    # refused by the datamodule before training, with the expected mask path and the command that lists them all.
    (root / "images" / "orphan.jpg").write_bytes((root / "images" / "img_000.jpg").read_bytes())
    orphan = next(r for r in get_indexer("portrait", "mask_folder")(root) if r.image.stem == "orphan")
    assert orphan.mask is None and orphan.problems[0][0] == "missing_mask"
    with pytest.raises(PortraitDataError, match=r"(?s)images/orphan.jpg: no mask .*masks/orphan.*data check"):
        PortraitDataModule(root=str(root), format="mask_folder", image_size=32).setup("fit")


def test_mask_encodings_palette_ids_and_errors(tmp_path):
    image = fx.save(fx.person_image(), tmp_path / "a.jpg")
    ids = np.zeros((24, 32), np.uint8)
    ids[2:10, 2:10] = 2
    ids[12:20, 12:20] = 1
    ids[0, 0] = 255
    palette = fx.save_palette(ids, tmp_path / "pal.png")
    record = SampleRecord(image=image, mask=palette, extra={"mask_kind": "auto"})
    labels = read_mask(record, 3, binary=False)
    assert labels[5, 5] == 2 and labels[15, 15] == 1 and labels[0, 0] == 255
    person = read_mask(record, 3, binary=True)  # any class but background is the person
    assert person[5, 5] == 1 and person[15, 15] == 1 and person[22, 30] == 0 and person[0, 0] == 255
    with pytest.raises(PortraitDataError, match=r"pal\.png.*outside 0\.\.1"):
        read_mask(record, 2, binary=False)
    colour = fx.save(np.dstack([ids * 40, ids * 10, ids]), tmp_path / "colour.png")
    with pytest.raises(PortraitDataError, match="colour mask"):
        read_mask(SampleRecord(image=image, mask=colour), 3, binary=False)


def test_records_dataset_checks_sizes_and_unreadable_files(tmp_path):
    image = fx.save(fx.person_image(), tmp_path / "img.jpg")
    small = fx.save(fx.person_mask(12, 16), tmp_path / "small.png")
    with pytest.raises(PortraitDataError, match=r"small\.png.*16x12.*img\.jpg.*32x24"):
        RecordsDataset([SampleRecord(image=image, mask=small)], 32, 2, True)[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(PortraitDataError, match="broken.jpg"):
        read_image(broken)


def test_exif_orientation_is_applied(tmp_path):
    displayed = fx.person_image(40, 24)  # portrait photo as the user sees it: 24 wide, 40 high
    displayed[0:5, 0:5] = (255, 0, 0)  # red marker in the displayed top-left corner
    path = fx.save_exif_rotated_jpeg(displayed, tmp_path / "phone.jpg")
    from PIL import Image

    assert Image.open(path).size == (40, 24)  # stored sideways
    image = read_image(path)
    assert image.shape == (3, 40, 24)
    assert image[0, 1, 1] > 0.8 and image[1, 1, 1] < 0.3  # the marker is back in the top-left corner
    mask = fx.save(fx.person_mask(40, 24), tmp_path / "phone.png")  # annotated as displayed
    sample = RecordsDataset([SampleRecord(image=path, mask=mask)], 40, 2, True)[0]
    assert sample["image"].shape == (3, 40, 40)


def test_matting_layouts(tmp_path):
    p3m = get_indexer("portrait", "matting")(fx.make_p3m(tmp_path / "P3M-10k"))
    assert sorted(r.split for r in p3m) == ["test", "test", "train", "train", "train"]
    anti_aliased = next(r for r in p3m if r.image.stem == "np_val0")
    mask = read_mask(anti_aliased, 2, binary=True)
    assert mask[fx.BOX[0] - 1].eq(0).all() and mask[fx.BOX[0], fx.BOX[1]] == 1  # 100/255 < 0.5
    ppm = get_indexer("portrait", "matting")(fx.make_ppm100(tmp_path / "PPM-100"))
    assert len(ppm) == 2 and all(r.split is None for r in ppm)
    eg = get_indexer("portrait", "matting")(fx.make_eg1800(tmp_path / "EG1800"))
    assert sorted(r.split for r in eg) == ["test", "train", "train", "train"]
    assert read_mask(eg[0], 2, binary=True).max() == 1  # 0/1 labels


def test_celebamask_hq_parts_order_and_split(tmp_path):
    records = get_indexer("portrait", "celebamask_hq")(fx.make_celebamask_hq(tmp_path / "CelebAMask-HQ"))
    assert [r.image.stem for r in records] == ["0", "1", "2001"]
    assert [r.split for r in records] == ["train", "val", "test"]
    labels = read_mask(records[0], len(CELEBAMASK_HQ_CLASSES), binary=False)
    assert labels.shape == (32, 32)
    assert CELEBAMASK_HQ_CLASSES[int(labels[5, 10])] == "hair"  # hair is painted after skin
    assert CELEBAMASK_HQ_CLASSES[int(labels[20, 10])] == "skin"
    assert CELEBAMASK_HQ_CLASSES[int(labels[15, 15])] == "nose"
    sample = RecordsDataset(records, 48, len(CELEBAMASK_HQ_CLASSES), False)[0]  # 64 px image resized to its mask
    assert sample["image"].shape == (3, 48, 48) and sample["mask"].max() == CELEBAMASK_HQ_CLASSES.index("hair")


def test_lapa_and_datamodule_on_real_layout(tmp_path):
    root = fx.make_lapa(tmp_path / "LaPa")
    dm = PortraitDataModule(root=str(root), format="lapa", labels="parts", image_size=32, batch_size=2)
    dm.setup("fit")
    assert dm.num_classes == 11 and dm.class_names[10] == "hair"
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (3, 1, 1)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["mask"].shape == (2, 32, 32)
    assert batch["mask"][0, 0].eq(255).all()  # letterbox padding (24x32 -> 32x32) is ignored
    with pytest.raises(ValueError, match="mask_class_names"):
        PortraitDataModule(root=str(root), format="lapa", labels="parts", mask_class_names=["a", "b"])
    with pytest.raises(ValueError, match="needs the dataset folder"):
        PortraitDataModule(format="lapa")


def test_split_manifest_and_random_splits(tmp_path):
    root = fx.make_mask_folder(tmp_path / "data", count=10)
    records = get_indexer("portrait", "mask_folder")(root)
    by_split = assign_splits(records, 0.2, 0.2, seed=0)
    assert [len(by_split[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert by_split == assign_splits(get_indexer("portrait", "mask_folder")(root), 0.2, 0.2, seed=0)
    manifest = write_split_manifest(
        {"train": records[:7], "val": records[7:8], "test": records[8:]}, root, tmp_path / "m"
    )
    dm = PortraitDataModule(root=str(root), format="mask_folder", splits=str(manifest), image_size=16)
    dm.setup("fit")
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (7, 1, 2)


# ------------------------------------------------------------------------------------------- augmentation
def test_letterbox_keeps_aspect_and_reports_box():
    image = torch.rand(3, 20, 40)
    mask = torch.ones(20, 40, dtype=torch.long)
    out, out_mask, box = fit_to_square(image, mask, 32)
    assert out.shape == (3, 32, 32) and box.tolist() == [8, 0, 16, 32]
    assert out_mask[:8].eq(255).all() and out_mask[8:24].eq(1).all() and out_mask[24:].eq(255).all()


def test_flip_swaps_left_and_right_and_warp_marks_outside_as_ignored():
    names = ["background", "l_eye", "r_eye", "l_lip"]
    permutation = flip_permutation(names)
    assert permutation == [0, 2, 1, 3]  # l_lip is the lower lip: it has no right twin
    augment = SegmentationAugmentation(permutation, hflip=1.0, affine_p=0.0, color_jitter=0.0)
    image = torch.zeros(1, 3, 8, 8)
    image[..., :4] = 1.0
    mask = torch.zeros(1, 8, 8, dtype=torch.long)
    mask[:, :, :2] = 1  # l_eye on the left
    mask[:, 0, 7] = 3
    flipped_image, flipped = augment(image, mask)
    assert flipped_image[0, :, :, 4:].eq(1).all() and flipped[0, :, 6:].eq(2).all() and flipped[0, 0, 0] == 3
    warp = SegmentationAugmentation(None, hflip=0.0, degrees=0.0, scale=(0.5, 0.5), translate=0.0, affine_p=1.0)
    warp.jitter = None
    _, shrunk = warp(torch.rand(2, 3, 32, 32), torch.ones(2, 32, 32, dtype=torch.long))
    assert shrunk[:, 0, 0].eq(255).all() and shrunk[:, 16, 16].eq(1).all()


def test_camera_pipeline_changes_the_image_only():
    dm = PortraitDataModule(image_size=32, synthetic_train_size=4, batch_size=4, isp_preset="heavy")
    dm.setup("fit")
    augment = dm.build_augmentations()["train"]
    augment.hflip, augment.affine, augment.jitter = 0.0, None, None  # leave only the camera pipeline
    batch = next(iter(dm.train_dataloader()))
    image, mask = augment(batch["image"].clone(), batch["mask"].clone())
    assert torch.equal(mask, batch["mask"])
    assert (image - batch["image"]).abs().mean() > 0.01
    assert PortraitDataModule(isp_preset="none").build_augmentations()["train"].photometric is None
