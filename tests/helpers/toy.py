"""A toy task and datamodule that exercise the foundation without any real task.

Images are flat colours with noise; the label is the brightest channel. A tiny timm backbone learns
it in a few dozen steps, so tests can check that training, checkpoints and DDP really work.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch import nn
from torch.utils.data import Dataset
from torchmetrics import MetricCollection, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from moto_vision.backbones import create_backbone
from moto_vision.data import BaseDataModule
from moto_vision.tasks import BaseTask
from moto_vision.trust import register_class


class ToyColours(Dataset):
    def __init__(self, size: int, seed: int, image_size: int = 32) -> None:
        self.size, self.seed, self.image_size = size, seed, image_size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + index)
        label = index % 3
        colour = torch.rand(3, generator=g) * 0.4
        colour[label] += 0.5
        image = colour[:, None, None] + 0.05 * torch.randn(3, self.image_size, self.image_size, generator=g)
        return {"image": image.clamp(0, 1), "target": torch.tensor(label)}


class ToyDataModule(BaseDataModule):
    def __init__(self, batch_size: int = 8, num_workers: int = 0, seed: int = 0, train_size: int = 64) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.train_size = train_size

    def setup(self, stage: str | None = None) -> None:
        self.train_dataset = ToyColours(self.train_size, self.seed)
        self.val_dataset = ToyColours(30, self.seed + 1)
        self.test_dataset = ToyColours(30, self.seed + 2)


class ToyClassifier(BaseTask):
    monitor = "val_accuracy"
    monitor_mode = "max"
    task_name = "toy"

    def __init__(
        self,
        backbone: str = "test_efficientnet",
        pretrained: bool | str = False,
        freeze_backbone: bool = False,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        warmup_fraction: float = 0.05,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()

    def configure_models(self) -> None:
        self.backbone = create_backbone(self.hparams.backbone, pretrained=self.hparams.pretrained)
        self.head = nn.Linear(self.backbone.channels[-1], 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1].mean(dim=(2, 3)))

    def configure_metrics(self) -> MetricCollection:
        return MetricCollection({"accuracy": MulticlassAccuracy(3, average="micro"), "count": SumMetric()})

    def update_metrics(self, metrics, outputs, batch) -> None:
        metrics["accuracy"].update(outputs, batch["target"])
        metrics["count"].update(torch.ones(len(outputs), device=outputs.device))

    def compute_loss(self, outputs, batch):
        return {"loss": F.cross_entropy(outputs, batch["target"])}

    def render_batch(self, batch, outputs, max_images: int = 8):
        return batch["image"][0]


class ToyCameraClassifier(ToyClassifier):
    """The toy classifier with an optional second input (a per-image camera vector), as a camera-aware model has.

    Its export graph takes ``(image, camera)``; batches may carry ``"camera"`` or not (then zeros are fed).
    """

    def configure_models(self) -> None:
        super().configure_models()
        self.camera = nn.Linear(9, 3)

    def forward(self, x: torch.Tensor, camera: torch.Tensor | None = None) -> torch.Tensor:
        logits = super().forward(x)
        return logits if camera is None else logits + self.camera(camera)

    def export_inputs(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image": image, "camera": torch.zeros(1, 9)}


# Checkpoints of these classes may be exported like moto-vision's own: how a project allows its own classes.
register_class(ToyClassifier, "task")
register_class(ToyCameraClassifier, "task")
register_class(ToyDataModule, "datamodule")


class KillAtStep(Callback):
    """SIGKILL this process once training reaches ``step`` (no cleanup, no final checkpoint: a real crash)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
