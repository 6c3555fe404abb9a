"""What a valid sample of each task and format looks like (bit depth, channels, mask kind, classes).

The indexers say where the files are; these rules say what the files must hold so that the datamodule reads
them correctly. Each task has defaults; known formats refine them in :data:`FORMAT_RULES`; an indexer can
refine them per sample through ``SampleRecord.extra`` (keys listed in :data:`RECORD_KEYS`); the command line
overrides everything (``--bit-depth``, ``--num-classes``, ``--classes``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = ["FORMAT_RULES", "RECORD_KEYS", "TASK_RULES", "FormatRules", "MaskKind", "rules_for"]

MaskKind = Literal["none", "binary", "matte", "labels", "parts"]


@dataclass(frozen=True)
class FormatRules:
    """Expectations for the files of one dataset format.

    Attributes:
        bit_depth: bits per channel the images must have (``16`` for linear raw AWB data, ``8`` for sRGB photos);
            ``None`` accepts any.
        channels: colour channels the images must have (3 = RGB); ``None`` accepts any.
        strict_mode: whether a wrong bit depth / channel count is an error (the loader cannot use the image
            as intended, e.g. 8-bit "raw" AWB data) or a warning (the loader converts it, e.g. a grayscale
            JPEG in a scene dataset).
        linear: the images hold linear camera RGB (AWB raw): exposure statistics normalise them with the black
            level and saturation and gamma-encode them before measuring.
        mask_kind: ``"none"``; ``"binary"`` (foreground > 0, values 0/1 or 0/255); ``"matte"`` (alpha 0..max);
            ``"labels"`` (class ids ``0..num_classes-1`` plus ``ignore_index``); ``"parts"`` (a list of binary
            masks per sample, one per part).
        mask_same_size: masks must have the image's size (otherwise only its aspect ratio, e.g. CelebAMask-HQ
            stores 512 px masks for 1024 px images).
        num_classes: number of class ids a label mask may hold (``None``: not checked).
        ignore_index: label value that marks pixels to ignore.
        classes: the label vocabulary of a scene dataset (``None``: every label found is accepted), or the class
            names of a face-parsing format's ids (for the report).
        min_size: images whose short side is below this get a ``too_small`` warning.
        exif_applied: the format's loader applies EXIF orientation (the sRGB loaders do; raw AWB PNGs are read as
            stored): a rotation tag is then a warning, and masks are compared with the rotated image size; otherwise
            a rotation tag is an error.
        needs_target: every sample must carry the task's ground truth (illuminant, mask, label); ``False`` for
            formats without it (AWB ``photos``, whose illuminants are synthesised).
    """

    bit_depth: int | None = 8
    channels: int | None = 3
    strict_mode: bool = False
    linear: bool = False
    mask_kind: MaskKind = "none"
    mask_same_size: bool = True
    num_classes: int | None = None
    ignore_index: int = 255
    classes: tuple[str, ...] | None = None
    min_size: int = 64
    exif_applied: bool = False
    needs_target: bool = True

    def updated(self, **changes: Any) -> FormatRules:
        """A copy with the given fields replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


TASK_RULES: dict[str, FormatRules] = {
    # Real AWB datasets are linear raw captures stored as 16-bit PNGs; 8-bit data there has lost the
    # precision (and often the linearity) the illuminant estimate depends on.
    "awb": FormatRules(bit_depth=16, channels=3, strict_mode=True, linear=True),
    # sRGB loaders read images (and portrait masks) with their EXIF orientation applied (moto_vision.data.images).
    "portrait": FormatRules(bit_depth=8, channels=3, mask_kind="binary", exif_applied=True),
    "scene": FormatRules(bit_depth=8, channels=3, exif_applied=True),
}

#: Refinements for known formats, keyed by ``(task, format)``.
FORMAT_RULES: dict[tuple[str, str], dict[str, Any]] = {
    # sRGB photos that the AWB datamodule unprocesses to raw.
    ("awb", "photos"): {
        "bit_depth": 8,
        "strict_mode": False,
        "linear": False,
        "needs_target": False,
        "exif_applied": True,
    },
    ("portrait", "matting"): {"mask_kind": "matte"},
    ("portrait", "lapa"): {"mask_kind": "labels", "num_classes": 11},
    ("portrait", "celebamask_hq"): {"mask_kind": "parts", "mask_same_size": False},
}

#: ``SampleRecord.extra`` keys the checks read, with their meaning.
RECORD_KEYS: dict[str, str] = {
    "bit_depth": "bits per channel this sample's image must have (overrides the format's rule)",
    "black_level": "raw black level in image units (AWB; default 0)",
    "saturation": "raw saturation level in image units (AWB; default 2**bit_depth - 1)",
    "saturation_margin": "with saturation None: saturated at the image maximum minus this margin (Cube+)",
    "num_classes": "class ids a label mask may hold",
    "classes": "the label vocabulary (scene)",
    "class_names": "names of a label mask's class ids, in id order (portrait face parsing)",
    "camera_to_srgb": "3x3 matrix taking the camera-RGB illuminant to linear sRGB before its CCT is computed (AWB)",
}


def _format_classes(task: str, fmt: str) -> dict[str, Any]:
    """Class names of formats whose classes the dataset fixes (face parsing), from the portrait package."""
    if task != "portrait":
        return {}
    try:
        from moto_vision.data.portrait.formats import FORMAT_CLASSES
    except ImportError:  # the portrait formats are not installed: keep the rules above
        return {}
    names = FORMAT_CLASSES.get(fmt)
    return {} if names is None else {"classes": tuple(names), "num_classes": len(names)}


def rules_for(task: str, fmt: str, **overrides: Any) -> FormatRules:
    """The rules of ``task``'s format ``fmt`` with command-line ``overrides`` (``None`` = keep)."""
    if task not in TASK_RULES:
        raise ValueError(f"Unknown task {task!r}; expected one of {sorted(TASK_RULES)}.")
    rules = TASK_RULES[task].updated(**FORMAT_RULES.get((task, fmt), {})).updated(**_format_classes(task, fmt))
    if overrides.get("classes") is not None:
        overrides["classes"] = tuple(overrides["classes"])
    return rules.updated(**overrides)
