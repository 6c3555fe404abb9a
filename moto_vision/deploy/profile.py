"""Runtime cost of a model: parameters and multiply-accumulates (MACs).

MACs come from PyTorch's own ``torch.utils.flop_counter.FlopCounterMode``, which counts a
multiply-accumulate as two floating-point operations; we report ``flops / 2``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["count_macs", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model`` (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on ``example``."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(example)
    model.train(was_training)
    return int(counter.get_total_flops() // 2)
