"""The command line: help, version, verb dispatch, the `lightning` alias and SDK forwarding, full runs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from moto_vision import __version__
from moto_vision.cli import COMMANDS, TRAINER_VERBS, lightning_main, main

REPO = Path(__file__).resolve().parents[1]
TOY_RECIPE = REPO / "tests" / "toy_recipe.yaml"


def run(args: list[str], env_extra: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.update(env_extra or {})
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)


def console_script(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        pytest.skip(f"console script {name} is not installed next to {sys.executable}")
    return str(path)


@pytest.mark.parametrize("command", [["moto-vision"], ["lightning"], [sys.executable, "-m", "moto_vision"]])
def test_help_and_version_of_every_entry_point(command):
    if command[0] != sys.executable:
        command = [console_script(command[0])]
    help_ = run([*command, "--help"])
    assert help_.returncode == 0, help_.stderr
    for verb in [*TRAINER_VERBS, *COMMANDS]:
        assert verb in help_.stdout
    version = run([*command, "--version"])
    assert version.returncode == 0
    assert version.stdout.strip() == f"moto-vision {__version__}"


def test_trainer_verb_help_lists_recipe_options():
    result = run([sys.executable, "-m", "moto_vision", "fit", "--help"])
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout and "--trainer.default_root_dir" in result.stdout


def test_unknown_verb_is_a_helpful_error_not_a_traceback(capsys):
    assert main(["fti"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'fti'" in err and "Did you mean 'fit'" in err and "Traceback" not in err
    assert main(["--config", "recipes/awb.yaml"]) == 2
    assert "Start with a command" in capsys.readouterr().err


def test_lightning_forwards_other_verbs_to_the_sdk(tmp_path):
    # A stand-in for lightning_sdk that records what it was called with.
    package = tmp_path / "lightning_sdk" / "cli"
    package.mkdir(parents=True)
    (tmp_path / "lightning_sdk" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "entrypoint.py").write_text(
        "import json, sys\ndef main_cli():\n    print('SDK', json.dumps(sys.argv[1:]))\n    return 0\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    result = run([console_script("lightning"), "login", "--token", "abc"], env_extra=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'SDK ["login", "--token", "abc"]'
    # Trainer verbs never go to the SDK.
    result = run([console_script("lightning"), "fit", "--help"], env_extra=env)
    assert result.returncode == 0 and "SDK" not in result.stdout and "--trainer.max_epochs" in result.stdout


def test_lightning_without_sdk_explains(capsys, monkeypatch):
    monkeypatch.setattr("moto_vision.cli._sdk_available", lambda: False)
    assert lightning_main(["login"]) == 2
    err = capsys.readouterr().err
    assert "pip install lightning-sdk" in err and "'login'" in err


def test_print_config_resolves_short_names_and_defaults(capsys):
    assert main(["fit", "--config", str(TOY_RECIPE), "--print_config"]) == 0
    out = capsys.readouterr().out
    assert "class_path: tests.helpers.toy.ToyClassifier" in out
    assert "warmup_fraction: 0.05" in out


def _checkpoints(root: Path) -> list[Path]:
    return sorted(root.rglob("*.ckpt"))


def test_fit_checkpoint_test_and_load_in_a_fresh_process(tmp_path):
    root = tmp_path / "run"
    common = ["--config", str(TOY_RECIPE), "--trainer.default_root_dir", str(root)]
    assert main(["fit", *common, "--trainer.max_epochs", "3"]) == 0
    # Everything of the run lands under default_root_dir: checkpoints, logs, the saved config.
    names = {p.name for p in _checkpoints(root)}
    assert {"best.ckpt", "last.ckpt"} <= names
    config = next(root.rglob("config.yaml"))
    assert "ToyClassifier" in config.read_text()

    # `test --ckpt_path best` resolves the newest best.ckpt under the run directory.
    assert main(["test", *common, "--trainer.logger", "false", "--ckpt_path", "best"]) == 0

    best = next(p for p in _checkpoints(root) if p.name == "best.ckpt")
    code = (
        "import torch, sys\n"
        "from tests.helpers.toy import ToyClassifier, ToyColours\n"
        f"model = ToyClassifier.load_from_checkpoint({str(best)!r}).eval()\n"
        "data = ToyColours(30, 2)\n"
        "x = torch.stack([data[i]['image'] for i in range(30)])\n"
        "y = torch.stack([data[i]['target'] for i in range(30)])\n"
        "acc = (model(x).argmax(1) == y).float().mean().item()\n"
        "print('ACC', acc, model.hparams.backbone)\n"
    )
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("ACC")[1].split()[0])
    assert accuracy > 0.5, "three epochs on the toy data should beat chance (1/3)"
    assert "test_efficientnet" in result.stdout


def test_ddp_fit_syncs_metrics_across_ranks(tmp_path):
    root = tmp_path / "ddp"
    result = run(
        [
            sys.executable, "-m", "moto_vision", "fit", "--config", str(TOY_RECIPE),
            "--config", str(REPO / "recipes" / "loggers" / "csv.yaml"),
            "--trainer.default_root_dir", str(root), "--trainer.max_epochs", "1",
            "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
        ],
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # Every logged value is global (torchmetrics syncs the metrics, Lightning averages the losses): no warning says
    # otherwise.
    assert "sync_dist" not in result.stderr, result.stderr[-3000:]
    rows = list(csv.DictReader(next(root.rglob("metrics.csv")).open()))
    counts = [float(r["val_count"]) for r in rows if r.get("val_count")]
    # Each rank sees half of the 30 validation images; a synced metric counts all of them.
    assert counts == [30.0]
    train_counts = [float(r["train_count"]) for r in rows if r.get("train_count")]
    assert train_counts == [64.0]


def test_wandb_logger_receives_the_run_config(tmp_path):
    root = tmp_path / "wandb_run"
    assert (
        main(
            [
                "fit",
                "--config",
                str(TOY_RECIPE),
                "--config",
                str(REPO / "recipes" / "loggers" / "wandb.yaml"),
                "--trainer.default_root_dir",
                str(root),
                "--trainer.max_epochs",
                "1",
                "--trainer.logger.init_args.offline",
                "true",
            ]
        )  # fmt: skip
        == 0
    )
    import wandb

    try:
        config = wandb.run.config.as_dict()
        assert config["model"]["class_path"] == "tests.helpers.toy.ToyClassifier"
        assert config["trainer"]["default_root_dir"] == str(root)
        assert config["model"]["init_args"]["lr"] == 0.003
    finally:
        wandb.finish()
    assert list(root.rglob("wandb/offline-run-*")), f"no offline W&B run under {root}"
    # Checkpoints still land under the run directory.
    assert any(p.name == "last.ckpt" for p in _checkpoints(root))


def test_own_verbs_are_registered_in_one_place():
    for name, command in COMMANDS.items():
        module, function = command.target.split(":")
        assert module.startswith("moto_vision."), name
        assert function


def test_ckpt_best_without_a_run_says_what_to_do(tmp_path, capsys):
    args = ["test", "--config", str(TOY_RECIPE), "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", "best"]
    assert main(args) != 0
    captured = capsys.readouterr()
    assert "Train first" in captured.err + captured.out


def test_shared_and_nested_arguments_are_listed_in_each_tasks_help(capsys):
    assert main(["fit", "--model.help", "AWBRegressor"]) == 0
    awb = capsys.readouterr().out
    for name in ("lr", "weight_decay", "warmup_fraction", "freeze_backbone", "log_predictions", "feature_level"):
        assert f"--model.{name}" in awb, name
    assert main(["fit", "--model.help", "MultiTaskPerception"]) == 0
    multitask = capsys.readouterr().out
    assert "--model.head_options.awb.vote_grid" in multitask and "--model.head_options.scene.class_names" in multitask
    assert "--model.lr" in multitask


def test_the_model_takes_the_datas_arguments_and_refuses_a_different_one(tmp_path, capsys):
    common = [
        "--model", "tests.helpers.toy_dense.ToyDenseMultiHead",
        "--data", "tests.helpers.toy_dense.ToySquaresDataModule",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0",
        "--trainer.accelerator", "cpu", "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    assert main(["fit", *common, "--data.image_size", "24"]) == 0
    assert "image_size: 24" in next(tmp_path.rglob("hparams.yaml")).read_text()
    capsys.readouterr()
    assert main(["fit", *common, "--data.image_size", "24", "--model.image_size", "40"]) == 2
    assert "takes it from the data" in capsys.readouterr().err


AWB_SMALL = ["--config", str(REPO / "recipes" / "awb.yaml"), "--data.init_args.train_size", "8"]
AWB_SMALL += ["--data.init_args.val_size", "8", "--trainer.max_steps", "1", "--trainer.logger", "false"]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        # refused in the task's __init__, which jsonargparse wraps in its own "Does not validate" error
        ("--model.init_args.statistics_size", "0", "use a size of at least 7"),
        ("--model.init_args.backbone", "mobilenetv3_smal_100", "Unknown timm backbone 'mobilenetv3_smal_100'"),
        # refused when the model first sees the data (setup), before the first step
        ("--model.init_args.statistics_size", "7", "a larger statistics_size also works"),
    ],
)
def test_a_bad_model_option_is_one_message_not_a_traceback(tmp_path, capsys, option, value, message):
    args = ["fit", *AWB_SMALL, option, value, "--trainer.default_root_dir", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "Does not validate" not in err
    ours = [line for line in err.splitlines() if not line.startswith(("INFO", "Seed set"))]  # Lightning's log
    assert len(ours) == 2 and ours[0].startswith("error: ") and "--debug" in ours[1], err
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_bad_model_option_shows_its_traceback_with_debug(tmp_path):
    from moto_vision.errors import OptionError

    args = ["fit", *AWB_SMALL, "--model.init_args.statistics_size", "7", "--trainer.default_root_dir", str(tmp_path)]
    with pytest.raises(OptionError, match="statistics_size"):
        main([*args, "--debug"])


def _parameters(checkpoint: Path) -> dict:
    import torch

    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def test_fit_weights_from_starts_a_new_run_from_a_checkpoints_weights(tmp_path, capsys):
    import torch

    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["fit", *AWB_SMALL, "--trainer.max_steps", "3", "--trainer.default_root_dir", str(first)]) == 0
    source = next(first.rglob("best.ckpt"))
    # Another seed (another initialisation) and lr 0: the new run's weights can only be the checkpoint's.
    args = ["fit", *AWB_SMALL, "--seed_everything", "1", "--model.init_args.lr", "0"]
    assert main([*args, "--weights_from", str(first), "--trainer.default_root_dir", str(second)]) == 0
    assert f"Starting from the weights of {source}" in capsys.readouterr().err
    loaded, trained = _parameters(next(second.rglob("last.ckpt"))), _parameters(source)
    assert loaded.keys() == trained.keys()
    for name, value in trained.items():
        torch.testing.assert_close(loaded[name], value, rtol=0, atol=1e-6, msg=name)
    # The check above can fail: seed 1 alone starts elsewhere.
    scratch = tmp_path / "scratch"
    assert main([*args, "--trainer.default_root_dir", str(scratch)]) == 0
    fresh = _parameters(next(scratch.rglob("last.ckpt")))
    assert any(not torch.allclose(fresh[name], value) for name, value in trained.items())


def test_weights_from_refuses_other_model_options_and_other_verbs(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", *AWB_SMALL, "--trainer.default_root_dir", str(run)]) == 0
    capsys.readouterr()
    other = ["--model.init_args.vote_hidden", "16", "--weights_from", str(run)]
    assert main(["fit", *AWB_SMALL, *other, "--trainer.default_root_dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "vote_hidden 8 (this model: 16)" in err and "Traceback" not in err, err
    assert main(["validate", *AWB_SMALL, "--weights_from", str(run)]) == 2
    assert "--weights_from only applies to fit, not validate" in capsys.readouterr().err
    resume = ["--ckpt_path", str(next(run.rglob("last.ckpt"))), "--weights_from", str(run)]
    assert main(["fit", *AWB_SMALL, *resume, "--trainer.default_root_dir", str(run)]) == 2
    assert "give one" in capsys.readouterr().err


def test_training_for_one_sensor_without_the_overlay_warns(tmp_path):
    one_sensor = ["fit", *AWB_SMALL, "--data.init_args.camera", "Canon EOS R6"]
    with pytest.warns(UserWarning, match="awb_one_sensor.yaml"):
        assert main([*one_sensor, "--trainer.default_root_dir", str(tmp_path / "a")]) == 0
    overlay = ["--config", str(REPO / "recipes" / "overlays" / "awb_one_sensor.yaml")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*one_sensor, *overlay, "--trainer.default_root_dir", str(tmp_path / "b")]) == 0
    assert not [w for w in caught if "Training for one sensor" in str(w.message)]


def test_weights_from_a_missing_or_tampered_checkpoint_is_one_line_and_runs_nothing(tmp_path, capsys):
    import pickle

    marker = tmp_path / "ran"

    class Hostile:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "hostile.ckpt").write_bytes(pickle.dumps({"state_dict": Hostile()}))
    (tmp_path / "empty").mkdir()
    cases = {
        "hostile.ckpt": "is not a readable weights-only PyTorch checkpoint",
        "empty": "No best*.ckpt or last*.ckpt under",
        "missing.ckpt": "Checkpoint not found",
    }
    for name, message in cases.items():
        run = tmp_path / f"run_{name}"
        args = ["fit", *AWB_SMALL, "--weights_from", str(tmp_path / name), "--trainer.default_root_dir", str(run)]
        assert main(args) == 2, name
        err = capsys.readouterr().err
        assert "error: --weights_from: " in err and message in err and "Traceback" not in err, err
        assert not list(run.rglob("*.ckpt"))
    assert not marker.exists()
