"""``BaseDataModule``: batch size, workers, splits, and augmentation on the device.

Samples are dicts of tensors (``{"image": (3, H, W) float in [0, 1], ...task targets}``) so every task
and the multi-task model speak the same batch format. As in TorchGeo, augmentation does not run in
the workers: it runs on whole batches after they reach the device
(``on_after_batch_transfer``), where kornia is fast, and it can differ per split.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["BaseDataModule", "split_of"]

Batch = dict[str, Any]
Split = Literal["train", "val", "test", "predict"]


def split_of(trainer: Any) -> Split:
    """Which split the trainer is currently running (sanity checking counts as ``val``)."""
    if trainer is None:
        return "predict"
    if trainer.training:
        return "train"
    if trainer.validating or trainer.sanity_checking:
        return "val"
    if trainer.testing:
        return "test"
    return "predict"


def _remaining_steps(trainer: Any) -> int | None:
    """Training steps left in this run (``None`` when Lightning cannot tell, e.g. an unbounded run)."""
    try:
        total = trainer.estimated_stepping_batches
    except Exception:  # noqa: BLE001 - no estimate available: let the ISP decide without one
        return None
    if total is None or total == float("inf"):
        return None
    return max(0, int(total) - int(trainer.global_step))


class BaseDataModule(LightningDataModule):
    """Data loaders for the four splits and per-split batch augmentation.

    Subclasses build ``self.train_dataset``, ``self.val_dataset``, ``self.test_dataset`` and optionally
    ``self.predict_dataset`` in ``setup``, and return per-split augmentation modules from
    :meth:`build_augmentations`.

    Args:
        batch_size: samples per batch for training (evaluation uses the same size).
        num_workers: data-loading worker processes (0 loads in the main process).
        seed: seed for anything random in the data (synthetic rendering, splits, sampling).
    """

    def __init__(self, batch_size: int = 32, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        # Collects the subclass's constructor arguments too; the task stores them (with the class path) in its
        # checkpoints so deployment tools can rebuild the datamodule from a checkpoint alone.
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        self.predict_dataset: Dataset | None = None
        self._augmentations: dict[str, nn.Module] | None = None

    # ----------------------------------------------------------------- augmentation
    def build_augmentations(self) -> dict[str, nn.Module]:
        """Return batch augmentations keyed by split (``"train"``, ``"val"``, ``"test"``, ``"predict"``)."""
        return {}

    @property
    def augmentations(self) -> dict[str, nn.Module]:
        """The per-split augmentation modules, built once on first use."""
        if self._augmentations is None:
            # A plain dict: nn.ModuleDict would refuse the key "train" (it clashes with Module.train).
            self._augmentations = dict(self.build_augmentations())
        return self._augmentations

    def augment(self, batch: Batch, augmentation: nn.Module, split: str) -> Batch:
        """Apply ``augmentation`` to a batch; the default transforms ``batch["image"]`` only.

        Tasks whose targets change with the image (masks, illuminants) override this.
        """
        batch["image"] = augmentation(batch["image"])
        return batch

    def on_before_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        trainer = self.trainer if self._trainer_attached() else None
        if trainer is not None and trainer.training:
            # The ISP compiles its fused chains only when the steps still ahead pay the compile back (isp.fusion).
            from moto_vision.isp.fusion import expect_calls

            expect_calls(_remaining_steps(trainer))
        return batch

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        split = split_of(self.trainer if self._trainer_attached() else None)
        if isinstance(batch, dict) and split in self.augmentations:
            augmentation = self.augmentations[split].to(batch["image"].device)
            with torch.no_grad():
                batch = self.augment(batch, augmentation, split)
        return batch

    def _trainer_attached(self) -> bool:
        return getattr(self, "trainer", None) is not None

    # ----------------------------------------------------------------- loaders
    def _loader(self, dataset: Dataset | None, split: str, *, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(
                f"{type(self).__name__} has no {split} dataset; call setup() first or check the data arguments."
            )
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle and len(dataset) > self.batch_size,  # type: ignore[arg-type]
            generator=generator,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, "train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, "val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, "test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_dataset or self.test_dataset, "predict", shuffle=False)
