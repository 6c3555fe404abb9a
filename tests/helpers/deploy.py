"""Helpers for deploy tests: tiny checkpoints that record their datamodule, as `moto-vision fit` writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def make_checkpoint(task: Any, datamodule: Any, path: Path, steps: int = 2, seed: int = 0) -> Path:
    """Train ``task`` for a few steps and save a checkpoint (with the task and datamodule records)."""
    import lightning as L

    torch.manual_seed(seed)
    trainer = L.Trainer(
        max_steps=steps,
        limit_val_batches=0,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(path.parent),
    )
    trainer.fit(task, datamodule)
    trainer.save_checkpoint(path)
    return path
