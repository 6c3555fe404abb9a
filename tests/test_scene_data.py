"""Scene data: synthetic scenes, real-format indexers (fixtures in the real layouts), the datamodule."""

from __future__ import annotations

import pytest
import torch

from moto_vision.data import SceneDataModule
from moto_vision.data.records import get_indexer
from moto_vision.data.scene.formats import SceneDataError, SceneImages
from moto_vision.data.scene.synthetic import SyntheticScenes
from moto_vision.heads.scene_taxonomy import CAMERA_SCENES, SYNTHETIC_SCENES, camera_scene_names, resolve_class_names
from tests.helpers.scene_fixtures import make_image_folder, make_manifest, make_places365, write_image


# --------------------------------------------------------------------------------------- taxonomy
def test_taxonomy_is_unique_and_covers_synthetic_classes(tmp_path):
    names = camera_scene_names()
    assert len(names) == len(CAMERA_SCENES) == 30 and len(set(names)) == 30
    assert set(SYNTHETIC_SCENES) <= set(names)
    assert resolve_class_names("synthetic") == list(SYNTHETIC_SCENES)
    (tmp_path / "classes.txt").write_text("# my scenes\nnight\n\nsnow\n")
    assert resolve_class_names(str(tmp_path / "classes.txt")) == ["night", "snow"]
    with pytest.raises(ValueError, match="more than once"):
        resolve_class_names(["night", "night"])
    with pytest.raises(ValueError, match="neither"):
        resolve_class_names("no_such_list")


# --------------------------------------------------------------------------------------- synthetic
def test_synthetic_is_reproducible_and_eval_splits_are_fixed():
    a = SyntheticScenes(12, split="train", seed=1, image_size=24)
    b = SyntheticScenes(12, split="train", seed=1, image_size=24)
    c = SyntheticScenes(12, split="train", seed=2, image_size=24)
    assert torch.equal(a[5]["image"], b[5]["image"])
    assert not torch.equal(a[5]["image"], c[5]["image"])
    # Validation and test do not move with the training seed, and differ from each other.
    val1 = SyntheticScenes(4, split="val", seed=1, image_size=24)[0]["image"]
    val2 = SyntheticScenes(4, split="val", seed=2, image_size=24)[0]["image"]
    test = SyntheticScenes(4, split="test", seed=1, image_size=24)[0]["image"]
    assert torch.equal(val1, val2) and not torch.equal(val1, test)
    sample = a[0]
    assert sample["image"].shape == (3, 24, 24) and sample["image"].dtype == torch.float32
    assert 0 <= sample["image"].min() and sample["image"].max() <= 1
    assert [int(a[i]["label"]) for i in range(12)] == [i % 9 for i in range(12)]  # balanced classes


def test_synthetic_classes_look_different():
    ds = SyntheticScenes(90, split="val", image_size=32)
    by_class: dict[str, list[torch.Tensor]] = {}
    for i in range(len(ds)):
        by_class.setdefault(ds.labels(i)[0], []).append(ds[i]["image"])
    mean = {name: torch.stack(images).mean(dim=(0, 2, 3)) for name, images in by_class.items()}
    brightness = {name: float(m.mean()) for name, m in mean.items()}
    assert brightness["night"] < 0.25 < brightness["snow"]
    assert brightness["night"] == min(brightness.values())
    assert mean["sunset"][0] > mean["sunset"][2] + 0.15  # warm
    assert mean["greenery"][1] > mean["greenery"][0] and mean["greenery"][1] > mean["greenery"][2]
    assert mean["landscape"][2] > mean["sunset"][2]  # blue sky against a warm one


def test_synthetic_multilabel_combines_scenes_and_respects_class_subset():
    ds = SyntheticScenes(200, split="val", image_size=16, multi_label=True)
    labels = torch.stack([ds[i]["label"] for i in range(0, 200, 10)])
    assert labels.shape == (20, 9) and labels.dtype == torch.float32
    counts = [len(ds.labels(i)) for i in range(200)]
    assert max(counts) >= 3 and sum(c >= 2 for c in counts) > 40
    combos = {tuple(ds.labels(i)) for i in range(200)}
    assert any({"portrait", "night"} <= set(c) for c in combos)
    assert any({"portrait", "backlight"} <= set(c) for c in combos)
    subset = SyntheticScenes(100, split="val", image_size=16, multi_label=True, class_names=["snow", "portrait"])
    assert all(set(subset.labels(i)) <= {"snow", "portrait"} for i in range(100))
    assert all(subset.spec(i).night is False and subset.spec(i).backlight is False for i in range(100))
    with pytest.raises(ValueError, match="cannot render"):
        SyntheticScenes(4, class_names=["dog"])


# --------------------------------------------------------------------------------------- formats
def test_image_folder_flat_and_split_layouts(tmp_path):
    make_image_folder(tmp_path / "flat", ["night", "snow"], per_class=3)
    records = get_indexer("scene", "image_folder")(tmp_path / "flat")
    assert len(records) == 6 and {r.labels[0] for r in records} == {"night", "snow"}
    assert all(r.split is None for r in records)
    make_image_folder(tmp_path / "split", ["night", "snow"], per_class=2, split_dirs=True)
    records = get_indexer("scene", "image_folder")(tmp_path / "split")
    assert sorted({r.split for r in records}) == ["test", "train", "val"] and len(records) == 12


def test_image_folder_empty_class_folder_is_named(tmp_path):
    make_image_folder(tmp_path, ["night"], per_class=2)
    (tmp_path / "snow").mkdir()
    with pytest.raises(SceneDataError, match=r"snow holds no images"):
        get_indexer("scene", "image_folder")(tmp_path)


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_manifest_multi_label(tmp_path, kind):
    rows = [("a.jpg", ["portrait", "night"], "train"), ("b.png", ["snow"], "val"), ("c.jpg", [], "test")]
    path = make_manifest(tmp_path, rows, kind=kind)
    records = get_indexer("scene", "manifest")(path)
    assert [r.labels for r in records] == [["portrait", "night"], ["snow"], []]
    assert [r.split for r in records] == ["train", "val", "test"]
    assert records[0].image == tmp_path / "images" / "a.jpg"
    assert len(get_indexer("scene", "manifest")(tmp_path)) == 3  # the folder works too


def test_manifest_errors_name_file_and_line(tmp_path):
    make_manifest(tmp_path, [("a.jpg", ["night"], None)])
    # A listed image that does not exist is kept by the indexer and refused by the datamodule, with its line.
    (tmp_path / "manifest.csv").write_text("path,labels\nimages/a.jpg,night\nimages/missing.jpg,snow\n")
    assert len(get_indexer("scene", "manifest")(tmp_path)) == 2
    with pytest.raises(SceneDataError, match=r"missing.jpg: the file does not exist.*listed at .*manifest.csv:3"):
        SceneDataModule(root=str(tmp_path), format="manifest").setup("fit")
    (tmp_path / "manifest.csv").write_text("file_name,tag\nimages/a.jpg,night\n")
    with pytest.raises(SceneDataError, match=r"manifest.csv: the header .* needs a path column"):
        get_indexer("scene", "manifest")(tmp_path)


def test_places365_official_lists(tmp_path):
    root = make_places365(tmp_path / "places")
    records = get_indexer("scene", "places365")(root)
    assert len(records) == 4 * 4 + 4 * 2
    train = [r for r in records if r.split == "train"]
    test = [r for r in records if r.split == "test"]
    assert len(train) == 16 and len(test) == 8
    assert train[0].image == root / "data_256" / "a" / "airfield" / "00000001.jpg" and train[0].image.is_file()
    assert all(r.image.is_file() for r in test)
    assert {r.labels[0] for r in records} == {"airfield", "bedroom", "snowfield", "apartment_building/outdoor"}
    # A class index beyond the category list is reported with its file and line.
    (root / "places365_val.txt").write_text("Places365_val_00000001.jpg 0\nPlaces365_val_00000002.jpg 9\n")
    bad = [r for r in get_indexer("scene", "places365")(root) if r.problems]
    assert len(bad) == 1 and "class index 9" in bad[0].problems[0][1]
    with pytest.raises(SceneDataError, match=r"class index 9 is outside .*listed at .*places365_val.txt:2"):
        SceneDataModule(root=str(root), format="places365").setup("fit")


# --------------------------------------------------------------------------------------- datamodule
def test_datamodule_places365_keeps_official_class_order_and_carves_val(tmp_path):
    root = make_places365(tmp_path / "places", train_per_class=6)
    dm = SceneDataModule(root=str(root), format="places365", image_size=16, batch_size=4, val_fraction=0.34)
    dm.setup("fit")
    assert dm.class_names == ["airfield", "bedroom", "snowfield", "apartment_building/outdoor"]
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (16, 8, 8)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["label"].dtype == torch.long
    assert dm.class_counts().tolist() == [4.0, 4.0, 4.0, 4.0]


def test_datamodule_manifest_multilabel_batches_and_errors(tmp_path):
    rows = [(f"{i}.jpg", labels, split) for i, (labels, split) in enumerate(
        [(["portrait", "night"], "train"), (["snow"], "train"), (["night"], "val"), (["snow", "portrait"], "test")]
    )]  # fmt: skip
    make_manifest(tmp_path, rows)
    dm = SceneDataModule(root=str(tmp_path), format="manifest", multi_label=True, image_size=8, batch_size=2)
    dm.setup("fit")
    assert dm.class_names == ["night", "portrait", "snow"]
    batch = next(iter(dm.val_dataloader()))
    assert batch["label"].tolist() == [[1.0, 0.0, 0.0]] and batch["path"][0].endswith("2.jpg")
    # The same data as multi-class: an image with two labels is an error naming the manifest line.
    with pytest.raises(SceneDataError, match=r"manifest.csv:2: .* has 2 labels"):
        SceneDataModule(root=str(tmp_path), format="manifest", image_size=8).setup("fit")
    # Unknown label against given classes: named with its line.
    with pytest.raises(SceneDataError, match=r"labels \['snow'\] are not among the 2 classes.*manifest.csv:3"):
        SceneDataModule(root=str(tmp_path), format="manifest", multi_label=True, classes=["night", "portrait"]).setup(
            "fit"
        )


def test_unreadable_image_is_named(tmp_path):
    make_image_folder(tmp_path, ["night", "snow"], per_class=2)
    (tmp_path / "snow" / "001.jpg").write_bytes(b"not a jpeg")
    records = get_indexer("scene", "image_folder")(tmp_path)
    dataset = SceneImages(records, ["night", "snow"], image_size=8)
    assert dataset[0]["image"].shape == (3, 8, 8)
    bad = next(i for i, r in enumerate(records) if r.image == tmp_path / "snow" / "001.jpg")
    with pytest.raises(SceneDataError, match=r"Cannot read image .*snow/001.jpg"):
        dataset[bad]


def test_empty_split_is_reported(tmp_path):
    make_image_folder(tmp_path, ["night", "snow"], per_class=3)
    dm = SceneDataModule(root=str(tmp_path), format="image_folder", val_fraction=0.0)
    with pytest.raises(SceneDataError, match="the val split is empty"):
        dm.setup("fit")


def test_balanced_sampling_evens_out_classes(tmp_path):
    for i in range(30):
        write_image(tmp_path / "night" / f"{i}.png", "night", seed=i)
    for i in range(5):
        write_image(tmp_path / "snow" / f"{i}.png", "snow", seed=100 + i)
    common = {"root": str(tmp_path), "format": "image_folder", "image_size": 4, "batch_size": 8}
    dm = SceneDataModule(**common, val_fraction=0.2, test_fraction=0.2, balanced_sampling=True)
    dm.setup("fit")
    assert dm.class_counts().tolist() == [18.0, 3.0]
    labels = torch.cat([b["label"] for _ in range(8) for b in dm.train_dataloader()])
    share = float((labels == 1).float().mean())
    assert 0.3 < share < 0.7, share  # 3 / 21 = 0.14 without balancing


def test_predict_folder_dataset(tmp_path):
    for i in range(3):
        write_image(tmp_path / "photos" / f"{i}.jpg", "night", seed=i)
    dm = SceneDataModule(predict_root=str(tmp_path / "photos"), image_size=8, batch_size=2)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert batch["image"].shape == (2, 3, 8, 8) and "label" not in batch and len(batch["path"]) == 2
