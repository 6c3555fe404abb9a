"""``moto-vision data check`` on every real dataset format, built with the task engineers' fixture generators.

The fixtures are the ones each task's own tests read with its datamodule, so a clean fixture must give no
errors here; one injected defect per task must be found through the real indexer.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from PIL import Image

from moto_vision.data.curation.cli import data_main
from moto_vision.data.records import format_names

TASKS = ("awb", "portrait", "scene")


def _fixtures(task: str):
    """The task engineers' fixture module (``tests/helpers/<task>_fixtures.py``)."""
    return importlib.import_module(f"tests.helpers.{task}_fixtures")


#: (task, format) -> how to build a small copy of the format with that task's fixture generators.
MAKERS = {
    ("awb", "gehler_shi"): lambda root: _fixtures("awb").make_gehler_shi(root, n_1d=2, n_5d=3),
    ("awb", "nus8"): lambda root: _fixtures("awb").make_nus8(root),
    ("awb", "cube_plus"): lambda root: _fixtures("awb").make_cube_plus(root),
    ("awb", "simple_cube_pp"): lambda root: _fixtures("awb").make_simple_cube_pp(root),
    ("awb", "photos"): lambda root: _fixtures("awb").make_photos(root),
    ("awb", "dng"): lambda root: importlib.import_module("tests.helpers.dng_captures").make_dng(root),
    ("awb", "raw_png"): lambda root: importlib.import_module("tests.helpers.dng_captures").make_raw_png(root),
    ("portrait", "mask_folder"): lambda root: _fixtures("portrait").make_mask_folder(root, splits=True),
    ("portrait", "matting"): lambda root: _fixtures("portrait").make_p3m(root),
    ("portrait", "celebamask_hq"): lambda root: _fixtures("portrait").make_celebamask_hq(root),
    ("portrait", "lapa"): lambda root: _fixtures("portrait").make_lapa(root),
    ("scene", "image_folder"): lambda root: _fixtures("scene").make_image_folder(
        root, ["night", "snow", "food"], 3, split_dirs=True
    ),
    ("scene", "manifest"): lambda root: _fixtures("scene").make_manifest(
        root, [("a.jpg", ["night"], "train"), ("b.jpg", ["snow", "food"], "train"), ("c.jpg", ["food"], "val")]
    ),
    ("scene", "places365"): lambda root: _fixtures("scene").make_places365(root),
}
REGISTERED = {(task, fmt) for task in TASKS for fmt in format_names(task)}


#: Fixtures that reuse one picture in several splits (seeded per split, or one "person" on flat backgrounds):
#: ``leakage`` is the right finding there, and the only error allowed.
REUSE_PICTURES = {("portrait", "celebamask_hq"), ("portrait", "lapa"), ("scene", "image_folder")}


def _check(root: Path, task: str, fmt: str, capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, dict]:
    status = data_main(["check", str(root), "--task", task, "--format", fmt, "--json", "--no-progress", *extra])
    return status, json.loads(capsys.readouterr().out)


def test_every_registered_format_is_covered():
    assert REGISTERED - set(MAKERS) == set(), "add the new format's fixture to MAKERS"


@pytest.mark.parametrize("task,fmt", sorted(MAKERS))
def test_check_real_format_fixture_has_no_errors(tmp_path, capsys, task, fmt):
    if (task, fmt) not in REGISTERED:
        pytest.skip(f"the {task} format {fmt} is not in this checkout yet")
    MAKERS[(task, fmt)](tmp_path)
    status, result = _check(tmp_path, task, fmt, capsys, "--workers", "1")
    assert result["samples"] > 0
    errors = {i["code"] for i in result["issues"] if i["severity"] == "error"}
    if (task, fmt) in REUSE_PICTURES:
        assert status == 1 and errors == {"leakage"}, result["issues"]
    else:
        assert status == 0 and not errors, result["issues"]


def _require(task: str, fmt: str) -> None:
    if (task, fmt) not in REGISTERED:
        pytest.skip(f"the {task} format {fmt} is not in this checkout yet")


def test_check_finds_raw_defects_through_the_cube_plus_indexer(tmp_path, capsys):
    _require("awb", "cube_plus")
    _fixtures("awb").make_cube_plus(tmp_path)
    pngs = sorted(tmp_path.rglob("*.PNG"))
    Image.new("RGB", (64, 48), (40, 40, 40)).save(pngs[0], format="PNG")  # 8-bit among 16-bit raw captures
    pngs[1].write_bytes(pngs[1].read_bytes()[:300])
    status, result = _check(tmp_path, "awb", "cube_plus", capsys)
    found = {(i["code"], Path(i["path"]).name) for i in result["issues"]}
    assert status == 1 and {("bit_depth", pngs[0].name), ("truncated", pngs[1].name)} <= found


def test_check_finds_a_wrong_mask_size_through_the_mask_folder_indexer(tmp_path, capsys):
    _require("portrait", "mask_folder")
    _fixtures("portrait").make_mask_folder(tmp_path)
    mask = sorted((tmp_path / "masks").glob("*.png"))[0]
    Image.open(mask).resize((16, 12)).save(mask)
    status, result = _check(tmp_path, "portrait", "mask_folder", capsys)
    assert status == 1 and ("mask_size", mask.name) in {(i["code"], Path(i["path"]).name) for i in result["issues"]}


def test_check_finds_label_and_leakage_defects_through_the_image_folder_indexer(tmp_path, capsys):
    _require("scene", "image_folder")
    _fixtures("scene").make_image_folder(tmp_path, ["night", "snow"], 2, split_dirs=True)
    copy = tmp_path / "val" / "snow" / "000.png"
    copy.write_bytes((tmp_path / "train" / "night" / "000.png").read_bytes())  # one picture in train and val
    status, result = _check(tmp_path, "scene", "image_folder", capsys, "--classes", "night")
    issues = {(i["code"], i["path"]) for i in result["issues"]}
    assert status == 1
    assert ("unknown_label", "val/snow/000.png") in issues and ("unknown_label", "train/snow/000.png") in issues
    assert any(code == "leakage" and path == "train/night/000.png" for code, path in issues)


def test_split_manifests_feed_the_scene_datamodule(tmp_path):
    _require("scene", "image_folder")
    from moto_vision.data import SceneDataModule

    _fixtures("scene").make_image_folder(tmp_path / "data", ["night", "snow", "food"], 10)
    out = tmp_path / "splits"
    args = ["split", str(tmp_path / "data"), "--task", "scene", "--format", "image_folder", "--out", str(out)]
    assert data_main([*args, "--no-progress"]) == 0
    datamodule = SceneDataModule(root=str(tmp_path / "data"), format="image_folder", splits=str(out), image_size=32)
    datamodule.setup("fit")
    datamodule.setup("test")
    sizes = [len(datamodule.train_dataset), len(datamodule.val_dataset), len(datamodule.test_dataset)]
    assert sizes == [24, 3, 3]  # 80/10/10 of 30, one of each class in val and in test
