"""Write AWB predictions: one CSV row per image and, for camera raw captures, a corrected preview PNG."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["AWBPredictionWriter"]


class AWBPredictionWriter(BasePredictionWriter):
    """Collect ``predict`` outputs of an :class:`~moto_vision.tasks.AWBRegressor` and write them.

    ``predictions.csv`` has ``path``, the illuminant ``r, g, b`` (unit norm, camera RGB), its ``cct`` and ``duv``
    (through the capture's DNG colour matrices, when it has them) and ``camera_awb_deg``, the angle to the phone's
    own ``AsShotNeutral``. With ``--data.predict_root`` pointing at DNGs, ``previews/<name>.png`` shows each capture
    corrected with the prediction through the DNG colour model (:func:`moto_vision.isp.render_dng_preview`).

    Args:
        output_dir: folder to write into; default ``<trainer.default_root_dir>/predictions``.
        previews: write the corrected previews.
        preview_size: long side of the previews in pixels.
    """

    def __init__(self, output_dir: str | None = None, previews: bool = True, preview_size: int = 1024) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.previews = previews
        self.preview_size = preview_size
        self._rows: list[list[Any]] = []
        self._folder = Path("predictions")

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._rows = []
        self._folder = Path(self.output_dir) if self.output_dir else Path(trainer.default_root_dir) / "predictions"

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
        if not isinstance(prediction, torch.Tensor) or not isinstance(batch, dict):
            return
        from moto_vision.isp import camera_to_srgb_matrix, illuminant_to_cct

        estimate = prediction.detach().double().cpu()
        count = estimate.shape[0]
        paths = batch.get("path") or [f"{batch_idx:05d}_{i:03d}" for i in range(count)]
        matrices, ccts = batch.get("camera_matrices"), batch.get("camera_matrix_cct")
        cct = torch.full((count,), math.nan, dtype=torch.float64)
        duv = cct.clone()
        if matrices is not None and ccts is not None:
            known = torch.isfinite(matrices.flatten(1)).all(dim=1).cpu()
            if bool(known.any()):
                m, c = matrices[known].double().cpu(), ccts[known].double().cpu()
                srgb = (camera_to_srgb_matrix(estimate[known], m, c, adapt=False) @ estimate[known, :, None])[..., 0]
                cct[known], duv[known] = (v.double() for v in illuminant_to_cct(srgb.clamp_min(1e-9)))
        as_shot = batch.get("as_shot_neutral")
        for i in range(count):
            camera = math.nan
            if as_shot is not None and bool(torch.isfinite(as_shot[i]).all()):
                cosine = F.cosine_similarity(estimate[i], as_shot[i].double().cpu(), dim=0).clamp(-1, 1)
                camera = math.degrees(math.acos(float(cosine)))
            rgb = [f"{float(v):.6f}" for v in estimate[i]]
            self._rows.append([paths[i], *rgb, _fmt(cct[i], 1), _fmt(duv[i], 5), _fmt(torch.tensor(camera), 3)])
            if self.previews and "path" in batch:
                self._preview(Path(paths[i]), estimate[i])

    def _preview(self, path: Path, illuminant: torch.Tensor) -> None:
        from moto_vision.data.raw import read_raw
        from moto_vision.isp import render_dng_preview
        from moto_vision.viz import save_png

        capture = read_raw(path)
        image = capture.image.clamp_min(0)[None]
        scale = self.preview_size / max(image.shape[-2:])
        if scale < 1:
            size = (max(1, round(image.shape[-2] * scale)), max(1, round(image.shape[-1] * scale)))
            image = F.interpolate(image, size=size, mode="area")
        matrices = capture.metadata.xyz_to_camera()
        if matrices is None:
            mats, ccts = torch.full((1, 2, 3, 3), math.nan), torch.full((1, 2), math.nan)
        else:
            mats, ccts = matrices[0][None], matrices[1][None]
        preview = render_dng_preview(image, illuminant[None].float(), mats, ccts)
        save_png(preview[0], self._folder / "previews" / f"{path.stem}.png")

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._rows:
            return
        path = self._folder / "predictions.csv"
        if trainer.world_size > 1:
            path = path.with_suffix(f".rank{trainer.global_rank}.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "r", "g", "b", "cct", "duv", "camera_awb_deg"])
            writer.writerows(self._rows)
        extra = f" and corrected previews to {self._folder / 'previews'}" if self.previews else ""
        rank_zero_info(f"Wrote {len(self._rows)} AWB predictions to {path}{extra}")
        self._rows = []


def _fmt(value: torch.Tensor, digits: int) -> str:
    number = float(value)
    return "" if not math.isfinite(number) else f"{number:.{digits}f}"
