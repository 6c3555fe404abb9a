"""Lightning callbacks: prediction writers (scene CSVs, segmentation PNGs) and CPU thread pinning.

Tasks log their own prediction pictures (``log_predictions``, :mod:`moto_vision.viz`).
"""

from moto_vision.callbacks.scene import ScenePredictionWriter
from moto_vision.callbacks.segmentation import SegmentationPredictionWriter
from moto_vision.callbacks.threads import CPUThreads

__all__ = ["CPUThreads", "ScenePredictionWriter", "SegmentationPredictionWriter"]
