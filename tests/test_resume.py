"""Resume that resumes: a run killed mid-epoch goes on from its step checkpoint with `fit --ckpt_path last`."""

from __future__ import annotations

import contextlib
import csv
import multiprocessing
import signal
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


def _fit_logging_stderr(args: list[str], log: Path) -> None:
    # Line-buffered: the SIGKILL leaves no chance to flush a buffer.
    with log.open("w", buffering=1) as handle, contextlib.redirect_stderr(handle):
        main(["fit", *args])


def test_sigkill_mid_epoch_then_resume_from_last(tmp_path, capsys):
    root = tmp_path / "run"
    common = [*RUN, "--trainer.default_root_dir", str(root), "--checkpoint_every_n_steps", str(EVERY)]
    kill = ["--trainer.callbacks+=tests.helpers.toy.KillAtStep", "--trainer.callbacks.step", str(KILL_AT)]
    # A real crash: the run is SIGKILLed mid-epoch (no cleanup). It runs in a forked copy of this process, which
    # has everything imported already. `--ckpt_path last` on a fresh root says so and starts a new run, so one
    # command line also restarts a job.
    log = Path(tmp_path / "killed.log")
    killed = multiprocessing.get_context("fork").Process(
        target=_fit_logging_stderr, args=([*common, *kill, "--ckpt_path", "last"], log)
    )
    killed.start()
    killed.join(timeout=300)
    assert killed.exitcode == -signal.SIGKILL, log.read_text()[-2000:]
    assert "no last*.ckpt" in log.read_text() and "starting a new run" in log.read_text()
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
