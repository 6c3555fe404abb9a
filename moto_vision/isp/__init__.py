"""Differentiable camera ISP simulation and camera-realistic augmentations.

Pure functions (batched ``(B, 3, H, W)``, differentiable, any device and float dtype) model each stage of a
phone camera: :mod:`~moto_vision.isp.color` (transfer curves, illuminants, white balance, colour matrices),
:mod:`~moto_vision.isp.sensor` (exposure, noise, optics, mosaic, JPEG) and :mod:`~moto_vision.isp.pipeline`
(``unprocess`` / ``process``). No Lightning import: usable in any PyTorch project.
"""

from moto_vision.isp.color import (
    CAMERA_XYZ_TO_RAW,
    SRGB_TO_XYZ,
    XYZ_TO_SRGB,
    apply_color_matrix,
    apply_gains,
    camera_rgb_matrix,
    cct_duv_to_xy,
    illuminant_to_cct,
    illuminant_to_gains,
    inverse_tone_curve,
    linear_to_srgb,
    planckian_illuminant,
    planckian_xyz,
    random_camera_matrix,
    random_xyz_to_camera,
    srgb_to_linear,
    tone_curve,
    update_illuminant,
    xy_to_cct_duv,
)
from moto_vision.isp.pipeline import CameraParams, process, sample_camera_params, sample_illuminant, unprocess
from moto_vision.isp.sensor import add_sensor_noise, adjust_exposure, clip_highlights, random_noise_levels

__all__ = [
    "CAMERA_XYZ_TO_RAW",
    "SRGB_TO_XYZ",
    "XYZ_TO_SRGB",
    "CameraParams",
    "add_sensor_noise",
    "adjust_exposure",
    "apply_color_matrix",
    "apply_gains",
    "camera_rgb_matrix",
    "cct_duv_to_xy",
    "clip_highlights",
    "illuminant_to_cct",
    "illuminant_to_gains",
    "inverse_tone_curve",
    "linear_to_srgb",
    "planckian_illuminant",
    "planckian_xyz",
    "process",
    "random_camera_matrix",
    "random_xyz_to_camera",
    "random_noise_levels",
    "sample_camera_params",
    "sample_illuminant",
    "srgb_to_linear",
    "tone_curve",
    "unprocess",
    "update_illuminant",
    "xy_to_cct_duv",
]
