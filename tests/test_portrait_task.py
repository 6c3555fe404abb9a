"""PortraitSegmenter: learning on synthetic portraits, checkpoints, the recipes through the command line."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from moto_vision.backbones import create_backbone
from moto_vision.cli import main
from moto_vision.data import PortraitDataModule
from moto_vision.tasks import PortraitSegmenter
from tests.helpers import portrait_fixtures as fx
from tests.helpers.training import quiet_trainer

REPO = Path(__file__).resolve().parents[1]


def _trainer(root: Path, epochs: int) -> L.Trainer:
    return quiet_trainer(root, max_epochs=epochs, num_sanity_val_steps=0, enable_checkpointing=True)


def test_learns_person_masks_beyond_the_mean_mask(tmp_path):
    L.seed_everything(0)
    data = PortraitDataModule(
        image_size=64, synthetic_train_size=192, synthetic_val_size=16, synthetic_test_size=64, batch_size=16
    )
    model = PortraitSegmenter(image_size=64, lr=2e-2, log_predictions=False)
    trainer = _trainer(tmp_path, epochs=4)
    trainer.fit(model, data)
    iou = trainer.test(model, data, verbose=False)[0]["test_iou"]

    # Baseline: the per-pixel mean of the training masks, thresholded at one half.
    train_masks = torch.stack([data.train_dataset[i]["mask"] for i in range(len(data.train_dataset))]).float()
    mean_mask = train_masks.mean(0) > 0.5
    test_masks = torch.stack([data.test_dataset[i]["mask"] for i in range(len(data.test_dataset))]).bool()
    baseline = float((mean_mask & test_masks).sum() / (mean_mask | test_masks).sum())
    assert iou > baseline + 0.1, f"test IoU {iou:.3f} vs mean-mask baseline {baseline:.3f}"


def test_checkpoint_round_trip_keeps_classes_and_backbone(tmp_path):
    names = ["background", "skin", "hair"]
    model = PortraitSegmenter(backbone="test_efficientnet", num_classes=3, class_names=names, image_size=32)
    trainer = _trainer(tmp_path, epochs=1)
    trainer.strategy.connect(model)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = PortraitSegmenter.load_from_checkpoint(path)
    x = torch.rand(1, 3, 32, 32)
    model.eval()
    loaded.eval()
    assert torch.allclose(model(x), loaded(x))
    assert loaded.class_names == names and loaded.export_metadata()["activation"] == "softmax"
    backbone = create_backbone("test_efficientnet", pretrained=path).eval()
    for a, b in zip(backbone(x), model.backbone(x)):
        assert torch.allclose(a, b)


def test_class_mismatch_is_caught_before_training(tmp_path):
    with pytest.raises(ValueError, match="class_names has 2 names"):
        PortraitSegmenter(num_classes=3, class_names=["a", "b"])
    data = PortraitDataModule(labels="parts", image_size=32, synthetic_train_size=4)
    model = PortraitSegmenter(backbone="test_efficientnet", num_classes=1, image_size=32)
    with pytest.raises(ValueError, match="num_classes 13"):
        _trainer(tmp_path, epochs=1).fit(model, data)


def test_recipe_fit_test_predict_through_the_cli(tmp_path, capsys):
    photos = tmp_path / "photos"
    fx.save(fx.person_image(24, 40), photos / "wide.jpg")
    fx.save_exif_rotated_jpeg(fx.person_image(40, 24), photos / "phone" / "tall.jpg")
    common = [
        "--config",
        str(REPO / "recipes" / "portrait.yaml"),
        f"--trainer.default_root_dir={tmp_path / 'run'}",
        "--trainer.enable_progress_bar=false",
        "--model.init_args.image_size=32",
        "--model.init_args.backbone=test_efficientnet",
        "--data.init_args.image_size=32",
        "--data.init_args.synthetic_train_size=8",
        "--data.init_args.synthetic_val_size=4",
        "--data.init_args.synthetic_test_size=4",
        "--data.init_args.batch_size=4",
    ]
    assert main(["fit", *common, "--trainer.max_epochs=1"]) == 0
    assert list((tmp_path / "run").rglob("best*.ckpt")) and list((tmp_path / "run").rglob("last*.ckpt"))
    capsys.readouterr()
    assert main(["test", *common, "--ckpt_path=best"]) == 0
    printed = capsys.readouterr().out
    assert "IoU (person)" in printed and "Dice" in printed and "Boundary F" in printed
    assert main(["predict", *common, "--ckpt_path=best", f"--data.init_args.predict_root={photos}"]) == 0
    out = tmp_path / "run" / "predictions"
    wide = Image.open(out / "masks" / "wide.png")
    tall = Image.open(out / "masks" / "phone" / "tall.png")
    assert wide.size == (40, 24) and tall.size == (24, 40)  # original sizes, EXIF orientation applied
    assert set(np.unique(np.asarray(wide)).tolist()) <= {0, 255}
    assert Image.open(out / "overlays" / "phone" / "tall.png").size == (24, 40)


def test_face_parsing_recipe_runs(tmp_path):
    # Also checks that model and data hyperparameters merge for the loggers (no clashing names).
    args = [
        "fit",
        "--config",
        str(REPO / "recipes" / "face_parsing.yaml"),
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
        "--trainer.max_epochs=1",
        "--model.init_args.image_size=32",
        "--model.init_args.backbone=test_efficientnet",
        "--data.init_args.image_size=32",
        "--data.init_args.synthetic_train_size=2",
        "--data.init_args.synthetic_val_size=2",
        "--data.init_args.synthetic_test_size=2",
        "--data.init_args.batch_size=2",
    ]
    assert main(args) == 0
    assert list(tmp_path.rglob("best*.ckpt"))
