"""A toy dense, multi-output task for deploy tests: per-pixel logits plus an image label, returned as a dict.

Images hold a square of one colour on a background of another; the mask is the index of the brightest
channel of each pixel and the label that of the square. It exercises what classification does not:
outputs at input resolution (an upsampling head) and a dict of outputs (as a multi-task model returns).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from moto_vision.backbones import create_backbone
from moto_vision.data import BaseDataModule
from moto_vision.tasks import BaseTask
from moto_vision.trust import register_class


class ToySquares(Dataset):
    def __init__(self, size: int, seed: int, image_size: int = 32) -> None:
        self.size, self.seed, self.image_size = size, seed, image_size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + index)
        s = self.image_size
        background, square = index % 3, (index + 1 + index // 3 % 2) % 3
        image = torch.full((3, s, s), 0.2)
        image[background] = 0.8
        top, left = torch.randint(0, s // 2, (2,), generator=g).tolist()
        image[:, top : top + s // 2, left : left + s // 2] = 0.2
        image[square, top : top + s // 2, left : left + s // 2] = 0.8
        image = (image + 0.03 * torch.randn(3, s, s, generator=g)).clamp(0, 1)
        mask = torch.full((s, s), background, dtype=torch.long)
        mask[top : top + s // 2, left : left + s // 2] = square
        return {"image": image, "mask": mask, "label": torch.tensor(square)}


class ToySquaresDataModule(BaseDataModule):
    def __init__(self, batch_size: int = 8, num_workers: int = 0, seed: int = 0, image_size: int = 32) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.image_size = image_size

    def setup(self, stage: str | None = None) -> None:
        self.train_dataset = ToySquares(48, self.seed, self.image_size)
        self.val_dataset = ToySquares(16, self.seed + 1, self.image_size)
        self.test_dataset = ToySquares(16, self.seed + 2, self.image_size)


class ToyDenseMultiHead(BaseTask):
    monitor = "val_iou"
    monitor_mode = "max"
    task_name = "toy_dense"
    target_key = "mask"

    def __init__(
        self,
        backbone: str = "test_efficientnet",
        pretrained: bool | str = False,
        image_size: int = 32,
        lr: float = 3e-3,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()

    def configure_models(self) -> None:
        self.backbone = create_backbone(self.hparams.backbone, pretrained=self.hparams.pretrained, out_indices=(1, 3))
        self.seg_head = nn.Conv2d(self.backbone.channels[0], 3, 1)
        self.cls_head = nn.Linear(self.backbone.channels[-1], 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        shallow, deep = self.backbone(x)
        mask = F.interpolate(self.seg_head(shallow), size=x.shape[-2:], mode="bilinear", align_corners=False)
        # softplus has no XNNPACK kernel: an int8 conv feeding it sits on a delegate boundary (regression for the
        # output-layout bug worked around in moto_vision.deploy.exporters.export_executorch).
        return {"mask": mask, "label": self.cls_head(F.softplus(deep).mean(dim=(2, 3)))}

    def configure_metrics(self) -> MetricCollection:
        return MetricCollection({"iou": MulticlassJaccardIndex(3), "accuracy": MulticlassAccuracy(3, average="micro")})

    def update_metrics(self, metrics, outputs, batch) -> None:
        metrics["iou"].update(outputs["mask"].argmax(1), batch["mask"])
        metrics["accuracy"].update(outputs["label"], batch["label"])

    def compute_loss(self, outputs, batch):
        seg = F.cross_entropy(outputs["mask"], batch["mask"])
        cls = F.cross_entropy(outputs["label"], batch["label"])
        return {"loss": seg + cls, "seg": seg, "cls": cls}


register_class(ToyDenseMultiHead, "task")
register_class(ToySquaresDataModule, "datamodule")
