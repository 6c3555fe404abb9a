"""``AWBRegressor``: auto white balance as illuminant regression (FC4-style), scored like FFCC.

The model takes linear camera RGB ``(B, 3, H, W)`` in ``[0, 1]`` (any ``H, W >= 64``) and returns the
illuminant as unit-norm RGB ``(B, 3)``; the image is corrected with ``x / illuminant * illuminant[:, 1:2]``.
With ``camera_input=True`` or a ``locus_band`` it also accepts the camera's XYZ -> raw matrix ``(B, 3, 3)`` as a
second input (``model(x, camera)``; batches carry it as ``"camera"``); without it, it is camera-agnostic.

``test`` always scores the classical baselines (Gray World, White Patch, Shades of Gray, Gray Edge) on the
same batches as the model and prints one FFCC-style table with every method as a row, so a result never
stands without its baselines. ``method: gray_world`` (etc.) turns the task itself into a baseline, to score
it with ``test`` on any dataset without training anything. On camera captures (the ``dng`` and ``raw_png``
formats) the table has one more row, "Camera AWB": the phone's own answer (the DNG's ``AsShotNeutral``), so a
team sees at once whether the model beats its phone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn

from moto_vision.errors import OptionError
from moto_vision.heads.awb import AWBKit, render_white_balance_grid
from moto_vision.metrics.angular import AngularError, format_table
from moto_vision.models.awb import (
    BASELINE_TITLES,
    BASELINES,
    CameraPriorHead,
    ExposureNormalize,
    LocalVotes,
    LocusPrior,
    VoteChromaticity,
    channel_reference,
    create_baseline,
)
from moto_vision.models.ops import unit_length
from moto_vision.tasks.base import KitTask

__all__ = ["AWBRegressor"]

Batch = dict[str, Any]
Method = Literal[
    "learned",
    "gray_world",
    "white_patch",
    "white_patch_p99",
    "shades_of_gray",
    "gray_edge",
    "gray_index",
    "bright_dark_pca",
]
#: Row of the phone's own AWB (``AsShotNeutral`` in the batch as ``as_shot_neutral``) in result tables.
CAMERA_AWB_TITLE = "Camera AWB (AsShotNeutral)"


class AWBRegressor(KitTask):
    """Illuminant estimation from linear camera RGB.

    The head, loss, metrics and pictures are those of :class:`~moto_vision.heads.AWBKit`; its options
    (:class:`~moto_vision.heads.AWBOptions`) are arguments here under the same names.

    Args:
        backbone: timm model name of the feature extractor.
        pretrained: backbone weights: ``False``, a local file, or ``True`` (timm hub).
        head: ``"confidence"`` (FC4 confidence-weighted pooling) or ``"mlp"`` (global pooling + MLP).
        feature_level: which backbone feature level feeds the head (timm ``out_indices``); the stages after it
            are dropped. Colour needs little depth but fine votes: level 1 (stride 4) learns best on 64 px inputs
            in our synthetic experiments. ``None`` takes the deepest.
        head_channels: hidden width of the head.
        dropout: dropout in the head.
        log_input: feed the backbone log intensities (channel ratios become differences) instead of linear ones.
        local_colour: confidence head only: each location estimates a gain on the image colour under it rather
            than an absolute RGB (see :class:`~moto_vision.models.ConfidencePoolingHead`).
        global_context: confidence head only: every location also sees the image-wide mean of the features.
        vote_grid: confidence head only: pool the features to at most this many votes per side, so the head costs
            the same and votes on the same regions at any input size (``None``: one vote per feature location).
        classical_votes: confidence head only: the classical estimates (Gray World, Shades of Gray, max-RGB, Gray
            Edge, bright pixels) join the local votes, each with a learned confidence and gain.
        gray_edge_scale: with ``classical_votes``: the Gray Edge vote on the image (1) or on its 2 x 2 block means
            (2: a quarter of that statistic's cost).
        vote_chromaticity: with ``classical_votes``: the vote MLP sees each classical estimate's log chromaticity as
            it is in the camera's raw space (``"absolute"``) or relative to the mean of the estimates (``"relative"``,
            the recipe's: how they disagree, not where this camera puts the light).
        local_votes: confidence head only: ``"always"``, or ``"training"`` (with ``classical_votes``): the local votes
            take part in training only, and validation, test and the exported graph use the classical votes alone,
            with the confidences and gains learned beside the local votes.
        vote_features: with ``classical_votes``: the vote MLP also sees the backbone's pooled features (``True``),
            or only the classical estimates (``False``); with ``local_votes="training"`` the backbone then runs in
            training only, and the exported graph is the classical statistics and the vote MLP.
        vote_hidden: with ``classical_votes``: hidden width of the vote MLP.
        statistics_size: with ``classical_votes``: the classical statistics on the image's block means at most this
            many pixels per side (``None``: at the input's size), so a model trained at 64 px costs the same and sees
            the same statistics on larger frames.
        classical_alone: with ``local_votes="training"``: the share of training batches in which the classical votes
            decide alone, as deployed, so the deployed mixture is trained for itself too (for one sensor, where the
            local votes otherwise take the weight: ``recipes/overlays/awb_one_sensor.yaml`` sets 0.5).
        input_reference: the backbone sees the image relative to its mean brightness (``"mean"``) or to its
            brightest value (``"max"``, what bright-pixel reasoning needs).
        gain_equivariant: divide each channel by its mean over the valid pixels before the network and multiply
            the estimate back (:func:`~moto_vision.models.awb.channel_reference`): the estimate is then exactly
            equivariant to per-channel gains, so a camera whose raw space differs by channel scales (most of what
            separates cameras, and what the light itself does) is no new camera to the model.
        camera_input: add a :class:`~moto_vision.models.CameraPriorHead` that refines the estimate from the camera's
            XYZ -> raw matrix when one is given (``model(x, camera)``); ``model(x)`` stays camera-agnostic.
        camera_dropout: camera-aware training only: share of training images whose camera is withheld, so the
            camera-agnostic path keeps learning too.
        export_camera: camera-aware models (``camera_input`` or ``locus_band``): the camera baked into the exported
            graph, which then takes only the image (one file per sensor): its XYZ -> raw matrix (9 numbers,
            row-major) or anything ``--data.camera`` takes (a pool camera's name, a matrix or sensitivity file, one
            of its DNGs), recorded as the 9 numbers. ``None`` exports a graph that takes the camera as a second
            input (``locus_band``) or the camera-agnostic path.
        locus_band: when the camera is known (``model(x, camera)``, the batches' ``"camera"``, ``export_camera``), keep
            the estimate within this distance of the camera's Planckian locus in log chromaticity
            (:class:`~moto_vision.models.LocusPrior`; 0.05 measured best, ``docs/awb.md#locus-prior``); not in
            training, so ``model(x)`` without a camera is what the network learned. ``None``: off.
        image_size: input size the model is trained and exported at (``moto-vision fit`` takes the data's).
        method: ``"learned"`` (the network) or a classical baseline to use instead of it.
        baselines: classical methods scored next to the model in ``test`` (``None``: all of them).
        reproduction_weight: weight of the reproduction-error term added to the recovery angular loss.
        **kwargs: the arguments every task shares (``lr``, ``weight_decay``, ``warmup_fraction``,
            ``freeze_backbone``, ``log_predictions``; see :class:`~moto_vision.tasks.BaseTask`).
    """

    kit_type = AWBKit
    task_name: ClassVar[str] = "awb"
    optimizer_defaults: ClassVar[dict[str, float]] = {"lr": 5e-3, "weight_decay": 1e-4, "warmup_fraction": 0.03}

    def __init__(
        self,
        backbone: str = "mobilenetv3_small_100",
        pretrained: bool | str = False,
        head: Literal["confidence", "mlp"] = "confidence",
        feature_level: int | None = 1,
        head_channels: int = 64,
        dropout: float = 0.0,
        log_input: bool = True,
        local_colour: bool = True,
        global_context: bool = True,
        vote_grid: int | None = None,
        classical_votes: bool = False,
        gray_edge_scale: int = 1,
        vote_chromaticity: VoteChromaticity = "absolute",
        local_votes: LocalVotes = "always",
        vote_features: bool = True,
        vote_hidden: int = 32,
        statistics_size: int | None = None,
        classical_alone: float = 0.0,
        input_reference: Literal["mean", "max"] = "mean",
        gain_equivariant: bool = False,
        camera_input: bool = False,
        camera_dropout: float = 0.3,
        export_camera: str | list[float] | None = None,
        locus_band: float | None = None,
        image_size: int = 64,
        method: Method = "learned",
        baselines: list[str] | None = None,
        reproduction_weight: float = 0.0,
        **kwargs: Any,
    ) -> None:
        unknown = [b for b in baselines or [] if b not in BASELINES]
        if unknown:
            raise OptionError(f"AWBRegressor: unknown baselines {unknown}; choose from {sorted(BASELINES)}.")
        if isinstance(export_camera, str):
            export_camera = _camera_numbers(export_camera)
        if export_camera is not None and (len(export_camera) != 9 or not (camera_input or locus_band is not None)):
            raise OptionError(
                "AWBRegressor: export_camera takes 9 numbers (XYZ -> raw) and needs camera_input=True or a locus_band."
            )
        super().__init__(**kwargs)
        if export_camera is not None:
            self.hparams["export_camera"] = [float(v) for v in export_camera]  # the numbers, not a file or a name
        self._camera: Tensor | None = None

    # ----------------------------------------------------------------- model
    def configure_normalization(self) -> nn.Module:
        return ExposureNormalize(
            "log" if self.hparams.log_input else "linear", reference=self.hparams.get("input_reference", "mean")
        )

    def configure_models(self) -> None:
        super().configure_models()
        hp = self.hparams
        width = self.backbone.channels[self.kit.feature_levels(len(self.backbone.channels))[0]]
        self.camera_head = CameraPriorHead(width) if hp.get("camera_input", False) else None
        self.set_locus_band(hp.get("locus_band"))
        self.baseline = create_baseline(hp.method) if hp.method != "learned" else None
        names = list(BASELINES) if hp.baselines is None else list(hp.baselines)
        self.baseline_estimators = nn.ModuleDict({name: create_baseline(name) for name in names})
        self.baseline_metrics = nn.ModuleDict({name: AngularError() for name in names})
        # With the locus prior, the baselines are also scored with it: what the prior gives any estimate.
        self.baseline_locus_metrics = nn.ModuleDict({name: AngularError() for name in names})
        self.camera_awb_metric = AngularError()  # scored when test batches carry the capture's AsShotNeutral

    def forward(self, x: Tensor, camera: Tensor | None = None) -> Tensor:
        """Unit-norm illuminant ``(B, 3)`` of linear camera RGB ``(B, 3, H, W)`` in ``[0, 1]``.

        Args:
            x: the image.
            camera: optional ``(B, 3, 3)`` XYZ -> raw matrix of the camera (used with ``camera_input=True``).
        """
        if self.baseline is not None:
            return self.baseline(x)
        reference = channel_reference(x) if self.hparams.get("gain_equivariant", False) else None
        if reference is not None:
            x = x / reference[:, :, None, None]
        camera = camera if camera is not None else self._camera
        if self.camera_head is None and not self.kit.needs_features(self):
            # The feature-blind classical votes alone decide (eval mode): no backbone in this graph.
            return self._near_locus(
                unit_length(self._undo_reference(self.kit.forward(self, None, x), reference)), camera
            )
        features = self.backbone(self.normalize(x))
        estimate = self.kit.forward(self, features, x)
        if self.camera_head is not None and camera is not None:
            pooled = self.kit.head_features(features).mean(dim=(2, 3))
            refined = self.camera_head(estimate, camera, pooled, reference)
            if self.training and self.hparams.camera_dropout > 0:
                keep = torch.rand(x.shape[0], 1, device=x.device) >= self.hparams.camera_dropout
                refined = torch.where(keep, refined, estimate)
            estimate = refined
        return self._near_locus(unit_length(self._undo_reference(estimate, reference)), camera)

    def set_locus_band(self, band: float | None) -> None:
        """Switch the locus prior on (``band``, log-chromaticity units) or off (``None``), e.g. on a trained model.

        The prior has no weights, so any checkpoint can use it: ``model.set_locus_band(0.05)``, then
        ``model(x, camera)``. The same as the ``locus_band`` option (recorded in the hyperparameters, so a checkpoint
        saved afterwards keeps it).
        """
        if band is not None and not band >= 0:
            raise OptionError(f"AWBRegressor: locus_band must be >= 0 (log-chromaticity units) or null, got {band}.")
        self.hparams["locus_band"] = band
        self.locus_prior = LocusPrior(band) if band is not None else None

    @property
    def takes_camera(self) -> bool:
        """Whether the model uses the camera's matrix when it is given (``camera_input`` or ``locus_band``)."""
        return self.camera_head is not None or self.locus_prior is not None

    def _near_locus(self, estimate: Tensor, camera: Tensor | None) -> Tensor:
        """The estimate kept near the camera's locus (``locus_band``), when the camera is known and not training."""
        if self.locus_prior is None or camera is None or self.training:
            return estimate
        return self.locus_prior(estimate, camera)

    @staticmethod
    def _undo_reference(estimate: Tensor, reference: Tensor | None) -> Tensor:
        """The estimate in the input's raw space again, after ``gain_equivariant``'s division by ``reference``."""
        return estimate if reference is None else estimate * reference

    def shared_step(self, batch: Batch, split: str) -> tuple[Tensor, Any]:
        # The camera rides along with the batch for camera-aware models (`forward(x)` stays the one-input contract).
        self._camera = batch.get("camera") if self.takes_camera else None
        try:
            return super().shared_step(batch, split)
        finally:
            self._camera = None

    def confidence_map(self, x: Tensor) -> Tensor | None:
        """FC4 confidence ``(B, 1, h, w)`` of each feature location (``None`` for the MLP head / baselines).

        Zeros in eval mode with ``local_votes="training"``: the classical votes alone decide there.
        """
        if self.baseline is not None:
            return None
        if self.hparams.get("gain_equivariant", False):
            x = x / channel_reference(x)[:, :, None, None]
        return self.kit.confidence_map(self, self.backbone(self.normalize(x)), x)

    def export_module(self) -> nn.Module:
        """The deployed graph is the task's own forward (the network, or the classical method it stands for).

        A camera-aware model takes the image and the camera's matrix; with ``export_camera`` the matrix is baked in
        and the graph takes only the image (one file per sensor).
        """
        if self.takes_camera and self.hparams.get("export_camera") is not None:
            matrix = torch.tensor(self.hparams.export_camera, dtype=torch.float32).view(1, 3, 3)
            return _WithCamera(self, matrix)
        return self

    def export_inputs(self, image: Tensor) -> dict[str, Tensor]:
        """Example inputs of :meth:`export_module` by name: the image, and ``camera`` ``(1, 3, 3)`` when it is an input.

        The example camera is the Nikon D5100's XYZ -> raw matrix (Adobe ``ColorMatrix2``); data batches supply
        their own under the same key.
        """
        if not self.takes_camera or self.hparams.get("export_camera") is not None:
            return {"image": image}
        from moto_vision.isp.camera_matrices import ADOBE_XYZ_TO_RAW

        camera = torch.tensor(ADOBE_XYZ_TO_RAW["Nikon D5100"], dtype=image.dtype).view(1, 3, 3) / 10000.0
        return {"image": image, "camera": camera}

    def outputs_from_export(self, outputs: Tensor) -> Tensor:
        return outputs

    # ----------------------------------------------------------------- loss and baselines
    def compute_loss(self, outputs: Tensor, batch: Batch) -> dict[str, Tensor]:
        terms = super().compute_loss(outputs, batch)
        if self.baseline is not None:
            # A baseline has no parameters; keep the graph valid for Lightning without training anything.
            terms = {k: v.detach() for k, v in terms.items()}
        return terms

    def on_fit_start(self) -> None:
        if self.baseline is not None:
            raise RuntimeError(
                f"AWBRegressor(method={self.hparams.method!r}) is a classical method with nothing to train. "
                "Score it with `test` (no --ckpt_path needed), or set --model.method learned to train a network."
            )

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        result = super().test_step(batch, batch_idx, dataloader_idx)
        with torch.no_grad():
            camera = batch.get("camera") if self.locus_prior is not None else None
            for name, estimator in self.baseline_estimators.items():
                estimate = estimator(batch["image"])
                self.baseline_metrics[name].update(estimate, batch["illuminant"])
                if camera is not None:
                    self.baseline_locus_metrics[name].update(self.locus_prior(estimate, camera), batch["illuminant"])
            as_shot = batch.get("as_shot_neutral")
            if as_shot is not None:
                known = torch.isfinite(as_shot).all(dim=1)  # captures without the tag are left out of that row
                if bool(known.any()):
                    self.camera_awb_metric.update(as_shot[known], batch["illuminant"][known])
        return result

    def on_test_epoch_end(self) -> None:
        self._baseline_results: dict[str, dict[str, float]] = {}
        for name, metric in self.baseline_metrics.items():
            if metric.update_called:
                self._baseline_results[name] = {k: float(v) for k, v in metric.compute().items()}
                metric.reset()
        self._locus_scored = False
        for name, metric in self.baseline_locus_metrics.items():
            if metric.update_called:
                self._baseline_results[f"{name}{_WITH_LOCUS}"] = {k: float(v) for k, v in metric.compute().items()}
                metric.reset()
                self._locus_scored = True
        if self.camera_awb_metric.update_called:
            self._baseline_results["camera_awb"] = {k: float(v) for k, v in self.camera_awb_metric.compute().items()}
            self.camera_awb_metric.reset()
        super().on_test_epoch_end()

    def model_title(self) -> str:
        """How the model is named in result tables."""
        hp = self.hparams
        if hp.method != "learned":
            return BASELINE_TITLES[hp.method]
        prior = " + locus prior" if getattr(self, "_locus_scored", False) else ""
        if getattr(self.head, "deploys_without_features", False):
            # What is scored and deployed reads no backbone: say so, not only what it was trained beside.
            return f"AWBRegressor (classical votes, trained beside {hp.backbone} local votes){prior}"
        return f"AWBRegressor ({hp.backbone}, {hp.head} head){prior}"

    def test_results_table(self, values: Mapping[str, float]) -> tuple[str, dict[str, dict[str, float]]]:
        """Markdown table and rows (baselines first, then the model) from test metric values."""
        rows: dict[str, dict[str, float]] = {}
        for name, stats in getattr(self, "_baseline_results", {}).items():
            if name == "camera_awb":
                rows[CAMERA_AWB_TITLE] = stats
            elif name.endswith(_WITH_LOCUS):
                rows[BASELINE_TITLES[name.removesuffix(_WITH_LOCUS)] + " + locus prior"] = stats
            elif name != self.hparams.method:
                rows[BASELINE_TITLES[name]] = stats
        rows[self.model_title()] = {k.removeprefix("test_"): v for k, v in values.items() if k != "test_loss"}
        return format_table(rows), rows

    def report_test_results(self, values: Mapping[str, float]) -> None:
        """Print the FFCC table (model and baselines) and save it as Markdown and JSON in the run directory."""
        table, rows = self.test_results_table(values)
        # trainer.log_dir is a collective call under DDP: every rank asks, only rank zero prints and writes.
        run_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir) if self._trainer is not None else None
        self._print_and_save(table, rows, run_dir)

    @rank_zero_only
    def _print_and_save(self, table: str, rows: dict[str, dict[str, float]], run_dir: Path | None) -> None:
        print(
            "\nAWB angular errors in degrees on the test split (lower is better; recovery = angle between "
            "estimated and true illuminant, reproduction = Finlayson & Zakizadeh 2014):\n"
        )
        print(table + "\n")
        if run_dir is None:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "awb_test_results.md").write_text(table + "\n")
        (run_dir / "awb_test_results.json").write_text(json.dumps(rows, indent=2) + "\n")
        print(f"Saved {run_dir / 'awb_test_results.md'} and awb_test_results.json")

    # ----------------------------------------------------------------- visual logging
    def render_batch(self, batch: Batch, outputs: Any, max_images: int = 8) -> Tensor | None:
        """Rows of uncorrected / corrected with the prediction / corrected with the ground truth.

        Camera captures with DNG colour matrices are shown through the DNG colour model.
        """
        if not isinstance(outputs, Tensor) or "illuminant" not in batch:
            return None
        return render_white_balance_grid(
            batch["image"],
            outputs,
            batch["illuminant"],
            max_images=max_images,
            camera_matrices=batch.get("camera_matrices"),
            camera_matrix_cct=batch.get("camera_matrix_cct"),
        )


_WITH_LOCUS = "+locus"  # key suffix of a baseline scored with the locus prior


def _camera_numbers(spec: str) -> list[float]:
    """``export_camera`` given as a ``--data.camera`` value: that camera's XYZ -> raw matrix, 9 numbers.

    The least-squares matrix of the camera's sensitivities, as the one-sensor data's batches carry it.
    """
    from moto_vision.data.awb.datamodule import camera_pool_from_spec

    try:
        pool = camera_pool_from_spec(spec)
    except (ValueError, FileNotFoundError) as error:
        raise OptionError(f"AWBRegressor: export_camera: {str(error).removeprefix('--data.camera ')}") from None
    return [float(v) for v in pool.xyz_to_raw()[0].flatten()]


class _WithCamera(nn.Module):
    """A camera-aware model with one camera's matrix as a constant: the exported graph takes only the image."""

    def __init__(self, model: AWBRegressor, camera: Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("camera", camera)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x, self.camera.expand(x.shape[0], 3, 3))
