"""Portrait datasets: synthetic portraits, indexed image/mask files, and folders of images to predict."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from moto_vision.data.portrait.formats import PortraitDataError, read_image, read_mask
from moto_vision.data.portrait.synthetic import Framing, render_portrait
from moto_vision.data.records import SampleRecord

__all__ = ["PredictFolderDataset", "RecordsDataset", "SyntheticPortraitDataset", "fit_to_square"]

Resize = Literal["letterbox", "stretch"]
Sample = dict[str, Any]


def fit_to_square(
    image: torch.Tensor, mask: torch.Tensor | None, size: int, mode: Resize = "letterbox"
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Resize an image (and its mask) to ``size`` x ``size``.

    ``letterbox`` keeps the aspect ratio and pads the short side (image with black, mask with 255, so the
    padding is never scored); ``stretch`` resizes both sides independently.

    Args:
        image: ``(3, H, W)`` float image.
        mask: ``(H, W)`` long label map or ``None``.
        size: output side.
        mode: ``"letterbox"`` or ``"stretch"``.

    Returns:
        ``(image, mask, box)`` where ``box`` is the ``(top, left, height, width)`` of the picture inside the
        output, used to map predictions back to the original image.
    """
    h, w = image.shape[-2:]
    if mode == "stretch":
        new_h, new_w = size, size
    else:
        scale = size / max(h, w)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
        image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)[0]
        image = image.clamp(0, 1)
        if mask is not None:
            mask = F.interpolate(mask[None, None].float(), size=(new_h, new_w), mode="nearest-exact")[0, 0].long()
    top, left = (size - new_h) // 2, (size - new_w) // 2
    if (new_h, new_w) != (size, size):
        padding = (left, size - new_w - left, top, size - new_h - top)
        image = F.pad(image, padding, value=0.0)
        if mask is not None:
            mask = F.pad(mask, padding, value=255)
    return image, mask, torch.tensor([top, left, new_h, new_w])


class SyntheticPortraitDataset(Dataset):
    """``size`` procedural portraits (see :mod:`moto_vision.data.portrait.synthetic`), fixed by ``seed``.

    Sample ``i`` is rendered from seed ``seed * 1_000_003 + i``, so splits built with different seeds never
    share samples. Rendered samples are cached in memory (as 8-bit) after their first use: rendering costs
    tens of milliseconds, a cached read microseconds.

    Args:
        size: number of samples.
        seed: seed of the split.
        image_size: side of the square images.
        labels: ``"person"`` for binary masks, ``"parts"`` for the face-part labels.
        framing: ``"half_body"`` or ``"face"`` (close-ups for face parsing).
        split: name used in the samples' ``name`` (``synthetic_<split>_00042``).
        cache: keep rendered samples in memory.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        image_size: int = 256,
        labels: Literal["person", "parts"] = "person",
        framing: Framing = "half_body",
        split: str = "train",
        cache: bool = True,
    ) -> None:
        self.size, self.seed, self.image_size = size, seed, image_size
        self.labels, self.framing, self.split = labels, framing, split
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.size

    def _render(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        empty = 0.04 if self.framing == "half_body" else 0.0
        image, parts = render_portrait(self.seed * 1_000_003 + index, self.image_size, self.framing, empty)
        return image.mul(255).round().to(torch.uint8), parts.to(torch.uint8)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.size:
            raise IndexError(index)
        if self._cache is not None and index in self._cache:
            image, parts = self._cache[index]
        else:
            image, parts = self._render(index)
            if self._cache is not None:
                self._cache[index] = (image, parts)
        mask = parts.long()
        if self.labels == "person":
            mask = (mask > 0).long()
        return {"image": image.float() / 255, "mask": mask, "name": f"synthetic_{self.split}_{index:05d}"}


class RecordsDataset(Dataset):
    """Images and masks of indexed records, resized to ``image_size`` squares.

    Args:
        records: records from a registered ``portrait`` indexer.
        image_size: output side.
        num_classes: number of class ids in the masks (for validation); ignored when ``binary``.
        binary: person masks (any non-background class is the person).
        resize: ``"letterbox"`` or ``"stretch"`` (see :func:`fit_to_square`).
    """

    def __init__(
        self,
        records: Sequence[SampleRecord],
        image_size: int,
        num_classes: int,
        binary: bool,
        resize: Resize = "letterbox",
    ) -> None:
        self.records = list(records)
        self.image_size, self.num_classes, self.binary, self.resize = image_size, num_classes, binary, resize

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        image = read_image(record.image)
        mask = read_mask(record, self.num_classes, binary=self.binary)
        if record.extra.get("resize_image_to_mask") and tuple(image.shape[-2:]) != tuple(mask.shape):
            image = F.interpolate(image[None], size=tuple(mask.shape), mode="bilinear", antialias=True)[0].clamp(0, 1)
        if tuple(image.shape[-2:]) != tuple(mask.shape):
            h, w = image.shape[-2:]
            hint = " (its EXIF orientation was applied; rotate the mask the same way)" if h == mask.shape[1] else ""
            raise PortraitDataError(
                f"{record.mask}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but image {record.image} is "
                f"{w}x{h}{hint}. Masks must have the size of their image."
            )
        image, mask, _ = fit_to_square(image, mask, self.image_size, self.resize)
        return {"image": image, "mask": mask, "name": Path(record.image).stem}


class PredictFolderDataset(Dataset):
    """Images to run a model on, with what a prediction writer needs to map masks back to each image.

    Samples hold ``image`` (the ``image_size`` square), ``name`` (path relative to the folder, without
    suffix), ``path``, ``orig_size`` (``(H, W)`` after EXIF orientation) and ``box`` (see
    :func:`fit_to_square`).
    """

    def __init__(self, paths: Sequence[Path], root: Path, image_size: int, resize: Resize = "letterbox") -> None:
        self.paths, self.root, self.image_size, self.resize = list(paths), Path(root), image_size, resize
        if not self.paths:
            raise PortraitDataError(f"No images found under {root} (extensions .jpg, .png, .webp, ...).")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Sample:
        path = self.paths[index]
        image = read_image(path)
        orig_size = torch.tensor(image.shape[-2:])
        image, _, box = fit_to_square(image, None, self.image_size, self.resize)
        name = path.relative_to(self.root).with_suffix("").as_posix() if path != self.root else path.stem
        return {"image": image, "name": name, "path": str(path), "orig_size": orig_size, "box": box}
