"""Lightning callbacks: prediction writers (AWB and scene CSVs, segmentation PNGs), thread pinning, step checkpoints.

Tasks log their own prediction pictures (``log_predictions``, :mod:`moto_vision.viz`).
"""

from moto_vision.callbacks.awb import AWBPredictionWriter
from moto_vision.callbacks.checkpoint import StepCheckpoint
from moto_vision.callbacks.scene import ScenePredictionWriter
from moto_vision.callbacks.segmentation import SegmentationPredictionWriter
from moto_vision.callbacks.threads import CPUThreads

__all__ = [
    "AWBPredictionWriter",
    "CPUThreads",
    "ScenePredictionWriter",
    "SegmentationPredictionWriter",
    "StepCheckpoint",
]
