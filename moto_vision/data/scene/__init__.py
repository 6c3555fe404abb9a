"""Scene detection data: the camera scene taxonomy, synthetic scenes, real formats and the datamodule.

Importing this package registers the ``scene`` formats (``image_folder``, ``manifest``, ``places365``).
"""

from moto_vision.data.scene.datamodule import SceneDataModule, assign_splits
from moto_vision.data.scene.formats import (
    SceneDataError,
    SceneImages,
    index_image_folder,
    index_manifest,
    index_places365,
)
from moto_vision.data.scene.synthetic import SceneSpec, SyntheticScenes, render_scene
from moto_vision.heads.scene_taxonomy import (
    CAMERA_SCENES,
    SYNTHETIC_SCENES,
    SceneClass,
    camera_scene_names,
    resolve_class_names,
)

__all__ = [
    "CAMERA_SCENES",
    "SYNTHETIC_SCENES",
    "SceneClass",
    "SceneDataError",
    "SceneDataModule",
    "SceneImages",
    "SceneSpec",
    "SyntheticScenes",
    "assign_splits",
    "camera_scene_names",
    "index_image_folder",
    "index_manifest",
    "index_places365",
    "render_scene",
    "resolve_class_names",
]
