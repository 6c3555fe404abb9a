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

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from moto_vision.errors import OptionError

__all__ = [
    "Backbone",
    "BackboneWeightsError",
    "backbone_state_dict_from_checkpoint",
    "create_backbone",
    "drop_unused_stages",
    "load_backbone_weights",
    "reparameterize",
    "save_backbone",
    "upgrade_keys_hook",
    "upgrade_state_dict",
]

_CHECKPOINT_SUFFIXES = (".ckpt",)
_STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin")
_SAFETENSORS_SUFFIXES = (".safetensors",)

#: Prefix under which every moto-vision task stores its backbone (``self.backbone = Backbone(...)``).
_TASK_BACKBONE_PREFIX = "backbone."
#: How long ``pretrained=True`` waits for the weights host before treating the machine as offline.
HUB_PROBE_SECONDS = 2.0


class BackboneWeightsError(RuntimeError):
    """Raised when backbone weights cannot be found, read or matched to the architecture."""


class Backbone(nn.Module):
    """A timm model as a multi-scale feature extractor.

    The model is timm's ``features_only=True, feature_cls="getter"`` wrapper: the plain timm model (``model.model``,
    with timm's own weight names) run through its ``forward_intermediates``, with the stages after the last
    requested level pruned by timm (``prune_intermediate_layers``).

    Attributes:
        name: the timm model name.
        channels: number of channels of each returned feature map.
        reductions: stride of each returned feature map relative to the input.
        model: the timm feature module.
    """

    def __init__(self, name: str, model: nn.Module) -> None:
        super().__init__()
        self.name = name
        self.model = model
        self.channels: list[int] = list(model.feature_info.channels())
        self.reductions: list[int] = list(model.feature_info.reduction())
        # Checkpoints of earlier releases stored the weights under timm's default feature-wrapper names.
        self.register_load_state_dict_pre_hook(upgrade_keys_hook)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the feature maps, shallow to deep, each ``(B, channels[i], H / reductions[i], W / ...)``."""
        features = self.model(x)
        if isinstance(features, Mapping):
            features = list(features.values())
        return list(features)

    @property
    def timm_model(self) -> nn.Module:
        """The module whose weight names are the plain timm model's (pruned to the stages in use)."""
        return self.model.model

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """Timm's pretrained configuration (input size, mean / std) of the model."""
        return dict(getattr(self.timm_model, "pretrained_cfg", None) or getattr(self.model, "pretrained_cfg", {}))

    def reparameterize(self) -> Backbone:
        """Fuse re-parameterisable branches (MobileOne, FastViT, RepViT) in place for inference."""
        reparameterize(self.model)
        return self

    def timm_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under the key names of the plain timm model (``timm.create_model(name)``)."""
        return dict(self.timm_model.state_dict())

    def load_timm_state_dict(self, state_dict: Mapping[str, torch.Tensor], *, source: str = "weights") -> None:
        """Load weights in timm's key layout; every tensor of this feature extractor must be present.

        Tensors the feature extractor does not have (the classifier, stages pruned away) are ignored.

        Args:
            state_dict: tensors keyed as in ``timm.create_model(name).state_dict()``.
            source: what to call the weights in error messages (usually the file path).
        """
        self.timm_model.load_state_dict(self.matched_tensors(state_dict, source=source), strict=True)

    def matched_tensors(self, state_dict: Mapping[str, torch.Tensor], *, source: str) -> dict[str, torch.Tensor]:
        """The backbone's tensors taken from ``state_dict`` (timm names), checked: all present, shapes equal.

        A first convolution trained on another number of input channels is adapted as timm does.

        Raises:
            BackboneWeightsError: a tensor is missing or has another shape; the message names ``source``.
        """
        own = self.timm_state_dict()
        matched: dict[str, torch.Tensor] = {}
        missing = [k for k in own if k not in state_dict]
        if missing:
            raise BackboneWeightsError(f"{source}: {_missing_message(self.name, missing, len(own), state_dict)}")
        for key, target in own.items():
            tensor = state_dict[key]
            if tensor.shape != target.shape and tensor.ndim == 4 and tensor.shape[0] == target.shape[0]:
                tensor = timm.models.adapt_input_conv(target.shape[1], tensor)
            if tensor.shape != target.shape:
                raise BackboneWeightsError(
                    f"{source}: tensor {key!r} has shape {tuple(tensor.shape)} but backbone "
                    f"{self.name!r} expects {tuple(target.shape)}. Are these weights for another architecture?"
                )
            matched[key] = tensor.to(dtype=target.dtype)
        return matched

    def upgrade_keys(self, state_dict: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        """Rename weights saved by earlier releases (timm's default feature-wrapper names) to this layout.

        Keys under ``prefix`` that this backbone does not have are matched by name with dots and underscores
        unified (timm's feature wrappers flattened ``blocks.0`` to ``blocks_0``); other keys are left alone.
        """
        own = {f"{prefix}{k}" for k in self.state_dict()}
        if own.issubset(state_dict):
            return dict(state_dict)
        by_normalised = {_normalise_key(k[len(prefix) :]): k for k in own}
        upgraded: dict[str, Any] = {}
        for key, value in state_dict.items():
            if key.startswith(prefix) and key not in own:
                key = by_normalised.get(_normalise_key(key[len(prefix) :]), key)
            upgraded[key] = value
        return upgraded


def upgrade_keys_hook(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """A ``load_state_dict`` pre-hook: renames old keys in place with ``module.upgrade_keys(state_dict, prefix)``.

    ``Backbone`` and ``MultiTaskPerception`` register it.
    """
    upgraded = module.upgrade_keys(state_dict, prefix)
    if list(upgraded) != list(state_dict):
        state_dict.clear()
        state_dict.update(upgraded)


def upgrade_state_dict(module: nn.Module, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``state_dict`` with the weights of ``module`` renamed to today's layout.

    Every :class:`Backbone` in it, and every other module with an ``upgrade_keys`` method, renames its own.

    ``module.load_state_dict`` does this by itself; use this to compare a checkpoint's names with the module's.
    """
    upgraded = dict(state_dict)
    for name, child in module.named_modules():
        # Backbones, and any module with names of its own to upgrade (MultiTaskPerception's 0.1 layout).
        upgrade = getattr(child, "upgrade_keys", None)
        if callable(upgrade):
            upgraded = upgrade(upgraded, f"{name}." if name else "")
    return upgraded


def _missing_message(name: str, missing: Sequence[str], total: int, state_dict: Mapping[str, Any]) -> str:
    message = (
        f"{len(missing)} of {total} tensors of backbone {name!r} are missing (first: {list(missing[:3])}). Pass "
        f"weights saved from a {name!r} model (timm key layout, a moto-vision checkpoint, or a file written by "
        "save_backbone)."
    )
    if len(state_dict) < total:  # e.g. the first stages of an AWB backbone
        message += (
            f" The file holds {len(state_dict)} tensors: a backbone with only its first stages; build the backbone "
            "with out_indices no deeper than the level it was saved with."
        )
    return message


def _feature_kwargs(out_indices: Sequence[int] | None, in_chans: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"features_only": True, "feature_cls": "getter", "in_chans": in_chans}
    if out_indices is not None:
        kwargs["out_indices"] = tuple(out_indices)
    return kwargs


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
        out_indices: which feature levels to return (timm's ``out_indices``); all by default. timm prunes the
            stages after the deepest one.
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
        raise OptionError(f"Unknown timm backbone {name!r}. Similar names: {close}. See timm.list_models().")
    kwargs = _feature_kwargs(out_indices, in_chans)
    if pretrained is True:
        return Backbone(name, _create_from_hub(name, kwargs))
    if pretrained:
        return load_backbone_weights(name, pretrained, kwargs)
    return Backbone(name, timm.create_model(name, **kwargs))


def _create_from_hub(name: str, kwargs: dict[str, Any]) -> nn.Module:
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}
    hint = (
        f"Could not get hub weights for {name!r}{' (offline)' if offline else ''}. "
        "moto-vision never downloads unless asked; to use weights you already have, pass a local file: "
        f"create_backbone({name!r}, pretrained='/path/to/{name}.safetensors') or, in a recipe, "
        "`--model.init_args.pretrained /path/to/weights.safetensors` (.safetensors, .pth state dict, "
        "or a moto-vision .ckpt)."
    )
    try:
        with _offline_unless_reachable(name):
            return timm.create_model(name, **kwargs, pretrained=True)
    except Exception as error:  # hub and network errors come in many types
        message = " ".join(str(error).split())[:300]
        raise BackboneWeightsError(f"{hint}\nUnderlying error: {type(error).__name__}: {message}") from error


@contextmanager
def _offline_unless_reachable(name: str) -> Iterator[None]:
    """Run the hub download offline (local cache only) when the weights' host does not answer within 2 s.

    Without a network, huggingface_hub retries each candidate file five times with back-off (about 50 s) before
    it fails; one short request to the same host tells the same thing at once, and offline mode still finds
    files already in the local cache.
    """
    from huggingface_hub import constants, hf_hub_url

    cfg = timm.models.get_pretrained_cfg(name.split(".")[0])
    if constants.HF_HUB_OFFLINE or cfg is None or not (cfg.hf_hub_id or cfg.url):
        yield  # offline already, or no weights to fetch: timm says so itself, at once
        return
    if not cfg.hf_hub_id:  # weights at a plain URL, fetched by torch.hub (one attempt, cached by file name)
        if not _torch_hub_cached(cfg.url) and not _reachable(cfg.url):
            raise ConnectionError(f"{urlparse(cfg.url).hostname} did not answer within {HUB_PROBE_SECONDS:g} s")
        yield
        return
    if _reachable(hf_hub_url(cfg.hf_hub_id, "model.safetensors")):
        yield
        return
    # huggingface_hub reads this flag on every request (constants.is_offline_mode()).
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False


def _reachable(url: str, timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether ``url``'s server answers an HTTP HEAD request (any status) within ``timeout`` seconds, DNS included."""
    import urllib.error
    import urllib.request

    answered: list[bool] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            answered.append(True)
        except urllib.error.HTTPError:  # the server answered (401, 404...): the network is there
            answered.append(True)
        except (OSError, ValueError):  # DNS failure, refused, timeout
            answered.append(False)

    # DNS resolution ignores urllib's timeout; a daemon thread bounds the whole probe.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered and answered[0])


def _torch_hub_cached(url: str) -> bool:
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name).is_file()


def load_backbone_weights(name: str, path: str | os.PathLike[str], kwargs: dict[str, Any] | None = None) -> Backbone:
    """A backbone ``name`` with the weights of a local file (see :func:`create_backbone` for the formats).

    timm weight files (``.safetensors``, ``.pth``) are loaded by timm itself (``pretrained_cfg_overlay=dict(file=
    ...)``, which also adapts the first convolution to ``in_chans``) once the file is checked to hold every tensor the
    feature extractor needs: timm's own loading of a feature model is not strict and would leave missing stages
    random. A moto-vision ``.ckpt`` (or a task's saved ``state_dict``) holds the backbone under the task's names and
    is loaded directly.

    Args:
        name: timm model name.
        path: the weights file.
        kwargs: timm ``create_model`` feature arguments (``out_indices``, ``in_chans``); all levels, 3 channels if
            not given.
    """
    kwargs = dict(kwargs or _feature_kwargs(None, 3))
    path = Path(path).expanduser()
    if not path.is_file():
        raise BackboneWeightsError(
            f"Backbone weights file not found: {path}. Pass an existing .safetensors, .pth/.pt or .ckpt "
            "file, or pretrained=False."
        )
    suffix = path.suffix.lower()
    if suffix in _CHECKPOINT_SUFFIXES:
        backbone = Backbone(name, timm.create_model(name, **kwargs))
        backbone.load_timm_state_dict(backbone_state_dict_from_checkpoint(path), source=str(path))
        return backbone
    if suffix not in _SAFETENSORS_SUFFIXES + _STATE_DICT_SUFFIXES:
        raise BackboneWeightsError(
            f"Unsupported weights file {path}: expected one of "
            f"{_SAFETENSORS_SUFFIXES + _STATE_DICT_SUFFIXES + _CHECKPOINT_SUFFIXES}."
        )
    try:
        state_dict = timm.models.load_state_dict(str(path))  # timm's reader: weights only, wrappers unpacked
    except Exception as error:
        raise BackboneWeightsError(f"Could not read backbone weights from {path}: {error}") from error
    if any(k.startswith(_TASK_BACKBONE_PREFIX) for k in state_dict):  # a task's state_dict saved with torch.save
        backbone = Backbone(name, timm.create_model(name, **kwargs))
        backbone.load_timm_state_dict(_task_backbone_tensors(state_dict, name), source=str(path))
        return backbone
    with torch.device("meta"):  # the architecture's tensor names and shapes, nothing allocated
        expected = Backbone(name, timm.create_model(name, **kwargs))
    expected.matched_tensors(state_dict, source=str(path))
    overlay = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}
    try:
        return Backbone(name, timm.create_model(name, **kwargs, **overlay))
    except Exception as error:
        raise BackboneWeightsError(f"Could not load backbone weights from {path}: {error}") from error


def backbone_state_dict_from_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Extract the backbone of a moto-vision task checkpoint, in timm's key layout.

    The checkpoint's own hyperparameters name the architecture; checkpoints of earlier releases (timm's default
    feature-wrapper names) are converted too.
    """
    try:
        checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise BackboneWeightsError(f"Could not read {path} as a weights-only checkpoint: {error}") from error
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise BackboneWeightsError(f"{path} is not a Lightning checkpoint (no 'state_dict').")
    name = (checkpoint.get("hyper_parameters") or {}).get("backbone")
    if not name:
        raise BackboneWeightsError(f"{path} records no `backbone` hyperparameter, so its architecture is unknown.")
    state_dict = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith(_TASK_BACKBONE_PREFIX)}
    if not state_dict:
        raise BackboneWeightsError(f"{path} holds no moto-vision backbone (no keys under {_TASK_BACKBONE_PREFIX!r}).")
    return _task_backbone_tensors(state_dict, str(name))


def _task_backbone_tensors(state_dict: Mapping[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The tensors under a task's ``backbone.`` prefix, renamed to timm's keys (old layouts upgraded)."""
    relative = {
        k[len(_TASK_BACKBONE_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(_TASK_BACKBONE_PREFIX)
    }
    with torch.device("meta"):  # every stage, so that any pruned subset maps
        reference = Backbone(name, timm.create_model(name, **_feature_kwargs(None, 3)))
    return {k.removeprefix("model.model."): v for k, v in reference.upgrade_keys(relative).items()}


def save_backbone(
    source: nn.Module | str | os.PathLike[str], path: str | os.PathLike[str], *, allow_partial: bool = False
) -> Path:
    """Write a trained backbone as ``.safetensors`` in timm's own key layout.

    The file holds the feature extractor: no classifier, and for models with a convolution between pooling and
    classifier (MobileNetV3's ``conv_head``) not that convolution either. Another project loads it with plain timm,
    without moto-vision::

        timm.create_model(name, features_only=True, feature_cls="getter", pretrained=True,
                          pretrained_cfg_overlay=dict(file=path))

    A backbone whose task kept only its first stages (AWB reads feature level 1) is partial: timm would load it
    into a full model and leave the other stages random without a word, so it is refused unless
    ``allow_partial=True``, which writes it marked (``partial`` and ``tensors`` in the file's metadata);
    :func:`create_backbone` loads such a file strictly, into a backbone no deeper than it.

    Args:
        source: a :class:`Backbone`, any module with a ``backbone`` attribute (a moto-vision task), or
            the path of a moto-vision ``.ckpt``.
        path: output file; ``.safetensors`` is appended if missing.
        allow_partial: write a partial backbone (marked) instead of refusing.

    Returns:
        The written path.

    Raises:
        BackboneWeightsError: the backbone is partial and ``allow_partial`` is off.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    if isinstance(source, (str, os.PathLike)):
        state_dict = backbone_state_dict_from_checkpoint(source)
        checkpoint = torch.load(Path(source), map_location="cpu", weights_only=True)
        name, label = str(checkpoint["hyper_parameters"]["backbone"]), str(source)
    else:
        backbone = source if isinstance(source, Backbone) else getattr(source, "backbone", None)
        if not isinstance(backbone, Backbone):
            raise TypeError(f"save_backbone needs a Backbone, a task with .backbone or a .ckpt path, got {source!r}")
        name, state_dict, label = backbone.name, backbone.timm_state_dict(), type(source).__name__
    with torch.device("meta"):
        full = Backbone(name, timm.create_model(name, **_feature_kwargs(None, 3))).timm_state_dict()
    metadata = {"architecture": name, "format": "pt", "source": "moto-vision", "layout": "timm features_only"}
    if len(state_dict) < len(full):
        if not allow_partial:
            raise BackboneWeightsError(
                f"{label} holds a partial {name!r} backbone: {len(state_dict)} of its {len(full)} feature-extractor "
                "tensors (the task uses only the first stages; the others were never built or trained). Plain timm "
                "would load it into a full model and leave the rest random. Pass allow_partial=True to write it "
                "marked as partial; create_backbone(name, out_indices=(level,), pretrained=file) loads it strictly."
            )
        metadata.update({"partial": "true", "tensors": f"{len(state_dict)}/{len(full)}"})
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    save_file(tensors, str(path), metadata=metadata)
    return path


def drop_unused_stages(backbone: Backbone) -> Backbone:
    """Kept for callers of earlier releases: timm now prunes the stages after the last used level itself.

    :func:`create_backbone` builds timm's ``feature_cls="getter"`` model, which removes the stages after the deepest
    ``out_indices`` (``prune_intermediate_layers``), so there is nothing left to drop.
    """
    return backbone


def reparameterize(model: nn.Module) -> nn.Module:
    """Fuse re-parameterisable blocks (MobileOne, FastViT, RepViT, ...) of ``model`` in place.

    Uses timm's own ``reparameterize_model``; modules without such blocks are returned unchanged.
    """
    from timm.utils.model import reparameterize_model

    return reparameterize_model(model, inplace=True)


def _normalise_key(key: str) -> str:
    while key.startswith("model."):
        key = key.removeprefix("model.")
    return key.replace(".", "_")
