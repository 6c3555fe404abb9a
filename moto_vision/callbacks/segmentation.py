"""Segmentation outputs as files: mask and overlay PNGs written during ``predict`` (colours: :mod:`moto_vision.viz`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from moto_vision.viz import class_palette, overlay_labels

__all__ = ["SegmentationPredictionWriter"]


class SegmentationPredictionWriter(BasePredictionWriter):
    """Write a mask PNG and an overlay PNG per image during ``predict``.

    Masks are mapped back to each input's own size (the letterbox padding is cropped away and the logits
    are resized before thresholding). Binary masks are 0/255 grey PNGs (or soft 0-255 probabilities with
    ``soft_masks``); class masks are palette PNGs whose pixel values are the class ids. Overlays show the
    mask in colour over the original image (read again from its path at full resolution when known).

    Files: ``<output_dir>/masks/<name>.png`` and ``<output_dir>/overlays/<name>.png``, where ``name`` is the
    image's path relative to the predicted folder (without suffix).

    Args:
        output_dir: folder to write into (created if missing); default ``<trainer.default_root_dir>/predictions``.
        overlays: also write overlays.
        soft_masks: binary models write probabilities instead of thresholded masks.
    """

    def __init__(self, output_dir: str | None = None, overlays: bool = True, soft_masks: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir) if output_dir else Path("predictions")
        self._output_dir_given = bool(output_dir)
        self.overlays = overlays
        self.soft_masks = soft_masks
        self.written = 0

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.written = 0
        if not self._output_dir_given:
            self.output_dir = Path(trainer.default_root_dir) / "predictions"

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        logits = prediction.detach().float().cpu()
        names = batch.get("name") or [f"{batch_idx:05d}_{i:03d}" for i in range(logits.shape[0])]
        class_names = getattr(pl_module, "class_names", None)
        num_labels = len(class_names) if class_names else max(2, logits.shape[1])
        for i, name in enumerate(names):
            logit = logits[i]
            image = batch["image"][i].detach().float().cpu()
            if "box" in batch:
                top, left, height, width = (int(v) for v in batch["box"][i])
                logit = logit[:, top : top + height, left : left + width]
                image = image[:, top : top + height, left : left + width]
            if "orig_size" in batch:
                size = tuple(int(v) for v in batch["orig_size"][i])
                logit = F.interpolate(logit[None], size=size, mode="bilinear", align_corners=False)[0]
            if logit.shape[0] == 1:
                labels = (logit[0] > 0).long()
                mask = (logit[0].sigmoid() * 255).round().byte() if self.soft_masks else (labels * 255).byte()
                self._save(mask.numpy(), "masks", name)
            else:
                labels = logit.argmax(0)
                self._save(labels.byte().numpy(), "masks", name, palette=class_palette(num_labels))
            if self.overlays:
                if "path" in batch:
                    from moto_vision.data.portrait.formats import read_image

                    image = read_image(batch["path"][i])
                elif tuple(image.shape[-2:]) != tuple(labels.shape):
                    image = F.interpolate(image[None], size=tuple(labels.shape), mode="bilinear")[0]
                overlay = overlay_labels(image.clamp(0, 1), labels, num_labels)
                array = overlay.mul(255).round().byte().permute(1, 2, 0).numpy()
                self._save(array, "overlays", name)
            self.written += 1

    def _save(self, array: np.ndarray, kind: str, name: str, palette: torch.Tensor | None = None) -> None:
        from PIL import Image

        path = self.output_dir / kind / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if palette is not None:
            image = Image.frombytes("P", (array.shape[1], array.shape[0]), np.ascontiguousarray(array).tobytes())
            flat = (palette.clamp(0, 1) * 255).round().byte().flatten().tolist()
            image.putpalette(flat + [0] * (768 - len(flat)))
        else:
            image = Image.fromarray(array)
        image.save(path)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            print(f"Wrote {self.written} masks to {self.output_dir / 'masks'}", end="")
            print(f" and overlays to {self.output_dir / 'overlays'}" if self.overlays else "")
