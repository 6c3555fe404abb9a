"""Checkpoints are untrusted data: hostile checkpoints are refused by every command that reads one.

Each hostile checkpoint is a real toy checkpoint with one field changed, as an attacker would edit it; all of them
still load with ``torch.load(weights_only=True)``. A marker file shows whether anything ran.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import textwrap
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from moto_vision import deploy
from moto_vision.cli import main
from moto_vision.trust import UntrustedCheckpointError, is_data_type, registered_classes
from tests.helpers.deploy import make_checkpoint
from tests.helpers.toy import ToyClassifier, ToyDataModule

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return make_checkpoint(ToyClassifier(), ToyDataModule(), tmp_path_factory.mktemp("good") / "toy.ckpt", steps=1)


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "pwned"


def _tamper(good: Path, path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    checkpoint = torch.load(good, weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, path)
    torch.load(path, weights_only=True)  # still a valid weights-only checkpoint
    return path


def _record(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(checkpoint: dict[str, Any]) -> None:
        checkpoint["moto_vision"].update(changes)

    return edit


@pytest.fixture
def evil_module(tmp_path, marker, monkeypatch) -> str:
    """A module on sys.path that writes the marker when imported, with a task and a datamodule class."""
    source = f"""
        from pathlib import Path
        Path({str(marker)!r}).write_text("imported")
        from tests.helpers.toy import ToyClassifier, ToyDataModule
        class Task(ToyClassifier):
            pass
        class Data(ToyDataModule):
            pass
    """
    (tmp_path / "evil_side_effects.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "evil_side_effects"
    sys.modules.pop("evil_side_effects", None)


def _refused_by_every_command(checkpoint: Path, tmp_path: Path, capsys, expect: str, task: bool = True) -> None:
    """export, benchmark --ckpt, the sweep (and for the task: profile, deploy.load) refuse: one line, no traceback."""
    commands = [
        ["export", "--ckpt", str(checkpoint), "--format", "onnx", "--output", str(tmp_path / "export")],
        ["benchmark", "--ckpt", str(checkpoint), "--formats", "pytorch", "--output", str(tmp_path / "bench")],
        ["benchmark", "--ckpts", str(checkpoint), "--formats", "pytorch", "--output", str(tmp_path / "sweep")],
    ]
    if task:  # profile and deploy.load build no datamodule, so only the task record matters to them
        commands.append(["profile", "--ckpt", str(checkpoint)])
    for command in commands:
        assert main(command) != 0, command
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert len(lines) == 1 and expect in lines[0], (command, captured.err)
        assert "Traceback" not in captured.err + captured.out
    if task:
        with pytest.raises(UntrustedCheckpointError, match=expect):
            deploy.load(checkpoint)
    assert not (tmp_path / "export").exists()


# ------------------------------------------------------------------------------------------- classes
@pytest.mark.parametrize(
    "field, name, arguments",
    [
        ("datamodule", "subprocess.Popen", {"args": "touch {marker}", "shell": True}),
        ("datamodule", "os.system", {"command": "touch {marker}"}),
        ("task", "builtins.eval", {}),
        ("task", "subprocess.Popen", {}),
    ],
)
def test_callables_named_by_a_checkpoint_are_refused(good, tmp_path, marker, capsys, field, name, arguments):
    arguments = {k: v.format(marker=marker) if isinstance(v, str) else v for k, v in arguments.items()}
    if field == "datamodule":
        edit = _record(datamodule_class=name, datamodule_hparams=arguments)
    else:
        edit = _record(task_class=name)
    checkpoint = _tamper(good, tmp_path / "evil.ckpt", edit)
    expect = f"{name!r}, which is not a moto-vision {field}"
    _refused_by_every_command(checkpoint, tmp_path, capsys, expect, task=field == "task")
    assert not marker.exists()


def test_lightning_cli_class_path_is_refused_too(good, tmp_path, marker, capsys):
    """LightningCLI records `_class_path` in the hyperparameters; it is checked like our own record."""

    def edit(checkpoint: dict[str, Any]) -> None:
        del checkpoint["moto_vision"]["task_class"]
        checkpoint["hyper_parameters"]["_class_path"] = "subprocess.Popen"

    checkpoint = _tamper(good, tmp_path / "evil.ckpt", edit)
    _refused_by_every_command(checkpoint, tmp_path, capsys, "'subprocess.Popen'")


def test_a_module_with_import_side_effects_is_never_imported(good, tmp_path, marker, evil_module, capsys):
    for field in ("task", "datamodule"):
        name = f"{evil_module}.{'Task' if field == 'task' else 'Data'}"
        checkpoint = _tamper(good, tmp_path / "evil.ckpt", _record(**{f"{field}_class": name}))
        _refused_by_every_command(checkpoint, tmp_path, capsys, f"'{name}'", task=field == "task")
        assert not marker.exists() and evil_module not in sys.modules


def test_trainer_verbs_refuse_a_checkpoint_naming_another_model(good, tmp_path, marker, evil_module, capsys):
    """`moto-vision test --ckpt_path` reads the checkpoint's `_class_path` into the model config (Lightning)."""

    def edit(checkpoint: dict[str, Any]) -> None:
        checkpoint["hyper_parameters"]["_class_path"] = f"{evil_module}.Task"

    checkpoint = _tamper(good, tmp_path / "evil.ckpt", edit)
    args = ["test", "--config", str(ROOT / "tests/toy_recipe.yaml"), "--ckpt_path", str(checkpoint)]
    assert main([*args, "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert f"'{evil_module}.Task', which is not a moto-vision task" in err and "Traceback" not in err
    assert not marker.exists() and evil_module not in sys.modules


def test_a_class_the_user_allows_is_loaded(good, tmp_path, marker, evil_module, capsys):
    checkpoint = _tamper(good, tmp_path / "mine.ckpt", _record(task_class=f"{evil_module}.Task"))
    predictor = deploy.load(checkpoint, allow_classes=[f"{evil_module}.Task"], image_size=32)  # the user's own code
    assert predictor(torch.rand(1, 3, 32, 32)).shape == (1, 3)
    assert predictor.metadata["task_class"] == f"{evil_module}.Task"
    assert marker.exists()  # importing it was the user's choice
    code = main(["profile", "--ckpt", str(checkpoint), "--image-size", "32", "--allow-class", f"{evil_module}.Task"])
    assert code == 0, capsys.readouterr().err


# ------------------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "where, value, expect",
    [
        ("hyper_parameters", {"lr": torch.tensor(1.0)}, "'lr' of ToyClassifier is a Tensor, not a primitive"),
        ("hyper_parameters", {"backbone": {"class_path": "subprocess.Popen"}}, "holds a 'class_path'"),
        ("hyper_parameters", {"lr": "rm -rf ~"}, "do not fit ToyClassifier's signature"),
        ("datamodule_hparams", {"batch_size": [{"class_path": "os.system"}]}, "batch_size[0] of ToyDataModule holds"),
        ("datamodule_hparams", {"batch_size": "touch x"}, "do not fit ToyDataModule's signature"),
        ("datamodule_hparams", {"seed": torch.ones(2)}, "'seed' of ToyDataModule is a Tensor"),
    ],
)
def test_init_arguments_must_be_primitives_that_fit_the_signature(good, tmp_path, capsys, where, value, expect):
    def edit(checkpoint: dict[str, Any]) -> None:
        target = checkpoint["hyper_parameters"] if where == "hyper_parameters" else checkpoint["moto_vision"][where]
        target.update(value)

    checkpoint = _tamper(good, tmp_path / "evil.ckpt", edit)
    assert main(["export", "--ckpt", str(checkpoint), "--format", "onnx", "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert expect in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- weights
@pytest.mark.parametrize(
    "edit, expect",
    [
        (lambda sd: sd.update({"head.weight": sd["head.weight"].t().contiguous()}), "'head.weight' has shape"),
        (lambda sd: sd.update({"head.extra": torch.zeros(1)}), "1 unexpected (first: ['head.extra'])"),
        (lambda sd: sd.pop("head.bias"), "1 missing (first: ['head.bias'])"),
        (lambda sd: sd.update({"head.bias": "not a tensor"}), "'head.bias' is a str, not a tensor"),
    ],
    ids=["shape", "extra", "missing", "non-tensor"],
)
def test_tampered_weights_are_refused(good, tmp_path, capsys, edit, expect):
    checkpoint = _tamper(good, tmp_path / "evil.ckpt", lambda c: edit(c["state_dict"]))
    with pytest.raises(UntrustedCheckpointError, match=re.escape(expect)):
        deploy.load(checkpoint)
    assert main(["export", "--ckpt", str(checkpoint), "--output", str(tmp_path / "out")]) == 1
    assert expect in capsys.readouterr().err


def test_a_refused_checkpoint_exits_with_one_line_in_a_fresh_process(good, tmp_path, marker):
    edit = _record(datamodule_class="subprocess.Popen", datamodule_hparams={"args": f"touch {marker}", "shell": True})
    checkpoint = _tamper(good, tmp_path / "evil.ckpt", edit)
    result = subprocess.run(
        # The toy task is the user's own class here (a fresh process has not registered it); the datamodule is hostile.
        [sys.executable, "-m", "moto_vision", "export", "--ckpt", str(checkpoint), "--output", str(tmp_path / "o")]
        + ["--allow-class", "tests.helpers.toy.ToyClassifier"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 1 and not marker.exists()
    assert len(result.stderr.strip().splitlines()) == 1 and "--allow-class subprocess.Popen" in result.stderr


# ------------------------------------------------------------------------------------------- the registry
def test_the_allow_list_holds_every_task_and_datamodule_under_its_import_paths():
    from lightning.pytorch import LightningDataModule, LightningModule

    entries = {entry.path: entry for entry in registered_classes()}
    for package, base, kind in (
        ("moto_vision.tasks", LightningModule, "task"),
        ("moto_vision.data", LightningDataModule, "datamodule"),
    ):
        module = importlib.import_module(package)
        for name in module.__all__:
            cls = getattr(module, name)
            if not isinstance(cls, type) or not issubclass(cls, base) or name.startswith("Base"):
                continue
            path = f"{cls.__module__}.{cls.__qualname__}"
            assert path in entries and entries[path].kind == kind, f"{path} is not on the allow-list"
    for entry in entries.values():
        if entry.path.startswith("moto_vision."):
            cls = entry.load()
            assert f"{cls.__module__}.{cls.__qualname__}" == entry.path  # a rename must update the registry
            # Every argument is plain data, so a checkpoint can set each (a class- or callable-typed one it cannot).
            hints = {k: v for k, v in typing.get_type_hints(cls.__init__).items() if k != "return"}
            assert all(is_data_type(v) for v in hints.values()), (entry.path, hints)
            for alias in entry.aliases:
                if "." in alias:  # an old path still imports the same class
                    module_name, _, attribute = alias.rpartition(".")
                    assert getattr(importlib.import_module(module_name), attribute) is cls, alias
