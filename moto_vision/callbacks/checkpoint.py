"""Checkpoint the training state every N steps, so a killed run loses at most N steps."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["StepCheckpoint"]


class StepCheckpoint(Callback):
    """Write the full training state to ``last-step.ckpt`` every ``every_n_train_steps`` optimizer steps.

    ``moto-vision fit --checkpoint_every_n_steps N`` adds it; ``fit --ckpt_path last`` resumes from the newest
    ``last*.ckpt`` under the run root, mid-epoch included. The file is written next to the run's other checkpoints
    (the first ``ModelCheckpoint``'s folder, else ``<log_dir>/checkpoints``), through a temporary file renamed over
    the old one, so a kill during the write leaves the previous ``last.ckpt`` whole.

    It is a plain ``Callback``, not a ``ModelCheckpoint``: Lightning replaces trainer callbacks whose type a model's
    ``configure_callbacks`` also returns (or a subclass of it), and a task that returns its own best-checkpoint
    ``ModelCheckpoint`` must not remove this one.

    Args:
        every_n_train_steps: steps between two checkpoints (>= 1).
    """

    #: Its own name: a ``ModelCheckpoint(save_last=True)`` finding a ``last.ckpt`` it did not write would write
    #: ``last-v1.ckpt`` beside it. ``--ckpt_path last`` takes the newest ``last*.ckpt``, so either resumes.
    FILENAME = "last-step.ckpt"

    def __init__(self, every_n_train_steps: int) -> None:
        if every_n_train_steps < 1:
            raise ValueError(f"StepCheckpoint: every_n_train_steps must be >= 1, got {every_n_train_steps}.")
        self.every_n_train_steps = every_n_train_steps
        self.path: Path | None = None
        self._saved_step = -1

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After every callback's setup (ModelCheckpoint settles its folder there), on every rank (trainer.log_dir is
        # a collective call under DDP).
        folder = next((c.dirpath for c in trainer.checkpoint_callbacks if getattr(c, "dirpath", None)), None)
        if folder is None:
            folder = os.path.join(trainer.log_dir or trainer.default_root_dir, "checkpoints")
        self.path = Path(folder) / self.FILENAME

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_train_steps or step == self._saved_step or trainer.sanity_checking:
            return
        self._saved_step = step
        self.save(trainer)

    def save(self, trainer: Trainer) -> Path:
        """Write the training state now (collective: every rank calls it; rank zero writes)."""
        assert self.path is not None, "StepCheckpoint.save before the training started"
        temporary = self.path.with_name(f".{self.path.name}.partial")
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(temporary, weights_only=False)  # the whole state: optimizer, loops, callbacks
        if trainer.is_global_zero:
            os.replace(temporary, self.path)
        trainer.strategy.barrier("StepCheckpoint.save")
        return self.path
