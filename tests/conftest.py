"""Test-wide settings: never touch the network, keep W&B offline, keep runs small."""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub or wandb: a stray hub call fails fast instead of hanging.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.setdefault("MPLBACKEND", "Agg")
