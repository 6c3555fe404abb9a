"""Lightning callbacks: visual logging of predictions, prediction writers (scene CSVs, segmentation PNGs)."""

from moto_vision.callbacks.scene import ScenePredictionWriter
from moto_vision.callbacks.segmentation import SegmentationPredictionWriter
from moto_vision.callbacks.visual import PredictionGridLogger

__all__ = ["PredictionGridLogger", "ScenePredictionWriter", "SegmentationPredictionWriter"]
