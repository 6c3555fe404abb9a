"""A fourth task added through the registry only: defocus-blur estimation (how out of focus a frame is).

Everything the task needs is in this file (its kit, its datamodule); no file of the library changes. It passes the
kit contract and trains next to the AWB head in :class:`~moto_vision.tasks.MultiTaskPerception` on
:class:`~moto_vision.data.MultiTaskDataModule`, which find it in the registry. docs/adding_a_task.md walks through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchmetrics import MeanAbsoluteError, MetricCollection

from moto_vision.data import BaseDataModule, MultiTaskDataModule
from moto_vision.data.multitask import AWBDataOptions
from moto_vision.heads import TaskKit, registry
from moto_vision.tasks import MultiTaskPerception
from tests.helpers.contract import KitContract
from tests.helpers.training import quiet_trainer

MAX_SIGMA = 2.5


@dataclass(frozen=True)
class BlurOptions:
    """Options of the blur head.

    Args:
        hidden: width of the head's hidden layer.
    """

    hidden: int = 16


class BlurKit(TaskKit):
    """Defocus blur: the Gaussian sigma (pixels) of a frame, ``(B, 1)``, from the stride-4 features."""

    name = "blur"
    target_key = "blur"
    domain = "srgb"
    fill_value = 0.0
    datamodule = "tests.test_fourth_task.BlurDataModule"
    options_type = BlurOptions

    @property
    def headline(self) -> str:
        return "mae"

    @property
    def headline_mode(self) -> Literal["min", "max"]:
        return "min"

    def max_level(self) -> int | None:
        return 1  # blur is a local statistic: the stride-4 features suffice, so the backbone can stop there

    def feature_levels(self, num_levels: int) -> list[int]:
        return [1]

    def build(self, channels: Sequence[int], reductions: Sequence[int]) -> dict[str, nn.Module]:
        hidden = self.options.hidden
        head = nn.Sequential(
            nn.Conv2d(channels[1], hidden, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(hidden, 1),
        )
        return {"head": head}

    def forward(self, parts: Any, features: Sequence[Tensor], image: Tensor) -> Tensor:
        return parts.head(features[1])

    def build_loss(self) -> nn.Module:
        return nn.SmoothL1Loss()

    def metrics(self, core_only: bool = False) -> MetricCollection:
        return MetricCollection({"mae": MeanAbsoluteError()})

    def render(self, parts: Any, images: Tensor, output: Tensor, target: Tensor, max_images: int = 8) -> Tensor:
        from torchvision.utils import make_grid

        tiles = images[:max_images].clone().clamp(0, 1)
        width = tiles.shape[-1]
        for tile, predicted, true in zip(tiles, output[:max_images, 0], target[:max_images, 0]):
            # Two bars under the image: the truth (green) and the estimate (red), full width = MAX_SIGMA.
            for row, value, colour in ((-4, true, (0.0, 1.0, 0.0)), (-2, predicted, (1.0, 0.0, 0.0))):
                length = int(width * float(value.clamp(0, MAX_SIGMA)) / MAX_SIGMA)
                tile[:, row : row + 2, :length] = torch.tensor(colour)[:, None, None]
        return make_grid(tiles, nrow=4, padding=2, pad_value=1.0)

    def report(self, parts: Any, values: Mapping[str, float], *, prefix: str, title: str | None = None) -> None:
        print(f"{title or 'blur head'}: mean absolute error {values[f'{prefix}mae']:.3f} px (sigma)")

    def export_metadata(self, parts: Any) -> dict[str, Any]:
        return {"output": "blur_sigma", "shape": ["batch", 1], "unit": "pixels"}


class BlurredTextures(Dataset):
    """Random sRGB textures, each blurred by a Gaussian of a random sigma in ``[0, MAX_SIGMA]`` (the label)."""

    def __init__(self, size: int, seed: int, image_size: int) -> None:
        from kornia.filters import gaussian_blur2d

        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(size, 3, image_size // 2, image_size // 2, generator=g)
        sharp = torch.nn.functional.interpolate(coarse, size=(image_size, image_size), mode="nearest")
        self.sigma = torch.rand(size, 1, generator=g) * MAX_SIGMA
        blurred = [
            gaussian_blur2d(image[None], (9, 9), (float(s), float(s))) if s > 0.05 else image[None]
            for image, s in zip(sharp, self.sigma[:, 0])
        ]
        self.images = torch.cat(blurred).clamp(0, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"image": self.images[index], "blur": self.sigma[index]}


class BlurDataModule(BaseDataModule):
    """The blur task's data (what :class:`MultiTaskDataModule` builds for ``tasks: [..., blur]``)."""

    def __init__(
        self, image_size: int = 32, train_size: int = 192, batch_size: int = 16, num_workers: int = 0, seed: int = 0
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.image_size, self.train_size = image_size, train_size

    def setup(self, stage: str | None = None) -> None:
        self.train_dataset = BlurredTextures(self.train_size, self.seed, self.image_size)
        self.val_dataset = BlurredTextures(32, self.seed + 1, self.image_size)
        self.test_dataset = BlurredTextures(64, self.seed + 2, self.image_size)


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch):
    # Registered for this module's tests only, so other tests see the built-in tasks alone.
    monkeypatch.setitem(registry._KITS, "blur", BlurKit)


class TestBlurKit(KitContract):
    def make_kit(self) -> TaskKit:
        return BlurKit()

    def make_target(self, batch: int, size: int) -> Tensor:
        return torch.rand(batch, 1) * MAX_SIGMA


def test_the_fourth_task_trains_beside_awb_in_the_multi_task_model(tmp_path) -> None:
    L.seed_everything(0)
    data = MultiTaskDataModule(
        tasks=["awb", "blur"],
        image_size=32,
        batch_size=16,
        awb=AWBDataOptions(train_size=96, val_size=16, test_size=16),
    )
    model = MultiTaskPerception(
        heads=["awb", "blur"], backbone="mobilenetv3_small_050", image_size=32, lr=1e-2, log_predictions=False
    )
    # Both heads read the stride-4 features: the backbone stops there.
    assert len(model.backbone.channels) == 2 and list(model.branches) == ["awb", "blur"]
    trainer = quiet_trainer(tmp_path, max_epochs=6, num_sanity_val_steps=0, limit_val_batches=1)
    trainer.fit(model, data)
    test = trainer.test(model, data, verbose=False)[0]
    train_sigma = data.datamodules["blur"].train_dataset.sigma
    test_sigma = data.datamodules["blur"].test_dataset.sigma
    baseline = float((test_sigma - train_sigma.mean()).abs().mean())  # predict the training mean
    print(f"blur MAE {test['test_blur_mae']:.3f} px (training-mean baseline {baseline:.3f})")
    assert test["test_blur_mae"] < 0.6 * baseline, (test["test_blur_mae"], baseline)
    assert "test_awb_recovery_mean" in test and "blur_mae" in model.report_metrics[1]
    graph = model.export_module().eval()
    outputs = graph(torch.rand(1, 3, 32, 32))
    assert set(outputs) == {"awb", "blur"} and outputs["blur"].shape == (1, 1)
    assert model.export_metadata()["heads"]["blur"]["output"] == "blur_sigma"
