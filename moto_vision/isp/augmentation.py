"""Camera-realistic augmentations in kornia's style: each samples parameters and calls the pure ISP functions.

All classes derive from kornia's ``IntensityAugmentationBase2D``, so they run inside
``kornia.augmentation.AugmentationSequential`` and leave masks, boxes and keypoints untouched
(``data_keys=["input", "mask"]``). Each keeps its last draw in ``aug._params`` like every kornia augmentation;
``forward(x, params=aug._params)`` replays it exactly (the noise field included: it is drawn from a stored seed).

Reproducibility: pass ``generator=torch.Generator().manual_seed(s)`` to draw everything (including the
``p`` gate) from it, or seed torch's global generator as for any kornia augmentation.

Colour domain: ``domain="linear"`` works on linear (camera) RGB, as for AWB; ``domain="srgb"`` decodes the sRGB
curve first and re-encodes after, so the physics happens in linear light. Outputs are clipped to ``[0, 1]``
(sensor saturation / display range).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from kornia.augmentation import IntensityAugmentationBase2D
from torch import Tensor, nn

from moto_vision.errors import OptionError
from moto_vision.isp.color import (
    XYZ_TO_SRGB,
    _smoothstep,
    apply_color_matrix,
    camera_rgb_matrix,
    inverse_3x3,
    inverse_tone_curve,
    linear_to_srgb,
    planckian_xyz,
    random_xyz_to_camera,
    srgb_to_linear,
    update_illuminant,
)
from moto_vision.isp.fusion import fused
from moto_vision.isp.pipeline import sample_camera_params, sample_illuminant
from moto_vision.isp.sensor import (
    add_sensor_noise,
    chromatic_aberration,
    demosaic,
    jpeg,
    lens_shading_map,
    mosaic,
    random_noise_levels,
)

__all__ = [
    "CameraPipeline",
    "Domain",
    "RandomChromaticAberration",
    "RandomColorMatrix",
    "RandomExposure",
    "RandomIlluminant",
    "RandomLensShading",
    "RandomSensorNoise",
    "apply_with_illuminant",
    "applied_color_transform",
]

Domain = Literal["linear", "srgb"]
Range = tuple[float, float]


def _uniform(n: int, bounds: Range, generator: torch.Generator | None) -> Tensor:
    lo, hi = float(bounds[0]), float(bounds[1])
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def _check_range(name: str, bounds: Range, lo: float = -float("inf"), hi: float = float("inf")) -> Range:
    bounds = (float(bounds[0]), float(bounds[1]))
    if not (lo <= bounds[0] <= bounds[1] <= hi):
        raise OptionError(f"{name}={bounds} must be an increasing (low, high) pair within [{lo}, {hi}]")
    return bounds


class _ISPAugmentation(IntensityAugmentationBase2D):
    """Shared machinery: parameter sampling from an optional generator, colour domain, output clipping.

    Subclasses implement :meth:`sample` (CPU tensors, first dim = batch) and :meth:`apply_linear`, and
    :meth:`color_transform` when the operation is a per-image linear colour map (for AWB label updates).
    """

    def __init__(
        self,
        *,
        domain: Domain = "linear",
        p: float = 1.0,
        same_on_batch: bool = False,
        keepdim: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p=p, same_on_batch=same_on_batch, keepdim=keepdim)
        if domain not in ("linear", "srgb"):
            raise OptionError(f"domain must be 'linear' or 'srgb', got {domain!r}")
        self.domain = domain
        self.generator = generator

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int) -> dict[str, Tensor]:
        """Draw this augmentation's parameters for ``batch_size`` images (CPU tensors)."""
        raise NotImplementedError

    def generate_parameters(self, batch_shape: tuple[int, ...]) -> dict[str, Tensor]:
        b = batch_shape[0]
        params = self.sample(1 if self.same_on_batch else b)
        if self.same_on_batch:
            params = {k: v.expand(b, *v.shape[1:]) if v.ndim else v for k, v in params.items()}
        return params

    def __batch_prob_generator__(
        self, batch_shape: tuple[int, ...], p: float, p_batch: float, same_on_batch: bool
    ) -> Tensor:
        # kornia draws the gate from the global generator; draw it from ours so a seeded generator reproduces all.
        # kornia has no public hook for this; its forward_parameters() calls this method (kornia 0.8-0.9, pinned in
        # pyproject.toml; test_seeded_gate_leaves_the_global_generator_alone fails if kornia stops calling it).
        if self.generator is None:
            return super().__batch_prob_generator__(batch_shape, p, p_batch, same_on_batch)
        b, g = batch_shape[0], self.generator
        batch_on = p_batch >= 1 or (p_batch > 0 and torch.rand(1, generator=g).item() < p_batch)
        if not batch_on or p <= 0:
            prob = torch.zeros(b)
        elif p >= 1:
            prob = torch.ones(b)
        elif same_on_batch:
            prob = (torch.rand(1, generator=g) < p).float().expand(b)
        else:
            prob = (torch.rand(b, generator=g) < p).float()
        return prob.to(device=self.device, dtype=self.dtype)

    def _seed(self, n: int) -> Tensor:
        return torch.randint(0, 2**62, (n,), generator=self.generator)

    # ------------------------------------------------------------------ applying
    def apply_linear(self, image: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Apply the operation to linear RGB ``(B, 3, H, W)``."""
        raise NotImplementedError

    def apply_transform(
        self, input: Tensor, params: dict[str, Tensor], flags: dict[str, Any], transform: Tensor | None = None
    ) -> Tensor:
        if input.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects RGB images (B, 3, H, W), got {tuple(input.shape)}")
        x = srgb_to_linear(input.clamp(0.0, 1.0)) if self.domain == "srgb" else input
        x = self.apply_linear(x, params).clamp(0.0, 1.0)
        return linear_to_srgb(x) if self.domain == "srgb" else x

    def color_transform(self, params: dict[str, Tensor]) -> Tensor | None:
        """The per-image 3x3 linear colour map this draw applied, or ``None`` if it is not a colour map."""
        return None

    @staticmethod
    def _get(params: dict[str, Tensor], key: str, like: Tensor) -> Tensor:
        return params[key].to(device=like.device, dtype=like.dtype)


# ================================================================================================ colour
class RandomIlluminant(_ISPAugmentation):
    """Relight the scene: von Kries per-channel gains from a reference light to a sampled black-body light.

    The gains are the ratio of the sampled light's colour to the reference light's colour, both seen through a
    random real camera (``domain="linear"``: raw camera RGB, :func:`~moto_vision.isp.random_xyz_to_camera`) or
    through the sRGB primaries (``domain="srgb"``), rescaled to unit mean so brightness is kept. For AWB data the
    new ground truth is ``update_illuminant(old, aug._params["gains"])`` (see :func:`apply_with_illuminant`).

    Args:
        cct: range of the target light's colour temperature in kelvin (sampled uniformly in mired).
        tint: range of its Duv.
        reference: ``(cct, duv)`` of the light the gains start from; the default is D65, the white of sRGB.
        domain: colour domain of the images.
        p: probability to apply per image.
        same_on_batch: one draw for the whole batch.
        keepdim: keep a ``(C, H, W)`` input's rank.
        generator: random generator for all draws.
    """

    def __init__(
        self,
        cct: Range = (2500.0, 10000.0),
        tint: Range = (-0.006, 0.012),
        reference: tuple[float, float] = (6504.0, 0.0032),
        domain: Domain = "linear",
        p: float = 1.0,
        same_on_batch: bool = False,
        keepdim: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(domain=domain, p=p, same_on_batch=same_on_batch, keepdim=keepdim, generator=generator)
        self.cct = _check_range("cct", cct, 1667.0, 25000.0)
        self.tint = _check_range("tint", tint, -0.05, 0.05)
        self.reference = reference

    def sample(self, batch_size: int) -> dict[str, Tensor]:
        cct, tint = sample_illuminant(batch_size, cct_range=self.cct, tint_range=self.tint, generator=self.generator)
        if self.domain == "linear":
            to_rgb = random_xyz_to_camera(batch_size, generator=self.generator, dtype=torch.float64)
        else:
            to_rgb = XYZ_TO_SRGB.expand(batch_size, 3, 3)
        target = torch.einsum("bij,bj->bi", to_rgb, planckian_xyz(cct.double(), tint.double())).clamp_min(1e-4)
        ref = torch.einsum("bij,j->bi", to_rgb, planckian_xyz(*self.reference)).clamp_min(1e-4)
        gains = target / ref
        gains = gains / gains.mean(dim=-1, keepdim=True)
        return {"cct": cct, "tint": tint, "gains": gains.float()}

    def apply_linear(self, image: Tensor, params: dict[str, Tensor]) -> Tensor:
        return image * self._get(params, "gains", image)[:, :, None, None]

    def color_transform(self, params: dict[str, Tensor]) -> Tensor:
        return torch.diag_embed(params["gains"].float())


class RandomColorMatrix(_ISPAugmentation):
    """Apply a colour-correction error: processing one camera's raw with another camera's colour matrix.

    The matrix is ``I + s * (ccm_A @ rgb2cam_B - I)`` for two random real-camera mixes A and B and a strength
    ``s``; its rows sum to 1, so white and greys stay put while saturated colours shift as between phones.

    Args:
        strength: range of ``s`` (0 = identity, 1 = a full camera swap).
        domain: colour domain of the images.
        p: probability to apply per image.
        same_on_batch: one draw for the whole batch.
        keepdim: keep a ``(C, H, W)`` input's rank.
        generator: random generator for all draws.
    """

    def __init__(
        self,
        strength: Range = (0.0, 1.0),
        domain: Domain = "linear",
        p: float = 1.0,
        same_on_batch: bool = False,
        keepdim: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(domain=domain, p=p, same_on_batch=same_on_batch, keepdim=keepdim, generator=generator)
        self.strength = _check_range("strength", strength, 0.0, 2.0)

    def sample(self, batch_size: int) -> dict[str, Tensor]:
        g = self.generator
        cam_a = camera_rgb_matrix(random_xyz_to_camera(batch_size, generator=g, dtype=torch.float64))
        cam_b = camera_rgb_matrix(random_xyz_to_camera(batch_size, generator=g, dtype=torch.float64))
        swap = inverse_3x3(cam_a) @ cam_b
        s = _uniform(batch_size, self.strength, g).double()[:, None, None]
        eye = torch.eye(3, dtype=torch.float64)
        return {"matrix": (eye + s * (swap - eye)).float()}

    def apply_linear(self, image: Tensor, params: dict[str, Tensor]) -> Tensor:
        return apply_color_matrix(image, self._get(params, "matrix", image))

    def color_transform(self, params: dict[str, Tensor]) -> Tensor:
        return params["matrix"].float()


# ================================================================================================ sensor
class RandomExposure(_ISPAugmentation):
    """Change exposure by ``ev`` stops (linear scaling ``2 ** ev``, then sensor saturation at 1).

    Args:
        ev: range of the exposure change in stops.
        domain: colour domain of the images.
        p: probability to apply per image.
        same_on_batch: one draw for the whole batch.
        keepdim: keep a ``(C, H, W)`` input's rank.
        generator: random generator for all draws.
    """

    def __init__(
        self,
        ev: Range = (-1.0, 0.5),
        domain: Domain = "linear",
        p: float = 1.0,
        same_on_batch: bool = False,
        keepdim: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(domain=domain, p=p, same_on_batch=same_on_batch, keepdim=keepdim, generator=generator)
        self.ev = _check_range("ev", ev, -10.0, 10.0)

    def sample(self, batch_size: int) -> dict[str, Tensor]:
        return {"ev": _uniform(batch_size, self.ev, self.generator)}

    def apply_linear(self, image: Tensor, params: dict[str, Tensor]) -> Tensor:
        return image * torch.exp2(self._get(params, "ev", image))[:, None, None, None]

    def color_transform(self, params: dict[str, Tensor]) -> Tensor:
        return torch.exp2(params["ev"].float())[:, None, None] * torch.eye(3)


class RandomSensorNoise(_ISPAugmentation):
    """Heteroscedastic shot + read noise with the log-linear level relation of Brooks et al. (CVPR 2019).

    Args:
        shot: range of the shot-noise factor (log-uniform); the read noise follows from it
            (:func:`~moto_vision.isp.random_noise_levels`).
        domain: colour domain of the images (noise is always added in linear light).
        p: probability to apply per image.
        same_on_batch: one draw of the noise levels for the whole batch (the noise field differs per image).
        keepdim: keep a ``(C, H, W)`` input's rank.
        generator: random generator for all draws.
    """

    def __init__(
        self,
        shot: Range = (1e-4, 1.2e-2),
        domain: Domain = "linear",
        p: float = 1.0,
        same_on_batch: bool = False,
        keepdim: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(domain=domain, p=p, same_on_batch=same_on_batch, keepdim=keepdim, generator=generator)
        self.shot = _check_range("shot", shot, 1e-8, 1.0)

    def sample(self, batch_size: int) -> dict[str, Tensor]:
        shot, read = random_noise_levels(batch_size, shot_range=self.shot, generator=self.generator)
        return {"shot": shot, "read": read, "seed": self._seed(batch_size)}

    def apply_linear(self, image: Tensor, params: dict[str, Tensor]) -> Tensor:
        noise = _normal_like(image, params["seed"])
        return add_sensor_noise(image, self._get(params, "shot", image), self._get(params, "read", image), noise=noise)


#: Batches of more images than this share one Gaussian field of this many images' length (see ``_normal_like``).
NOISE_FIELD_IMAGES = 4


def _normal_like(image: Tensor, seed: Tensor) -> Tensor:
    """Standard-normal noise of ``image``'s shape ``(B, ...)``, reproducible from ``seed[0]``.

    Drawing normals is the most expensive step of the augmentation on the CPU (a single-threaded ``randn``:
    18 ms of the ~90 ms that ``CameraPipeline`` spends on 26 x 3 x 256 x 256), so a batch of more than
    :data:`NOISE_FIELD_IMAGES` images draws one field only that many images long and gives each image a window
    of it, the windows starting a random stride apart (a strided view: no copy). Every image's noise is still
    independent standard-normal pixel to pixel and channel to channel; images of the same batch get shifted,
    overlapping stretches of the field, a correlation between images that no per-image model can use.
    """
    gen = torch.Generator(device=image.device).manual_seed(int(seed.reshape(-1)[0]))
    b = image.shape[0]
    if b <= NOISE_FIELD_IMAGES:
        return torch.randn(image.shape, generator=gen, device=image.device, dtype=image.dtype)
    n = image[0].numel()
    # Windows i * stride ... i * stride + n, stride in [3/4, 1] of the largest that keeps the field short.
    widest = (NOISE_FIELD_IMAGES - 1) * n // (b - 1)
    shorten = torch.randint(0, max(1, widest // 4), (1,), generator=gen, device=image.device)
    stride = max(1, widest - int(shorten))
    field = torch.randn(n + (b - 1) * stride, generator=gen, device=image.device, dtype=image.dtype)
    return field.as_strided((b, n), (stride, 1)).view(image.shape)


# ================================================================================================ optics
def _sample_corners(batch_size: int, corner: Range, color_shading: float, generator: torch.Generator | None) -> Tensor:
    """Per-channel corner illumination: green from ``corner``, red and blue within ``color_shading`` of it."""
    green = _uniform(batch_size, corner, generator)
    offsets = color_shading * (2.0 * torch.rand(batch_size, 2, generator=generator) - 1.0)
    red, blue = green * (1.0 + offsets[:, 0]), green * (1.0 + offsets[:, 1])
    return torch.stack([red, green, blue], dim=1).clamp(0.05, 1.0)


class RandomLensShading(_ISPAugmentation):
    """Radial vignetting per channel (cos^4-law fall-off; see :func:`~moto_vision.isp.lens_shading_map`).

    Args:
        corner: range of the green corner illumination relative to the centre.
        color_shading: red and blue corners differ from green by up to this fraction (colour shading).
        domain: colour domain of the images.
        p: probability to apply per image.
        same_on_batch: one draw for the whole batch.
        keepdim: keep a ``(C, H, W)`` input's rank.
        generator: random generator for all draws.
    """

    def __init__(
        self,
        corner: Range = (0.4, 1.0),
        color_shading: float = 0.1,
        domain: Domain = "linear",
        p: float = 1.0,
        same_on_batch: bool = False,
        keepdim: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(domain=domain, p=p, same_on_batch=same_on_batch, keepdim=keepdim, generator=generator)
        self.corner = _check_range("corner", corner, 0.05, 1.0)
        self.color_shading = float(color_shading)

    def sample(self, batch_size: int) -> dict[str, Tensor]:
        return {"corner": _sample_corners(batch_size, self.corner, self.color_shading, self.generator)}

    def apply_linear(self, image: Tensor, params: dict[str, Tensor]) -> Tensor:
        h, w = image.shape[-2:]
        return image * lens_shading_map(params["corner"], h, w, device=image.device, dtype=image.dtype)


class RandomChromaticAberration(_ISPAugmentation):
    """Lateral chromatic aberration: red and blue magnified by a relative ``scale`` each (colour fringes).

    A pure resampling, so it works the same in either colour domain and never moves green (masks stay aligned).

    Args:
        scale: range of the relative magnification of red and of blue versus green (each drawn independently).
        p: probability to apply per image.
        same_on_batch: one draw for the whole batch.
        keepdim: keep a ``(C, H, W)`` input's rank.
        generator: random generator for all draws.
    """

    def __init__(
        self,
        scale: Range = (-0.004, 0.004),
        p: float = 1.0,
        same_on_batch: bool = False,
        keepdim: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(domain="linear", p=p, same_on_batch=same_on_batch, keepdim=keepdim, generator=generator)
        self.scale = _check_range("scale", scale, -0.1, 0.1)

    def sample(self, batch_size: int) -> dict[str, Tensor]:
        lo, hi = self.scale
        return {"scale": lo + (hi - lo) * torch.rand(batch_size, 2, generator=self.generator)}

    def apply_linear(self, image: Tensor, params: dict[str, Tensor]) -> Tensor:
        return chromatic_aberration(image, params["scale"])


# ================================================================================================ whole camera
class CameraPipeline(_ISPAugmentation):
    """sRGB -> simulated phone capture -> sRGB: the camera-robustness augmentation for sRGB tasks.

    Per image: unprocess to a random camera's raw under a random light (Brooks et al. 2019), change exposure,
    vignette, add shot + read noise, clip at saturation, optionally mosaic + demosaic and chromatic aberration;
    then an imperfect ISP develops it again: lens-shading correction that leaves a residual, white balance from an
    estimate of the light with a small error, a colour matrix partly from another camera, sRGB gamma, tone curve,
    and optionally JPEG. Inputs and outputs are sRGB; all matrices and gains are folded into one 3x3 per image
    on each side of the sensor, so the cost is a few passes over the batch.

    Args:
        cct: light colour temperature range in kelvin.
        tint: light Duv range.
        ev: exposure change range in stops.
        shot: shot-noise factor range (read noise follows, Brooks et al.); ``None`` disables noise.
        corner: range of the lens's corner illumination (green); ``None`` disables vignetting.
        color_shading: red / blue corner illumination differs from green by up to this fraction.
        shading_residual: range of the fraction of the fall-off the ISP leaves uncorrected (0 = perfect LSC).
        awb_error: standard deviation of the white-balance estimate's log-gain error on red and blue
            (0.05 leaves residual casts of about 1.5 degrees on average).
        ccm_error: range of the weight of another camera's colour matrix in the one used (0 = exact).
        aberration: maximum relative magnification difference of red / blue (0 disables).
        demosaic: simulate the Bayer mosaic and bilinear demosaicking (costly: about 10x the rest).
        jpeg_quality: JPEG quality range, or ``None`` for no JPEG (costly).
        p: probability to apply per image.
        same_on_batch: one draw for the whole batch.
        keepdim: keep a ``(C, H, W)`` input's rank.
        generator: random generator for all draws.
    """

    def __init__(
        self,
        cct: Range = (2500.0, 10000.0),
        tint: Range = (-0.006, 0.012),
        ev: Range = (-1.0, 0.5),
        shot: Range | None = (1e-4, 1.2e-2),
        corner: Range | None = (0.4, 1.0),
        color_shading: float = 0.1,
        shading_residual: Range = (0.0, 0.5),
        awb_error: float = 0.05,
        ccm_error: Range = (0.0, 0.5),
        aberration: float = 0.0,
        demosaic: bool = False,
        jpeg_quality: Range | None = None,
        p: float = 1.0,
        same_on_batch: bool = False,
        keepdim: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(domain="srgb", p=p, same_on_batch=same_on_batch, keepdim=keepdim, generator=generator)
        self.cct = _check_range("cct", cct, 1667.0, 25000.0)
        self.tint = _check_range("tint", tint, -0.05, 0.05)
        self.ev = _check_range("ev", ev, -10.0, 10.0)
        self.shot = None if shot is None else _check_range("shot", shot, 1e-8, 1.0)
        self.corner = None if corner is None else _check_range("corner", corner, 0.05, 1.0)
        self.color_shading = float(color_shading)
        self.shading_residual = _check_range("shading_residual", shading_residual, 0.0, 1.0)
        self.awb_error = float(awb_error)
        self.ccm_error = _check_range("ccm_error", ccm_error, 0.0, 1.0)
        self.aberration = float(aberration)
        self.demosaic = bool(demosaic)
        self.jpeg_quality = None if jpeg_quality is None else _check_range("jpeg_quality", jpeg_quality, 1.0, 100.0)

    def sample(self, batch_size: int) -> dict[str, Tensor]:
        g = self.generator
        params = sample_camera_params(batch_size, cct_range=self.cct, tint_range=self.tint, generator=g)
        params["ev"] = _uniform(batch_size, self.ev, g)
        if self.shot is not None:
            params["shot"], params["read"] = random_noise_levels(batch_size, shot_range=self.shot, generator=g)
            params["seed"] = self._seed(batch_size)
        if self.corner is not None:
            params["corner"] = _sample_corners(batch_size, self.corner, self.color_shading, g)
            params["shading_residual"] = _uniform(batch_size, self.shading_residual, g)
        # White balance from an estimate of the light: log-normal error on red and blue, none on green.
        error = self.awb_error * torch.randn(batch_size, 3, generator=g)
        error[:, 1] = 0.0
        params["wb_gains"] = params["gains"] * params["digital_gain"][:, None] * torch.exp(-error)
        other = camera_rgb_matrix(random_xyz_to_camera(batch_size, generator=g, dtype=torch.float64))
        weight = _uniform(batch_size, self.ccm_error, g)[:, None, None]
        params["isp_ccm"] = (1.0 - weight) * params["ccm"] + weight * inverse_3x3(other).float()
        if self.aberration > 0:
            params["aberration"] = self.aberration * (2.0 * torch.rand(batch_size, 2, generator=g) - 1.0)
        if self.jpeg_quality is not None:
            params["jpeg_quality"] = _uniform(batch_size, self.jpeg_quality, g)
        return params

    def apply_transform(
        self, input: Tensor, params: dict[str, Tensor], flags: dict[str, Any], transform: Tensor | None = None
    ) -> Tensor:
        if input.shape[1] != 3:
            raise ValueError(f"CameraPipeline expects RGB images (B, 3, H, W), got {tuple(input.shape)}")
        b = input.shape[0]
        p = {k: v for k, v in params.items() if isinstance(v, Tensor) and v.ndim and v.shape[0] == b}
        gate = params.get("batch_prob")
        if gate is None or (self.p >= 1.0 and self.p_batch >= 1.0) or bool((gate > 0.5).all()):
            return self._develop(input, p)
        # Develop only the images the p gate selected (kornia blends the rest back from the input anyway).
        # Rows are gathered with advanced indexing and put back into a copy with ``index_put_``: on the CPU these
        # are plain copies, while ``index_select`` / ``index_copy`` / ``cat`` of many rows are far slower.
        index = (gate > 0.5).reshape(-1).nonzero().squeeze(1).cpu()
        if index.numel() == 0:
            return input
        developed = self._develop(input[index.to(input.device)], {k: v[index.to(v.device)] for k, v in p.items()})
        out = input.clone()
        out[index.to(input.device)] = developed
        return out

    def _develop(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        h, w = x.shape[-2:]
        p = {k: v.to(x.device) for k, v in params.items()}
        # Scene -> raw in one matrix: sRGB -> camera, inverse white balance (the light's colour), exposure.
        inverse_gains = torch.exp2(p["ev"])[:, None] / (p["gains"] * p["digital_gain"][:, None])
        raw = _scene_to_raw(x, inverse_gains[:, :, None] * p["rgb2cam"], p.get("corner"))
        if "aberration" in p:
            raw = chromatic_aberration(raw, p["aberration"])
        if "shot" in p:
            noise = _normal_like(raw, p["seed"])
            raw = _expose(raw, noise, p["shot"].to(raw.dtype), p["read"].to(raw.dtype))
        else:
            raw = raw.clamp_(0.0, 1.0)  # saturation of the sensor / ADC range
        if self.demosaic and h % 2 == 0 and w % 2 == 0:
            raw = demosaic(mosaic(raw))
        # ISP: white balance and lens-shading correction folded into one gain map. The correction is calibrated
        # for a milder fall-off (corner ** (1 - residual)), so part of the vignetting stays in the picture.
        calibrated = p["corner"] ** (1.0 - p["shading_residual"][:, None]) if "corner" in p else None
        srgb = _develop_raw(raw, p["wb_gains"], calibrated, p["isp_ccm"])
        if "jpeg_quality" in p:
            srgb = jpeg(srgb, p["jpeg_quality"].to(srgb.dtype))
        return srgb


# The elementwise chains of CameraPipeline, each one fused loop when torch.compile is available (isp.fusion).
@fused
def _scene_to_raw(x: Tensor, matrix: Tensor, corner: Tensor | None) -> Tensor:
    """Decode sRGB to linear (inverse tone curve and gamma), map to camera raw (one 3x3 per image), vignette."""
    raw = apply_color_matrix(srgb_to_linear(inverse_tone_curve(x)), matrix)
    if corner is None:
        return raw
    # Divide by (1 + k r^2)^2 rather than building its reciprocal (one pass less when not fused).
    return raw.div_(lens_shading_map(corner, x.shape[-2], x.shape[-1], inverse=True, device=x.device, dtype=raw.dtype))


@fused
def _expose(raw: Tensor, noise: Tensor, shot: Tensor, read: Tensor) -> Tensor:
    """Shot + read noise, then the sensor's saturation at 1."""
    return add_sensor_noise(raw, shot, read, noise=noise).clamp_(0.0, 1.0)


@fused
def _develop_raw(raw: Tensor, wb_gains: Tensor, corner: Tensor | None, ccm: Tensor) -> Tensor:
    """The ISP: white balance and lens-shading correction (one gain map), colour matrix, sRGB gamma, tone curve."""
    if corner is None:
        gains = wb_gains[:, :, None, None].to(raw.dtype)
    else:
        h, w = raw.shape[-2:]
        gains = lens_shading_map(corner, h, w, inverse=True, gain=wb_gains, device=raw.device, dtype=raw.dtype)
    balanced = (raw * gains).clamp_(0.0, 1.0)
    # The sRGB curve maps [0, 1] onto [0, 1], so the tone curve needs no second clip.
    return _smoothstep(linear_to_srgb(apply_color_matrix(balanced, ccm).clamp_(0.0, 1.0)))


# ================================================================================================ AWB labels
def applied_color_transform(module: nn.Module, batch_size: int | None = None) -> Tensor | None:
    """The per-image 3x3 colour map that the last call of ``module`` applied, for updating AWB labels.

    Walks ``module`` (one augmentation or a kornia ``AugmentationSequential`` / ``ImageSequential`` applied in
    order, as :func:`~moto_vision.isp.isp_preset` builds) and multiplies, in application order, the colour maps
    of its colour-linear augmentations (:class:`RandomIlluminant`, :class:`RandomColorMatrix`,
    :class:`RandomExposure`); images the ``p`` gate skipped get the identity. Noise, vignetting (without colour
    shading) and chromatic aberration leave the global light colour unchanged and are ignored.

    Args:
        module: the augmentation that was just called.
        batch_size: batch size for the identity result when nothing colour-linear ran.

    Returns:
        ``(B, 3, 3)`` float32 (on the CPU), or ``None`` if nothing colour-linear ran and ``batch_size`` is ``None``.
    """
    total: Tensor | None = None
    for m in module.modules():
        if not isinstance(m, _ISPAugmentation) or not m._params:
            continue
        matrix = m.color_transform(m._params)
        if matrix is None:
            continue
        matrix = matrix.detach().float().cpu()
        gate = m._params.get("batch_prob")
        if gate is not None and not (m.p >= 1.0 and m.p_batch >= 1.0):
            keep = (gate.detach().cpu().reshape(-1) > 0.5).view(-1, 1, 1)
            matrix = torch.where(keep, matrix, torch.eye(3))
        total = matrix if total is None else matrix @ total
    if total is None and batch_size is not None:
        total = torch.eye(3).expand(batch_size, 3, 3).clone()
    return total


def apply_with_illuminant(module: nn.Module, image: Tensor, illuminant: Tensor) -> tuple[Tensor, Tensor]:
    """Augment linear-RGB AWB images and update their ground-truth illuminants consistently.

    The one documented way to keep AWB labels right under augmentation: the new label of each image is its old
    label mapped by the colour transform the augmentation applied (gains for :class:`RandomIlluminant`),
    renormalised (:func:`~moto_vision.isp.update_illuminant`). A uniform grey image therefore has exactly the
    new label as its colour.

    Args:
        module: an augmentation built for ``domain="linear"`` (e.g. ``isp_preset("default", domain="linear")``).
        image: ``(B, 3, H, W)`` linear camera RGB.
        illuminant: ``(B, 3)`` ground-truth illuminants.

    Returns:
        ``(augmented image, updated unit-norm illuminant)``.
    """
    out = module(image)
    transform = applied_color_transform(module, batch_size=image.shape[0])
    return out, update_illuminant(illuminant, transform.to(device=illuminant.device))
