"""A/B prototype: a log-chroma histogram filter (CCC / FFCC style) trained on the recipe's synthetic scenes.

Convolutional Color Constancy (Barron, ICCV 2015) and FFCC (Barron & Tsai, CVPR 2017) estimate the light as the peak
of a learned filter applied to the image's histogram in log chromaticity (``u = log(g / r)``, ``v = log(g / b)``),
where a light is a translation. This script asks whether that model class, trained on the synthetic scenes of
``recipes/awb.yaml`` (the same datamodule, cameras and relighting), transfers to the cross-camera proxies of
``benchmarks/awb_cross_camera.py`` better than the recipe's classical-vote model does. It is an experiment, not a
library model: FFCC's published code has the filter in the Fourier domain with its own regulariser and a wrapped
histogram; here the histogram is a plain (unwrapped) grid wide enough for every camera's lights, the filter a
linear cross-correlation by FFT, the estimate the soft-argmax of the filtered histogram plus an optional bias map
(FFCC's light prior), trained on the recovery angular error with a total-variation and an L2 penalty.

Channels: the pixels' histogram and that of the local absolute deviation (FFCC's edge image), both of pixels
that are neither dark nor clipped, each normalised to sum 1; ``--bright F`` adds a third, of the brightest ``F``
of those pixels (a White-Patch-like cue).

    python benchmarks/awb_histogram_filter.py --cache /tmp/awb_sets.pt                 # ~100 s of CPU
    python benchmarks/awb_histogram_filter.py --cache /tmp/awb_sets.pt --bright 0.03 --no-bias
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import awb_cross_camera as proxies  # noqa: E402  (the sibling benchmark: its sets and statistics)

from moto_vision.data.awb.datamodule import AWBDataModule  # noqa: E402
from moto_vision.metrics import error_statistics, recovery_angular_error  # noqa: E402
from moto_vision.models.awb import create_baseline  # noqa: E402


def log_chroma(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(u, v) = (log(g / r), log(g / b))`` of ``(B, 3, H, W)`` linear RGB (clamped away from 0)."""
    x = x.clamp_min(1e-6)
    return torch.log(x[:, 1] / x[:, 0]), torch.log(x[:, 1] / x[:, 2])


def local_absolute_deviation(x: Tensor) -> Tensor:
    """FFCC's edge image: per channel, the mean absolute difference to the 8 neighbours (replicated border)."""
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    h, w = x.shape[-2:]
    total = sum(
        (x - padded[:, :, dy : dy + h, dx : dx + w]).abs() for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)
    )
    return total / 8


class LogChromaHistogram(nn.Module):
    """Bilinearly binned log-chroma histograms on a ``bins x bins`` grid from ``origin`` in steps of ``width``."""

    def __init__(self, bins: int, width: float, origin: tuple[float, float], bright: float = 0.0) -> None:
        super().__init__()
        self.bins, self.width, self.origin, self.bright = bins, width, origin, bright

    @property
    def channels(self) -> int:
        return 3 if self.bright > 0 else 2

    def centres(self) -> tuple[Tensor, Tensor]:
        """``(u, v)`` of every bin, each ``(bins, bins)``."""
        steps = torch.arange(self.bins) * self.width
        return torch.meshgrid(self.origin[0] + steps, self.origin[1] + steps, indexing="ij")

    def histogram(self, x: Tensor, mask: Tensor) -> Tensor:
        n = self.bins
        u, v = log_chroma(x)
        fu, fv = (u - self.origin[0]) / self.width, (v - self.origin[1]) / self.width
        keep = (mask & (fu >= 0) & (fu <= n - 1) & (fv >= 0) & (fv <= n - 1)).float()
        fu, fv = fu.clamp(0, n - 1 - 1e-4), fv.clamp(0, n - 1 - 1e-4)
        iu, iv = fu.floor().long(), fv.floor().long()
        du, dv = fu - iu, fv - iv
        out = torch.zeros(x.shape[0], n * n)
        for ou, ov, weight in (
            (0, 0, (1 - du) * (1 - dv)),
            (1, 0, du * (1 - dv)),
            (0, 1, (1 - du) * dv),
            (1, 1, du * dv),
        ):
            out.scatter_add_(1, ((iu + ou) * n + iv + ov).flatten(1), (weight * keep).flatten(1))
        return (out / out.sum(1, keepdim=True).clamp_min(1e-8)).view(-1, n, n)

    def forward(self, x: Tensor) -> Tensor:
        x = x.float()
        brightness = x.amax(1)
        usable = (x.amin(1) > 1e-4) & (brightness < 0.999)  # neither dark nor clipped (the max pixel of a /max image)
        edges = local_absolute_deviation(x)
        channels = [self.histogram(x, usable), self.histogram(edges, usable & (edges.amin(1) > 1e-5))]
        if self.bright > 0:
            ranked = torch.where(usable, brightness, torch.zeros_like(brightness)).flatten(1)
            threshold = torch.quantile(ranked, 1 - self.bright, dim=1)[:, None, None]
            channels.append(self.histogram(x, usable & (brightness >= threshold)))
        return torch.stack(channels, 1)


class HistogramFilter(nn.Module):
    """Soft-argmax of ``filter * histogram (+ bias)`` on the log-chroma grid -> unit RGB of the light."""

    def __init__(self, histogram: LogChromaHistogram, bias: bool = True) -> None:
        super().__init__()
        n = histogram.bins
        self.histogram = histogram
        self.filter = nn.Parameter(torch.zeros(histogram.channels, 2 * n, 2 * n))
        self.bias = nn.Parameter(torch.zeros(n, n), requires_grad=bias)
        u, v = histogram.centres()
        self.register_buffer("u", u.clone())
        self.register_buffer("v", v.clone())

    def forward(self, x: Tensor) -> Tensor:
        n = self.histogram.bins
        h = F.pad(self.histogram(x), (0, n, 0, n))  # zero padding: a linear, not circular, correlation
        correlation = torch.fft.irfft2(torch.fft.rfft2(h) * torch.fft.rfft2(self.filter).conj(), s=(2 * n, 2 * n))
        logits = torch.roll(correlation.sum(1), shifts=(n, n), dims=(1, 2))[:, :n, :n] * 100.0 + self.bias
        p = torch.softmax(logits.flatten(1), 1).view_as(logits)
        u, v = (p * self.u).sum((1, 2)), (p * self.v).sum((1, 2))
        return F.normalize(torch.stack([torch.exp(-u), torch.ones_like(u), torch.exp(-v)], -1), dim=-1)


def total_variation(t: Tensor) -> Tensor:
    return (t.diff(dim=-1) ** 2).mean() + (t.diff(dim=-2) ** 2).mean()


def train(model: HistogramFilter, data: AWBDataModule, epochs: int, lr: float, tv: float, l2: float) -> None:
    loader = data.train_dataloader()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * len(loader), pct_start=0.05)
    start = time.process_time()
    for epoch in range(epochs):
        total = 0.0
        for batch in loader:
            batch = data.augment_train_batch(batch, data.augmentations)  # the recipe's relighting and crops
            error = recovery_angular_error(model(batch["image"]), batch["illuminant"]).mean()
            penalty = (
                tv * (total_variation(model.filter) + total_variation(model.bias)) + l2 * model.filter.square().sum()
            )
            optimizer.zero_grad()
            (error + penalty).backward()
            optimizer.step()
            schedule.step()
            total += float(error)
        print(
            f"epoch {epoch}: training error {total / len(loader):.2f} degrees, {time.process_time() - start:.0f} s CPU"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cache", type=Path, required=True, help="the proxy sets of awb_cross_camera.py (built if absent)"
    )
    parser.add_argument("--bins", type=int, default=64, help="histogram bins per side (default: %(default)s)")
    parser.add_argument("--bin-width", type=float, default=1 / 16, help="log-chroma width of a bin (default: 1/16)")
    parser.add_argument(
        "--origin", type=float, nargs=2, default=(-1.25, -1.25), help="(u, v) of the first bin (default: -1.25 -1.25)"
    )
    parser.add_argument("--bright", type=float, default=0.0, help="add a histogram of this share of brightest pixels")
    parser.add_argument("--no-bias", action="store_true", help="no learned bias map (light prior)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs, at least 1 (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--tv", type=float, default=1.0, help="total-variation weight on the filter and bias")
    parser.add_argument("--l2", type=float, default=1e-4, help="L2 weight on the filter")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.bins < 2 or args.bin_width <= 0 or not 0 <= args.bright < 1:
        parser.error("--epochs must be at least 1, --bins at least 2, --bin-width positive, --bright in [0, 1)")
    torch.manual_seed(args.seed)
    sets = proxies.build_sets(
        argparse.Namespace(cache=args.cache, camera=None, seed=0, photos=[], photo_list=proxies.PHOTO_LIST)
    )
    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes" / "awb.yaml").read_text())
    data = AWBDataModule(**recipe["data"]["init_args"])  # the recipe's data, cameras and relighting
    data.setup("fit")
    histogram = LogChromaHistogram(args.bins, args.bin_width, tuple(args.origin), args.bright)
    model = HistogramFilter(histogram, bias=not args.no_bias)
    train(model, data, args.epochs, args.lr, args.tv, args.l2)
    model.eval()
    white_patch = create_baseline("white_patch")
    print("\nrecovery error (degrees): mean / median / worst 25%")
    for name, (images, labels, *_rest) in sets.items():
        row = []
        for method in (model, white_patch):
            s = error_statistics(proxies.errors_of(method, images, labels))
            row.append(f"{s['mean']:.2f} / {s['median']:.2f} / {s['worst25']:.2f}")
        print(f"{name:16s} histogram filter {row[0]:22s} max-RGB {row[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
