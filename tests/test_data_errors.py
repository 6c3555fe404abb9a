"""Trust in data: every defect in one `data check` run, data refused before the first step with one clear message,
and no silent fallbacks (a root without a format, an option the format ignores)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moto_vision.cli import main
from moto_vision.data import AWBDataModule, PortraitDataModule, SceneDataModule
from moto_vision.data.curation.cli import data_main
from moto_vision.data.errors import DataOptionError
from moto_vision.data.portrait import PortraitDataError
from tests.helpers import awb_fixtures
from tests.helpers import portrait_fixtures as fx
from tests.helpers.scene_fixtures import make_image_folder

REPO = Path(__file__).resolve().parents[1]
PORTRAIT = ["--config", str(REPO / "recipes" / "portrait.yaml"), "--model.init_args.image_size", "32"]
PORTRAIT += ["--data.init_args.image_size", "32", "--trainer.max_steps", "2", "--trainer.logger", "false"]


def _broken_mask_folder(root: Path) -> dict[str, str]:
    """A mask folder with one of each defect; returns ``{check code: file it must name}``."""
    fx.make_mask_folder(root, count=8)
    images, masks = root / "images", root / "masks"
    noise = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(images / "img_001.jpg", quality=95)
    fx.save(fx.person_mask(96, 128), masks / "img_001.png")
    data = (images / "img_001.jpg").read_bytes()
    (images / "img_001.jpg").write_bytes(data[: len(data) * 2 // 3])  # truncated: the header reads, the pixels do not
    fx.save(fx.person_mask(12, 16), masks / "img_002.png")  # wrong size
    (masks / "img_003.png").unlink()  # missing mask
    shutil.copy(images / "img_004.jpg", images / "img_004_copy.jpg")  # exact duplicate (with its mask)
    shutil.copy(masks / "img_004.png", masks / "img_004_copy.png")
    (images / "img_005.png").write_bytes(b"")  # zero bytes (its mask stays)
    (images / "img_005.jpg").unlink()
    return {
        "truncated": "images/img_001.jpg",
        "mask_size": "masks/img_002.png",
        "missing_mask": "images/img_003.jpg",
        "duplicate": "images/img_004.jpg",
        "unreadable": "images/img_005.png",
    }


def test_data_check_reports_every_planted_defect_in_one_run(tmp_path, capsys):
    expected = _broken_mask_folder(tmp_path)
    args = ["check", str(tmp_path), "--task", "portrait", "--format", "mask_folder", "--json", "--no-progress"]
    assert data_main([*args, "--workers", "1"]) == 1
    result = json.loads(capsys.readouterr().out)
    found = {(issue["code"], issue["path"]) for issue in result["issues"]}
    assert {(code, path) for code, path in expected.items()} <= found, found
    assert result["samples"] == 9  # the image without a mask is checked too


def test_fit_refuses_broken_files_before_the_first_step_in_one_message(tmp_path, capsys):
    expected = _broken_mask_folder(tmp_path / "data")
    run = tmp_path / "run"
    args = ["fit", *PORTRAIT, "--data.init_args.format", "mask_folder", "--data.init_args.root", str(tmp_path / "data")]
    assert main([*args, "--trainer.default_root_dir", str(run)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--debug" in err
    # Every problem the headers show, each with its file, and the command that finds the rest (truncation, duplicates).
    for code in ("mask_size", "missing_mask", "unreadable"):
        assert f"{expected[code]}: " in err and f"({code})" in err, code
    assert "3 of 9 samples" in err and f"moto-vision data check {tmp_path / 'data'} --task portrait" in err
    assert not list(run.rglob("*.ckpt"))  # nothing trained
    with pytest.raises(PortraitDataError, match="img_005.png"):
        main([*args, "--trainer.default_root_dir", str(run), "--debug"])


def test_a_root_without_a_format_is_refused_with_the_formats_that_fit(tmp_path, capsys):
    fx.make_mask_folder(tmp_path, count=2)
    assert main(["fit", *PORTRAIT, "--data.init_args.root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "format is 'synthetic', which reads no files" in err and "reads as: mask_folder" in err
    assert "Traceback" not in err
    make_image_folder(tmp_path / "scenes", ["night", "snow"], per_class=2)
    with pytest.raises(DataOptionError, match="reads as: image_folder"):
        SceneDataModule(root=str(tmp_path / "scenes"))
    awb_fixtures.make_cube_plus(tmp_path / "cube", n=3)
    with pytest.raises(DataOptionError, match="reads as: cube_plus"):
        AWBDataModule(root=str(tmp_path / "cube"))


def test_options_the_format_ignores_are_refused(tmp_path, capsys):
    fx.make_mask_folder(tmp_path, count=2)
    real = ["--data.init_args.format", "mask_folder", "--data.init_args.root", str(tmp_path)]
    assert main(["fit", *PORTRAIT, *real, "--data.init_args.synthetic_train_size", "10"]) == 2
    assert "does not use synthetic_train_size=10" in capsys.readouterr().err
    with pytest.raises(DataOptionError, match="does not use val_fraction=0.2"):
        PortraitDataModule(val_fraction=0.2)
    with pytest.raises(DataOptionError, match="does not use manifest="):
        SceneDataModule(root=str(tmp_path), format="image_folder", manifest="list.csv")
    awb_fixtures.make_cube_plus(tmp_path / "cube", n=3)
    with pytest.raises(DataOptionError, match="does not use test_fraction=0.3"):
        AWBDataModule(root=str(tmp_path / "cube"), format="cube_plus", test_fraction=0.3)
    photos = tmp_path / "photos"
    awb_fixtures.make_photos(photos)
    with pytest.raises(DataOptionError, match=r"does not use fold='1'"):
        AWBDataModule(root=str(photos), format="photos", fold=1, train_size=8)  # photos are sized in draws
    # The options a format does read pass, and so does a value equal to the default (it changes nothing, and the
    # configs and checkpoints of the previous release record every default).
    AWBDataModule(root=str(photos), format="photos", test_fraction=0.3)
    PortraitDataModule(synthetic_train_size=8)
    PortraitDataModule(val_fraction=0.1, test_fraction=0.1, resize="letterbox")
    AWBDataModule(root=str(photos), format="photos", train_size=4096, fold=0, num_folds=3)


def test_a_zero_byte_png_fails_setup_not_the_first_batch(tmp_path):
    fx.make_mask_folder(tmp_path, count=4)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "masks" / "img_000.png")  # the mask is fine...
    (tmp_path / "images" / "img_000.jpg").write_bytes(b"")  # ...the image is empty
    data = PortraitDataModule(root=str(tmp_path), format="mask_folder", image_size=32)
    with pytest.raises(PortraitDataError, match=r"img_000.jpg: an empty file \(0 bytes\)"):
        data.setup("fit")


def test_wandb_is_optional_and_its_absence_is_explained(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("moto_vision.cli._has_module", lambda name: name != "wandb")
    logger = ["--config", str(REPO / "recipes" / "loggers" / "wandb.yaml")]
    toy = ["--config", str(REPO / "tests" / "toy_recipe.yaml"), "--trainer.default_root_dir", str(tmp_path)]
    assert main(["fit", *toy, *logger]) == 2
    err = capsys.readouterr().err
    assert "pip install 'moto-vision[wandb]'" in err and "Traceback" not in err
