"""One kit per task (facts, head, loss, metrics, calibration, pictures, reports, export metadata) and the registry.

The single-task models (:mod:`moto_vision.tasks`) and the multi-task model use the same kits; nothing here imports
Lightning or ``moto_vision.data``, so a kit works in any PyTorch project::

    from moto_vision.backbones import create_backbone
    from moto_vision.heads import create_kit

    kit = create_kit("scene", {"class_names": ["day", "night"]})
    backbone = create_backbone("mobilenetv3_small_050")
    head = torch.nn.ModuleDict(kit.build(backbone.channels, backbone.reductions))
    logits = kit.forward(head, backbone(images), images)

See ``docs/adding_a_task.md`` for a new task.
"""

from moto_vision.heads.awb import AWBKit, AWBOptions
from moto_vision.heads.base import IGNORE_INDEX, TASKS, ColorDomain, TaskKit, TaskName
from moto_vision.heads.registry import create_kit, get_kit, kit_names, register_kit
from moto_vision.heads.scene import SceneKit, SceneOptions
from moto_vision.heads.segmentation import SegmentationKit, SegmentationOptions

__all__ = [
    "IGNORE_INDEX",
    "TASKS",
    "AWBKit",
    "AWBOptions",
    "ColorDomain",
    "SceneKit",
    "SceneOptions",
    "SegmentationKit",
    "SegmentationOptions",
    "TaskKit",
    "TaskName",
    "create_kit",
    "get_kit",
    "kit_names",
    "register_kit",
]
