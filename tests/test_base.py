"""BaseTask and BaseDataModule mechanics: hyperparameters, schedule, per-split augmentation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from moto_vision.data.base import BaseDataModule
from moto_vision.tasks.base import _warmup_cosine
from tests.helpers.toy import ToyClassifier, ToyDataModule


def test_hyperparameters_are_the_constructor_arguments():
    model = ToyClassifier(lr=0.01, class_names=["r", "g", "b"])
    assert model.hparams.lr == 0.01 and model.hparams.class_names == ["r", "g", "b"]
    assert model.hparams.backbone == "test_efficientnet"


def test_non_primitive_hyperparameters_are_refused():
    with pytest.raises(TypeError, match="not primitives"):
        ToyClassifier(pretrained=nn.Linear(1, 1))  # type: ignore[arg-type]


def test_warmup_then_cosine():
    factor = _warmup_cosine(total_steps=100, warmup_steps=10)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.505, abs=0.01)
    assert factor(100) == pytest.approx(0.01)
    values = [factor(s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_metrics_are_cloned_per_split():
    model = ToyClassifier()
    assert model.train_metrics is not model.val_metrics
    assert set(model.val_metrics.keys(keep_base=False)) == {"val_accuracy", "val_count"}
    assert set(model.test_metrics.keys(keep_base=False)) == {"test_accuracy", "test_count"}


class _AddOne(nn.Module):
    def forward(self, x):
        return x + 1


class _AugmentedToy(ToyDataModule):
    def build_augmentations(self):
        return {"train": _AddOne()}


def test_augmentation_runs_per_split_on_the_batch():
    class FakeTrainer:
        training, validating, sanity_checking, testing = True, False, False, False

    datamodule = _AugmentedToy()
    datamodule.trainer = FakeTrainer()
    batch = {"image": torch.zeros(2, 3, 4, 4)}
    assert datamodule.on_after_batch_transfer(batch, 0)["image"].eq(1).all()
    FakeTrainer.training, FakeTrainer.validating = False, True
    assert datamodule.on_after_batch_transfer({"image": torch.zeros(1)}, 0)["image"].eq(0).all()


def test_missing_dataset_message():
    with pytest.raises(RuntimeError, match="no train dataset"):
        BaseDataModule().train_dataloader()


def test_help_names_each_tasks_default_of_the_shared_optimiser_arguments() -> None:
    from jsonargparse import ArgumentParser

    from moto_vision.tasks import AWBRegressor, PortraitSegmenter, SceneClassifier

    parser = ArgumentParser()
    parser.add_class_arguments(PortraitSegmenter, "model")
    text = " ".join(parser.format_help().split())
    for task in (AWBRegressor, PortraitSegmenter, SceneClassifier):
        for key in ("lr", "weight_decay", "warmup_fraction"):
            assert f"{task.__name__} {task.optimizer_defaults[key]:g}" in text
    assert "SceneClassifier 0.02" in text  # its weight decay, unlike the others'
