"""Named ISP augmentation presets (``none``, ``light``, ``default``, ``heavy``) that recipes select by name."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from kornia.augmentation import AugmentationSequential
from torch import nn

from moto_vision.errors import OptionError
from moto_vision.isp.augmentation import (
    CameraPipeline,
    Domain,
    RandomChromaticAberration,
    RandomColorMatrix,
    RandomExposure,
    RandomIlluminant,
    RandomLensShading,
    RandomSensorNoise,
)

__all__ = ["PRESETS", "PresetName", "isp_preset"]

PresetName = Literal["none", "light", "default", "heavy"]
PRESETS: tuple[str, ...] = get_args(PresetName)


def _srgb(name: str, g: torch.Generator | None) -> list[nn.Module]:
    # Scene / segmentation: photos from many phones. One CameraPipeline per image; strength grows per preset.
    # Noise levels are below Brooks et al.'s raw range (up to 1.2e-2): phone ISPs denoise, so the sRGB photos a
    # model sees keep only part of the raw noise, and white balance and the colour matrix amplify what is added.
    if name == "light":
        return [
            CameraPipeline(
                cct=(3000.0, 8000.0),
                tint=(-0.004, 0.008),
                ev=(-0.5, 0.3),
                shot=(1e-4, 1e-3),
                corner=(0.6, 1.0),
                color_shading=0.05,
                shading_residual=(0.0, 0.3),
                awb_error=0.02,
                ccm_error=(0.0, 0.2),
                p=0.5,
                generator=g,
            )
        ]
    if name == "default":
        return [
            CameraPipeline(
                ev=(-1.0, 0.5),
                shot=(1e-4, 3e-3),
                corner=(0.4, 1.0),
                shading_residual=(0.0, 0.5),
                awb_error=0.05,
                ccm_error=(0.0, 0.5),
                p=0.8,
                generator=g,
            )
        ]
    return [
        CameraPipeline(
            cct=(2000.0, 12000.0),
            tint=(-0.01, 0.015),
            ev=(-1.5, 0.7),
            shot=(1e-4, 6e-3),
            corner=(0.3, 1.0),
            color_shading=0.15,
            shading_residual=(0.0, 1.0),
            awb_error=0.1,
            ccm_error=(0.0, 1.0),
            aberration=0.005,
            demosaic=True,
            jpeg_quality=(30.0, 95.0),
            p=1.0,
            generator=g,
        )
    ]


def _linear(name: str, g: torch.Generator | None) -> list[nn.Module]:
    # AWB: linear camera raw with a ground-truth light. Colour-linear steps first (their transform updates the
    # label, see apply_with_illuminant); vignetting without colour shading, CA and noise keep the light's colour.
    if name == "light":
        return [
            RandomIlluminant(cct=(5000.0, 8000.0), tint=(-0.003, 0.003), p=0.5, generator=g),
            RandomExposure(ev=(-0.5, 0.3), p=0.5, generator=g),
            RandomSensorNoise(shot=(1e-4, 3e-3), p=0.5, generator=g),
        ]
    if name == "default":
        return [
            RandomIlluminant(cct=(4500.0, 9000.0), tint=(-0.005, 0.005), p=0.8, generator=g),
            RandomExposure(ev=(-1.0, 0.5), p=0.8, generator=g),
            RandomLensShading(corner=(0.6, 1.0), color_shading=0.0, p=0.5, generator=g),
            RandomSensorNoise(shot=(1e-4, 1.2e-2), p=0.8, generator=g),
        ]
    return [
        RandomIlluminant(cct=(3500.0, 12000.0), tint=(-0.008, 0.008), p=1.0, generator=g),
        RandomColorMatrix(strength=(0.0, 0.5), p=0.5, generator=g),
        RandomExposure(ev=(-1.5, 0.7), p=1.0, generator=g),
        RandomLensShading(corner=(0.4, 1.0), color_shading=0.0, p=0.8, generator=g),
        RandomChromaticAberration(scale=(-0.004, 0.004), p=0.5, generator=g),
        RandomSensorNoise(shot=(1e-4, 2e-2), p=1.0, generator=g),
    ]


def isp_preset(
    name: PresetName = "default", domain: Domain = "srgb", *, generator: torch.Generator | None = None
) -> nn.Module:
    """Build a named camera augmentation for a colour domain; what task datamodules call.

    ``domain="srgb"`` (scene, segmentation) is a :class:`~moto_vision.isp.CameraPipeline` of increasing
    strength: ``light`` (half the images, mild light/noise/vignetting), ``default`` (80% of images, the full
    range of phone lights, residual sensor noise, vignetting, white-balance and colour-matrix errors), ``heavy``
    (every image, plus chromatic aberration, Bayer demosaicking and JPEG). ``domain="linear"`` (AWB)
    chains :class:`~moto_vision.isp.RandomIlluminant`, :class:`~moto_vision.isp.RandomExposure`, vignetting
    and :class:`~moto_vision.isp.RandomSensorNoise` (``heavy`` adds a colour-matrix change and chromatic
    aberration); update the labels with :func:`~moto_vision.isp.apply_with_illuminant`. ``none`` is the identity.

    The result is a kornia ``AugmentationSequential`` (``data_keys=["input"]``): call it on a ``(B, 3, H, W)``
    batch, or put its children into your own ``AugmentationSequential(..., data_keys=["input", "mask"])``.

    Args:
        name: preset name.
        domain: ``"srgb"`` for gamma-encoded photos, ``"linear"`` for linear camera RGB.
        generator: random generator shared by all steps (for reproducible augmentation).

    Returns:
        The augmentation module (``nn.Identity`` for ``none``).
    """
    if name not in PRESETS:
        raise OptionError(f"unknown ISP preset {name!r}; choose one of {', '.join(PRESETS)}")
    if domain not in ("srgb", "linear"):
        raise OptionError(f"unknown colour domain {domain!r}; choose 'srgb' or 'linear'")
    if name == "none":
        return nn.Identity()
    steps = _srgb(name, generator) if domain == "srgb" else _linear(name, generator)
    return AugmentationSequential(*steps, data_keys=["input"])
