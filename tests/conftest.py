"""Test-wide settings: never touch the network, keep W&B offline, keep runs small."""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub or wandb: a stray hub call fails fast instead of hanging.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.setdefault("MPLBACKEND", "Agg")
# The ISP runs eagerly in tests (compiling its fused chains costs seconds per new dtype); one test in
# test_isp_augmentation.py turns fusion on and checks it against the eager result.
os.environ["MOTO_VISION_ISP_COMPILE"] = "0"


import lightning.pytorch  # noqa: E402, F401  (its log handler binds sys.stderr at import: the real one, not a test's capture)
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    # Tests use tiny models, for which one intra-op thread is as fast as two and never spin-waits against other
    # processes on a shared machine. Subprocesses (CLI, DDP) keep PyTorch's default.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
