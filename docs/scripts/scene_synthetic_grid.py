"""Render docs/images/scene_synthetic.png: synthetic scenes per class (multi-class) and combinations (multi-label).

python docs/scripts/scene_synthetic_grid.py [--out docs/images/scene_synthetic.png] [--size 96]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from moto_vision.data.scene import SYNTHETIC_SCENES, SyntheticScenes  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/scene_synthetic.png"))
    parser.add_argument("--size", type=int, default=80)
    args = parser.parse_args()
    classes = len(SYNTHETIC_SCENES)
    single = SyntheticScenes(classes * 2, split="val", image_size=args.size)
    multi = SyntheticScenes(classes, split="val", image_size=args.size, multi_label=True)
    rows = [(single, range(classes)), (single, range(classes, 2 * classes)), (multi, range(classes))]
    figure, axes = plt.subplots(len(rows), classes, figsize=(1.45 * classes, 1.75 * len(rows)))
    for row, (dataset, indices) in enumerate(rows):
        for col, index in enumerate(indices):
            ax = axes[row, col]
            ax.imshow(dataset[index]["image"].permute(1, 2, 0).numpy())
            labels = dataset.labels(index)
            ax.set_title(" + ".join(labels) if labels else "(none)", fontsize=6)
            ax.axis("off")
    figure.suptitle("Synthetic scenes: two rows of single classes (multi-class), one row of combinations (multi-label)")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
