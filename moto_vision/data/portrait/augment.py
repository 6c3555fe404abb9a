"""Batch augmentation for segmentation: geometry on image and mask together, photometry on the image only."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["SegmentationAugmentation", "flip_permutation"]

_PAIRS = (("l_", "r_"), ("left_", "right_"))


def flip_permutation(class_names: Sequence[str]) -> list[int] | None:
    """Class-id permutation that a horizontal flip applies (``l_eye`` <-> ``r_eye``), or ``None`` if none.

    Only names that have a counterpart swap, so ``l_lip`` (CelebAMask-HQ's lower lip) stays put.
    """
    index = {name: i for i, name in enumerate(class_names)}
    permutation = list(range(len(class_names)))
    for i, name in enumerate(class_names):
        for a, b in _PAIRS:
            for src, dst in ((a, b), (b, a)):
                if name.startswith(src) and dst + name[len(src) :] in index:
                    permutation[i] = index[dst + name[len(src) :]]
    return None if permutation == list(range(len(class_names))) else permutation


class SegmentationAugmentation(nn.Module):
    """Random flip, affine warp and colour jitter of a batch of images with their label maps.

    The mask follows every geometric change (nearest-neighbour, with ``ignore_index`` where the warp
    leaves the image), while photometric changes (colour jitter, an optional camera-pipeline module)
    touch the image only. Flipping swaps left/right class ids (``flip_permutation``).

    Args:
        flip_permutation: class-id permutation under a horizontal flip (``None``: ids do not change).
        hflip: probability of a horizontal flip.
        degrees: maximum rotation.
        scale: range of the zoom factor.
        translate: maximum shift as a fraction of the size.
        affine_p: probability of the affine warp.
        color_jitter: strength of brightness / contrast / saturation jitter (0 disables it).
        photometric: an extra image-only module applied last (e.g. a camera-pipeline augmentation).
        ignore_index: label of pixels the warp brings in from outside the image.
    """

    def __init__(
        self,
        flip_permutation: Sequence[int] | None = None,
        hflip: float = 0.5,
        degrees: float = 10.0,
        scale: tuple[float, float] = (0.8, 1.15),
        translate: float = 0.08,
        affine_p: float = 0.7,
        color_jitter: float = 0.2,
        photometric: nn.Module | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        import kornia.augmentation as K

        self.hflip = hflip
        self.ignore_index = ignore_index
        permutation = torch.tensor(list(flip_permutation) if flip_permutation is not None else [], dtype=torch.long)
        self.register_buffer("permutation", permutation, persistent=False)
        self.affine = (
            K.AugmentationSequential(
                K.RandomAffine(degrees=degrees, translate=(translate, translate), scale=scale, p=affine_p),
                data_keys=["input", "mask"],
            )
            if affine_p > 0
            else None
        )
        self.jitter = (
            K.ColorJitter(color_jitter, color_jitter, color_jitter, min(0.05, color_jitter / 4), p=0.8)
            if color_jitter > 0
            else None
        )
        self.photometric = photometric

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment ``image`` ``(B, 3, H, W)`` and ``mask`` ``(B, H, W)`` long; returns both."""
        if self.hflip > 0:
            flip = torch.rand(image.shape[0], device=image.device) < self.hflip
            if flip.any():
                flipped_mask = mask.flip(-1)
                if self.permutation.numel():
                    valid = flipped_mask != self.ignore_index
                    swapped = self.permutation[flipped_mask.clamp(0, self.permutation.numel() - 1)]
                    flipped_mask = torch.where(valid, swapped, flipped_mask)
                image = torch.where(flip[:, None, None, None], image.flip(-1), image)
                mask = torch.where(flip[:, None, None], flipped_mask, mask)
        if self.affine is not None:
            # Shift labels by one so the warp's zero fill marks pixels from outside the image, then ignore them.
            shifted = (mask + 1).float().unsqueeze(1)
            image, shifted = self.affine(image, shifted)
            shifted = shifted.squeeze(1).round().long()
            mask = torch.where(shifted == 0, torch.full_like(shifted, self.ignore_index), shifted - 1)
        if self.jitter is not None:
            image = self.jitter(image)
        if self.photometric is not None:
            image = self.photometric(image)
        return image.clamp(0, 1), mask
