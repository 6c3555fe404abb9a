"""Every kit and every task passes the same contract (tests/helpers/contract.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from moto_vision.data.multitask import merge_task_batches
from moto_vision.heads import AWBKit, SceneKit, SegmentationKit
from moto_vision.tasks import AWBRegressor, MultiTaskPerception, PortraitSegmenter, SceneClassifier
from tests.helpers.contract import BACKBONE, KitContract, TaskContract


def _illuminants(n: int) -> torch.Tensor:
    light = torch.rand(n, 3, generator=torch.Generator().manual_seed(3)) + 0.2
    return F.normalize(light, dim=1)


def _masks(n: int, size: int, classes: int) -> torch.Tensor:
    return torch.randint(0, max(2, classes), (n, size, size), generator=torch.Generator().manual_seed(4))


def _labels(n: int, classes: int, multi_label: bool) -> torch.Tensor:
    generator = torch.Generator().manual_seed(5)
    if multi_label:
        return (torch.rand(n, classes, generator=generator) > 0.5).float()
    return torch.randint(0, classes, (n,), generator=generator)


# ----------------------------------------------------------------------------------------- kits
class TestAWBKit(KitContract):
    def make_kit(self):
        return AWBKit({"head_channels": 8, "vote_grid": 4})

    def make_target(self, batch, size):
        return _illuminants(batch)


class TestSegmentationKit(KitContract):
    def make_kit(self):
        return SegmentationKit({"decoder_channels": 8, "boundary_weight": 0.5})

    def make_target(self, batch, size):
        return _masks(batch, size, 2)


class TestFaceParsingKit(KitContract):
    def make_kit(self):
        return SegmentationKit({"decoder_channels": 8, "num_classes": 4})

    def make_target(self, batch, size):
        return _masks(batch, size, 4)


class TestSceneKit(KitContract):
    def make_kit(self):
        return SceneKit({"class_names": ["day", "night", "food"]})

    def make_target(self, batch, size):
        return _labels(batch, 3, False)


class TestMultiLabelSceneKit(KitContract):
    def make_kit(self):
        return SceneKit({"class_names": ["day", "night", "food"], "multi_label": True})

    def make_target(self, batch, size):
        return _labels(batch, 3, True)


# ----------------------------------------------------------------------------------------- tasks
class TestAWBRegressor(TaskContract):
    def make_task(self):
        torch.manual_seed(0)
        return AWBRegressor(backbone=BACKBONE, head_channels=8, log_predictions=False)

    def make_batch(self, batch, size):
        return {"image": torch.rand(batch, 3, size, size), "illuminant": _illuminants(batch)}


class TestPortraitSegmenter(TaskContract):
    size = 32

    def make_task(self):
        torch.manual_seed(0)
        return PortraitSegmenter(backbone=BACKBONE, decoder_channels=8, image_size=32, log_predictions=False)

    def make_batch(self, batch, size):
        return {"image": torch.rand(batch, 3, size, size), "mask": _masks(batch, size, 2)}


class TestSceneClassifier(TaskContract):
    size = 32

    def make_task(self):
        torch.manual_seed(0)
        task = SceneClassifier(backbone=BACKBONE, multi_label=True, image_size=32, log_predictions=False)
        task.calibrator.temperature.fill_(1.7)  # a fitted calibration, so export and mapping back are exercised
        return task

    def make_batch(self, batch, size):
        return {"image": torch.rand(batch, 3, size, size), "label": _labels(batch, 9, True)}


class TestMultiTaskPerception(TaskContract):
    def make_task(self):
        torch.manual_seed(0)
        options = {"awb": {"head_channels": 8, "vote_grid": 4}, "portrait": {"decoder_channels": 8}}
        task = MultiTaskPerception(backbone=BACKBONE, head_options=options, log_predictions=False)
        task.branches["scene"].calibrator.temperature.fill_(1.7)
        return task

    def make_batch(self, batch, size):
        generator = torch.Generator().manual_seed(6)
        parts = {
            "awb": {"image": torch.rand(batch, 3, size, size, generator=generator), "illuminant": _illuminants(batch)},
            "portrait": {
                "image": torch.rand(batch, 3, size, size, generator=generator),
                "mask": _masks(batch, size, 2),
            },
            "scene": {
                "image": torch.rand(batch, 3, size, size, generator=generator),
                "label": _labels(batch, 9, False),
            },
        }
        return merge_task_batches(parts, ["awb", "portrait", "scene"])
