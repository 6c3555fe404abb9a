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

Classical, parameter-free baselines with the same ``forward``, exactly as van de Weijer's reference ``general_cc.m``
(:func:`general_colour_constancy`): :class:`GrayWorld` (Buchsbaum 1980), :class:`WhitePatch` (max-RGB, Land 1977),
:class:`ShadesOfGray` (Finlayson & Trezzi 2004) and :class:`GrayEdge` (van de Weijer, Gevers & Gijsenij 2007), plus
our :class:`PercentileWhitePatch` variant.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moto_vision.errors import OptionError
from moto_vision.models.gray_index import GrayIndex
from moto_vision.models.ops import (
    block_mean,
    blockwise_mean,
    channel_max,
    channel_sum,
    select,
    spatial_max,
    spatial_mean,
    step,
    unit_length,
    weighted_sum,
)

__all__ = [
    "BASELINES",
    "BASELINE_TITLES",
    "CLASSICAL_ESTIMATES",
    "AngularLoss",
    "BrightDarkPCA",
    "CameraPriorHead",
    "ClassicalEstimates",
    "ConfidencePoolingHead",
    "ExposureNormalize",
    "InputEncoding",
    "GrayEdge",
    "GrayIndex",
    "GrayWorld",
    "LocusPrior",
    "PercentileWhitePatch",
    "PoolingMLPHead",
    "ShadesOfGray",
    "WhitePatch",
    "apply_white_balance",
    "channel_reference",
    "check_gray_edge_scale",
    "create_baseline",
    "edge_magnitude",
    "estimation_mask",
    "gaussian_derivative",
    "gaussian_derivative_kernel",
    "general_colour_constancy",
    "safe_angle",
    "statistics_grid",
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
#: How :class:`ExposureNormalize` encodes the exposure-normalised image for the backbone.
InputEncoding = Literal["linear", "log", "sqrt"]


class ExposureNormalize(nn.Module):
    """Divide each image by its mean (or maximum) brightness, all channels together, then encode it for the backbone.

    Exposure carries no information about the illuminant colour, so removing it inside the model makes
    estimates invariant to it. By default all channels share one reference: for an AWB backbone a per-channel mean
    would remove the signal, the channel imbalance (``reference="channel_mean"`` does so on purpose, below).

    Encodings of ``y = x / reference``:

    - ``"linear"``: ``y - 1``;
    - ``"log"``: ``log(y + eps) / 2``; a light then shifts each channel by a constant, and channel ratios
      (chromaticities, what colour-constancy methods reason about) are differences;
    - ``"sqrt"``: ``sqrt(y)``, a gamma-2 curve (sRGB's is about 2.2): compresses the range much as ``log`` does
      and keeps channel ratios as ratios, at two full-frame operations (``sqrt(x) * reference^-1/2``) instead of
      four, which is what a 256 x 256 multi-task graph spends most of its normalisation on (ONNX Runtime's ``Log``
      alone 0.26 ms, measured; see docs/multitask.md).

    Args:
        encoding: ``"linear"``, ``"log"`` or ``"sqrt"`` (above).
        eps: floor inside the log (zeroed, masked pixels map to ``log(eps)``).
        reference: ``"mean"`` divides by the mean brightness; ``"max"`` by the largest channel value of the image,
            so that the input says how bright a pixel is *relative to the brightest one* (what White Patch and
            bright-pixel methods reason about), whatever the rest of the scene; ``"channel_mean"`` divides each
            channel by its own mean (a Grey World balance): the light's cast and the camera's channel gains leave
            what the backbone sees, which is what segmentation and scene heads want, while an AWB head still reads
            the colour from the image itself (``local_colour``).
        log: deprecated spelling of ``encoding="log"`` (``True``) / ``"linear"`` (``False``).
        blocks: the ``"mean"`` and ``"channel_mean"`` references are taken through a ``blocks`` x ``blocks`` block mean
            (:func:`~moto_vision.models.ops.blockwise_mean`, the same value); at 16, the AWB head's colour grid at the
            recipes' ``vote_grid: 16``, which an export then computes once for both.
    """

    def __init__(
        self,
        encoding: InputEncoding = "linear",
        eps: float = 1e-2,
        reference: Literal["mean", "max", "channel_mean"] = "mean",
        log: bool | None = None,
        blocks: int = 16,
    ) -> None:
        super().__init__()
        if log is not None:
            warnings.warn(
                "ExposureNormalize(log=...) is deprecated: use encoding='log' or encoding='linear'.",
                DeprecationWarning,
                stacklevel=2,
            )
            encoding = "log" if log else "linear"
        if encoding not in ("linear", "log", "sqrt"):
            raise OptionError(f"ExposureNormalize: encoding must be 'linear', 'log' or 'sqrt', got {encoding!r}.")
        if reference not in ("mean", "max", "channel_mean"):
            raise OptionError(
                f"ExposureNormalize: reference must be 'mean', 'max' or 'channel_mean', got {reference!r}."
            )
        self.encoding = encoding
        self.eps = eps
        self.reference = reference
        self.blocks = blocks

    def forward(self, x: Tensor) -> Tensor:
        if self.reference == "max":
            scale = channel_max(spatial_max(x)) + 1e-6
        elif self.reference == "channel_mean":
            scale = blockwise_mean(x, (self.blocks, self.blocks)) + 1e-6
        else:
            # The mean over (H, W) first, then over the channels: the same value, and reductions that XNNPACK runs (it
            # rejects one over (C, H, W), which ExecuTorch then runs in its portable kernels: 0.6 ms of a 4.7 ms
            # 256 x 256 graph, measured).
            scale = channel_sum(blockwise_mean(x, (self.blocks, self.blocks))) * (1.0 / x.shape[1]) + 1e-6
        if self.encoding == "sqrt":
            return torch.sqrt(x) * torch.rsqrt(scale)
        x = x / scale
        if self.encoding == "log":
            return torch.log(x + self.eps) * 0.5
        return x - 1.0

    def extra_repr(self) -> str:
        return f"encoding={self.encoding!r}, reference={self.reference!r}"


def _unit(x: Tensor) -> Tensor:
    return unit_length(x, dim=-1, eps=_EPS)


#: What :class:`ConfidencePoolingHead`'s classical-vote MLP sees of the estimates (``vote_chromaticity``).
VoteChromaticity = Literal["absolute", "relative"]

#: When :class:`ConfidencePoolingHead`'s local votes take part (``local_votes``).
LocalVotes = Literal["always", "training"]

#: The confidence logit of a vote that cannot vote (see ``ConfidencePoolingHead._local_votes``).
_NO_VOTE = -30.0


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
    - ``classical_votes=True`` adds the estimates of the classical methods (:class:`ClassicalEstimates`: Gray
      World, Shades of Gray, max-RGB White Patch, Gray Edge, bright pixels) as extra votes in the same softmax.
      A small MLP on the pooled features and the candidates' log chromaticities gives each one its confidence and
      a per-channel gain, so the network can learn *when* a global statistic (the brightest surfaces, the mean
      edge) is right instead of re-deriving it from 16 x 16 local votes.

    Args:
        in_channels: channels of the input feature map.
        hidden: channels of the hidden conv layer.
        dropout: dropout before the last conv (FC4 uses 0.5 on its much larger head).
        local_colour: estimate gains relative to the local image colour (needs the image in ``forward``).
        global_context: give every location the global average of the features too.
        grid: pool the feature map to at most ``grid x grid`` locations before voting (``None``: every location).
        classical_votes: add the classical estimates as weighted votes (needs the image in ``forward``).
        gray_edge_scale: the classical votes' Gray Edge on the image (1) or on its ``scale x scale`` block means
            (see :class:`ClassicalEstimates`).
        vote_chromaticity: what the classical votes' MLP sees of each estimate: its log chromaticity in the
            camera's raw space (``"absolute"``), or relative to the mean of the estimates (``"relative"``: how they
            disagree, not where this camera puts the light, which differs from camera to camera).
        local_votes: ``"always"``, or ``"training"``: the local votes take part in training only, and in eval mode
            (validation, test, export) the classical votes alone decide, with the confidences and gains learned
            beside the local votes (needs ``classical_votes``; see docs/awb.md#local-votes-in-training-only).
        vote_features: the classical votes' MLP also sees the feature map's global mean and maximum (``True``), or
            only the estimates' chromaticities (``False``). With ``local_votes="training"`` and ``False``, the
            classical votes do not depend on the features in eval mode (:attr:`needs_features` is ``False``).
        vote_hidden: hidden width of the classical votes' MLP (its one hidden layer).
        statistics_size: the classical votes' statistics on the image's block means at most this many pixels per
            side (``None``: on the image itself; see :class:`ClassicalEstimates`), so they cost the same at any input
            size: a model trained on 64 px images and deployed on 256 px frames takes them at 64 x 64.
        classical_alone: with ``local_votes="training"``: the share of training batches in which the classical votes
            decide alone, as in eval mode, so the deployed mixture is also trained for itself and not only as a
            partner of the local votes (which, for one sensor, learn its light prior and take the weight; see
            docs/awb.md#train-for-one-sensor). 0: every training batch has the local votes.
    """

    def __init__(
        self,
        in_channels: int,
        hidden: int = 64,
        dropout: float = 0.0,
        local_colour: bool = True,
        global_context: bool = True,
        grid: int | None = None,
        classical_votes: bool = False,
        gray_edge_scale: int = 1,
        vote_chromaticity: VoteChromaticity = "absolute",
        local_votes: LocalVotes = "always",
        vote_features: bool = True,
        vote_hidden: int = 32,
        statistics_size: int | None = None,
        classical_alone: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= classical_alone < 1.0:
            raise OptionError(
                f"ConfidencePoolingHead: classical_alone is a share of the training batches in [0, 1), got "
                f"{classical_alone}."
            )
        if classical_alone > 0 and local_votes != "training":
            raise OptionError(
                "ConfidencePoolingHead: classical_alone trains the classical votes alone as deployed with "
                "local_votes='training'; set local_votes='training' (and classical_votes=True) or classical_alone=0."
            )
        self.classical_alone = float(classical_alone)
        if vote_hidden < 1:
            raise OptionError(f"ConfidencePoolingHead: vote_hidden must be a positive width, got {vote_hidden}.")
        if grid is not None and grid < 1:
            raise OptionError(f"ConfidencePoolingHead: grid must be a positive number of votes per side, got {grid}.")
        if vote_chromaticity not in get_args(VoteChromaticity):
            raise OptionError(
                f"ConfidencePoolingHead: vote_chromaticity must be one of {get_args(VoteChromaticity)}, "
                f"got {vote_chromaticity!r}."
            )
        self.vote_chromaticity = vote_chromaticity
        if local_votes not in get_args(LocalVotes):
            raise OptionError(
                f"ConfidencePoolingHead: local_votes must be one of {get_args(LocalVotes)}, got {local_votes!r}."
            )
        if local_votes == "training" and not classical_votes:
            raise OptionError(
                "ConfidencePoolingHead: local_votes='training' needs classical_votes=True (in eval mode only the "
                "classical votes vote); without classical votes set local_votes='always'."
            )
        self.local_votes = local_votes
        self.vote_features = vote_features
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
        self.classical_votes = classical_votes
        if classical_votes:
            self.classical = ClassicalEstimates(gray_edge_scale, statistics_size)
            k = len(CLASSICAL_ESTIMATES)
            context = 2 * in_channels if vote_features else 0
            self.vote_mlp = nn.Sequential(
                nn.Linear(context + 3 * k, vote_hidden), nn.ReLU(inplace=True), nn.Linear(vote_hidden, 4 * k)
            )
            nn.init.zeros_(self.vote_mlp[-1].weight)
            nn.init.zeros_(self.vote_mlp[-1].bias)
            # Start with the classical votes holding about half of the confidence against 16 x 16 local votes
            # (local logits start at 0, so each classical vote weighs as much as 64 local ones).
            nn.init.constant_(self.vote_mlp[-1].bias[:k], math.log(64.0))

    def local_estimates(self, features: Tensor, image: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Per-location unit RGB estimates ``(B, 3, h, w)`` and confidence weights ``(B, 1, h, w)``.

        The weights sum to 1 over the locations, or with ``classical_votes`` to the share the local votes hold.

        Args:
            features: ``(B, C, h, w)`` feature map.
            image: the linear input image ``(B, 3, H, W)``; required when ``local_colour`` is set.
        """
        rgb, logits = self._local_votes(features, image)
        if not self.classical_votes:
            return rgb, torch.softmax(logits.flatten(2), dim=-1).view_as(logits)
        if self._classical_only:
            return rgb, torch.zeros_like(logits)
        _, all_logits = self._classical_votes(features, image, logits.flatten(1))
        weights = torch.softmax(all_logits, dim=-1)[:, : logits[0].numel()]
        return rgb, weights.view_as(logits)

    def classical_weights(self, features: Tensor | None, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The classical votes as the deployed model weighs them (``classical_votes`` only).

        Returns the estimates ``(B, K, 3)`` of :class:`ClassicalEstimates` (unit), the votes after their learned
        gains ``(B, K, 3)`` (unit) and their weights ``(B, K)`` among themselves (a softmax over the K votes: the
        weights of the eval-mode model with ``local_votes="training"``). ``features`` may be ``None`` when
        ``vote_features`` is ``False``.
        """
        if not self.classical_votes:
            raise ValueError("ConfidencePoolingHead.classical_weights needs classical_votes=True.")
        estimates, defined = self.classical(image)
        rgb, logits = self._weigh_classical(estimates, defined, features)
        return estimates, rgb.transpose(1, 2), torch.softmax(logits, dim=-1)

    def _local_votes(self, features: Tensor, image: Tensor | None) -> tuple[Tensor, Tensor]:
        """Per-location unit RGB ``(B, 3, h, w)`` and confidence logits ``(B, 1, h, w)``."""
        if self.grid is not None and (features.shape[-2] > self.grid or features.shape[-1] > self.grid):
            size = (min(self.grid, features.shape[-2]), min(self.grid, features.shape[-1]))
            features = block_mean(features, size)
        if self.global_context:
            # The image-wide mean at every location (broadcast by an add: an expand is not an XNNPACK op).
            features = torch.cat([features, features * 0.0 + spatial_mean(features)], dim=1)
        out = self.body(features)
        logits = out[:, 3:4]
        if self.local_colour:
            if image is None:
                raise ValueError("ConfidencePoolingHead(local_colour=True) needs the input image in forward().")
            local = block_mean(image, tuple(out.shape[-2:]))
            brightness = channel_sum(local)
            rgb = local / brightness.clamp_min(1e-8) * torch.exp(out[:, :3].clamp(-4.0, 4.0)) + _EPS
            # No valid pixel under a location (zeroed chart or clipped area): it cannot vote. -30 (a weight of
            # e^-30 against the others) rather than -1e4: an int8 export quantizes these logits with the others, and
            # a -1e4 in their range flattened every logit to one level (ONNX int8: 4.07 -> 18.5 degrees, measured).
            logits = select(step(brightness, 1e-6), logits, _NO_VOTE)
        else:
            rgb = F.softplus(out[:, :3]) + _EPS
        return unit_length(rgb), logits

    @property
    def deploys_without_features(self) -> bool:
        """Whether the eval-mode head (validation, test, export) reads no feature map, whatever the current mode.

        True when feature-blind classical votes decide alone there (``local_votes="training"``,
        ``vote_features=False``).
        """
        return self.local_votes == "training" and not self.vote_features

    @property
    def needs_features(self) -> bool:
        """Whether :meth:`forward` reads its feature map now (not when only feature-blind classical votes decide)."""
        return self.training or not self.deploys_without_features

    @property
    def _classical_only(self) -> bool:
        """Whether the classical votes alone decide now (``local_votes="training"`` in eval mode)."""
        return self.local_votes == "training" and not self.training

    def _classical_votes(
        self, features: Tensor | None, image: Tensor | None, local_logits: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """The classical votes: unit RGB ``(B, 3, K)`` and the logits of all votes ``(B, N + K)`` (local first).

        Without ``local_logits`` only the classical logits ``(B, K)``.
        """
        if image is None:
            raise ValueError("ConfidencePoolingHead(classical_votes=True) needs the input image in forward().")
        rgb, logits = self._weigh_classical(*self.classical(image), features)
        return rgb, logits if local_logits is None else torch.cat([local_logits, logits], dim=-1)

    def _weigh_classical(self, estimates: Tensor, defined: Tensor, features: Tensor | None) -> tuple[Tensor, Tensor]:
        """Unit RGB ``(B, 3, K)`` and logits ``(B, K)`` of the classical estimates ``(B, K, 3)`` (``defined`` 0 / 1)."""
        # Plain ops on purpose: written with models/ops.py (channel_sum, select, unit_length) they are quantized in
        # int8 exports and the AWB error rose (one model: ONNX int8 5.2 -> 19.4, ExecuTorch int8 7.3 -> 9.8 degrees
        # mean, measured); as they are, int8 keeps them in float, and ExecuTorch fp32 runs them in its portable
        # kernels (4 partitions instead of 1: 0.45 against 0.40 ms at 64 x 64, measured).
        log_rgb = torch.log(estimates.clamp_min(1e-4))
        chroma = log_rgb - log_rgb.mean(dim=-1, keepdim=True)
        if self.vote_chromaticity == "relative":
            chroma = chroma - chroma.mean(dim=1, keepdim=True)  # relative to the mean of the K estimates
        if self.vote_features:
            if features is None:
                raise ValueError("ConfidencePoolingHead(vote_features=True) needs the feature map in forward().")
            pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3)), chroma.flatten(1)], dim=1)
        else:
            pooled = chroma.flatten(1)
        out = self.vote_mlp(pooled)
        k = estimates.shape[1]
        logits = out[:, :k].masked_fill(defined < 0.5, _NO_VOTE)
        gains = torch.exp(out[:, k:].reshape(-1, k, 3).clamp(-3.0, 3.0))
        return F.normalize(estimates * gains, dim=-1).transpose(1, 2), logits

    def forward(self, features: Tensor | None, image: Tensor | None = None) -> Tensor:
        """Unit-norm illuminant ``(B, 3)`` from a feature map ``(B, C, h, w)`` (and the image, see above).

        ``features`` may be ``None`` when :attr:`needs_features` is ``False``.
        """
        # classical_alone: drawn per batch from the global generator, so a seeded run draws the same batches.
        alone = self.training and self.classical_alone > 0 and float(torch.rand(())) < self.classical_alone
        if self._classical_only or alone:
            rgb, logits = self._classical_votes(features, image, None)
            return _unit(weighted_sum(rgb, torch.softmax(logits, dim=-1)))
        rgb, logits = self._local_votes(features, image)
        rgb, logits = rgb.flatten(2), logits.flatten(1)
        if self.classical_votes:
            classical, logits = self._classical_votes(features, image, logits)
            rgb = torch.cat([rgb, classical], dim=-1)
        weights = torch.softmax(logits, dim=-1)
        return _unit(weighted_sum(rgb, weights))


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


class LocusPrior(nn.Module):
    """Keep an illuminant estimate within ``band`` of the camera's Planckian locus, in log chromaticity.

    Real lights lie close to the Planckian locus (daylight a little above it, incandescent light on it), so once the
    camera is known, an estimate far off the locus is mostly error. The locus of the camera is ``camera @ XYZ(T)``
    (the black body's CIE XYZ for ``T`` in 1800-16000 K, its raw colour through the camera's XYZ -> raw matrix) as a
    polyline in log chromaticity ``(log(r / g), log(b / g))``; the estimate's offset from its nearest point keeps its
    direction and is shortened to at most ``band``. Along the locus (the light's colour temperature) nothing changes.
    No parameters; the nearest segment is picked with min / equality / sums, so the graph exports.

    Phone AWB pipelines constrain estimates to a band around the sensor's locus in the same way (a "grey zone"
    calibrated per sensor); this is that constraint with the locus computed from the colour matrix.

    Args:
        band: the largest distance from the locus kept, in log-chromaticity units (0.05: about 5% of a channel
            ratio; 0 snaps every estimate onto the locus).
        points: number of locus points (log-spaced in temperature).
    """

    #: int8 exports keep this module in float (:data:`moto_vision.deploy.quantize.FLOAT_ONLY`): logarithms and
    #: exponentials of channel ratios do not survive 8 bits.
    float_only_in_int8 = True

    def __init__(self, band: float, points: int = 128) -> None:
        super().__init__()
        from moto_vision.isp.color import planckian_xyz

        if not band >= 0:
            raise OptionError(f"LocusPrior: band must be >= 0 (log-chromaticity units), got {band}.")
        self.band = float(band)
        cct = torch.exp(torch.linspace(math.log(1800.0), math.log(16000.0), points, dtype=torch.float64))
        self.register_buffer("locus_xyz", planckian_xyz(cct).float(), persistent=False)

    @staticmethod
    def _chroma(rgb: Tensor) -> Tensor:
        log = torch.log(rgb.clamp_min(_EPS))
        return torch.stack([log[..., 0] - log[..., 1], log[..., 2] - log[..., 1]], dim=-1)

    def forward(self, estimate: Tensor, camera: Tensor) -> Tensor:
        """The estimate ``(B, 3)``, unit norm, within ``band`` of the locus of ``camera`` ``(B, 3, 3)`` (XYZ -> raw)."""
        locus = torch.einsum("bij,kj->bki", camera.to(estimate.dtype), self.locus_xyz.to(estimate.dtype))
        points = self._chroma(locus.abs())  # (B, K, 2): a camera's raw values of real lights are positive
        point = self._chroma(estimate)[:, None, :]  # (B, 1, 2)
        start, step = points[:, :-1], points[:, 1:] - points[:, :-1]
        t = ((point - start) * step).sum(dim=-1, keepdim=True) / (step * step).sum(dim=-1, keepdim=True).clamp_min(
            1e-12
        )
        nearest = start + t.clamp(0.0, 1.0) * step  # (B, K - 1, 2): the closest point of each segment
        distance = (point - nearest).square().sum(dim=-1)
        pick = (distance <= distance.amin(dim=1, keepdim=True)).to(estimate.dtype)  # the closest segment(s)
        on_locus = (pick[..., None] * nearest).sum(dim=1) / pick.sum(dim=1, keepdim=True)
        offset = point[:, 0] - on_locus
        length = offset.square().sum(dim=-1, keepdim=True).sqrt()
        chroma = on_locus + offset * (length.clamp(max=self.band) / length.clamp_min(1e-12))
        rgb = torch.stack([torch.exp(chroma[:, 0]), torch.ones_like(chroma[:, 0]), torch.exp(chroma[:, 1])], dim=-1)
        return _unit(rgb)

    def extra_repr(self) -> str:
        return f"band={self.band}"


# --------------------------------------------------------------------------------------------- baselines
# The classical estimators follow van de Weijer's reference MATLAB code for "Edge-based color constancy" (IEEE TIP
# 2007): general_cc.m with its helpers gDer.m, norm_derivative.m, set_border.m, dilation33.m and fill_border. One
# function, general_colour_constancy(x, order, p, sigma), is Gray World (0, 1, 0), Shades of Gray (0, p, 0), max-RGB
# (0, inf, 0; the reference's mink_norm = -1), general Gray World (0, p, sigma) and Gray Edge (1 | 2, p, sigma).
# The Gaussian derivatives are written here rather than taken from kornia because the estimate depends on gDer's
# exact kernels (3-sigma support, its normalisations, edge-replicating padding), which kornia's filters do not share.


def gaussian_derivative_kernel(sigma: float, order: int) -> Tensor:
    """The 1-D kernel of the reference ``gDer.m``: a Gaussian (order 0) or its first / second derivative.

    Support ``-r .. r`` with ``r = floor(3 sigma + 0.5)``. Order 0 sums to 1; order 1 is normalised so that
    ``sum(x * k) = 1`` (correlating it with a ramp of slope 1 gives 1); order 2 is made zero-mean and normalised so
    that ``sum(x^2 / 2 * k) = 1``. Returned in float64, ordered from ``x = -r`` to ``x = r`` for correlation.
    """
    if sigma <= 0:
        raise ValueError(f"gaussian_derivative_kernel: sigma must be > 0, got {sigma}.")
    if order not in (0, 1, 2):
        raise ValueError(f"gaussian_derivative_kernel: order must be 0, 1 or 2, got {order}.")
    radius = math.floor(3.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    gauss = torch.exp(-(x**2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    if order == 0:
        return gauss / gauss.sum()
    if order == 1:
        kernel = -(x / sigma**2) * gauss
        return kernel / (x * kernel).sum()
    kernel = (x**2 / sigma**4 - 1 / sigma**2) * gauss
    kernel = kernel - kernel.sum() / kernel.numel()
    return kernel / (0.5 * x * x * kernel).sum()


#: Gray Edge of the classical votes (:class:`ClassicalEstimates`): the reference's sigma and its kernel's taps.
_GRAY_EDGE_SIGMA = 1.0
_GRAY_EDGE_TAPS = gaussian_derivative_kernel(_GRAY_EDGE_SIGMA, 0).numel()


def gaussian_derivative(x: Tensor, sigma: float, order_x: int, order_y: int) -> Tensor:
    """Gaussian derivative ``d^(order_x + order_y) / dx^order_x dy^order_y`` of every channel, as ``gDer.m``.

    Separable correlation with :func:`gaussian_derivative_kernel` along the width (x) and the height (y), the
    image first extended by replicating its edge pixels (the reference's ``fill_border``).

    Args:
        x: images ``(B, C, H, W)``.
        sigma: Gaussian scale in pixels (> 0).
        order_x: derivative order along the width, 0-2.
        order_y: derivative order along the height, 0-2.

    Returns:
        ``(B, C, H, W)`` in ``x``'s dtype.
    """
    b, c, h, w = x.shape
    kx = gaussian_derivative_kernel(sigma, order_x).to(x)
    ky = gaussian_derivative_kernel(sigma, order_y).to(x)
    r = kx.numel() // 2
    flat = F.pad(x.reshape(b * c, 1, h, w), (r, r, r, r), mode="replicate")
    flat = F.conv2d(F.conv2d(flat, kx.view(1, 1, 1, -1)), ky.view(1, 1, -1, 1))
    return flat.reshape(b, c, h, w)


def edge_magnitude(x: Tensor, sigma: float, order: Literal[1, 2]) -> Tensor:
    """Per-channel derivative magnitude of the reference ``norm_derivative.m``.

    Order 1: ``sqrt(fx^2 + fy^2)``; order 2: ``sqrt(fxx^2 + 4 fxy^2 + fyy^2)`` (the Frobenius norm of the Hessian,
    with the reference's factor 4 on the mixed term).
    """
    if order == 1:
        return (gaussian_derivative(x, sigma, 1, 0).pow(2) + gaussian_derivative(x, sigma, 0, 1).pow(2)).sqrt()
    if order == 2:
        fxx, fyy = gaussian_derivative(x, sigma, 2, 0), gaussian_derivative(x, sigma, 0, 2)
        fxy = gaussian_derivative(x, sigma, 1, 1)
        return (fxx.pow(2) + 4 * fxy.pow(2) + fyy.pow(2)).sqrt()
    raise ValueError(f"edge_magnitude: order must be 1 or 2, got {order}.")


def estimation_mask(
    x: Tensor, sigma: float = 0.0, saturation: float = 1.0, dark: float = 0.0, border: bool = True
) -> Tensor:
    """``(B, 1, H, W)`` bool mask of the pixels the classical estimators use (the reference's ``mask_im2``).

    As ``general_cc.m``: a pixel is excluded when it is masked (``mask_im``), or when it or one of its 8 neighbours
    is saturated (its maximum channel ``>= saturation``; the saturated map is dilated 3 x 3, ``dilation33``), or
    when it lies within ``sigma + 1`` pixels of the image border (``set_border``: 1-based coordinates ``u`` are
    kept where ``sigma + 1 < u < size - sigma``). Our datasets mark masked (colour chart) and clipped pixels as
    zeros, so ``mask_im`` is "maximum channel ``<= dark``", by default the pixels that are exactly zero. Masked
    pixels are excluded themselves but not dilated, as in the reference. ``border=False`` keeps the border, for
    estimators without filters (:class:`BrightDarkPCA`).
    """
    peak = x.amax(dim=1, keepdim=True)
    # max_pool2d pads with -inf, which equals dilation33's edge replication for a max.
    saturated = F.max_pool2d((peak >= saturation).to(x.dtype), kernel_size=3, stride=1, padding=1) > 0
    valid = ~saturated & (peak > dark)
    if not border:
        return valid
    width = sigma + 1
    h, w = x.shape[-2:]
    rows = torch.arange(1, h + 1, device=x.device)
    cols = torch.arange(1, w + 1, device=x.device)
    inner = ((rows > width) & (rows < h - width + 1))[:, None] & ((cols > width) & (cols < w - width + 1))[None, :]
    return valid & inner


def general_colour_constancy(
    x: Tensor,
    order: int = 0,
    p: float = 1.0,
    sigma: float = 0.0,
    saturation: float = 1.0,
    dark: float = 0.0,
) -> Tensor:
    """Illuminant estimate of van de Weijer's ``general_cc.m``: the Minkowski ``p``-norm of (derivatives of) the image.

    Every channel is smoothed by a Gaussian of ``sigma`` (order 0, skipped when ``sigma = 0``) or replaced by its
    ``order``-th derivative magnitude (:func:`edge_magnitude`); the estimate is ``(sum_i |f_i|^p)^(1/p)`` per channel
    over the pixels of :func:`estimation_mask` (the maximum for ``p = inf``), normalised to unit length.

    Args:
        x: linear RGB ``(B, 3, H, W)``.
        order: 0 (Gray World family) or 1 / 2 (Gray Edge).
        p: Minkowski norm, ``> 0``, or ``inf`` (max-RGB; ``-1`` is accepted as the reference's spelling of it).
        sigma: Gaussian scale in pixels; ``> 0`` for ``order`` 1 and 2.
        saturation: clipped-pixel threshold on the maximum channel (``general_cc``: 255 for 8-bit input; 1.0 is
            the top of our ``[0, 1]`` scale).
        dark: pixels whose maximum channel is ``<= dark`` are masked (default: exactly-zero pixels).

    Returns:
        Unit-norm ``(B, 3)``; NaN for an image without any usable pixel or evidence (the reference divides 0 by 0
        there too; :class:`~moto_vision.metrics.AngularError` counts such estimates as undefined).
    """
    if order not in (0, 1, 2):
        raise ValueError(f"general_colour_constancy: order must be 0, 1 or 2, got {order}.")
    if p == -1:
        p = math.inf
    if not p > 0:
        raise ValueError(f"general_colour_constancy: p must be > 0 or inf, got {p}.")
    if sigma < 0 or (order > 0 and sigma == 0):
        raise ValueError(f"general_colour_constancy: sigma must be >= 0, and > 0 for order {order}; got {sigma}.")
    dtype = x.dtype
    x = x.float() if dtype not in (torch.float32, torch.float64) else x
    valid = estimation_mask(x, sigma, saturation, dark)
    if order == 0:
        f = gaussian_derivative(x, sigma, 0, 0) if sigma > 0 else x
    else:
        f = edge_magnitude(x, sigma, order)
    f = f.abs() * valid
    if math.isinf(p):
        white = f.amax(dim=(2, 3))
    else:
        # Dividing by the per-image maximum keeps |f|^p from underflowing for large p; the unit norm cancels it.
        scale = f.amax(dim=(1, 2, 3), keepdim=True)
        white = (f / scale.masked_fill(scale == 0, 1.0)).pow(p).sum(dim=(2, 3)).pow(1.0 / p)
    norm = white.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, white / norm.masked_fill(norm == 0, 1.0), math.nan).to(dtype)


#: The classical estimates :class:`ConfidencePoolingHead` weighs as votes (:class:`ClassicalEstimates`).
CLASSICAL_ESTIMATES = ("gray_world", "shades_of_gray", "white_patch", "gray_edge", "bright_pixels")


def check_gray_edge_scale(scale: int, size: tuple[int, int], name: str = "gray_edge_scale") -> None:
    """Raise a ``ValueError`` naming ``name`` when Gray Edge would lack pixels at this scale and image size.

    Gray Edge on ``scale x scale`` block means of a ``size`` image needs at least as many block means per side as its
    derivative kernel has taps (7).
    """
    smallest = _GRAY_EDGE_TAPS
    if min(size) < smallest * scale:
        raise OptionError(
            f"{name} {scale} leaves fewer than {smallest} pixels per side of a {size[0]} x {size[1]} image for the "
            f"Gray Edge vote; use a smaller {name} (at most {min(size) // smallest}) or a larger image."
        )


def statistics_grid(image_size: tuple[int, int], size: int | None) -> tuple[int, int]:
    """The height and width :class:`ClassicalEstimates` takes its statistics at, for an image of ``image_size``.

    The image itself when ``size`` is ``None`` or the image is no larger than ``size`` per side; else its block means
    over square blocks (one factor for both sides, so a 4:3 frame keeps its aspect ratio and Gray Edge its isotropy),
    at most ``size`` per side.
    """
    h, w = image_size
    if size is None or (h <= size and w <= size):
        return h, w
    factor = max(math.ceil(h / size), math.ceil(w / size))
    return max(1, h // factor), max(1, w // factor)


class ClassicalEstimates(nn.Module):
    """Gray World, Shades of Gray (p = 6), max-RGB, Gray Edge (order 1, p = 6, sigma = 1) and bright pixels at once.

    The statistics and pixel masks of :func:`general_colour_constancy` (masked pixels, saturated pixels and their 8
    neighbours, the image border left out), written with ops that XNNPACK runs (depthwise convolutions, max pooling,
    products, clamps) instead of the reference's comparisons, replicate padding and ``amax``: the reference code
    exported costs about 12 ms per 64 x 64 image in ExecuTorch, this about 0.1 ms (measured). Gray World, Shades of
    Gray and max-RGB equal the reference baselines; Gray Edge uses zero padding and leaves out a 3-pixel border
    instead of the reference's 2, so the padding is never seen (a fraction of a degree from the reference). Bright
    pixels is the mean of the usable pixels weighted by ``(brightness / brightest)^16``: a soft "mean of the
    brightest few percent" (bright-pixel methods, e.g. Joze et al., CIC 2012) without a sort.

    ``forward(x)`` returns unit estimates ``(B, K, 3)`` in :data:`CLASSICAL_ESTIMATES` order and ``(B, K)`` floats,
    1 where an estimate is defined and 0 where not (no usable pixel, or no edge); undefined estimates are grey.
    Every op runs in XNNPACK (sums as global average pooling, the border as slices, the root through exp and log).

    With ``size``, an image larger than ``size x size`` is area-averaged to at most that many pixels per side first
    (:func:`~moto_vision.models.ops.block_mean`) and the statistics are taken on the block means, so they cost the
    same at any input size and see what a model trained at that size saw. A block holding a saturated pixel counts
    as saturated (it and its 8 neighbours are left out, as a saturated pixel and its neighbours are at full size).

    Args:
        gray_edge_scale: 1 computes Gray Edge on the image itself (sigma = 1, as the reference baseline); ``s > 1`` on
            the image area-averaged over ``s x s`` blocks, ``1 / s^2`` of the cost of its derivatives and norm (2: a
            quarter).
        size: the largest image side the statistics are taken at (``None``: the input's own size).
    """

    #: int8 exports keep this module in float (:data:`moto_vision.deploy.quantize.FLOAT_ONLY`): maxima, 6th powers
    #: and ratios of raw pixel values do not survive 8 bits (ONNX int8 with it quantized: 18.5 degrees mean, measured).
    float_only_in_int8 = True

    def __init__(self, gray_edge_scale: int = 1, size: int | None = None) -> None:
        super().__init__()
        if gray_edge_scale < 1:
            raise OptionError(f"ClassicalEstimates: gray_edge_scale must be a positive integer, got {gray_edge_scale}.")
        smallest = _GRAY_EDGE_TAPS * gray_edge_scale
        if size is not None and size < smallest:
            raise OptionError(
                f"ClassicalEstimates: size {size} (the AWB option statistics_size) leaves the Gray Edge vote fewer "
                f"than {_GRAY_EDGE_TAPS} pixels per side at gray_edge_scale {gray_edge_scale}; use a size of at least "
                f"{smallest}."
            )
        self.gray_edge_scale = int(gray_edge_scale)
        self.size = None if size is None else int(size)
        # d/dx and d/dy Gaussian derivatives of gDer.m, separably: a vertical pass (g0 and g1 per channel) and a
        # horizontal one (g1 on the g0 pass: d/dx; g0 on the g1 pass: d/dy). The same numbers as one 7 x 7 depthwise
        # convolution per output at a third of its ExecuTorch cost (measured). No torch.cat here (nor below): the
        # PT2E int8 quantizer annotates every cat, float-only module or not (ExecuTorch int8 of an AWB model went from
        # 7.3 to 9.2 degrees mean with one, measured). Fixed: buffers, not saved.
        # The vertical pass is a dense 3 -> 6 convolution whose weights are zero across channels: the same sums (the
        # zero products add exactly 0), and 20% faster in ExecuTorch than the grouped form (0.084 vs 0.103 ms for both
        # passes at 64 x 64, measured), whose 7 x 1 depthwise kernel XNNPACK runs slowly.
        g0 = gaussian_derivative_kernel(_GRAY_EDGE_SIGMA, 0).float()
        g1 = gaussian_derivative_kernel(_GRAY_EDGE_SIGMA, 1).float()
        k = g0.numel()
        vertical = torch.zeros(6, 3, k, 1)
        for channel in range(3):
            vertical[2 * channel, channel, :, 0] = g0
            vertical[2 * channel + 1, channel, :, 0] = g1
        self.register_buffer("vertical", vertical, persistent=False)
        self.register_buffer("horizontal", torch.stack([g1, g0]).repeat(3, 1).view(6, 1, 1, k), persistent=False)
        # dx^2 + dy^2 per channel: a dense 6 -> 3 1 x 1 convolution whose weights pick each (dx, dy) pair. The same
        # sums as the grouped form, which XNNPACK runs slower (ExecuTorch graph 0.355 against 0.375 ms, measured).
        pair_sum = torch.zeros(3, 6, 1, 1)
        for channel in range(3):
            pair_sum[channel, 2 * channel : 2 * channel + 2] = 1.0
        self.register_buffer("pair_sum", pair_sum, persistent=False)
        self.edge_border = k // 2

    @staticmethod
    def _inner(x: Tensor, width: int) -> Tensor:
        """``x`` without its ``width``-pixel border (the reference's ``set_border``), as slices."""
        h, w = x.shape[-2:]
        return x[..., width : h - width, width : w - width]

    @staticmethod
    def _sum(x: Tensor) -> Tensor:
        """``x.sum(dim=(2, 3))`` as global average pooling times the pixel count."""
        return spatial_mean(x).flatten(1) * float(x.shape[-2] * x.shape[-1])

    @classmethod
    def _minkowski6(cls, squares: Tensor, peak: Tensor | None = None) -> Tensor:
        """``(sum f^6)^(1/6)`` per channel of ``f >= 0`` given as ``squares = f^2``.

        Dividing by the image's maximum (``peak``, the largest of ``squares``, when already known) keeps ``f^6`` from
        underflowing. The root is ``exp(log(s) / 6)``, zero where ``s`` is (XNNPACK runs no fractional power); the
        brightest channel has ``s >= 1``, so the floor of the log (1e-30) moves a channel at most 1e-5 of the brightest.
        """
        peak = channel_max(spatial_max(squares)) if peak is None else peak
        v = squares / peak.clamp_min(1e-24)
        total = cls._sum(v * v * v)
        return step(total) * torch.exp(torch.log(total.clamp_min(1e-30)) * (1.0 / 6.0))

    @staticmethod
    def _dilate_inner(m: Tensor) -> Tensor:
        """The 3 x 3 maximum of ``m`` ``(B, 1, H, W)`` at the pixels one away from the border, ``(B, 1, H - 2, W - 2)``.

        As maxima of shifted slices: the same values as ``max_pool2d(m, 3, 1, 1)`` there, without its padding, at a
        sixth of its ExecuTorch cost on a one-channel map (XNNPACK pools channels, measured 0.033 ms at 64 x 64).
        """
        h, w = m.shape[-2:]
        rows = torch.maximum(torch.maximum(m[:, :, : h - 2], m[:, :, 1 : h - 1]), m[:, :, 2:])
        return torch.maximum(torch.maximum(rows[..., : w - 2], rows[..., 1 : w - 1]), rows[..., 2:])

    def at_size(self, x: Tensor) -> Tensor:
        """The image the statistics are taken on: ``x``, or its block means on :func:`statistics_grid`.

        A block with a saturated pixel (a channel at 1) is set to 1 in every channel, so it stays saturated.
        """
        h, w = x.shape[-2:]
        size = statistics_grid((h, w), self.size)
        if size == (h, w):
            return x
        # The block maxima first, then the channel maximum and the threshold on the small grid: one full-frame op.
        if h % size[0] or w % size[1]:
            block_peak = F.adaptive_max_pool2d(x, size)
        else:
            block_peak = F.max_pool2d(x, (h // size[0], w // size[1]))
        saturated = step(channel_max(block_peak), 1.0 - 1e-6)
        return select(saturated, 1.0, block_mean(x, size))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.at_size(x)
        peak = channel_max(x)
        # Indicators as clamps of differences (the images are in [0, 1]): saturated at 1, valid above 0. Every
        # statistic leaves out the 1-pixel border, where the saturated pixels' 3 x 3 dilation needs no padding.
        saturated = step(peak, 1.0 - 1e-6)
        usable = step(self._inner(peak, 1), 0.0, 1e12) * (1.0 - self._dilate_inner(saturated))
        inner = self._inner(x, 1)
        values = inner * usable
        gray_world = self._sum(values)
        white = spatial_max(values)  # (B, 3, 1, 1)
        brightest = channel_max(white)
        shades = self._minkowski6(values * values, brightest * brightest)
        white_patch = white.flatten(1)
        # Unpadded convolutions: their output is the image less the Gray Edge border, the only part it uses.
        if self.gray_edge_scale > 1:
            # Gray Edge on the image area-averaged over scale x scale blocks (about sigma = scale at full resolution,
            # at 1 / scale^2 of the cost); a block is usable when every pixel in it is.
            check_gray_edge_scale(self.gray_edge_scale, tuple(x.shape[-2:]))
            edges = F.avg_pool2d(x, self.gray_edge_scale)
            valid = step(peak, 0.0, 1e12) * (1.0 - F.max_pool2d(saturated, 3, 1, 1))
            edge_usable = self._inner(1.0 - F.max_pool2d(1.0 - valid, self.gray_edge_scale), self.edge_border)
        else:
            edges, edge_usable = x, self._inner(usable, self.edge_border - 1)
        d = F.conv2d(F.conv2d(edges, self.vertical), self.horizontal, groups=6)
        squared_magnitude = F.conv2d(d * d, self.pair_sum) * edge_usable
        gray_edge = self._minkowski6(squared_magnitude)
        brightness = channel_sum(inner) * usable
        b = brightness / spatial_max(brightness).clamp_min(1e-12)
        b2 = b * b
        b4 = b2 * b2
        b8 = b4 * b4
        bright = self._sum(inner * (b8 * b8))
        estimates = torch.stack([gray_world, shades, white_patch, gray_edge, bright], dim=1)  # (B, K, 3)
        squared = channel_sum(estimates * estimates, dim=-1)
        defined = step(squared, 1e-24)  # a norm above 1e-12
        unit = estimates / squared.sqrt().clamp_min(1e-12)
        return select(defined, unit, 1.0 / math.sqrt(3.0)), defined.flatten(1)


class _StatisticsBaseline(nn.Module):
    """A classical estimator: :func:`general_colour_constancy` with fixed ``order``, ``p`` and ``sigma``.

    Args:
        saturation: clipped-pixel threshold on the maximum channel, in the ``[0, 1]`` image scale (see
            :func:`estimation_mask`).
        dark: pixels whose maximum channel is at or below this are masked (default 0: the zeroed pixels).
    """

    order: int = 0
    p: float = 1.0
    sigma: float = 0.0

    def __init__(self, saturation: float = 1.0, dark: float = 0.0) -> None:
        super().__init__()
        self.saturation = float(saturation)
        self.dark = float(dark)

    def valid_mask(self, x: Tensor) -> Tensor:
        """``(B, 1, H, W)`` bool mask of the pixels the estimator uses (:func:`estimation_mask`)."""
        return estimation_mask(x, self.sigma, self.saturation, self.dark)

    def forward(self, x: Tensor) -> Tensor:
        """Unit-norm illuminant ``(B, 3)`` of linear RGB ``(B, 3, H, W)`` (NaN where no pixel is usable)."""
        return general_colour_constancy(x, self.order, self.p, self.sigma, self.saturation, self.dark)

    def extra_repr(self) -> str:
        return f"order={self.order}, p={self.p}, sigma={self.sigma}, saturation={self.saturation}, dark={self.dark}"


class ShadesOfGray(_StatisticsBaseline):
    """Shades of Gray (Finlayson & Trezzi 2004): the Minkowski ``p``-norm of each channel, ``general_cc(0, p, 0)``.

    ``p = 1`` is Gray World, ``p -> inf`` is max-RGB; ``p = 6`` is the usual setting. ``sigma > 0`` smooths the
    image first (van de Weijer's "general Gray World").

    Args:
        p: Minkowski norm.
        saturation: see :class:`_StatisticsBaseline`.
        dark: see :class:`_StatisticsBaseline`.
        sigma: Gaussian pre-smoothing in pixels (0: none).
    """

    def __init__(self, p: float = 6.0, saturation: float = 1.0, dark: float = 0.0, sigma: float = 0.0) -> None:
        super().__init__(saturation, dark)
        self.p, self.sigma = float(p), float(sigma)


class GrayWorld(ShadesOfGray):
    """Gray World (Buchsbaum 1980): the scene average is achromatic, so it is the light (``general_cc(0, 1, 0)``)."""

    def __init__(self, saturation: float = 1.0, dark: float = 0.0) -> None:
        super().__init__(p=1.0, saturation=saturation, dark=dark)


class WhitePatch(_StatisticsBaseline):
    """White Patch / max-RGB (Land 1977): the per-channel maximum of the usable pixels (``general_cc(0, -1, 0)``).

    ``percentile < 100`` takes that per-channel percentile instead of the maximum, which a single hot pixel cannot
    ruin. That variant is ours, not the reference's (same pixel mask; ``torch.nanquantile``'s linear rule).

    Args:
        percentile: per-channel percentile of the usable pixels (``100``: the maximum, as the reference).
        saturation: see :class:`_StatisticsBaseline`.
        dark: see :class:`_StatisticsBaseline`.
    """

    p = math.inf

    def __init__(self, percentile: float = 100.0, saturation: float = 1.0, dark: float = 0.0) -> None:
        super().__init__(saturation, dark)
        if not 0 < percentile <= 100:
            raise OptionError(f"WhitePatch: percentile must be in (0, 100], got {percentile}.")
        self.percentile = float(percentile)

    def forward(self, x: Tensor) -> Tensor:
        """Unit-norm illuminant ``(B, 3)`` of linear RGB ``(B, 3, H, W)`` (NaN where no pixel is usable)."""
        if self.percentile == 100:
            return super().forward(x)
        valid = self.valid_mask(x).expand_as(x)
        values = torch.where(valid, x, torch.full_like(x, math.nan)).flatten(2).float()
        estimate = torch.nanquantile(values, self.percentile / 100.0, dim=-1).abs()
        return F.normalize(estimate, dim=-1).masked_fill(estimate.isnan().any(-1, keepdim=True), math.nan).to(x.dtype)

    def extra_repr(self) -> str:
        return f"percentile={self.percentile}, " + super().extra_repr()


class PercentileWhitePatch(WhitePatch):
    """White Patch on each channel's 99th percentile: our variant, not in ``general_cc.m`` (see :class:`WhitePatch`)."""

    def __init__(self, percentile: float = 99.0, saturation: float = 1.0, dark: float = 0.0) -> None:
        super().__init__(percentile, saturation, dark)


class GrayEdge(_StatisticsBaseline):
    """Gray Edge (van de Weijer, Gevers & Gijsenij 2007): the mean edge is achromatic (``general_cc(order, p, sigma)``).

    Every channel's Gaussian derivative magnitude at scale ``sigma`` (order 1: gradient magnitude; 2: the
    Hessian's ``sqrt(fxx^2 + 4 fxy^2 + fyy^2)``) is pooled with the Minkowski ``p``-norm over the usable pixels,
    which exclude a border of ``sigma + 1`` pixels where the derivative sees the padding (:func:`estimation_mask`).

    Args:
        order: derivative order, 1 or 2.
        p: Minkowski norm.
        sigma: Gaussian scale in pixels (> 0).
        saturation: see :class:`_StatisticsBaseline`.
        dark: see :class:`_StatisticsBaseline`.
    """

    def __init__(
        self, order: Literal[1, 2] = 1, p: float = 6.0, sigma: float = 1.0, saturation: float = 1.0, dark: float = 0.0
    ) -> None:
        super().__init__(saturation, dark)
        if order not in (1, 2):
            raise OptionError(f"GrayEdge: order must be 1 or 2, got {order}.")
        if sigma <= 0:
            raise OptionError(f"GrayEdge: sigma must be > 0 (the derivative is a Gaussian derivative), got {sigma}.")
        self.order, self.p, self.sigma = int(order), float(p), float(sigma)


class BrightDarkPCA(nn.Module):
    """Cheng, Prasad & Brown's PCA method (JOSA A 2014): the main direction of the brightest and darkest colours.

    Written here (kornia, OpenCV and scikit-image have no such estimator) after the authors' definition and MATLAB's
    ``illumpca`` (Image Processing Toolbox), step for step, per image:

    1. the usable pixels ``A`` (``N x 3``): not masked (maximum channel ``> dark``: our zeroed charts) and neither
       saturated nor next to a saturated pixel (the 3 x 3 dilation of :func:`estimation_mask`; no border is left
       out, as there is no filter);
    2. each colour's projection on the mean colour ``m``, ``d_i = A_i . m / |m|^2``, sorted (stably);
    3. the ``k = max(1, floor(percent / 100 * N))`` lowest and ``k`` highest of that order are kept (all colours when
       ``percent >= 50`` or ``N = 1``);
    4. the estimate is the first principal component of the kept colours *without* mean-centring (so it passes
       through the origin), its signs made positive; ``illumpca`` returns the kept colours' mean instead in its
       degenerate cases (one colour; the right singular vectors are the standard basis; the three singular values
       equal to within 10 machine epsilon), and so does this.

    The principal component is the eigenvector of the largest eigenvalue of the kept colours' ``3 x 3`` Gram matrix
    in float64 (the same direction as the first right singular vector of ``illumpca``'s ``svd``). A parameter-free
    baseline, not part of the deployed model: it sorts each image's pixels.

    Args:
        percent: share of the darkest and of the brightest colours kept, in ``(0, 50]`` (the reference's 3.5).
        saturation: clipped-pixel threshold on the maximum channel, ``[0, 1]`` scale (see :func:`estimation_mask`).
        dark: pixels whose maximum channel is at or below this are masked (default 0: the zeroed pixels).
    """

    def __init__(self, percent: float = 3.5, saturation: float = 1.0, dark: float = 0.0) -> None:
        super().__init__()
        if not 0 < percent <= 50:
            raise OptionError(f"BrightDarkPCA: percent must be in (0, 50], got {percent}.")
        self.percent = float(percent)
        self.saturation = float(saturation)
        self.dark = float(dark)

    def _estimate(self, colours: Tensor) -> Tensor:
        """The unit estimate of one image's usable colours ``(N, 3)`` in float64 (NaN for ``N = 0``)."""
        n = colours.shape[0]
        if n == 0:
            return torch.full((3,), math.nan, dtype=colours.dtype)
        mean = colours.mean(dim=0)
        order = torch.sort(colours @ mean / mean.dot(mean), stable=True).indices
        if self.percent < 50 and n > 1:
            k = max(1, math.floor(self.percent / 100.0 * n))
            order = torch.cat([order[:k], order[n - k :]])
        kept = colours[order]
        gram = kept.T @ kept
        values, vectors = torch.linalg.eigh(gram)  # ascending eigenvalues
        singular = values.clamp_min(0).sqrt().flip(0)
        tolerance = 10 * torch.finfo(colours.dtype).eps
        off_diagonal_zero = bool((gram - torch.diag(gram.diagonal())).eq(0).all())
        standard_basis = off_diagonal_zero and bool((gram.diagonal()[:-1] >= gram.diagonal()[1:]).all())
        equal = bool(singular[0] - singular[1] <= tolerance) and bool(singular[0] - singular[2] <= tolerance)
        if kept.shape[0] < 2 or standard_basis or equal:
            estimate = kept.mean(dim=0)
        else:
            estimate = vectors[:, -1].abs()
        norm = estimate.norm()
        return estimate / norm if norm > 0 else torch.full((3,), math.nan, dtype=colours.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Unit-norm illuminant ``(B, 3)`` of linear RGB ``(B, 3, H, W)`` (NaN where no pixel is usable)."""
        valid = estimation_mask(x, saturation=self.saturation, dark=self.dark, border=False).flatten(1)
        pixels = x.detach().double().flatten(2).transpose(1, 2)  # (B, N, 3)
        return torch.stack([self._estimate(p[m]) for p, m in zip(pixels, valid, strict=True)]).to(x.dtype)

    def extra_repr(self) -> str:
        return f"percent={self.percent}, saturation={self.saturation}, dark={self.dark}"


#: Classical baselines by the names used in configs and result tables.
BASELINES: dict[str, type[nn.Module]] = {
    "gray_world": GrayWorld,
    "white_patch": WhitePatch,
    "white_patch_p99": PercentileWhitePatch,
    "shades_of_gray": ShadesOfGray,
    "gray_edge": GrayEdge,
    "gray_index": GrayIndex,
    "bright_dark_pca": BrightDarkPCA,
}

#: Row names of the baselines (default settings) in result tables.
BASELINE_TITLES: dict[str, str] = {
    "gray_world": "Gray World",
    "white_patch": "White Patch (max-RGB)",
    "white_patch_p99": "White Patch (99th pct, not general_cc)",
    "shades_of_gray": "Shades of Gray (p=6)",
    "gray_edge": "Gray Edge (1st order, p=6, sigma=1)",
    "gray_index": "Grayness Index (0.1% gray pixels)",
    "bright_dark_pca": "Cheng PCA (3.5% brightest + darkest)",
}


def create_baseline(name: str) -> nn.Module:
    """A classical AWB estimator with its default settings, by its :data:`BASELINES` name."""
    try:
        return BASELINES[name]()
    except KeyError:
        raise OptionError(f"Unknown AWB baseline {name!r}; choose from {sorted(BASELINES)}.") from None
