"""Camera scene taxonomy: the scene classes a phone camera switches its tuning for.

:data:`CAMERA_SCENES` is moto-vision's default list, modelled on two public references:

- the 30 categories of the Camera Scene Detection Dataset (CamSDD; Pouget et al., "Fast and Accurate
  Camera Scene Detection on Smartphones", CVPR Workshops 2021), the de-facto benchmark for on-phone
  scene detection;
- Android's camera scene modes (``CameraMetadata.CONTROL_SCENE_MODE_*``), which name the tunings a
  camera HAL exposes (night, snow, sunset, fireworks, barcode, HDR, ...).

Each :class:`SceneClass` records the Android scene mode it maps to, where one exists, so the output of a
scene model can drive a camera's mode switch directly. The list is a starting point: pass your own class
names to :class:`~moto_vision.tasks.SceneClassifier` (``class_names``) and
:class:`~moto_vision.data.SceneDataModule`. :data:`SYNTHETIC_SCENES` is the subset the embedded synthetic
dataset renders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moto_vision.errors import OptionError

__all__ = [
    "CAMERA_SCENES",
    "SYNTHETIC_SCENES",
    "SceneClass",
    "camera_scene_names",
    "resolve_class_names",
]


@dataclass(frozen=True)
class SceneClass:
    """One scene class of the camera taxonomy.

    Attributes:
        name: snake_case identifier used as the class name in models, datasets and exported metadata.
        description: what the class covers, as a labeller would be told.
        android_scene_mode: the ``CONTROL_SCENE_MODE_*`` suffix this class maps to, or ``None``.
    """

    name: str
    description: str
    android_scene_mode: str | None = None


#: Default camera scene taxonomy: CamSDD's 30 categories, named in snake_case, with Android scene modes.
CAMERA_SCENES: tuple[SceneClass, ...] = (
    SceneClass("portrait", "one person, face prominent", "PORTRAIT"),
    SceneClass("group_portrait", "two or more people posing", "PORTRAIT"),
    SceneClass("kids", "children as the main subject", "PORTRAIT"),
    SceneClass("dog", "a dog as the main subject"),
    SceneClass("cat", "a cat as the main subject"),
    SceneClass("macro", "close-up of a small subject"),
    SceneClass("food", "a dish or meal seen from close by"),
    SceneClass("beach", "sand and sea", "BEACH"),
    SceneClass("mountains", "mountain ranges and peaks", "LANDSCAPE"),
    SceneClass("waterfall", "falling water"),
    SceneClass("snow", "snow-covered scenes", "SNOW"),
    SceneClass("landscape", "open outdoor view with a horizon", "LANDSCAPE"),
    SceneClass("underwater", "taken under water"),
    SceneClass("architecture", "buildings and structures"),
    SceneClass("sunset", "sunrise or sunset sky, warm low sun", "SUNSET"),
    SceneClass("blue_sky", "clear blue sky"),
    SceneClass("cloudy_sky", "overcast or cloudy sky"),
    SceneClass("greenery", "green plants, grass, foliage"),
    SceneClass("autumn_plants", "autumn foliage"),
    SceneClass("flower", "flowers as the main subject"),
    SceneClass("night", "night shot: dark scene, point lights, high noise", "NIGHT"),
    SceneClass("stage", "stage or concert lighting", "THEATRE"),
    SceneClass("fireworks", "fireworks against a night sky", "FIREWORKS"),
    SceneClass("candlelight", "scene lit by candles", "CANDLELIGHT"),
    SceneClass("neon", "neon lights and signs"),
    SceneClass("indoor", "indoor scene without a dominant subject"),
    SceneClass("backlight", "subject against a bright light source (contre-jour)", "HDR"),
    SceneClass("text", "text or documents"),
    SceneClass("qr_code", "QR codes and barcodes", "BARCODE"),
    SceneClass("screen", "computer or phone screens"),
)

#: Classes the embedded synthetic dataset renders (a subset of :data:`CAMERA_SCENES`, same names).
SYNTHETIC_SCENES: tuple[str, ...] = (
    "portrait",
    "food",
    "snow",
    "landscape",
    "sunset",
    "greenery",
    "night",
    "backlight",
    "text",
)


def camera_scene_names() -> list[str]:
    """The names of :data:`CAMERA_SCENES`, in order."""
    return [scene.name for scene in CAMERA_SCENES]


def resolve_class_names(class_names: list[str] | tuple[str, ...] | str) -> list[str]:
    """Turn a class-name argument into a list of unique names.

    Args:
        class_names: a list of names; or ``"synthetic"`` (:data:`SYNTHETIC_SCENES`), ``"camera"``
            (:data:`CAMERA_SCENES`); or the path of a text file with one class name per line (blank lines
            and lines starting with ``#`` are skipped).

    Returns:
        The class names, in order.

    Raises:
        ValueError: empty list, duplicates, or a string that is neither a known list nor a file.
    """
    if isinstance(class_names, str):
        named = {"synthetic": SYNTHETIC_SCENES, "camera": tuple(camera_scene_names())}
        if class_names in named:
            names = list(named[class_names])
        else:
            path = Path(class_names).expanduser()
            if not path.is_file():
                raise OptionError(
                    f"class_names={class_names!r} is neither a list of names, 'synthetic', 'camera', nor an existing "
                    "text file with one class name per line."
                )
            lines = (line.strip() for line in path.read_text().splitlines())
            names = [line for line in lines if line and not line.startswith("#")]
            if not names:
                raise OptionError(f"Class-name file {path} lists no class names (one name per line expected).")
    else:
        names = [str(name) for name in class_names]
    if not names:
        raise OptionError("class_names is empty; give at least two scene classes.")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise OptionError(f"class_names lists {duplicates} more than once; class names must be unique.")
    return names
