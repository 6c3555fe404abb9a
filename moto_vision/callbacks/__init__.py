"""Lightning callbacks: visual logging of predictions, scene prediction CSVs, CPU thread pinning."""

from moto_vision.callbacks.scene import ScenePredictionWriter
from moto_vision.callbacks.threads import CPUThreads
from moto_vision.callbacks.visual import PredictionGridLogger

__all__ = ["CPUThreads", "PredictionGridLogger", "ScenePredictionWriter"]
