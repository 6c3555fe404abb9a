"""Pictures of predictions: class palettes and overlays, display conversions, grids, PNG files and logging them.

The ground floor of the package: tasks, heads and callbacks import it; it imports nothing of moto-vision.
Lightning is imported only inside :func:`log_image`, which sends a picture to whichever loggers a run has.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "class_palette",
    "linear_to_display",
    "log_image",
    "overlay_labels",
    "read_png",
    "save_png",
    "stack_grids",
]


def class_palette(num_classes: int) -> torch.Tensor:
    """A fixed ``(max(num_classes, 2), 3)`` colour table in ``[0, 1]``: black background, distinct hues after it."""
    palette = torch.zeros(max(num_classes, 2), 3)
    for i in range(1, palette.shape[0]):
        h6 = ((i * 0.61803398875) % 1.0) * 6  # golden-ratio hue steps keep neighbouring ids apart
        x = 1 - abs(h6 % 2 - 1)
        rgb = [(1, x, 0), (x, 1, 0), (0, 1, x), (0, x, 1), (x, 0, 1), (1, 0, x)][int(h6) % 6]
        palette[i] = torch.tensor(rgb) * (0.95 if i % 2 else 0.7)
    return palette


def overlay_labels(image: torch.Tensor, labels: torch.Tensor, num_classes: int, alpha: float = 0.5) -> torch.Tensor:
    """Blend class colours over ``image`` ``(3, H, W)``; background and ignored pixels stay as they are."""
    palette = class_palette(num_classes).to(image.device)
    valid = (labels > 0) & (labels < palette.shape[0])
    colours = palette[labels.clamp(0, palette.shape[0] - 1)].permute(2, 0, 1)
    return torch.where(valid.unsqueeze(0), (1 - alpha) * image + alpha * colours, image)


def linear_to_display(images: torch.Tensor) -> torch.Tensor:
    """Linear RGB ``(B, 3, H, W)`` -> displayable sRGB: exposed so that the 97th percentile is 0.9, clipped, gamma."""
    from kornia.color import linear_rgb_to_rgb

    scale = torch.quantile(images.flatten(1), 0.97, dim=1).clamp_min(1e-6)[:, None, None, None] / 0.9
    return linear_rgb_to_rgb((images / scale).clamp(0, 1))


def stack_grids(grids: Sequence[torch.Tensor], gap: int = 6) -> torch.Tensor:
    """Stack ``(3, H_i, W_i)`` pictures vertically on a white canvas, left-aligned."""
    width = max(g.shape[-1] for g in grids)
    height = sum(g.shape[-2] for g in grids) + gap * (len(grids) - 1)
    canvas = torch.ones(3, height, width, dtype=grids[0].dtype, device=grids[0].device)
    top = 0
    for grid in grids:
        canvas[:, top : top + grid.shape[-2], : grid.shape[-1]] = grid.to(canvas)
        top += grid.shape[-2] + gap
    return canvas


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write a ``(3, H, W)`` float image in ``[0, 1]`` as an 8-bit PNG."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = image.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    Image.fromarray(array).save(path)
    return path


def read_png(path: str | Path) -> torch.Tensor:
    """Read a PNG as a ``(3, H, W)`` float tensor in ``[0, 1]``."""
    from PIL import Image
    from torchvision.transforms.v2.functional import pil_to_tensor

    with Image.open(path) as image:
        return pil_to_tensor(image.convert("RGB")).float() / 255.0


def log_image(loggers: Iterable[Any], tag: str, image: torch.Tensor | str | Path, step: int) -> bool:
    """Send a picture to every TensorBoard and Weights & Biases logger among ``loggers``.

    Args:
        loggers: a run's loggers (``trainer.loggers``).
        tag: the picture's name in the logger.
        image: a ``(3, H, W)`` float image in ``[0, 1]``, or the path of a PNG.
        step: the global step it belongs to.

    Returns:
        Whether any logger took it (if not, callers write a PNG instead).
    """
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    logged = False
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            picture = read_png(image) if isinstance(image, (str, Path)) else image.detach().float().clamp(0, 1)
            logger.experiment.add_image(tag, picture, global_step=step)
            logged = True
        elif isinstance(logger, WandbLogger):
            picture = str(image) if isinstance(image, (str, Path)) else image.detach().float().clamp(0, 1)
            if not isinstance(picture, str):
                picture = picture.permute(1, 2, 0).cpu().numpy()
            logger.log_image(key=tag, images=[picture], step=step)
            logged = True
    return logged
