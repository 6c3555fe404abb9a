"""A quiet, CPU-only Lightning Trainer for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer


def quiet_trainer(root: str | Path, **overrides: Any) -> Trainer:
    """A single-process CPU trainer without logger, progress bar, summary or checkpoints (unless overridden)."""
    options: dict[str, Any] = dict(
        default_root_dir=str(root),
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    options.update(overrides)
    return Trainer(**options)
