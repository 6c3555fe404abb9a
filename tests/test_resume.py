"""Resume that resumes: a run killed mid-epoch goes on from its step checkpoint with `fit --ckpt_path last`."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from moto_vision.cli import main

REPO = Path(__file__).resolve().parents[1]
# ToyDataModule: 64 training images in batches of 8 -> 8 steps per epoch; 2 epochs = 16 steps.
RUN = ["--config", str(REPO / "tests" / "toy_recipe.yaml"), "--config", str(REPO / "recipes" / "loggers" / "csv.yaml")]
RUN += ["--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false"]
EVERY, KILL_AT = 5, 11  # checkpoints at steps 5 and 10 (mid-epoch: the second epoch's third batch), killed at 11


def _losses(metrics: Path) -> dict[int, float]:
    rows = csv.DictReader(metrics.open())
    return {int(r["step"]): float(r["train_loss_step"]) for r in rows if r.get("train_loss_step")}


def test_sigkill_mid_epoch_then_resume_from_last(tmp_path, capsys):
    root = tmp_path / "run"
    common = [*RUN, "--trainer.default_root_dir", str(root), "--checkpoint_every_n_steps", str(EVERY)]
    kill = ["--trainer.callbacks+=tests.helpers.toy.KillAtStep", "--trainer.callbacks.step", str(KILL_AT)]
    # A real crash: the run is SIGKILLed mid-epoch (no cleanup), in its own process (a fresh interpreter: forking this
    # one is unsafe once autograd has run in it). `--ckpt_path last` on a fresh root says so and starts a new run, so
    # one command line also restarts a job.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run(
        [sys.executable, "-m", "moto_vision", "fit", *common, *kill, "--ckpt_path", "last"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "no last*.ckpt" in killed.stderr and "starting a new run" in killed.stderr
    step_file = next(root.rglob("last-step.ckpt"))
    saved = torch.load(step_file, map_location="cpu", weights_only=True)
    assert saved["global_step"] == KILL_AT // EVERY * EVERY  # a kill loses at most EVERY steps (here 1)
    assert not list(root.rglob(".*.partial"))  # written whole, then renamed

    assert main(["fit", *common, "--ckpt_path", "last"]) == 0
    err = capsys.readouterr().err
    assert f"Resuming from checkpoint {step_file}" in err
    assert "Best checkpoint:" in err and "Trained 16 steps." in err  # the uninterrupted run's count
    first, second = sorted(root.rglob("metrics.csv"))
    before, after = _losses(first), _losses(second)
    # The curve goes on where the checkpoint left it: steps continue, and the loss does not restart from the top.
    assert min(after) == saved["global_step"] and max(after) == 15
    start = sum(before[s] for s in range(4)) / 4
    assert sum(after[s] for s in range(10, 14)) / 4 < 0.6 * start, (before, after)
    last = torch.load(next(p for p in second.parent.rglob("last.ckpt")), map_location="cpu", weights_only=True)
    assert last["global_step"] == 16
