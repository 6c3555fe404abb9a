"""Lightning callbacks: visual logging of predictions, prediction writers."""

from moto_vision.callbacks.segmentation import SegmentationPredictionWriter
from moto_vision.callbacks.visual import PredictionGridLogger

__all__ = ["PredictionGridLogger", "SegmentationPredictionWriter"]
