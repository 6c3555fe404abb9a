"""Lightning callbacks: visual logging of predictions, scene prediction CSVs."""

from moto_vision.callbacks.scene import ScenePredictionWriter
from moto_vision.callbacks.visual import PredictionGridLogger

__all__ = ["PredictionGridLogger", "ScenePredictionWriter"]
