"""Visual logging: a small grid of predictions per validation epoch.

Each task renders its own grid (``BaseTask.render_batch``); this callback sends it to TensorBoard or
Weights & Biases when such a logger is active, and otherwise writes a PNG into the run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

__all__ = ["PredictionGridLogger", "save_png"]


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write a ``(3, H, W)`` float image in ``[0, 1]`` as an 8-bit PNG."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = image.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    Image.fromarray(array).save(path)
    return path


class PredictionGridLogger(Callback):
    """Log the task's rendering of the first validation batch once every ``every_n_epochs`` epochs.

    Args:
        every_n_epochs: how often to render.
        max_images: images per grid.
    """

    def __init__(self, every_n_epochs: int = 1, max_images: int = 8) -> None:
        self.every_n_epochs = every_n_epochs
        self.max_images = max_images

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or trainer.sanity_checking:
            return
        if trainer.current_epoch % self.every_n_epochs != 0 or not hasattr(pl_module, "render_batch"):
            return
        predictions = outputs.get("outputs") if isinstance(outputs, dict) else None
        if predictions is None:
            return
        with torch.no_grad():
            grid = pl_module.render_batch(batch, predictions, max_images=self.max_images)
        if grid is not None:
            # trainer.log_dir is a collective call under DDP: every rank must ask for it, not only rank zero.
            run_dir = Path(trainer.log_dir or trainer.default_root_dir)
            self._log(trainer, grid, run_dir)

    @rank_zero_only
    def _log(self, trainer: Trainer, grid: torch.Tensor, run_dir: Path) -> None:
        step, tag = trainer.global_step, "predictions"
        logged = False
        for logger in trainer.loggers:
            kind = type(logger).__name__
            if kind == "TensorBoardLogger":
                logger.experiment.add_image(tag, grid.clamp(0, 1), global_step=step)
                logged = True
            elif kind == "WandbLogger":
                logger.log_image(key=tag, images=[grid.clamp(0, 1).permute(1, 2, 0).cpu().numpy()], step=step)
                logged = True
        if not logged:
            save_png(grid, run_dir / "predictions" / f"epoch{trainer.current_epoch:03d}.png")
