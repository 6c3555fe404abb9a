"""What the scene task shows people: the test table, the confusion-matrix PNG and labelled prediction grids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

__all__ = ["plot_confusion", "print_scene_report", "render_predictions"]


def plot_confusion(confusion: torch.Tensor, class_names: Sequence[str], path: str | Path) -> Path:
    """Write a confusion matrix as a PNG.

    Args:
        confusion: ``(K, K)`` counts (rows true, columns predicted) for multi-class, or ``(K, 2, 2)``
            per-class counts (``[[TN, FP], [FN, TP]]``) for multi-label.
        class_names: the ``K`` class names.
        path: output file.

    Returns:
        The written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    confusion = confusion.float()
    k = len(class_names)
    if confusion.ndim == 2:
        # Row-normalised: each row shows where the images of one true class went (its recall on the diagonal).
        rates = confusion / confusion.sum(dim=1, keepdim=True).clamp(min=1)
        side = max(5.0, 0.45 * k + 2.5)
        figure = Figure(figsize=(side, side * 0.9), constrained_layout=True)
        ax = figure.add_subplot()
        image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(k), labels=class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), labels=class_names, fontsize=8)
        ax.set_xlabel("predicted scene")
        ax.set_ylabel("true scene")
        ax.set_title(f"Scene confusion ({int(confusion.sum())} images, rows normalised)")
        if k <= 30:
            for i in range(k):
                for j in range(k):
                    if confusion[i, j] > 0:
                        value = float(rates[i, j])
                        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                                color="white" if value > 0.5 else "black")  # fmt: skip
        figure.colorbar(image, ax=ax, shrink=0.8)
    else:
        cols = min(k, 6)
        rows = (k + cols - 1) // cols
        figure = Figure(figsize=(2.2 * cols, 2.3 * rows), constrained_layout=True)
        for index, name in enumerate(class_names):
            ax = figure.add_subplot(rows, cols, index + 1)
            counts = confusion[index]
            rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
            ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
            for i in range(2):
                for j in range(2):
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                            color="white" if rates[i, j] > 0.5 else "black")  # fmt: skip
            ax.set_xticks([0, 1], labels=["no", "yes"], fontsize=7)
            ax.set_yticks([0, 1], labels=["no", "yes"], fontsize=7)
            ax.set_title(name, fontsize=9)
        figure.suptitle("Per-scene confusion (rows: true, columns: predicted at the fitted thresholds)")
    FigureCanvasAgg(figure).print_png(str(path))
    return path


def print_scene_report(
    values: Mapping[str, float],
    *,
    class_names: Sequence[str],
    multi_label: bool,
    temperature: float,
    thresholds: Sequence[float] | None,
    top_k: int,
    confusion_png: Path | None,
    prefix: str = "test_",
) -> None:
    """Print the overall metrics, calibration and the per-class table of a test run."""
    from rich.console import Console
    from rich.table import Table

    def get(name: str) -> float | None:
        return values.get(f"{prefix}{name}")

    console = Console()
    if not console.is_terminal:  # logs and pipes: no 80-column wrapping of the tables
        console = Console(width=120)
    kind = "multi-label" if multi_label else "multi-class"
    overall = Table(title=f"Scene detection: test metrics ({kind}, {len(class_names)} classes)", title_justify="left")
    overall.add_column("metric")
    overall.add_column("value", justify="right")
    rows = [
        ("top1", "top-1 accuracy" + (" (best scene is present)" if multi_label else "")),
        (f"top{top_k}", f"top-{top_k} accuracy"),
        ("map", "mAP (macro average precision)"),
        ("f1_macro", "F1 macro" + (" (fitted thresholds)" if multi_label else "")),
        ("f1_micro", "F1 micro"),
        ("exact_match", "exact match (all scenes right)"),
        ("ece_uncalibrated", "ECE before calibration"),
        ("ece", f"ECE after calibration (T = {temperature:.3f})"),
        ("loss", "loss"),
    ]
    for key, label in rows:
        value = get(key)
        if value is not None and (key != f"top{top_k}" or top_k > 1):
            overall.add_row(label, f"{value:.4f}")
    console.print(overall)
    per_class = Table(title="Per-class precision and recall", title_justify="left")
    per_class.add_column("class")
    per_class.add_column("precision", justify="right")
    per_class.add_column("recall", justify="right")
    if thresholds is not None:
        per_class.add_column("threshold", justify="right")
    for index, name in enumerate(class_names):
        precision, recall = get(f"precision_{name}"), get(f"recall_{name}")
        if precision is None and recall is None:
            continue
        row = [name, _fmt(precision), _fmt(recall)]
        if thresholds is not None:
            row.append(f"{thresholds[index]:.3f}")
        per_class.add_row(*row)
    if per_class.row_count:
        console.print(per_class)
    if confusion_png is not None:
        console.print(f"Confusion matrix: {confusion_png}", soft_wrap=True)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_predictions(
    images: torch.Tensor,
    probs: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str],
    *,
    multi_label: bool,
    thresholds: torch.Tensor,
    tile: int = 128,
) -> torch.Tensor:
    """Grid of images captioned with the predicted scenes (green when right, red when wrong) and the truth."""
    from PIL import Image, ImageDraw
    from torchvision.transforms.v2.functional import pil_to_tensor
    from torchvision.utils import make_grid

    tiles = []
    for image, score, label in zip(images.detach().float().cpu(), probs.cpu(), labels.cpu()):
        if multi_label:
            chosen = (score >= thresholds.cpu()).nonzero().flatten().tolist()
            truth = label.round().nonzero().flatten().tolist()
            predicted = "+".join(class_names[i] for i in chosen) or "(none)"
            correct = set(chosen) == set(truth)
            truth_text = "+".join(class_names[i] for i in truth) or "(none)"
        else:
            best = int(score.argmax())
            predicted = f"{class_names[best]} {float(score[best]):.2f}"
            correct = best == int(label)
            truth_text = class_names[int(label)]
        picture = torch.nn.functional.interpolate(image[None], size=(tile, tile), mode="bilinear")[0]
        array = picture.clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy()
        canvas = Image.new("RGB", (tile, tile + 26), (0, 0, 0))
        canvas.paste(Image.fromarray(array), (0, 0))
        draw = ImageDraw.Draw(canvas)
        draw.text((2, tile + 1), predicted[:24], fill=(80, 220, 80) if correct else (240, 80, 80))
        draw.text((2, tile + 13), f"gt: {truth_text}"[:24], fill=(200, 200, 200))
        tiles.append(pil_to_tensor(canvas).float() / 255.0)
    return make_grid(torch.stack(tiles), nrow=min(4, len(tiles)), padding=2)
