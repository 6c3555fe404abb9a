"""Pin PyTorch's CPU thread count for a run from the recipe."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.accelerators import CPUAccelerator

__all__ = ["CPUThreads"]


class CPUThreads(Callback):
    """Set PyTorch's intra-op CPU threads when the run starts (``torch.set_num_threads``).

    Small models (AWB heads on a stride-4 feature map, tens of thousands of parameters) have little work per
    operation for a second thread to share, and lose a lot when the CPU is busy with other jobs: OpenMP threads
    then wait for each other at every operation. On a shared 2-core machine (load average about 5), 500 training
    steps of ``recipes/awb.yaml``'s model took 46 s with one thread and 196 s with two. Recipes opt in by
    listing this callback; it does nothing on GPUs.

    Args:
        num_threads: intra-op threads; ``None`` leaves PyTorch's default.
    """

    def __init__(self, num_threads: int | None = 1) -> None:
        self.num_threads = num_threads
        self._previous: int | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.num_threads is not None and isinstance(trainer.accelerator, CPUAccelerator):
            self._previous = torch.get_num_threads()
            torch.set_num_threads(self.num_threads)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Give the process its thread count back (a notebook or test session goes on after the run).
        if self._previous is not None:
            torch.set_num_threads(self._previous)
            self._previous = None
