"""Lightning callbacks: visual logging of predictions, CPU thread pinning."""

from moto_vision.callbacks.threads import CPUThreads
from moto_vision.callbacks.visual import PredictionGridLogger

__all__ = ["CPUThreads", "PredictionGridLogger"]
