"""The AWB kit: an illuminant head on one early feature level, the angular loss, FFCC statistics, correction grids."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from moto_vision.errors import OptionError
from moto_vision.heads.base import TaskKit
from moto_vision.heads.registry import register_kit
from moto_vision.metrics.angular import AngularError, format_table
from moto_vision.models.awb import (
    AngularLoss,
    ConfidencePoolingHead,
    LocalVotes,
    PoolingMLPHead,
    VoteChromaticity,
    apply_white_balance,
    check_gray_edge_scale,
    statistics_grid,
)

__all__ = ["AWBKit", "AWBOptions", "render_white_balance_grid"]


@dataclass(frozen=True)
class AWBOptions:
    """Options of the AWB head (an illuminant estimate from one backbone feature level).

    Args:
        head: ``"confidence"`` (FC4 confidence-weighted pooling) or ``"mlp"`` (global pooling + MLP).
        feature_level: the backbone feature level the head reads (timm ``out_indices``; 1 = stride 4); the stages
            after it are not built when no other head needs them. ``None``: the deepest.
        head_channels: hidden width of the head.
        dropout: dropout in the head.
        local_colour: confidence head: each location estimates a gain on the image colour under it rather than an
            absolute RGB (see :class:`~moto_vision.models.ConfidencePoolingHead`).
        global_context: confidence head: every location also sees the image-wide mean of the features.
        vote_grid: confidence head: pool the features to at most this many votes per side, so the head costs the
            same and votes on the same regions at any input size (``None``: one vote per feature location).
        classical_votes: confidence head: the classical estimates (Gray World, Shades of Gray, max-RGB, Gray Edge,
            bright pixels) join the local votes, each with a learned confidence and gain.
        gray_edge_scale: confidence head with ``classical_votes``: the Gray Edge vote on the image (1) or on its
            2 x 2 block means (2: a quarter of that statistic's cost; see
            :class:`~moto_vision.models.awb.ClassicalEstimates`).
        vote_chromaticity: confidence head with ``classical_votes``: the vote MLP sees each classical estimate's log
            chromaticity as it is (``"absolute"``) or relative to the mean of the estimates (``"relative"``).
        local_votes: confidence head: ``"always"``, or ``"training"`` (with ``classical_votes``: the local votes take
            part in training only; in eval mode the classical votes alone decide).
        vote_features: confidence head with ``classical_votes``: the vote MLP also sees the pooled features
            (``True``) or only the estimates (``False``; with ``local_votes="training"`` the deployed model then needs
            no backbone).
        vote_hidden: confidence head with ``classical_votes``: hidden width of the vote MLP.
        statistics_size: confidence head with ``classical_votes``: the classical statistics on the image's block
            means at most this many pixels per side (``None``: at the input's size), so they cost the same at any
            input size (``recipes/awb.yaml`` and ``recipes/overlays/multitask_awb_votes.yaml``: 64, the training size).
        classical_alone: confidence head with ``local_votes="training"``: the share of training batches in which the
            classical votes decide alone, as deployed (``recipes/overlays/awb_one_sensor.yaml``: 0.5).
        reproduction_weight: weight of the reproduction-error term added to the recovery angular loss.
    """

    head: Literal["confidence", "mlp"] = "confidence"
    feature_level: int | None = 1
    head_channels: int = 64
    dropout: float = 0.0
    local_colour: bool = True
    global_context: bool = True
    vote_grid: int | None = None
    classical_votes: bool = False
    gray_edge_scale: int = 1
    vote_chromaticity: VoteChromaticity = "absolute"
    local_votes: LocalVotes = "always"
    vote_features: bool = True
    vote_hidden: int = 32
    statistics_size: int | None = None
    classical_alone: float = 0.0
    reproduction_weight: float = 0.0


@register_kit
class AWBKit(TaskKit):
    """Auto white balance: unit-norm illuminant ``(B, 3)`` in the camera's raw space, scored in degrees."""

    name = "awb"
    target_key = "illuminant"
    domain = "linear"
    fill_value = 0.0
    datamodule = "moto_vision.data.AWBDataModule"
    options_type = AWBOptions
    # The angular loss is in degrees (about 2-20 while training), a cross-entropy in nats (about 0.1-2).
    loss_weight = 0.1

    @property
    def headline(self) -> str:
        return "recovery_mean"

    @property
    def headline_mode(self) -> Literal["min", "max"]:
        return "min"

    def max_level(self) -> int | None:
        return self.options.feature_level

    def feature_levels(self, num_levels: int) -> list[int]:
        return [self._level(num_levels)]

    def _level(self, num_levels: int) -> int:
        level = self.options.feature_level
        if level is None:
            return num_levels - 1
        if not 0 <= level < num_levels:
            raise OptionError(f"AWB feature_level {level} is outside the backbone's {num_levels} feature levels.")
        return level

    # ------------------------------------------------------------------------------------------ model
    def build(self, channels: Sequence[int], reductions: Sequence[int]) -> dict[str, nn.Module]:
        o = self.options
        width = channels[self._level(len(channels))]
        if o.head == "confidence":
            head: nn.Module = ConfidencePoolingHead(
                width,
                hidden=o.head_channels,
                dropout=o.dropout,
                local_colour=o.local_colour,
                global_context=o.global_context,
                grid=o.vote_grid,
                classical_votes=o.classical_votes,
                gray_edge_scale=o.gray_edge_scale,
                vote_chromaticity=o.vote_chromaticity,
                local_votes=o.local_votes,
                vote_features=o.vote_features,
                vote_hidden=o.vote_hidden,
                statistics_size=o.statistics_size,
                classical_alone=o.classical_alone,
            )
        else:
            head = PoolingMLPHead(width, hidden=o.head_channels, dropout=o.dropout)
        return {"head": head}

    def head_features(self, features: Sequence[Tensor]) -> Tensor:
        """The feature map the head reads, out of the backbone's list."""
        return features[self._level(len(features))]

    def forward(self, parts: Any, features: Sequence[Tensor] | None, image: Tensor) -> Tensor:
        """The illuminant from the backbone's features (``None`` where :meth:`needs_features` is ``False``)."""
        return parts.head(None if features is None else self.head_features(features), image)

    def needs_features(self, parts: Any) -> bool:
        """Whether the head reads the backbone's features now (not when feature-blind classical votes alone decide)."""
        return getattr(parts.head, "needs_features", True)

    def confidence_map(self, parts: Any, features: Sequence[Tensor], image: Tensor) -> Tensor | None:
        """FC4 confidence ``(B, 1, h, w)`` of each vote (``None`` for the MLP head)."""
        if not isinstance(parts.head, ConfidencePoolingHead):
            return None
        _, weights = parts.head.local_estimates(self.head_features(features), image)
        return weights

    # ------------------------------------------------------------------------------------------ training
    def build_loss(self) -> nn.Module:
        return AngularLoss(reproduction_weight=self.options.reproduction_weight)

    def loss(self, criterion: nn.Module, output: Tensor, target: Tensor) -> dict[str, Tensor]:
        terms = criterion(output, target)
        # Loss terms are logged as <split>_<name>; keep them apart from the metric names (<split>_recovery_mean).
        return {"loss": terms["loss"], **{f"{k}_loss": v for k, v in terms.items() if k == "reproduction"}}

    def metrics(self, core_only: bool = False) -> MetricCollection:
        return MetricCollection({"angular": AngularError()})

    # ------------------------------------------------------------------------------------------ reporting
    def render(self, parts: Any, images: Tensor, output: Tensor, target: Tensor, max_images: int = 8) -> Tensor:
        return render_white_balance_grid(images, output, target, max_images=max_images)

    def report(self, parts: Any, values: Mapping[str, float], *, prefix: str, title: str | None = None) -> None:
        row = {k.removeprefix(prefix): v for k, v in values.items() if k.startswith(prefix) and k != f"{prefix}loss"}
        print("\nAWB head: angular errors in degrees on the test split (lower is better):\n")
        print(format_table({title or "model": row}) + "\n")

    def check_data(self, datamodule: Any, where: str = "--model.init_args.") -> None:
        size = getattr(datamodule, "image_size", None)
        if size is not None and self.options.classical_votes:
            grid = statistics_grid((size, size), self.options.statistics_size)
            try:
                check_gray_edge_scale(self.options.gray_edge_scale, grid, f"{where}gray_edge_scale")
            except ValueError as error:
                if grid == (size, size):
                    raise
                raise OptionError(
                    f"{error} The statistics are taken at {grid[0]} x {grid[1]} because of {where}statistics_size "
                    f"{self.options.statistics_size} on {size} x {size} images: a larger statistics_size also works."
                ) from None
        o = self.options
        stage = getattr(getattr(getattr(datamodule, "trainer", None), "state", None), "fn", None)
        fitting = getattr(stage, "value", stage) == "fit"
        # Measured for both rendered formats (docs/awb.md#train-for-one-sensor): synthetic scenes and photos.
        one_sensor = getattr(datamodule, "rendered", False) and getattr(datamodule, "camera", None)
        if fitting and one_sensor and o.classical_votes and o.local_votes == "training" and o.classical_alone == 0:
            warnings.warn(
                f"Training for one sensor (--data.camera) with {where}local_votes training and {where}classical_alone "
                "0: the local votes learn the sensor's light prior and take the weight, and the deployed classical "
                "votes get worse as training goes on (docs/awb.md#train-for-one-sensor). Add --config "
                "recipes/overlays/awb_one_sensor.yaml (classical_alone 0.5).",
                stacklevel=2,
            )

    def export_metadata(self, parts: Any) -> dict[str, Any]:
        return {
            "output": "illuminant",
            "shape": ["batch", 3],
            "meaning": "unit-norm camera RGB of the light; correct with x / illuminant * illuminant[:, 1:2]",
            "feature_level": self.options.feature_level,
            "vote_grid": self.options.vote_grid,
            "statistics_size": self.options.statistics_size,
        }


def render_white_balance_grid(
    image: Tensor,
    estimate: Tensor,
    target: Tensor,
    max_images: int = 8,
    camera_matrices: Tensor | None = None,
    camera_matrix_cct: Tensor | None = None,
) -> Tensor:
    """One ``(3, H, W)`` sRGB picture: per image, uncorrected | corrected by ``estimate`` | corrected by ``target``.

    All three panels of an image share one exposure (the ground-truth-corrected image's 97th percentile maps
    to 0.9), so brightness differences are real, and are gamma-encoded for display. With the captures' DNG colour
    matrices (``camera_matrices`` ``(B, 2, 3, 3)``, ``camera_matrix_cct`` ``(B, 2)``) the panels are rendered through
    the DNG colour model (:func:`moto_vision.isp.render_dng_preview`) and "uncorrected" is the camera's daylight
    (D65) white balance; without them camera RGB is shown as if it were linear sRGB.
    """
    from kornia.color import linear_rgb_to_rgb
    from torchvision.utils import make_grid

    n = min(max_images, image.shape[0])
    image, estimate, target = image[:n].float(), estimate[:n].float(), target[:n].float()
    if camera_matrices is not None and camera_matrix_cct is not None:
        panels = _dng_panels(image, estimate, target, camera_matrices[:n], camera_matrix_cct[:n])
        return make_grid(panels.flatten(0, 1), nrow=3, padding=2, pad_value=1.0)
    by_gt = apply_white_balance(image, target)
    scale = torch.quantile(by_gt.flatten(1), 0.97, dim=1).clamp_min(1e-6)[:, None, None, None] / 0.9
    panels = torch.stack([image, apply_white_balance(image, estimate), by_gt], dim=1) / scale[:, None]
    panels = linear_rgb_to_rgb(panels.clamp(0, 1).flatten(0, 1))
    return make_grid(panels, nrow=3, padding=2, pad_value=1.0)


def _dng_panels(image: Tensor, estimate: Tensor, target: Tensor, matrices: Tensor, ccts: Tensor) -> Tensor:
    """``(B, 3, 3, H, W)`` display panels through the DNG colour model, one exposure per image."""
    from moto_vision.isp import apply_color_matrix, auto_exposure, camera_to_srgb_matrix, render_dng_preview
    from moto_vision.isp.dng import xy_to_neutral

    known = torch.isfinite(matrices).flatten(1).all(dim=1) & torch.isfinite(ccts).all(dim=1)
    safe_m = torch.where(known[:, None, None, None], matrices.double(), torch.eye(3, dtype=torch.float64))
    safe_c = torch.where(known[:, None], ccts.double(), torch.full_like(ccts.double(), 6500.0))
    d65 = torch.tensor([0.31271, 0.32902], dtype=torch.float64).expand(image.shape[0], 2)
    daylight = torch.where(known[:, None], xy_to_neutral(d65, safe_m, safe_c), torch.ones_like(d65[:, :1]))
    gain = auto_exposure(apply_color_matrix(image.double(), camera_to_srgb_matrix(target, safe_m, safe_c)))
    gain = torch.where(known, gain.double(), auto_exposure(apply_white_balance(image, target)).double())
    panels = [
        render_dng_preview(image, neutral, matrices, ccts, exposure=gain, tone=False)
        for neutral in (daylight.float(), estimate, target)
    ]
    return torch.stack(panels, dim=1)
