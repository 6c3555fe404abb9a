"""Helpers for deploy tests: tiny checkpoints that record their task and datamodule, as `moto-vision fit` writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.helpers.training import quiet_trainer


def make_checkpoint(task: Any, datamodule: Any, path: Path, steps: int = 2, seed: int = 0) -> Path:
    """Train ``task`` for a few steps and save a checkpoint (with the task and datamodule records)."""
    torch.manual_seed(seed)
    trainer = quiet_trainer(path.parent, max_steps=steps, limit_val_batches=0)
    trainer.fit(task, datamodule)
    trainer.save_checkpoint(path)
    return path
