"""Segmentation decoders and loss on top of any multi-scale backbone (no Lightning).

Every decoder takes the list of feature maps a :class:`~moto_vision.backbones.Backbone` returns (shallow to
deep, with their ``channels`` and ``reductions``) and returns class logits at the input resolution, so the
portrait task and the multi-task model (one shared backbone, several heads) use the same modules::

    backbone = create_backbone("mobilenetv3_small_050")
    decoder = create_segmentation_decoder("mobile", backbone.channels, backbone.reductions, num_classes=1)
    logits = decoder(backbone(x), size=x.shape[-2:])  # (B, 1, H, W)

Decoders:

- ``mobile`` (portrait default): LR-ASPP context (Howard et al., "Searching for MobileNetV3") on the deepest
  map, then a light refinement path that adds every shallower skip down to stride 2 with depthwise-separable
  convolutions, so hair and finger edges are resolved at half resolution for a few M MACs.
- ``lraspp``: torchvision's LR-ASPP head as published (stride-8 skip, logits at stride 8, then upsampled).
- ``unet``, ``fpn``, ``deeplabv3plus``: segmentation-models-pytorch's decoders, fed our backbone's features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from moto_vision.errors import OptionError
from moto_vision.metrics.segmentation import boundary_pixels, dilate, erode

__all__ = [
    "DECODERS",
    "DeepLabV3PlusDecoder",
    "FPNDecoder",
    "LRASPPDecoder",
    "MobileDecoder",
    "SegmentationLoss",
    "UNetDecoder",
    "create_segmentation_decoder",
]

DecoderName = Literal["mobile", "lraspp", "unet", "fpn", "deeplabv3plus"]
DECODERS: tuple[str, ...] = ("mobile", "lraspp", "unet", "fpn", "deeplabv3plus")

Size = tuple[int, int] | Sequence[int] | torch.Size


def _output_size(features: Sequence[torch.Tensor], reductions: Sequence[int], size: Size | None) -> tuple[int, int]:
    if size is not None:
        return int(size[0]), int(size[1])
    h, w = features[0].shape[-2:]
    return int(h) * reductions[0], int(w) * reductions[0]


def _upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def _check_levels(name: str, channels: Sequence[int], reductions: Sequence[int], minimum: int) -> None:
    if len(channels) != len(reductions):
        raise OptionError(f"{name}: {len(channels)} channels but {len(reductions)} reductions.")
    if len(channels) < minimum:
        raise OptionError(
            f"{name} needs at least {minimum} feature levels, the backbone gives {len(channels)} "
            f"(reductions {list(reductions)}). Use a backbone with more stages or out_indices=None."
        )


class _ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 1, groups: int = 1, act: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _SeparableRefine(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1, each with BatchNorm and ReLU (MobileNet's cheap 3x3 conv)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(_ConvBNReLU(cin, cin, 3, groups=cin), _ConvBNReLU(cin, cout, 1))


class MobileDecoder(nn.Module):
    """LR-ASPP context plus a light skip-refinement path to stride 2 (the portrait default).

    The deepest map goes through LR-ASPP's two branches (1x1 conv, and a global-pool gate that reweights
    channels by image-level context). The result is upsampled level by level; at each level the skip is
    projected by a 1x1 conv and added, then a depthwise-separable 3x3 conv refines it. Channels shrink with
    resolution (``channels``, halving down to ``min_channels``) so the stride-2 level stays cheap.

    Args:
        in_channels: channels of the backbone's feature maps, shallow to deep.
        reductions: strides of those maps.
        num_classes: output channels (1 for binary masks).
        channels: width of the context branch.
        min_channels: width floor of the refinement path.
        min_stride: the shallowest stride that is fused (2 keeps edges sharp; 4 or 8 are cheaper).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        reductions: Sequence[int],
        num_classes: int,
        channels: int = 32,
        min_channels: int = 16,
        min_stride: int = 2,
    ) -> None:
        super().__init__()
        _check_levels("MobileDecoder", in_channels, reductions, 2)
        self.reductions = list(reductions)
        high = in_channels[-1]
        self.context = _ConvBNReLU(high, channels, 1)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high, channels, 1, bias=False), nn.Sigmoid())
        # Skip levels from deep to shallow (the deepest map is the context itself).
        self.skip_levels = [i for i in range(len(in_channels) - 2, -1, -1) if reductions[i] >= min_stride]
        self.projections = nn.ModuleList()
        self.refinements = nn.ModuleList()
        width = channels
        for level in self.skip_levels:
            out = max(min_channels, width // 2) if reductions[level] <= 4 else width
            self.projections.append(_ConvBNReLU(in_channels[level], width, 1, act=False))
            self.refinements.append(_SeparableRefine(width, out))
            width = out
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor], size: Size | None = None) -> torch.Tensor:
        """Return logits ``(B, num_classes, H, W)`` at ``size`` (the input size by default)."""
        out_size = _output_size(features, self.reductions, size)
        high = features[-1]
        x = self.context(high) * self.gate(high)
        for level, project, refine in zip(self.skip_levels, self.projections, self.refinements):
            skip = features[level]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = refine(x + project(skip))
        return _upsample(self.classifier(x), out_size)


class LRASPPDecoder(nn.Module):
    """torchvision's LR-ASPP head: the deepest map with a global-pool gate plus one stride-8 skip.

    Args:
        in_channels: channels of the backbone's feature maps, shallow to deep.
        reductions: strides of those maps.
        num_classes: output channels.
        channels: width of the context branch (torchvision uses 128).
        low_stride: stride of the skip feature (the level closest to it is used).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        reductions: Sequence[int],
        num_classes: int,
        channels: int = 128,
        low_stride: int = 8,
    ) -> None:
        super().__init__()
        from torchvision.models.segmentation.lraspp import LRASPPHead

        _check_levels("LRASPPDecoder", in_channels, reductions, 2)
        self.reductions = list(reductions)
        candidates = range(len(reductions) - 1)
        self.low_level = min(candidates, key=lambda i: abs(reductions[i] - low_stride))
        self.head = LRASPPHead(in_channels[self.low_level], in_channels[-1], num_classes, channels)

    def forward(self, features: Sequence[torch.Tensor], size: Size | None = None) -> torch.Tensor:
        out_size = _output_size(features, self.reductions, size)
        logits = self.head({"low": features[self.low_level], "high": features[-1]})
        return _upsample(logits, out_size)


def _strides_from_one(reductions: Sequence[int]) -> list[int]:
    strides = [1]
    while strides[-1] < reductions[-1]:
        strides.append(strides[-1] * 2)
    missing = sorted(set(reductions) - set(strides))
    if missing:
        raise OptionError(f"Feature reductions {list(reductions)} are not powers of two; U-Net cannot align them.")
    return strides


class UNetDecoder(nn.Module):
    """segmentation-models-pytorch's U-Net decoder on our backbone's features, logits at full resolution.

    smp's decoder expects one feature per stride 1, 2, 4, ..., 32; strides the backbone lacks (stride 1,
    and stride 2 for backbones starting at 4) are passed as zero-channel maps, which smp's blocks skip over.

    Args:
        in_channels: channels of the backbone's feature maps, shallow to deep.
        reductions: strides of those maps.
        num_classes: output channels.
        channels: width of the deepest decoder block; each next block halves it, down to 16.
    """

    def __init__(self, in_channels: Sequence[int], reductions: Sequence[int], num_classes: int, channels: int = 128):
        super().__init__()
        from segmentation_models_pytorch.base import SegmentationHead
        from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder

        _check_levels("UNetDecoder", in_channels, reductions, 2)
        self.reductions = list(reductions)
        self.strides = _strides_from_one(reductions)
        by_stride = dict(zip(reductions, in_channels))
        encoder_channels = [by_stride.get(s, 0) for s in self.strides]
        blocks = len(self.strides) - 1
        decoder_channels = [max(16, channels >> i) for i in range(blocks)]
        self.decoder = UnetDecoder(encoder_channels, decoder_channels, n_blocks=blocks)
        self.head = SegmentationHead(decoder_channels[-1], num_classes, kernel_size=3)

    def forward(self, features: Sequence[torch.Tensor], size: Size | None = None) -> torch.Tensor:
        out_size = _output_size(features, self.reductions, size)
        by_stride = dict(zip(self.reductions, features))
        first = features[0]
        batch = first.shape[0]
        full: list[torch.Tensor] = []
        for stride in self.strides:
            if stride in by_stride:
                full.append(by_stride[stride])
            else:
                h, w = -(-out_size[0] // stride), -(-out_size[1] // stride)
                full.append(first.new_zeros(batch, 0, h, w))
        return _upsample(self.head(self.decoder(full)), out_size)


class FPNDecoder(nn.Module):
    """segmentation-models-pytorch's FPN decoder on the four deepest feature maps.

    Args:
        in_channels: channels of the backbone's feature maps, shallow to deep.
        reductions: strides of those maps.
        num_classes: output channels.
        channels: pyramid width; the segmentation branch uses half of it (a multiple of 32, GroupNorm's groups).
    """

    def __init__(self, in_channels: Sequence[int], reductions: Sequence[int], num_classes: int, channels: int = 128):
        super().__init__()
        from segmentation_models_pytorch.base import SegmentationHead
        from segmentation_models_pytorch.decoders.fpn.decoder import FPNDecoder as SMPFPNDecoder

        _check_levels("FPNDecoder", in_channels, reductions, 4)
        self.reductions = list(reductions)
        segmentation_channels = max(32, (channels // 2) // 32 * 32)
        # encoder_depth=3 makes smp read exactly the four channels we pass (deepest first after its reversal).
        self.decoder = SMPFPNDecoder(
            list(in_channels[-4:]),
            encoder_depth=3,
            pyramid_channels=channels,
            segmentation_channels=segmentation_channels,
            dropout=0.0,
        )
        self.head = SegmentationHead(segmentation_channels, num_classes, kernel_size=1)

    def forward(self, features: Sequence[torch.Tensor], size: Size | None = None) -> torch.Tensor:
        out_size = _output_size(features, self.reductions, size)
        return _upsample(self.head(self.decoder(list(features))), out_size)


class DeepLabV3PlusDecoder(nn.Module):
    """segmentation-models-pytorch's DeepLabV3+ modules (ASPP, stride-4 skip fusion) on our features.

    smp's own decoder assumes a dilated encoder at output stride 16 and a fixed x4 upsampling; timm
    backbones here run at stride 32, so the ASPP output is resized to the skip's size instead, and the atrous
    rates are scaled down to the small deepest map (8x8 at 256 px input).

    Args:
        in_channels: channels of the backbone's feature maps, shallow to deep.
        reductions: strides of those maps.
        num_classes: output channels.
        channels: ASPP and fusion width.
        atrous_rates: dilation rates of the ASPP branches.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        reductions: Sequence[int],
        num_classes: int,
        channels: int = 128,
        atrous_rates: Sequence[int] = (2, 4, 6),
    ) -> None:
        super().__init__()
        from segmentation_models_pytorch.base import SegmentationHead
        from segmentation_models_pytorch.decoders.deeplabv3.decoder import DeepLabV3PlusDecoder as SMPDecoder

        _check_levels("DeepLabV3PlusDecoder", in_channels, reductions, 2)
        self.reductions = list(reductions)
        self.skip_level = min(range(len(reductions) - 1), key=lambda i: abs(reductions[i] - 4))
        # smp reads the skip at index 2 and the context at index -1 of the channel list.
        encoder_channels = [0, 0, in_channels[self.skip_level], in_channels[-1]]
        smp_decoder = SMPDecoder(
            encoder_channels,
            encoder_depth=5,
            out_channels=channels,
            atrous_rates=tuple(atrous_rates),
            output_stride=16,
            aspp_separable=True,
            aspp_dropout=0.1,
        )
        self.aspp, self.skip, self.fuse = smp_decoder.aspp, smp_decoder.block1, smp_decoder.block2
        self.head = SegmentationHead(channels, num_classes, kernel_size=1)

    def forward(self, features: Sequence[torch.Tensor], size: Size | None = None) -> torch.Tensor:
        out_size = _output_size(features, self.reductions, size)
        skip = self.skip(features[self.skip_level])
        context = F.interpolate(self.aspp(features[-1]), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return _upsample(self.head(self.fuse(torch.cat([context, skip], dim=1))), out_size)


_DEFAULT_CHANNELS = {"mobile": 32, "lraspp": 128, "unet": 128, "fpn": 128, "deeplabv3plus": 128}
_CLASSES = {
    "mobile": MobileDecoder,
    "lraspp": LRASPPDecoder,
    "unet": UNetDecoder,
    "fpn": FPNDecoder,
    "deeplabv3plus": DeepLabV3PlusDecoder,
}


def create_segmentation_decoder(
    name: DecoderName,
    in_channels: Sequence[int],
    reductions: Sequence[int],
    num_classes: int,
    channels: int | None = None,
) -> nn.Module:
    """Build a decoder by name (see the module docstring).

    Args:
        name: one of :data:`DECODERS`.
        in_channels: the backbone's ``channels``.
        reductions: the backbone's ``reductions``.
        num_classes: output channels (1 for binary masks, ``N`` for ``N``-class parsing).
        channels: decoder width (``None``: 32 for ``mobile``, 128 otherwise).

    Returns:
        A module ``decoder(features, size=None) -> logits (B, num_classes, H, W)``.
    """
    if name not in _CLASSES:
        raise OptionError(f"Unknown segmentation decoder {name!r}; choose one of {list(DECODERS)}.")
    width = _DEFAULT_CHANNELS[name] if channels is None else int(channels)
    return _CLASSES[name](list(in_channels), list(reductions), num_classes, channels=width)


class SegmentationLoss(nn.Module):
    """Cross-entropy (or BCE for one output channel) + Dice + an optional boundary-band term.

    ``loss = ce + dice_weight * dice + boundary_weight * ce_band``, where ``ce_band`` is the cross-entropy
    averaged over pixels within ``boundary_width`` pixels of a ground-truth class boundary only, which pushes
    the model on hair and shoulder edges that make up a tiny share of all pixels. Dice is
    segmentation-models-pytorch's ``DiceLoss``.

    Args:
        num_classes: logits channels; 1 means binary (sigmoid) with targets in ``{0, 1}``.
        dice_weight: weight of the Dice term (0 disables it).
        boundary_weight: weight of the boundary-band term (0 disables it).
        boundary_width: half-width of the band, in pixels.
        class_weights: per-class weights of the cross-entropy (binary: ``[background, foreground]``).
        ignore_index: target value of unlabelled pixels.
    """

    def __init__(
        self,
        num_classes: int,
        dice_weight: float = 1.0,
        boundary_weight: float = 0.0,
        boundary_width: int = 3,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        from segmentation_models_pytorch.losses import DiceLoss

        self.binary = num_classes == 1
        self.num_labels = 2 if self.binary else num_classes
        if class_weights is not None and len(class_weights) != self.num_labels:
            raise OptionError(
                f"class_weights has {len(class_weights)} entries but the model has {self.num_labels} classes "
                f"({'[background, foreground]' if self.binary else 'one per class'})."
            )
        self.dice_weight = dice_weight
        self.boundary_weight = boundary_weight
        self.boundary_width = boundary_width
        self.ignore_index = ignore_index
        weights = torch.ones(self.num_labels) if class_weights is None else torch.tensor(class_weights, dtype=float)
        self.register_buffer("class_weights", weights.float(), persistent=False)
        self.dice = DiceLoss("binary" if self.binary else "multiclass", ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{"loss", "ce", "dice", "boundary"}`` (the last two only when their weights are > 0)."""
        valid = target != self.ignore_index
        safe = torch.where(valid, target, torch.zeros_like(target))
        if self.binary:
            per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], safe.float(), reduction="none")
        else:
            per_pixel = F.cross_entropy(logits, safe, reduction="none")
        weights = self.class_weights[safe] * valid
        ce = (per_pixel * weights).sum() / weights.sum().clamp_min(1e-6)
        terms = {"ce": ce}
        loss = ce
        if self.dice_weight > 0:
            terms["dice"] = self.dice(logits, target)
            loss = loss + self.dice_weight * terms["dice"]
        if self.boundary_weight > 0:
            with torch.no_grad():
                # Edges against unlabelled pixels (letterbox padding, ignore regions) are not real boundaries.
                edges = boundary_pixels(safe.masked_fill(~valid, -1)) & erode(valid)
                band = (dilate(edges, self.boundary_width) & valid).float() * weights
            terms["boundary"] = (per_pixel * band).sum() / band.sum().clamp_min(1.0)
            loss = loss + self.boundary_weight * terms["boundary"]
        terms["loss"] = loss
        return terms
