"""Moved to :mod:`moto_vision.heads.scene_taxonomy` (the scene kit needs it below the ``data`` floor).

This module keeps the 0.1 import path working for one release.
"""

from moto_vision.heads.scene_taxonomy import (
    CAMERA_SCENES,
    SYNTHETIC_SCENES,
    SceneClass,
    camera_scene_names,
    resolve_class_names,
)

__all__ = ["CAMERA_SCENES", "SYNTHETIC_SCENES", "SceneClass", "camera_scene_names", "resolve_class_names"]
