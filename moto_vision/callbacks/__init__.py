"""Lightning callbacks: visual logging of predictions."""

from moto_vision.callbacks.visual import PredictionGridLogger

__all__ = ["PredictionGridLogger"]
