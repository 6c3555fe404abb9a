"""The backbone cost catalogue: parameters and MACs of mobile backbones, measured (``moto-vision backbones``).

It lives in ``deploy/`` beside the profiler it uses (``moto_vision.backbones`` builds backbones and imports
nothing above it). Every figure is counted on a randomly initialised timm classifier, never typed in::

    moto-vision backbones                                   # the recommended list at 224 x 224
    moto-vision backbones --names resnet18,lcnet_100 --input-size 256 --output backbones.md
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch

from moto_vision.backbones import create_backbone, reparameterize
from moto_vision.deploy.profile import count_macs

__all__ = ["RECOMMENDED_BACKBONES", "BackboneInfo", "backbones_main", "backbones_table", "list_backbones"]

#: Mobile backbones we recommend for on-phone camera models, smallest first. Costs are computed by
#: :func:`list_backbones`, never typed in.
RECOMMENDED_BACKBONES: tuple[str, ...] = (
    "mobilenetv3_small_050",
    "lcnet_100",
    "mobilenetv3_small_100",
    "mobilenetv4_conv_small",
    "efficientnet_lite0",
    "mobilenetv3_large_100",
    "ghostnet_100",
    "mobileone_s0",
    "repvit_m0_9",
    "fastvit_t8",
)


@dataclass(frozen=True)
class BackboneInfo:
    """Inference cost of a backbone as a 1000-class classifier at the given input size.

    Re-parameterisable models (MobileOne, FastViT, RepViT) are costed after fusion, as deployed.
    """

    name: str
    params_m: float
    macs_g: float
    input_size: int
    feature_channels: tuple[int, ...]
    feature_reductions: tuple[int, ...]
    reparameterizable: bool


def list_backbones(names: Sequence[str] = RECOMMENDED_BACKBONES, input_size: int = 224) -> list[BackboneInfo]:
    """Describe backbones with parameters and MACs measured on the models.

    Parameters and multiply-accumulates are counted on the timm classifier (``pretrained=False``) at
    ``input_size`` x ``input_size``, the way papers and timm's model cards report them.
    """
    return [_backbone_info(name, input_size) for name in names]


@functools.lru_cache(maxsize=64)
def _backbone_info(name: str, input_size: int) -> BackboneInfo:
    model = timm.create_model(name, pretrained=False).eval()
    training_params = sum(p.numel() for p in model.parameters())
    # Phones run the fused graph, so re-parameterisable models are costed after fusion.
    model = reparameterize(model)
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, torch.zeros(1, 3, input_size, input_size))
    features = create_backbone(name)
    return BackboneInfo(
        name=name,
        params_m=params / 1e6,
        macs_g=macs / 1e9,
        input_size=input_size,
        feature_channels=tuple(features.channels),
        feature_reductions=tuple(features.reductions),
        reparameterizable=params != training_params,
    )


def backbones_table(infos: Sequence[BackboneInfo]) -> str:
    """Markdown table of :func:`list_backbones` results."""
    size = infos[0].input_size if infos else 224
    lines = [
        f"| backbone | params (M) | MACs (M) @{size} | feature channels | feature strides "
        "| re-parameterisable (costed fused) |",
        "|---|---:|---:|---|---|---|",
    ]
    for info in infos:
        lines.append(
            f"| `{info.name}` | {info.params_m:.2f} | {info.macs_g * 1000:.0f} | "
            f"{', '.join(map(str, info.feature_channels))} | {', '.join(map(str, info.feature_reductions))} | "
            f"{'yes' if info.reparameterizable else 'no'} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moto-vision backbones",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Parameters, MACs (multiply-accumulates, torch.utils.flop_counter), feature channels and strides of\n"
            "mobile backbones, counted on randomly initialised timm classifiers (re-parameterisable models after\n"
            "fusion, as they run on the phone). Nothing is downloaded."
        ),
        epilog=(
            "examples:\n"
            "  moto-vision backbones\n"
            "  moto-vision backbones --names mobilenetv3_small_050,resnet18 --input-size 256 --output costs.json"
        ),
    )
    parser.add_argument(
        "--names", action="append", help="timm model names, comma-separated (default: the recommended list)"
    )
    parser.add_argument("--input-size", type=int, default=224, help="square input side (default: %(default)s)")
    parser.add_argument("--output", help="also write the table: .md (Markdown) or .json")
    return parser


def backbones_main(argv: Sequence[str] | None = None) -> int:
    """``moto-vision backbones``; returns 0, or 2 for an unknown model name."""
    args = _parser().parse_args(argv)
    names = [n.strip() for value in args.names or [] for n in value.split(",") if n.strip()]
    names = names or list(RECOMMENDED_BACKBONES)
    unknown = [n for n in names if not timm.is_model(n)]
    if unknown:
        print(f"moto-vision backbones: unknown timm model(s) {unknown}; see timm.list_models().", file=sys.stderr)
        return 2
    infos = list_backbones(names, args.input_size)
    table = backbones_table(infos)
    print(table)
    if args.output:
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps([asdict(i) for i in infos], indent=2) + "\n")
        else:
            path.write_text(table + "\n")
        print(f"Wrote {path}")
    return 0
