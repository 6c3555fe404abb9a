"""Scene task: calibration maths, metrics, head and loss, checkpoints, learning, recipes and predict."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer, seed_everything

from moto_vision.data import SceneDataModule
from moto_vision.metrics import CalibrationError, MultilabelCalibrationError, MultilabelTopKAccuracy
from moto_vision.models import ClassificationHead, ClassificationLoss, ScoreCalibrator, class_weights_from_counts
from moto_vision.models.calibration import fit_temperature, fit_thresholds
from moto_vision.tasks import SceneClassifier
from tests.helpers.scene_fixtures import write_image
from tests.helpers.training import quiet_trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = "test_efficientnet"


# --------------------------------------------------------------------------------------- metrics and calibration
def test_multilabel_calibration_error_matches_hand_computation():
    metric = MultilabelCalibrationError(num_labels=2, n_bins=10)
    # Class scores of 0.85 where the class is present half the time: |0.85 - 0.5| = 0.35 in one bin.
    probs = torch.full((4, 2), 0.85)
    target = torch.tensor([[1, 0], [0, 1], [1, 0], [0, 1]])
    metric.update(probs, target)
    assert float(metric.compute()) == pytest.approx(0.35, abs=1e-6)
    calibrated = MultilabelCalibrationError(num_labels=2, n_bins=10)
    calibrated.update(torch.full((4, 2), 0.5), target)
    assert float(calibrated.compute()) == pytest.approx(0.0, abs=1e-6)
    assert type(CalibrationError("multiclass", 3)).__name__ == "MulticlassCalibrationError"
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        metric.update(torch.rand(4, 3), torch.zeros(4, 3, dtype=torch.long))


def test_multilabel_topk_accuracy():
    metric = MultilabelTopKAccuracy(num_labels=3, top_k=1)
    scores = torch.tensor([[0.9, 0.1, 0.2], [0.2, 0.3, 0.8], [0.5, 0.4, 0.1]])
    target = torch.tensor([[1, 0, 1], [1, 0, 0], [0, 0, 0]])  # the last image has no scene: skipped
    metric.update(scores, target)
    assert float(metric.compute()) == pytest.approx(0.5)


@pytest.mark.parametrize("multi_label", [False, True])
def test_temperature_scaling_recovers_overconfidence(multi_label):
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 5, generator=g) * 1.5
    if multi_label:
        targets = torch.bernoulli(true_logits.sigmoid(), generator=g)
    else:
        targets = torch.multinomial(true_logits.softmax(-1), 1, generator=g).squeeze(1)
    temperature = fit_temperature(true_logits * 2.5, targets, multi_label=multi_label)
    assert temperature == pytest.approx(2.5, rel=0.12)
    calibrator = ScoreCalibrator(5, multi_label=multi_label)
    report = calibrator.fit(true_logits * 2.5, targets)
    assert report["nll_after"] < report["nll_before"]
    assert float(calibrator.temperature) == pytest.approx(temperature)


def test_thresholds_maximise_f1_per_class():
    probs = torch.tensor([[0.9, 0.1], [0.75, 0.2], [0.62, 0.3], [0.3, 0.4], [0.1, 0.35]])
    targets = torch.tensor([[1, 0], [1, 0], [0, 0], [0, 0], [0, 0]])
    thresholds = fit_thresholds(probs, targets)
    assert 0.62 < thresholds[0] < 0.75  # keeps exactly the two positives
    assert thresholds[1] == 0.5  # no positives: default


def test_head_and_losses():
    features = [torch.randn(2, 8, 16, 16), torch.randn(2, 16, 4, 4)]
    head = ClassificationHead([8, 16], 5, feature_indices=[0, -1], hidden=12)
    assert head(features).shape == (2, 5)
    logits, target = torch.randn(6, 4), torch.randint(0, 2, (6, 4)).float()
    asl = ClassificationLoss(4, multi_label=True, multilabel_loss="asymmetric", gamma_neg=0, gamma_pos=0, clip=0)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / 6
    assert float(asl(logits, target)) == pytest.approx(float(bce), rel=1e-4)
    weights = class_weights_from_counts(torch.tensor([10.0, 30.0, 0.0, 20.0]), "inverse_frequency")
    assert weights[2] == 0 and weights[0] > weights[3] > weights[1]
    assert float(weights[[0, 1, 3]].mean()) == pytest.approx(1.0)
    ce = ClassificationLoss(4, label_smoothing=0.0)
    ce.set_class_weights(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    assert float(ce(logits, labels)) == pytest.approx(float(F.cross_entropy(logits[[0, 4]], labels[[0, 4]])))


# --------------------------------------------------------------------------------------- task
def _trainer(tmp_path: Path, **kwargs) -> Trainer:
    return quiet_trainer(tmp_path, **kwargs)


def test_checkpoint_restores_class_names_temperature_and_thresholds(tmp_path):
    seed_everything(0)
    model = SceneClassifier(class_names=["snow", "night", "portrait"], multi_label=True, backbone=TINY, image_size=16,
                            loss_weighting="inverse_frequency", log_predictions=False)  # fmt: skip
    dm = SceneDataModule(classes=["snow", "night", "portrait"], multi_label=True, image_size=16, batch_size=16,
                         synthetic_train_size=32, synthetic_eval_size=48)  # fmt: skip
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2, num_sanity_val_steps=0)
    trainer.fit(model, dm)
    assert model.temperature != 1.0 and model.thresholds != [0.5, 0.5, 0.5]  # fitted on validation
    counts = dm.class_counts()
    weights = model.criterion.class_weights
    assert counts.min() < counts.max() and weights[counts.argmin()] > weights[counts.argmax()]  # rarer: heavier
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = SceneClassifier.load_from_checkpoint(path)
    assert restored.class_names == ["snow", "night", "portrait"] and restored.multi_label
    assert restored.temperature == pytest.approx(model.temperature)
    assert restored.thresholds == pytest.approx(model.thresholds)
    meta = restored.export_metadata()
    assert meta["class_names"] == ["snow", "night", "portrait"] and meta["activation"] == "sigmoid"
    assert meta["temperature"] == pytest.approx(model.temperature) and meta["thresholds"] == restored.thresholds
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["moto_vision"]["scene"]["thresholds"] == pytest.approx(model.thresholds)
    # The exported graph returns the calibrated scores.
    x = torch.rand(2, 3, 16, 16)
    restored.eval()
    exported = restored.export_module().eval()
    assert torch.allclose(exported(x), (restored(x) / restored.temperature).sigmoid(), atol=1e-6)


def test_class_name_mismatch_is_explained(tmp_path):
    model = SceneClassifier(class_names=["snow", "night"], backbone=TINY, image_size=16)
    dm = SceneDataModule(classes=["night", "snow"], image_size=16, synthetic_train_size=8, synthetic_eval_size=8)
    with pytest.raises(ValueError, match="differ from the model's"):
        _trainer(tmp_path, max_epochs=1).fit(model, dm)


@pytest.mark.parametrize("multi_label", [False, True])
def test_learns_synthetic_scenes(tmp_path, multi_label, capsys):
    """Learning happened: far better than chance (multi-class) or than the label prevalence (multi-label mAP)."""
    seed_everything(0)
    model = SceneClassifier(multi_label=multi_label, backbone=TINY, image_size=32, lr=0.01, label_smoothing=0.0,
                            feature_indices=[1, -1], log_predictions=False)  # fmt: skip
    dm = SceneDataModule(multi_label=multi_label, image_size=32, batch_size=32, synthetic_train_size=432,
                         synthetic_eval_size=144, isp_preset="light")  # fmt: skip
    trainer = _trainer(tmp_path, max_epochs=3, num_sanity_val_steps=0)
    trainer.fit(model, dm)
    (result,) = trainer.test(model, dm, verbose=False)
    printed = capsys.readouterr().out
    assert "Per-class precision and recall" in printed and "ECE after calibration" in printed
    assert (tmp_path / "confusion_matrix.png").is_file()
    with capsys.disabled():
        print({k: round(v, 3) for k, v in result.items() if "_precision_" not in k and "_recall_" not in k})
    if multi_label:
        labels = torch.stack([dm.test_dataset[i]["label"] for i in range(len(dm.test_dataset))])
        prevalence = float(labels.mean())  # the mAP of scores that ignore the image
        assert result["test_map"] > prevalence + 0.35, (result["test_map"], prevalence)
        assert "test_exact_match" in result and "test_precision_night" in result
    else:
        assert result["test_top1"] > 0.6, result["test_top1"]  # chance: 1/9
        assert result["test_top3"] >= result["test_top1"]
    assert result["test_ece"] < 0.25


# --------------------------------------------------------------------------------------- recipes and CLI
def _cli(args: list[str]) -> int:
    from moto_vision.cli import main

    return main(args)


QUICK = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=3",
    "--trainer.limit_val_batches=2",
    "--trainer.limit_test_batches=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.logger=false",
    "--model.backbone=test_efficientnet",
    "--model.image_size=32",
    "--data.image_size=32",
    "--data.batch_size=16",
    "--data.synthetic_train_size=48",
    "--data.synthetic_eval_size=32",
]


def test_recipe_fit_test_predict(tmp_path, capsys):
    run = ["--config", str(ROOT / "recipes/scene.yaml"), f"--trainer.default_root_dir={tmp_path}", *QUICK]
    assert _cli(["fit", *run]) == 0
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
    capsys.readouterr()
    assert _cli(["test", *run, "--ckpt_path", "best"]) == 0
    printed = capsys.readouterr().out
    assert "Scene detection: test metrics" in printed and "top-3 accuracy" in printed
    photos = tmp_path / "photos"
    for i in range(5):
        write_image(photos / f"img{i}.jpg", "night", seed=i)
    assert _cli(["predict", *run, "--ckpt_path", "best", f"--data.predict_root={photos}"]) == 0
    with (tmp_path / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and rows[0]["path"].endswith(".jpg")
    scores = [float(rows[0][f"score_{i}"]) for i in (1, 2, 3)]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0 + 1e-3


def test_multilabel_recipe_fits(tmp_path):
    run = ["--config", str(ROOT / "recipes/scene_multilabel.yaml"), f"--trainer.default_root_dir={tmp_path}", *QUICK]
    assert _cli(["fit", *run]) == 0
    model = SceneClassifier.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert model.multi_label and len(model.thresholds) == 9
