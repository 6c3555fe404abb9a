"""Auto white balance building blocks: illuminant heads, the angular loss and classical baselines.

Every estimator here maps linear camera RGB ``(B, 3, H, W)`` in ``[0, 1]`` to a unit-norm illuminant
``(B, 3)``. The image is corrected by the green-preserving von Kries rule
``x / illuminant * illuminant[:, 1:2]`` (:func:`apply_white_balance`).

Learned heads (on top of a backbone's feature map):

- :class:`ConfidencePoolingHead`: FC4 (Hu, Wang & Lin, CVPR 2017). Every location predicts an RGB
  estimate and a confidence; the image estimate is the confidence-weighted sum, so the network learns
  which regions (neutral surfaces, specular highlights) carry illuminant information.
- :class:`PoolingMLPHead`: global average + max pooling followed by an MLP.
- :class:`CameraPriorHead`: an optional refinement from the camera's description (its raw-space Planckian locus).

Classical, parameter-free baselines with the same ``forward``: :class:`GrayWorld` (Buchsbaum 1980),
:class:`WhitePatch` (percentile max-RGB), :class:`ShadesOfGray` (Finlayson & Trezzi 2004) and
:class:`GrayEdge` (van de Weijer, Gevers & Gijsenij 2007).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d, spatial_gradient
from torch import Tensor, nn

__all__ = [
    "BASELINES",
    "AngularLoss",
    "CameraPriorHead",
    "ConfidencePoolingHead",
    "ExposureNormalize",
    "GrayEdge",
    "GrayWorld",
    "PoolingMLPHead",
    "ShadesOfGray",
    "WhitePatch",
    "apply_white_balance",
    "channel_reference",
    "create_baseline",
    "safe_angle",
]

_EPS = 1e-6


def apply_white_balance(image: Tensor, illuminant: Tensor) -> Tensor:
    """Correct linear RGB ``(B, 3, H, W)`` for ``illuminant`` ``(B, 3)`` keeping green fixed (von Kries).

    The result is not clipped: callers that display it clip or tone-map it.
    """
    illuminant = illuminant.clamp_min(_EPS)
    gains = illuminant[:, 1:2] / illuminant
    return image * gains[:, :, None, None]


# --------------------------------------------------------------------------------------------- loss
def safe_angle(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """Angle in degrees between rows of ``a`` and ``b`` with finite gradients everywhere.

    ``arccos`` has an infinite derivative at 1, i.e. exactly when the prediction is right, so a naive
    loss produces NaN gradients on perfect predictions. ``atan2(sqrt(|a x b|^2 + eps^2), a . b)`` is
    smooth there (its minimum is ``atan(eps)``, about ``6e-6`` degrees for the default ``eps``).
    """
    cross = torch.linalg.cross(a, b, dim=-1)
    sin = torch.sqrt(cross.pow(2).sum(dim=-1) + eps**2)
    cos = (a * b).sum(dim=-1)
    return torch.rad2deg(torch.atan2(sin, cos))


class AngularLoss(nn.Module):
    """Recovery angular error in degrees (mean over the batch), optionally plus the reproduction error.

    Args:
        reproduction_weight: weight of the reproduction angular error (Finlayson & Zakizadeh 2014), the
            angle between ``target / estimate`` and white; ``0`` trains on the recovery error alone.
    """

    def __init__(self, reproduction_weight: float = 0.0) -> None:
        super().__init__()
        self.reproduction_weight = float(reproduction_weight)

    def forward(self, estimate: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Return ``{"loss", "recovery", "reproduction"?}`` for estimates and targets ``(B, 3)``."""
        recovery = safe_angle(estimate, target).mean()
        terms = {"loss": recovery, "recovery": recovery}
        if self.reproduction_weight > 0:
            w = target / estimate.clamp_min(_EPS)
            reproduction = safe_angle(w, torch.ones_like(w)).mean()
            terms["reproduction"] = reproduction
            terms["loss"] = recovery + self.reproduction_weight * reproduction
        return terms


# --------------------------------------------------------------------------------------------- heads
class ExposureNormalize(nn.Module):
    """Divide each image by its mean brightness (all channels together), optionally in log space.

    Exposure carries no information about the illuminant colour, so removing it inside the model makes
    estimates invariant to it. A per-channel mean would be wrong here: the channel imbalance is the signal.
    With ``log=True`` the network sees ``log(x / mean + eps)``: a light then shifts each channel by a constant,
    and channel ratios (chromaticities, what colour-constancy methods reason about) are differences.

    Args:
        log: feed log intensities instead of linear ones.
        eps: floor inside the log (zeroed, masked pixels map to ``log(eps)``).
    """

    def __init__(self, log: bool = False, eps: float = 1e-2) -> None:
        super().__init__()
        self.log = log
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        x = x / (x.mean(dim=(1, 2, 3), keepdim=True) + 1e-6)
        if self.log:
            return torch.log(x + self.eps) * 0.5
        return x - 1.0


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def _block_mean(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``adaptive_avg_pool2d(x, size)``, as a reshape and mean when the size divides the input.

    Same values; exported graphs run it as one ReduceMean instead of a large-kernel AveragePool, which ONNX Runtime
    executes slowly (0.6 ms of a 3.4 ms graph for a 256 x 256 image pooled to 16 x 16, measured).
    """
    (h, w), (gh, gw) = x.shape[-2:], size
    if h % gh or w % gw:
        return F.adaptive_avg_pool2d(x, size)
    return x.reshape(*x.shape[:-2], gh, h // gh, gw, w // gw).mean(dim=(-3, -1))


class ConfidencePoolingHead(nn.Module):
    """FC4 confidence-weighted pooling (Hu, Wang & Lin, CVPR 2017).

    A small conv block predicts, at every location of the feature map, an RGB illuminant estimate and a
    confidence; the image estimate is ``sum_i softmax(c)_i * unit(rgb_i)``, normalised to unit length, so the
    network learns which regions (neutral surfaces, specular highlights) carry illuminant information.

    Changes from the paper, to train quickly from scratch on small images:

    - the confidence is a softmax over locations (FC4: ReLU outputs with the norm as confidence), and
      locations with no valid pixel (masked charts, clipped highlights) get none;
    - with ``local_colour=True`` (the default) the local estimate is the colour of the image under that
      location times a predicted per-channel gain ``exp(g)``. Gray-pixel and white-patch reasoning ("this
      region is neutral": ``g = 0`` and high confidence) is then the easy case instead of something the
      network must synthesise; ``local_colour=False`` predicts the RGB directly (softplus) as FC4 does.
    - ``global_context=True`` appends the image-wide average of the features at every location, so a region's
      confidence can depend on the rest of the scene (is it the brightest? the only neutral-looking one?);
    - ``grid`` (optional) average-pools the feature map to at most ``grid x grid`` votes first. The head then
      costs the same at any input size and sees the same vote layout as in training: a model trained on 64 px
      images (16 x 16 votes at stride 4) and deployed at 256 px still votes on 16 x 16 regions, instead of on
      64 x 64 four-times-smaller ones at 16 times the cost.

    Args:
        in_channels: channels of the input feature map.
        hidden: channels of the hidden conv layer.
        dropout: dropout before the last conv (FC4 uses 0.5 on its much larger head).
        local_colour: estimate gains relative to the local image colour (needs the image in ``forward``).
        global_context: give every location the global average of the features too.
        grid: pool the feature map to at most ``grid x grid`` locations before voting (``None``: every location).
    """

    def __init__(
        self,
        in_channels: int,
        hidden: int = 64,
        dropout: float = 0.0,
        local_colour: bool = True,
        global_context: bool = True,
        grid: int | None = None,
    ) -> None:
        super().__init__()
        if grid is not None and grid < 1:
            raise ValueError(f"ConfidencePoolingHead: grid must be a positive number of votes per side, got {grid}.")
        self.local_colour = local_colour
        self.global_context = global_context
        self.grid = grid
        width = 2 * in_channels if global_context else in_channels
        self.body = nn.Sequential(
            nn.Conv2d(width, hidden, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
            nn.Conv2d(hidden, 4, kernel_size=1),
        )
        if local_colour:
            # Start from "every location is grey" (gains 1): the untrained head is a Gray World on the feature grid.
            nn.init.zeros_(self.body[-1].weight)
            nn.init.zeros_(self.body[-1].bias)

    def local_estimates(self, features: Tensor, image: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Per-location unit RGB estimates ``(B, 3, h, w)`` and confidence weights ``(B, 1, h, w)`` summing to 1.

        Args:
            features: ``(B, C, h, w)`` feature map.
            image: the linear input image ``(B, 3, H, W)``; required when ``local_colour`` is set.
        """
        if self.grid is not None and (features.shape[-2] > self.grid or features.shape[-1] > self.grid):
            size = (min(self.grid, features.shape[-2]), min(self.grid, features.shape[-1]))
            features = _block_mean(features, size)
        if self.global_context:
            features = torch.cat([features, features.mean(dim=(2, 3), keepdim=True).expand_as(features)], dim=1)
        out = self.body(features)
        logits = out[:, 3:4]
        if self.local_colour:
            if image is None:
                raise ValueError("ConfidencePoolingHead(local_colour=True) needs the input image in forward().")
            local = _block_mean(image, tuple(out.shape[-2:]))
            brightness = local.sum(dim=1, keepdim=True)
            rgb = local / brightness.clamp_min(1e-8) * torch.exp(out[:, :3].clamp(-4.0, 4.0)) + _EPS
            # No valid pixel under a location (zeroed chart or clipped area): it cannot vote.
            logits = logits.masked_fill(brightness <= 1e-6, -1e4)
        else:
            rgb = F.softplus(out[:, :3]) + _EPS
        rgb = rgb / rgb.norm(dim=1, keepdim=True)
        weights = torch.softmax(logits.flatten(2), dim=-1).view_as(logits)
        return rgb, weights

    def forward(self, features: Tensor, image: Tensor | None = None) -> Tensor:
        """Unit-norm illuminant ``(B, 3)`` from a feature map ``(B, C, h, w)`` (and the image, see above)."""
        rgb, weights = self.local_estimates(features, image)
        return _unit((rgb * weights).sum(dim=(2, 3)))


class PoolingMLPHead(nn.Module):
    """Global average and max pooling, then an MLP to a positive unit-norm RGB illuminant.

    Args:
        in_channels: channels of the input feature map.
        hidden: width of the hidden layer.
        dropout: dropout before the output layer.
    """

    def __init__(self, in_channels: int, hidden: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(2 * in_channels, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(hidden, 3),
        )

    def forward(self, features: Tensor, image: Tensor | None = None) -> Tensor:
        """Unit-norm illuminant ``(B, 3)`` from a feature map ``(B, C, h, w)`` (``image`` is not used)."""
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        return _unit(F.softplus(self.mlp(pooled)) + _EPS)


def channel_reference(x: Tensor) -> Tensor:
    """Per-channel mean of the valid (not all-zero) pixels, scaled to unit mean over channels: ``(B, 3)``.

    Dividing an image by it (a Gray World normalisation) removes any per-channel gain, i.e. the camera's raw-space
    scale and most of the light's colour; multiplying an estimate made on the normalised image back by it makes
    the estimate exactly equivariant to those gains (see ``AWBRegressor(gain_equivariant=True)``).
    """
    valid = (x.amax(dim=1, keepdim=True) > 0).to(x.dtype)
    mean = (x * valid).sum(dim=(2, 3)) / valid.sum(dim=(2, 3)).clamp_min(1.0)
    mean = mean.clamp_min(_EPS)
    return mean / mean.mean(dim=1, keepdim=True)


class CameraPriorHead(nn.Module):
    """Refine an illuminant estimate with the camera's description: its Planckian locus in raw space.

    In the spirit of C5 / CCMNet (Afifi et al. ICCV 2021; Kim et al. ICCV 2025), which describe a camera by where
    the lights of the Planckian locus fall in its raw space (computed from its colour matrix, as DNG metadata
    gives it). The locus points ``camera @ XYZ(T)`` for ``T`` in ``ccts`` are taken in log chromaticity relative to
    the estimate, with image-level features, and a small MLP predicts a log-gain correction of the estimate
    (zero-initialised: the untrained head passes the estimate through). Everything is relative, so the result
    stays equivariant to per-channel gains applied to the image and the camera together.

    Args:
        features: channels of the pooled image features.
        hidden: width of the MLP.
        ccts: colour temperatures (kelvin) of the locus points.
    """

    def __init__(
        self,
        features: int,
        hidden: int = 32,
        ccts: tuple[float, ...] = (2000.0, 2500.0, 3000.0, 3500.0, 4000.0, 5000.0, 6500.0, 8000.0, 10000.0, 15000.0),
    ) -> None:
        super().__init__()
        from moto_vision.isp.color import planckian_xyz

        self.register_buffer(
            "locus_xyz", planckian_xyz(torch.tensor(ccts, dtype=torch.float64)).float(), persistent=False
        )
        self.mlp = nn.Sequential(
            nn.Linear(3 * len(ccts) + features, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 3),
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, estimate: Tensor, camera: Tensor, pooled: Tensor, reference: Tensor | None = None) -> Tensor:
        """Refined unit-norm estimate ``(B, 3)``.

        Args:
            estimate: ``(B, 3)`` positive estimate (in the space of ``image / reference`` when ``reference`` is set).
            camera: ``(B, 3, 3)`` XYZ -> raw matrices of the cameras that took the images.
            pooled: ``(B, C)`` image-level features.
            reference: ``(B, 3)`` per-channel normalisation the estimate is relative to (``None``: none).
        """
        locus = torch.einsum("bij,kj->bki", camera.to(estimate.dtype), self.locus_xyz.to(estimate.dtype))
        locus = locus.abs().clamp_min(1e-6)  # a camera's raw values of real lights are positive
        if reference is not None:
            locus = locus / reference[:, None, :]
        relative = torch.log(locus) - torch.log(estimate.clamp_min(_EPS))[:, None, :]
        relative = relative - relative.mean(dim=-1, keepdim=True)  # brightness carries nothing
        delta = self.mlp(torch.cat([relative.flatten(1), pooled], dim=1)).clamp(-3.0, 3.0)
        delta = delta - delta.mean(dim=-1, keepdim=True)
        return _unit(estimate * torch.exp(delta))


# --------------------------------------------------------------------------------------------- baselines
class _StatisticsBaseline(nn.Module):
    """Shared pixel selection of the classical estimators.

    Pixels with any channel at or above ``saturation`` (clipped, so their colour is wrong) and pixels
    darker than ``dark`` (masked regions are zeroed by the datasets; deep shadows are mostly noise) are
    ignored, as in the reference implementations.

    Args:
        saturation: clipped-pixel threshold on the max channel, in the ``[0, 1]`` image scale.
        dark: pixels whose max channel is at or below this are ignored.
    """

    def __init__(self, saturation: float = 0.98, dark: float = 1e-3) -> None:
        super().__init__()
        self.saturation = float(saturation)
        self.dark = float(dark)

    def valid_mask(self, x: Tensor) -> Tensor:
        """``(B, 1, H, W)`` bool mask of the pixels the estimator uses."""
        peak = x.amax(dim=1, keepdim=True)
        valid = (peak < self.saturation) & (peak > self.dark)
        # An image with no usable pixel falls back to all of its pixels rather than to NaN.
        empty = ~valid.flatten(1).any(dim=1)
        return valid | empty[:, None, None, None]

    def extra_repr(self) -> str:
        return f"saturation={self.saturation}, dark={self.dark}"


class ShadesOfGray(_StatisticsBaseline):
    """Shades of Gray (Finlayson & Trezzi 2004): the Minkowski ``p``-norm of each channel.

    ``p = 1`` is Gray World, ``p -> inf`` is White Patch (max-RGB); ``p = 6`` is the usual setting.

    Args:
        p: Minkowski norm.
        saturation: see :class:`_StatisticsBaseline`.
        dark: see :class:`_StatisticsBaseline`.
    """

    def __init__(self, p: float = 6.0, saturation: float = 0.98, dark: float = 1e-3) -> None:
        super().__init__(saturation, dark)
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        """Unit-norm illuminant ``(B, 3)`` of linear RGB ``(B, 3, H, W)``."""
        valid = self.valid_mask(x).to(x.dtype)
        # Normalise by the per-image maximum first so that x ** p cannot underflow for large p.
        scale = (x * valid).amax(dim=(1, 2, 3), keepdim=True).clamp_min(_EPS)
        powered = (x / scale).clamp_min(0).pow(self.p) * valid
        norm = (powered.sum(dim=(2, 3)) / valid.sum(dim=(2, 3)).clamp_min(1)).pow(1.0 / self.p)
        return _unit(norm + _EPS)


class GrayWorld(ShadesOfGray):
    """Gray World (Buchsbaum 1980): the scene average is assumed achromatic, so its colour is the illuminant."""

    def __init__(self, saturation: float = 0.98, dark: float = 1e-3) -> None:
        super().__init__(p=1.0, saturation=saturation, dark=dark)


class WhitePatch(_StatisticsBaseline):
    """White Patch / max-RGB (Land 1977) with a percentile instead of the max, which a single hot pixel ruins.

    Args:
        percentile: per-channel percentile of the valid pixels taken as the illuminant (``100`` = max).
        saturation: see :class:`_StatisticsBaseline`.
        dark: see :class:`_StatisticsBaseline`.
    """

    def __init__(self, percentile: float = 99.0, saturation: float = 0.98, dark: float = 1e-3) -> None:
        super().__init__(saturation, dark)
        if not 0 < percentile <= 100:
            raise ValueError(f"WhitePatch: percentile must be in (0, 100], got {percentile}.")
        self.percentile = float(percentile)

    def forward(self, x: Tensor) -> Tensor:
        """Unit-norm illuminant ``(B, 3)`` of linear RGB ``(B, 3, H, W)``."""
        valid = self.valid_mask(x).expand_as(x)
        values = torch.where(valid, x, torch.full_like(x, float("nan"))).flatten(2).float()
        estimate = torch.nanquantile(values, self.percentile / 100.0, dim=-1).to(x.dtype)
        return _unit(estimate.clamp_min(0) + _EPS)


class GrayEdge(_StatisticsBaseline):
    """Gray Edge (van de Weijer, Gevers & Gijsenij 2007): the average edge is achromatic.

    The image is smoothed with a Gaussian of ``sigma`` pixels, differentiated (``order`` 1: gradient
    magnitude; 2: ``sqrt(fxx^2 + 4 fxy^2 + fyy^2)``), and the illuminant is the Minkowski ``p``-norm of the
    per-channel derivative magnitudes. Pixels next to clipped or masked ones are ignored, because the
    mask boundary itself is an edge of the wrong colour.

    Args:
        order: derivative order, 1 or 2.
        p: Minkowski norm.
        sigma: Gaussian smoothing in pixels (0 disables it).
        saturation: see :class:`_StatisticsBaseline`.
        dark: see :class:`_StatisticsBaseline`.
    """

    def __init__(
        self, order: Literal[1, 2] = 1, p: float = 6.0, sigma: float = 1.0, saturation: float = 0.98, dark: float = 1e-3
    ) -> None:
        super().__init__(saturation, dark)
        if order not in (1, 2):
            raise ValueError(f"GrayEdge: order must be 1 or 2, got {order}.")
        self.order, self.p, self.sigma = int(order), float(p), float(sigma)

    def forward(self, x: Tensor) -> Tensor:
        """Unit-norm illuminant ``(B, 3)`` of linear RGB ``(B, 3, H, W)``."""
        valid = self.valid_mask(x)
        x = x * valid
        if self.sigma > 0:
            k = 2 * int(round(3 * self.sigma)) + 1
            x = gaussian_blur2d(x, (k, k), (self.sigma, self.sigma), border_type="replicate")
        grads = spatial_gradient(x, mode="diff", order=self.order)  # (B, 3, 2|3, H, W)
        if self.order == 1:
            magnitude = grads.pow(2).sum(dim=2).sqrt()
        else:
            fxx, fxy, fyy = grads.unbind(dim=2)
            magnitude = (fxx.pow(2) + 4 * fxy.pow(2) + fyy.pow(2)).sqrt()
        reach = 2 * int(round(2 * self.sigma)) + 3
        inner = ~F.max_pool2d((~valid).float(), reach, stride=1, padding=reach // 2).bool()
        inner = inner | ~inner.flatten(1).any(dim=1)[:, None, None, None]
        weight = inner.to(x.dtype)
        scale = (magnitude * weight).amax(dim=(1, 2, 3), keepdim=True).clamp_min(_EPS)
        powered = (magnitude / scale).pow(self.p) * weight
        norm = (powered.sum(dim=(2, 3)) / weight.sum(dim=(2, 3)).clamp_min(1)).pow(1.0 / self.p)
        return _unit(norm + _EPS)

    def extra_repr(self) -> str:
        return f"order={self.order}, p={self.p}, sigma={self.sigma}, " + super().extra_repr()


#: Classical baselines by the names used in configs and result tables.
BASELINES: dict[str, type[nn.Module]] = {
    "gray_world": GrayWorld,
    "white_patch": WhitePatch,
    "shades_of_gray": ShadesOfGray,
    "gray_edge": GrayEdge,
}


def create_baseline(name: str) -> nn.Module:
    """A classical AWB estimator by name (``gray_world``, ``white_patch``, ``shades_of_gray``, ``gray_edge``)."""
    try:
        return BASELINES[name]()
    except KeyError:
        raise ValueError(f"Unknown AWB baseline {name!r}; choose from {sorted(BASELINES)}.") from None
