"""Render docs/images/awb_grid.png: synthetic test scenes uncorrected / corrected by a model / by the ground truth.

The same grid the visual-logging callback writes every validation epoch (``AWBRegressor.render_batch``), for the
first test scenes of ``recipes/awb.yaml``'s synthetic data, with the angular error of the model and of Gray World
printed per row.

    python docs/scripts/awb_grid.py --ckpt runs/awb/lightning_logs/version_0/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from moto_vision.data import AWBDataModule
from moto_vision.heads.awb import render_white_balance_grid
from moto_vision.metrics import recovery_angular_error
from moto_vision.models import GrayWorld
from moto_vision.tasks import AWBRegressor
from moto_vision.viz import save_png


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ckpt", type=Path, required=True, help="an AWBRegressor checkpoint")
    parser.add_argument("--out", type=Path, default=Path("docs/images/awb_grid.png"))
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of the 64 px images")
    args = parser.parse_args(argv)

    model = AWBRegressor.load_from_checkpoint(args.ckpt).eval()
    data = AWBDataModule(image_size=model.hparams.image_size, test_size=args.images)
    data.setup("test")
    samples = [data.test_dataset[i] for i in range(args.images)]
    images = torch.stack([s["image"] for s in samples])
    lights = torch.stack([s["illuminant"] for s in samples])
    with torch.no_grad():
        estimate = model(images)
    grid = render_white_balance_grid(images, estimate, lights, max_images=args.images)
    grid = torch.nn.functional.interpolate(grid[None], scale_factor=args.scale, mode="nearest")[0]
    path = save_png(grid, args.out)

    ours = recovery_angular_error(estimate, lights)
    gray_world = recovery_angular_error(GrayWorld()(images), lights)
    picture = Image.open(path).convert("RGB")
    header = 18
    canvas = Image.new("RGB", (picture.width + 150, picture.height + header), "white")
    canvas.paste(picture, (0, header))
    draw = ImageDraw.Draw(canvas)
    panel = picture.width / 3
    for column, title in enumerate(("input (raw)", "model", "ground truth")):
        draw.text((column * panel + 4, 3), title, fill="black")
    row = picture.height / args.images
    for i in range(args.images):
        text = f"model {ours[i]:.1f} deg\nGray World {gray_world[i]:.1f} deg"
        draw.multiline_text((picture.width + 6, header + i * row + row / 2 - 12), text, fill="black")
    canvas.save(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
