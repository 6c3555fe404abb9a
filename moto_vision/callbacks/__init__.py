"""Lightning callbacks: visual logging, prediction writers (AWB, scene, segmentation), threads, step checkpoints."""

from moto_vision.callbacks.awb import AWBPredictionWriter
from moto_vision.callbacks.checkpoint import StepCheckpoint
from moto_vision.callbacks.scene import ScenePredictionWriter
from moto_vision.callbacks.segmentation import SegmentationPredictionWriter
from moto_vision.callbacks.threads import CPUThreads
from moto_vision.callbacks.visual import PredictionGridLogger

__all__ = [
    "AWBPredictionWriter",
    "CPUThreads",
    "PredictionGridLogger",
    "ScenePredictionWriter",
    "SegmentationPredictionWriter",
    "StepCheckpoint",
]
