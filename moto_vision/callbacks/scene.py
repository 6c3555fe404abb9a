"""Write scene predictions (top-k scenes with calibrated scores) to a CSV file."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["ScenePredictionWriter"]


class ScenePredictionWriter(BasePredictionWriter):
    """Collect ``predict`` outputs of a :class:`~moto_vision.tasks.SceneClassifier` and write one CSV.

    Columns: ``path``, then ``scene_1, score_1, ..., scene_k, score_k`` (highest calibrated score first)
    and, for multi-label models, ``scenes``: every class whose score reaches its fitted threshold
    (``;``-separated). With several processes each rank writes its own ``.rankN`` file.

    Args:
        output: CSV path; default ``<trainer.default_root_dir>/predictions.csv``.
        top_k: scenes per row; default the model's ``top_k``.
    """

    def __init__(self, output: str | None = None, top_k: int | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self.top_k = top_k
        self._rows: list[list[Any]] = []

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._rows = []

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if not isinstance(prediction, dict) or "scores" not in prediction:
            return
        names = list(pl_module.class_names)
        k = min(self.top_k or getattr(pl_module, "top_k", 3), len(names))
        scores: torch.Tensor = prediction["scores"].detach().float().cpu()
        multi_label = bool(getattr(pl_module, "multi_label", False))
        thresholds = torch.tensor(pl_module.thresholds) if multi_label else None
        values, indices = scores.topk(k, dim=1)
        for row, path in enumerate(prediction["path"]):
            cells: list[Any] = [path]
            for value, index in zip(values[row].tolist(), indices[row].tolist()):
                cells += [names[index], f"{value:.4f}"]
            if thresholds is not None:
                present = (scores[row] >= thresholds).nonzero().flatten().tolist()
                cells.append(";".join(names[i] for i in present))
            self._rows.append(cells)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._rows:
            return
        path = Path(self.output) if self.output else Path(trainer.default_root_dir) / "predictions.csv"
        if trainer.world_size > 1:
            path = path.with_suffix(f".rank{trainer.global_rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        k = (len(self._rows[0]) - 1) // 2
        header = ["path"] + [f"{name}_{i}" for i in range(1, k + 1) for name in ("scene", "score")]
        if getattr(pl_module, "multi_label", False):
            header.append("scenes")
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(self._rows)
        rank_zero_info(f"Wrote {len(self._rows)} scene predictions to {path}")
        self._rows = []
