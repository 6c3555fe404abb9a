"""Render docs/images/isp_augmentations.png: one photo through each moto_vision.isp augmentation.

Needs scikit-image for its bundled sample photo (``pip install -e .[dev]``); nothing is downloaded.

    python docs/scripts/isp_grid.py [--out docs/images/isp_augmentations.png] [--image coffee]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from skimage import data  # noqa: E402

from moto_vision import isp  # noqa: E402


def _photo(name: str, height: int) -> torch.Tensor:
    array = getattr(data, name)()
    image = torch.from_numpy(array).permute(2, 0, 1).float().div(255.0)[None]
    width = round(image.shape[-1] * height / image.shape[-2] / 2) * 2
    return F.interpolate(image, size=(height, width), mode="area")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/images/isp_augmentations.png"))
    parser.add_argument("--image", default="coffee", help="a colour photo in skimage.data (coffee, astronaut, ...)")
    parser.add_argument("--height", type=int, default=180)
    args = parser.parse_args(argv)

    x = _photo(args.image, args.height)

    def g() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    raw, params = isp.unprocess(x, generator=g())
    panels = [
        ("input (sRGB)", x),
        ("unprocess: camera raw\n(shown with sRGB gamma)", isp.linear_to_srgb(raw)),
        ("RandomIlluminant 2700 K", isp.RandomIlluminant(cct=(2700, 2700), tint=(0, 0), domain="srgb")(x)),
        ("RandomIlluminant 12000 K", isp.RandomIlluminant(cct=(12000, 12000), tint=(0, 0), domain="srgb")(x)),
        (
            "RandomIlluminant 4000 K\nDuv +0.015 (fluorescent)",
            isp.RandomIlluminant(cct=(4000, 4000), tint=(0.015, 0.015), domain="srgb")(x),
        ),
        ("RandomExposure -1.5 EV", isp.RandomExposure(ev=(-1.5, -1.5), domain="srgb")(x)),
        (
            "RandomSensorNoise\nshot 0.02 (high ISO)",
            isp.RandomSensorNoise(shot=(0.02, 0.02), domain="srgb", generator=g())(x),
        ),
        (
            "RandomLensShading corner 0.3\ncolour shading 0.2",
            isp.RandomLensShading(corner=(0.3, 0.3), color_shading=0.2, domain="srgb", generator=g())(x),
        ),
        (
            "RandomChromaticAberration\n(exaggerated: 1.5%)",
            isp.RandomChromaticAberration(scale=(-0.015, 0.015), generator=g())(x),
        ),
        ("RandomColorMatrix strength 1", isp.RandomColorMatrix(strength=(1.0, 1.0), domain="srgb", generator=g())(x)),
        ("isp_preset('light')", isp.isp_preset("light", generator=torch.Generator().manual_seed(3))(x)),
        ("isp_preset('default')", isp.isp_preset("default", generator=torch.Generator().manual_seed(3))(x)),
        (
            "isp_preset('heavy')\n(+ demosaic, JPEG)",
            isp.isp_preset("heavy", generator=torch.Generator().manual_seed(3))(x),
        ),
        (
            "CameraPipeline: high ISO\n(-1 EV, shot 0.012)",
            isp.CameraPipeline(ev=(-1, -1), shot=(0.012, 0.012), generator=g())(x),
        ),
        ("JPEG quality 15", isp.jpeg(x, 15.0)),
        ("mosaic + demosaic (bilinear)", isp.demosaic(isp.mosaic(x))),
    ]
    cols = 4
    rows = -(-len(panels) // cols)
    aspect = x.shape[-1] / x.shape[-2]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2 * aspect, rows * 2.55))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, image) in zip(axes.flat, panels):
        ax.imshow(image[0].detach().clamp(0, 1).permute(1, 2, 0).numpy())
        ax.set_title(title, fontsize=8)
    fig.suptitle(f"moto_vision.isp on skimage.data.{args.image}()", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
