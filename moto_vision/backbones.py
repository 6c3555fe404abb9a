"""timm feature backbones shared by every moto-vision task.

``create_backbone`` is the one entry point: any timm model name, wrapped as a multi-scale feature
extractor (timm's ``features_only``), with weights from nowhere (``pretrained=False``), from a local
file (``.safetensors``, ``.pth``/``.pt`` state dict in timm's key layout, or a moto-vision ``.ckpt``)
or, only when explicitly asked with ``pretrained=True``, from the timm hub.

Nothing here imports Lightning, so the module is usable in any PyTorch project::

    from moto_vision.backbones import create_backbone
    backbone = create_backbone("mobilenetv3_small_100", pretrained="weights.safetensors")
    features = backbone(images)  # list of (B, C_i, H / r_i, W / r_i)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

__all__ = [
    "RECOMMENDED_BACKBONES",
    "Backbone",
    "BackboneInfo",
    "BackboneWeightsError",
    "backbone_state_dict_from_checkpoint",
    "backbones_table",
    "create_backbone",
    "drop_unused_stages",
    "list_backbones",
    "load_backbone_weights",
    "reparameterize",
    "save_backbone",
]

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

_CHECKPOINT_SUFFIXES = (".ckpt",)
_STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin")
_SAFETENSORS_SUFFIXES = (".safetensors",)

#: Prefix under which every moto-vision task stores its backbone (``self.backbone = Backbone(...)``).
_TASK_BACKBONE_PREFIX = "backbone.model."


class BackboneWeightsError(RuntimeError):
    """Raised when backbone weights cannot be found, read or matched to the architecture."""


class Backbone(nn.Module):
    """A timm model as a multi-scale feature extractor.

    Attributes:
        name: the timm model name.
        channels: number of channels of each returned feature map.
        reductions: stride of each returned feature map relative to the input.
        model: the underlying timm ``features_only`` module.
    """

    def __init__(self, name: str, model: nn.Module) -> None:
        super().__init__()
        self.name = name
        self.model = model
        self.channels: list[int] = list(model.feature_info.channels())
        self.reductions: list[int] = list(model.feature_info.reduction())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the feature maps, shallow to deep, each ``(B, channels[i], H / reductions[i], W / ...)``."""
        features = self.model(x)
        if isinstance(features, Mapping):
            features = list(features.values())
        return list(features)

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """Timm's pretrained configuration (input size, mean / std) of the model."""
        return dict(getattr(self.model, "pretrained_cfg", {}) or {})

    def reparameterize(self) -> Backbone:
        """Fuse re-parameterisable branches (MobileOne, FastViT, RepViT) in place for inference."""
        reparameterize(self.model)
        return self

    def timm_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under the key names of the plain timm model (``timm.create_model(name)``)."""
        mapping = _feature_to_timm_keys(self.name, list(self.model.state_dict()))
        return {mapping[k]: v for k, v in self.model.state_dict().items()}

    def load_timm_state_dict(self, state_dict: Mapping[str, torch.Tensor], *, source: str = "weights") -> None:
        """Load weights in timm's key layout; every backbone parameter must be present.

        Keys of the classifier head and other parts outside the feature extractor are ignored.

        Args:
            state_dict: tensors keyed as in ``timm.create_model(name).state_dict()``.
            source: what to call the weights in error messages (usually the file path).
        """
        own = self.model.state_dict()
        mapping = _feature_to_timm_keys(self.name, list(own))
        converted: dict[str, torch.Tensor] = {}
        missing = []
        for feature_key, timm_key in mapping.items():
            if timm_key not in state_dict:
                missing.append(timm_key)
                continue
            tensor = state_dict[timm_key]
            target = own[feature_key]
            if tensor.shape != target.shape and tensor.ndim == 4 and tensor.shape[0] == target.shape[0]:
                # First convolution trained on a different number of input channels: adapt as timm does.
                from timm.models._manipulate import adapt_input_conv

                tensor = adapt_input_conv(target.shape[1], tensor)
            if tensor.shape != target.shape:
                raise BackboneWeightsError(
                    f"{source}: tensor {timm_key!r} has shape {tuple(tensor.shape)} but backbone "
                    f"{self.name!r} expects {tuple(target.shape)}. Are these weights for another architecture?"
                )
            converted[feature_key] = tensor.to(dtype=target.dtype)
        if missing:
            raise BackboneWeightsError(
                f"{source}: {len(missing)} of {len(mapping)} tensors of backbone {self.name!r} are missing "
                f"(first: {missing[:3]}). Pass weights saved from a {self.name!r} model "
                f"(timm key layout, a moto-vision checkpoint, or a file written by save_backbone)."
            )
        self.model.load_state_dict(converted, strict=True)


def create_backbone(
    name: str,
    *,
    pretrained: bool | str | os.PathLike[str] = False,
    out_indices: Sequence[int] | None = None,
    in_chans: int = 3,
) -> Backbone:
    """Create a timm model as a feature extractor.

    Args:
        name: any timm model name (``timm.list_models()``), e.g. ``"mobilenetv3_small_100"``.
        pretrained: ``False`` for random initialisation; a local file (``.safetensors``,
            ``.pth`` / ``.pt`` state dict in timm's key layout, or a moto-vision ``.ckpt`` whose
            backbone is extracted); or ``True`` for timm hub weights (needs network access).
        out_indices: which feature levels to return (timm's ``out_indices``); all by default.
        in_chans: number of input channels.

    Returns:
        A :class:`Backbone` whose ``forward`` returns the list of feature maps.

    Raises:
        BackboneWeightsError: the weights file is missing, unreadable or does not match ``name``,
            or hub weights were requested while offline.
        ValueError: ``name`` is not a timm model.
    """
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:8]}*")[:8]
        raise ValueError(f"Unknown timm backbone {name!r}. Similar names: {close}. See timm.list_models().")
    kwargs: dict[str, Any] = {"features_only": True, "in_chans": in_chans}
    if out_indices is not None:
        kwargs["out_indices"] = tuple(out_indices)

    if pretrained is True:
        return Backbone(name, _create_from_hub(name, kwargs))

    model = timm.create_model(name, pretrained=False, **kwargs)
    backbone = Backbone(name, model)
    if pretrained:
        load_backbone_weights(backbone, pretrained)
    return backbone


def _create_from_hub(name: str, kwargs: dict[str, Any]) -> nn.Module:
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}
    hint = (
        f"Could not get hub weights for {name!r}{' (HF_HUB_OFFLINE is set)' if offline else ''}. "
        "moto-vision never downloads unless asked; to use weights you already have, pass a local file: "
        f"create_backbone({name!r}, pretrained='/path/to/{name}.safetensors') or, in a recipe, "
        "`--model.init_args.pretrained /path/to/weights.safetensors` (.safetensors, .pth state dict, "
        "or a moto-vision .ckpt)."
    )
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as error:  # hub and network errors come in many types
        raise BackboneWeightsError(f"{hint}\nUnderlying error: {type(error).__name__}: {error}") from error


def load_backbone_weights(backbone: Backbone, path: str | os.PathLike[str]) -> Backbone:
    """Load a local weights file into ``backbone`` (see :func:`create_backbone` for the formats)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BackboneWeightsError(
            f"Backbone weights file not found: {path}. Pass an existing .safetensors, .pth/.pt or .ckpt "
            "file, or pretrained=False."
        )
    state_dict = _read_weights_file(path)
    backbone.load_timm_state_dict(state_dict, source=str(path))
    return backbone


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    suffix = path.suffix.lower()
    try:
        if suffix in _SAFETENSORS_SUFFIXES:
            from safetensors.torch import load_file

            return load_file(str(path))
        if suffix in _CHECKPOINT_SUFFIXES:
            return backbone_state_dict_from_checkpoint(path)
        if suffix in _STATE_DICT_SUFFIXES:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            for key in ("state_dict", "model", "state_dict_ema"):
                if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
                    obj = obj[key]
                    break
            state_dict = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if any(k.startswith(_TASK_BACKBONE_PREFIX) for k in state_dict):
                state_dict = _strip_task_prefix(state_dict)
            return state_dict
    except BackboneWeightsError:
        raise
    except Exception as error:
        raise BackboneWeightsError(f"Could not read backbone weights from {path}: {error}") from error
    raise BackboneWeightsError(
        f"Unsupported weights file {path}: expected one of "
        f"{_SAFETENSORS_SUFFIXES + _STATE_DICT_SUFFIXES + _CHECKPOINT_SUFFIXES}."
    )


def backbone_state_dict_from_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Extract the backbone of a moto-vision task checkpoint, in timm's key layout.

    The checkpoint's own hyperparameters name the architecture; the keys are converted from the
    feature-extractor layout to the plain timm layout so they load anywhere.
    """
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    if "state_dict" not in checkpoint:
        raise BackboneWeightsError(f"{path} is not a Lightning checkpoint (no 'state_dict').")
    state_dict = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith(_TASK_BACKBONE_PREFIX)}
    if not state_dict:
        raise BackboneWeightsError(f"{path} holds no moto-vision backbone (no keys under {_TASK_BACKBONE_PREFIX!r}).")
    return _strip_task_prefix(state_dict, hparams=checkpoint.get("hyper_parameters", {}), source=str(path))


def _strip_task_prefix(
    state_dict: Mapping[str, torch.Tensor], hparams: Mapping[str, Any] | None = None, source: str = "weights"
) -> dict[str, torch.Tensor]:
    features = {
        k[len(_TASK_BACKBONE_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(_TASK_BACKBONE_PREFIX)
    }
    name = (hparams or {}).get("backbone")
    if not name:
        # Without the architecture name the keys are still the feature layout; timm layout differs only in
        # '.' versus '_' in flattened module names, which load_timm_state_dict matches by normalised name.
        return features
    mapping = _feature_to_timm_keys(str(name), list(features))
    return {mapping.get(k, k): v for k, v in features.items()}


def save_backbone(source: nn.Module | str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Write a trained backbone as ``.safetensors`` in timm's own key layout.

    Another project then loads it with plain timm, without moto-vision::

        timm.create_model(name, features_only=True, pretrained=True, pretrained_cfg_overlay=dict(file=path))
        # or a headless classifier body:
        timm.create_model(name, num_classes=0, pretrained=True, pretrained_cfg_overlay=dict(file=path))

    Args:
        source: a :class:`Backbone`, any module with a ``backbone`` attribute (a moto-vision task), or
            the path of a moto-vision ``.ckpt``.
        path: output file; ``.safetensors`` is appended if missing.

    Returns:
        The written path.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    if isinstance(source, (str, os.PathLike)):
        checkpoint = torch.load(Path(source), map_location="cpu", weights_only=True)
        name = checkpoint.get("hyper_parameters", {}).get("backbone", "")
        state_dict = backbone_state_dict_from_checkpoint(source)
    else:
        backbone = source if isinstance(source, Backbone) else getattr(source, "backbone", None)
        if not isinstance(backbone, Backbone):
            raise TypeError(f"save_backbone needs a Backbone, a task with .backbone or a .ckpt path, got {source!r}")
        name = backbone.name
        state_dict = backbone.timm_state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    save_file(tensors, str(path), metadata={"architecture": str(name), "format": "pt", "source": "moto-vision"})
    return path


def drop_unused_stages(backbone: Backbone) -> Backbone:
    """Remove the stages after the last returned feature level from timm's EfficientNet-family feature models.

    timm's ``MobileNetV3Features`` / ``EfficientNetFeatures`` build and run every block whatever ``out_indices``
    asks for (its generic ``FeatureListNet`` stops at the last used layer); heads that read a shallow level
    (AWB) would otherwise pay for the unused stages in time on every forward pass and in checkpoint and export size.
    Other backbones are returned unchanged.
    """
    model = backbone.model
    stages = getattr(model, "_stage_out_idx", None)
    blocks = getattr(model, "blocks", None)
    if not stages or not isinstance(blocks, nn.Sequential) or getattr(model, "feature_hooks", None) is not None:
        return backbone
    keep = max(stages)
    if keep < len(blocks):
        model.blocks = blocks[:keep]
    return backbone


def reparameterize(model: nn.Module) -> nn.Module:
    """Fuse re-parameterisable blocks (MobileOne, FastViT, RepViT, ...) of ``model`` in place.

    Uses timm's own ``reparameterize_model``; modules without such blocks are returned unchanged.
    """
    from timm.utils.model import reparameterize_model

    return reparameterize_model(model, inplace=True)


@functools.lru_cache(maxsize=64)
def _timm_keys(name: str) -> tuple[str, ...]:
    # The meta device builds the module tree without allocating or initialising weights.
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=0)
    return tuple(model.state_dict())


def _normalise_key(key: str) -> str:
    return key.removeprefix("model.").replace(".", "_")


def _feature_to_timm_keys(name: str, feature_keys: Sequence[str]) -> dict[str, str]:
    """Map feature-extractor keys to plain timm keys.

    timm's feature wrappers flatten nested modules (``blocks.0`` becomes ``blocks_0``) or prefix them with
    ``model.``; otherwise names are unchanged, so keys match once dots and underscores are unified.
    """
    by_normalised: dict[str, str] = {}
    for key in _timm_keys(name):
        by_normalised.setdefault(_normalise_key(key), key)
    return {key: by_normalised.get(_normalise_key(key), key) for key in feature_keys}


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
    """Describe recommended mobile backbones with parameters and MACs measured on the models.

    Parameters and multiply-accumulates are counted on the timm classifier (``pretrained=False``) at
    ``input_size`` x ``input_size``, the way papers and timm's model cards report them.
    """
    return [_backbone_info(name, input_size) for name in names]


@functools.lru_cache(maxsize=64)
def _backbone_info(name: str, input_size: int) -> BackboneInfo:
    from moto_vision.deploy.profile import count_macs

    model = timm.create_model(name, pretrained=False).eval()
    training_params = sum(p.numel() for p in model.parameters())
    # Phones run the fused graph, so re-parameterisable models are costed after fusion.
    model = reparameterize(model)
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, torch.zeros(1, 3, input_size, input_size))
    features = create_backbone(name)
    reparam = params != training_params
    return BackboneInfo(
        name=name,
        params_m=params / 1e6,
        macs_g=macs / 1e9,
        input_size=input_size,
        feature_channels=tuple(features.channels),
        feature_reductions=tuple(features.reductions),
        reparameterizable=reparam,
    )


def backbones_table(infos: Sequence[BackboneInfo]) -> str:
    """Markdown table of :func:`list_backbones` results."""
    lines = [
        "| backbone | params (M) | MACs (M) @224 | feature channels | feature strides "
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


if __name__ == "__main__":  # python -m moto_vision.backbones: print the recommended-backbone table
    print(backbones_table(list_backbones()))
