"""Command line: ``moto-vision``, ``python -m moto_vision`` and ``lightning``.

One dispatcher:

- the Trainer verbs ``fit``, ``validate``, ``test``, ``predict`` run LightningCLI in subclass mode, so a
  YAML names any LightningModule / LightningDataModule by ``class_path`` (moto-vision's own by their
  short name, e.g. ``AWBRegressor``);
- moto-vision's own verbs (``export``, ``benchmark``, ``profile``, ``backbones``, ``data``) are registered in
  :data:`COMMANDS` below and each run their own ``argparse`` parser.

``lightning`` exists because Lightning 2.5+ no longer ships ``lightning fit``; its Trainer verbs behave
exactly like ``moto-vision``'s and every other verb is forwarded to the ``lightning-sdk`` command line
when that package is installed.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from moto_vision import __version__

__all__ = ["COMMANDS", "TRAINER_VERBS", "MotoCLI", "lightning_main", "main"]

TRAINER_VERBS: dict[str, str] = {
    "fit": "Train a model from a recipe (e.g. `fit --config recipes/awb.yaml`).",
    "validate": "Run one validation epoch (with --ckpt_path to score a trained model).",
    "test": "Score a model on the test split and print its metric table (--ckpt_path best|last|FILE).",
    "predict": "Run a model on images and write its predictions.",
}


@dataclass(frozen=True)
class Command:
    """A moto-vision verb: ``target`` is ``"module:function"``; the function takes argv and returns an exit code."""

    target: str
    help: str

    def load(self) -> Callable[[list[str]], int]:
        module_name, function_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), function_name)


#: moto-vision's own verbs, registered in one place.
COMMANDS: dict[str, Command] = {
    "export": Command(
        "moto_vision.deploy.cli:export_main", "Export a checkpoint to ExecuTorch / ONNX / LiteRT (int8)."
    ),
    "benchmark": Command("moto_vision.deploy.cli:benchmark_main", "Size, latency and metric per format and backbone."),
    "profile": Command("moto_vision.deploy.cli:profile_main", "Parameters, MACs, activation memory, per-layer table."),
    "backbones": Command("moto_vision.deploy.catalogue:backbones_main", "Parameters and MACs of mobile backbones."),
    "data": Command("moto_vision.data.curation.cli:data_main", "Dataset checks, coverage reports and splits."),
}

_SDK_ENTRYPOINT = "lightning_sdk.cli.entrypoint"

#: Model arguments that follow the data in Trainer verbs (LightningCLI ``link_arguments``, applied when the datamodule
#: is built): ``(datamodule attribute, model argument)``. A link applies when both sides have the name, so each task
#: gets the ones it has: every model its ``image_size``, a portrait model its ``num_classes``, a scene model its
#: ``multi_label``, the multi-task model its ``heads`` from the data's ``tasks``.
DATA_TO_MODEL: tuple[tuple[str, str], ...] = (
    ("image_size", "image_size"),
    ("num_classes", "num_classes"),
    ("multi_label", "multi_label"),
    ("tasks", "heads"),
)


def _overview(program: str) -> str:
    width = max(len(v) for v in [*TRAINER_VERBS, *COMMANDS])
    lines = [
        f"usage: {program} <command> [options]     ({program} <command> --help for the options of one command)",
        "",
        "moto-vision: camera perception for mobile phones (scene detection, portrait segmentation, auto white",
        "balance), from dataset to phone.",
        "",
        "Training and evaluation (LightningCLI; recipes in recipes/*.yaml):",
        *(f"  {verb:<{width}}  {text}" for verb, text in TRAINER_VERBS.items()),
        "",
        "Deployment and data:",
        *(f"  {verb:<{width}}  {command.help}" for verb, command in COMMANDS.items()),
        "",
        "Options:",
        f"  {'-h, --help':<{width}}  show this message",
        f"  {'--version':<{width}}  print the moto-vision version",
        f"  {'--debug':<{width}}  with a Trainer verb: traceback of a data or option error (normally one message)",
        "",
        "Examples:",
        f"  {program} fit --config recipes/awb.yaml",
        f"  {program} test --config recipes/awb.yaml --ckpt_path best",
        f"  {program} fit --config recipes/awb.yaml --print_config",
        f"  {program} fit --config recipes/awb.yaml --checkpoint_every_n_steps 200   # then, after a kill:",
        f"  {program} fit --config recipes/awb.yaml --ckpt_path last",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, *, program: str = "moto-vision") -> int:
    """Run the ``moto-vision`` command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_overview(program))
        return 0
    verb, rest = args[0], args[1:]
    if verb in {"--version", "-V", "version"}:
        print(f"moto-vision {__version__}")
        return 0
    if verb in TRAINER_VERBS:
        return _run_lightning_cli(args)
    if verb in COMMANDS:
        try:
            function = COMMANDS[verb].load()
        except ModuleNotFoundError as error:
            print(f"{program} {verb}: this installation cannot run it ({error}).", file=sys.stderr)
            return 2
        return int(function(rest) or 0)
    _unknown_verb(program, verb)
    return 2


def _unknown_verb(program: str, verb: str) -> None:
    known = [*TRAINER_VERBS, *COMMANDS]
    message = f"{program}: unknown command {verb!r}."
    if verb.startswith("-"):
        message += f" Start with a command, e.g. `{program} fit --config recipes/awb.yaml`."
    else:
        close = difflib.get_close_matches(verb, known, n=1)
        if close:
            message += f" Did you mean {close[0]!r}?"
    message += f"\nCommands: {', '.join(known)}. See `{program} --help`."
    print(message, file=sys.stderr)


def lightning_main(argv: Sequence[str] | None = None) -> int:
    """The ``lightning`` command: Trainer verbs run here, every other verb goes to ``lightning-sdk``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(_overview("lightning"))
        sdk = "installed" if _sdk_available() else "not installed"
        print(f"\nOther verbs are forwarded to the lightning-sdk command line ({sdk}).")
        return 0
    if args[0] in TRAINER_VERBS or args[0] in {"--version", "-V"}:
        return main(args, program="lightning")
    if not _sdk_available():
        print(
            f"lightning: {args[0]!r} is not a Trainer verb ({', '.join(TRAINER_VERBS)}). This `lightning` command is "
            "moto-vision's; other verbs belong to the Lightning AI platform CLI, which is not installed. "
            "Install it with `pip install lightning-sdk`, or use `moto-vision --help` for moto-vision's commands.",
            file=sys.stderr,
        )
        return 2
    entrypoint = importlib.import_module(_SDK_ENTRYPOINT)
    saved = sys.argv
    sys.argv = ["lightning", *args]
    try:
        result = entrypoint.main_cli()
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = saved
    return int(result or 0) if isinstance(result, int) or result is None else 0


def _sdk_available() -> bool:
    try:
        return importlib.util.find_spec(_SDK_ENTRYPOINT) is not None
    except (ModuleNotFoundError, ValueError):
        return False


# --------------------------------------------------------------------------------------- LightningCLI
def _run_lightning_cli(args: list[str]) -> int:
    from moto_vision.data.errors import DataError, MissingExtraError
    from moto_vision.errors import OptionError

    debug = "--debug" in args
    trainer_args = [arg for arg in args if arg != "--debug"]
    # LightningCLI reads sys.argv itself when args is None; passing both copies triggers its warning.
    cli_args = None if trainer_args == sys.argv[1:] else trainer_args
    try:
        MotoCLI(args=cli_args)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as raised:
        # Bad data, a bad option or a missing optional package is the user's to fix, not a bug: one message, no
        # traceback. jsonargparse wraps an error of a class's __init__ in its own; the cause chain still holds it.
        error = _cause_of_type(raised, (DataError, OptionError, MissingExtraError))
        if error is None or debug:
            raise
        print(f"error: {_plain_message(error)}", file=sys.stderr)
        hint = getattr(error, "data_check_hint", None)
        if hint:
            print(hint, file=sys.stderr)
        print("(add --debug for the traceback)", file=sys.stderr)
        return 2 if isinstance(error, (OptionError, MissingExtraError)) else 1
    return 0


def _cause_of_type(error: BaseException, types: tuple[type[BaseException], ...]) -> BaseException | None:
    """``error`` or the first exception of ``types`` it was raised from (jsonargparse wraps errors of ``__init__``)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, types):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _plain_message(error: BaseException) -> str:
    """The error's own message; a DataLoader worker's re-raised error carries the worker's traceback before it."""
    text = str(error)
    marker = f"{type(error).__module__}.{type(error).__qualname__}: "
    return text.rsplit(marker, 1)[1] if "Original Traceback" in text and marker in text else text


def _import_components() -> None:
    """Import moto-vision's tasks and datamodules so YAML can name them by their short class name."""
    for module in ("moto_vision.tasks", "moto_vision.data", "moto_vision.callbacks"):
        importlib.import_module(module)


def _lightning_cli_base() -> type:
    from lightning.pytorch.cli import LightningCLI

    return LightningCLI


class _LazyCLIMeta(type):
    """Build the LightningCLI subclass on first use so that ``--help`` and ``--version`` stay fast."""

    _cls: type | None = None

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return _cli_class()(*args, **kwargs)


class MotoCLI(metaclass=_LazyCLIMeta):
    """LightningCLI for moto-vision (subclass mode for models and data, run config saved everywhere)."""


def _build_cli_class() -> type:
    from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

    from moto_vision.callbacks import StepCheckpoint
    from moto_vision.data.errors import DataError
    from moto_vision.errors import OptionError
    from moto_vision.tasks import BaseTask
    from moto_vision.trust import UntrustedCheckpointError

    _import_components()

    from lightning.pytorch.loggers import WandbLogger

    class RunConfigCallback(SaveConfigCallback):
        """Save the run's config into the run directory and into every W&B run config."""

        def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    config = self.parser.dump(self.config, skip_none=False, format="json")
                    import json

                    logger.experiment.config.update(json.loads(config), allow_val_change=True)

    class _MotoCLI(LightningCLI):
        def __init__(self, args: list[str] | None, *, run: bool = True, parser_kwargs: dict | None = None) -> None:
            self._data_config: Any = None
            try:
                super().__init__(
                    model_class=None,
                    datamodule_class=None,
                    subclass_mode_model=True,
                    subclass_mode_data=True,
                    save_config_callback=RunConfigCallback,
                    save_config_kwargs={"overwrite": True},
                    parser_kwargs={
                        **({"parser_mode": "omegaconf"} if _has_omegaconf() else {}),
                        **(parser_kwargs or {}),
                    },
                    args=args,
                    run=run,
                )
            except Exception as raised:
                error = _cause_of_type(raised, (DataError,))
                if error is not None and "moto-vision data check" not in str(error):
                    error.data_check_hint = _data_check_hint(self._data_config)  # type: ignore[attr-defined]
                raise

        def add_arguments_to_parser(self, parser: Any) -> None:
            parser.add_argument(
                "--checkpoint_every_n_steps",
                type=Optional[int],
                default=None,
                help="fit: also write the training state to last-step.ckpt every N training steps, so a killed run "
                "loses at most N steps; resume it with --ckpt_path last (moto_vision.callbacks.StepCheckpoint).",
            )
            parser.add_argument(
                "--weights_from",
                type=Optional[str],
                default=None,
                help="fit: start from the model weights of this checkpoint (a .ckpt or a run directory) to fine-tune "
                "them, e.g. on your captures after training on synthetic data; the epochs, optimizer and schedule "
                "start anew (--ckpt_path resumes those). The model options must be the checkpoint's.",
            )
            for source, target in DATA_TO_MODEL:
                parser.link_arguments(f"data.{source}", f"model.init_args.{target}", apply_on="instantiate")

        def _parse_ckpt_path(self) -> None:
            # `best` / `last` become the file first, so the checks below and Lightning's reading of the
            # checkpoint's hyperparameters see the checkpoint that will be loaded.
            subcommand = self.config.get("subcommand")
            section = self.config.get(subcommand) if subcommand else None
            if section is not None and subcommand in TRAINER_VERBS:
                root = section.trainer.get("default_root_dir") or os.getcwd()
                section["ckpt_path"] = _resolve_checkpoint(section.get("ckpt_path"), root, subcommand)
            # Lightning reads the checkpoint's hyperparameters into the model config, importing the class the
            # checkpoint names (`_class_path`): refuse one that is neither trusted nor the recipe's own model.
            _check_checkpoint_model(self.config)
            before = _model_options(self.config)
            super()._parse_ckpt_path()
            _note_checkpoint_options(before, _model_options(self.config), section.get("ckpt_path") if section else None)

        def before_instantiate_classes(self) -> None:
            config = self.config.get(self.subcommand) if self.subcommand else self.config
            if config is None:
                return
            self._data_config = config.get("data")
            _require_logger_packages(config.trainer)
            _check_linked_arguments(config)
            root = config.trainer.get("default_root_dir") or os.getcwd()
            _route_logger_dirs(config.trainer, root)
            for option in ("checkpoint_every_n_steps", "weights_from"):
                if self.subcommand != "fit" and config.get(option) is not None:
                    raise OptionError(f"--{option} only applies to fit, not {self.subcommand}; remove it.")
            if config.get("weights_from") is not None and config.get("ckpt_path") is not None:
                raise OptionError(
                    "--weights_from and --ckpt_path both set: --ckpt_path resumes a run (weights, epoch, optimizer), "
                    "--weights_from starts a new one from a checkpoint's weights; give one."
                )

        def before_fit(self) -> None:
            config = self.config[self.subcommand]
            every = config.get("checkpoint_every_n_steps")
            if every is not None:
                self.trainer.callbacks.append(StepCheckpoint(every))
            if config.get("weights_from") is not None:
                if not isinstance(self.model, BaseTask):
                    raise OptionError(f"--weights_from needs a moto-vision task, not {type(self.model).__name__}.")
                try:
                    source = self.model.load_weights(config["weights_from"])
                except (FileNotFoundError, UntrustedCheckpointError) as error:  # the user's to fix: one line
                    raise OptionError(f"--weights_from: {error}") from None
                if self.trainer.is_global_zero:
                    print(f"Starting from the weights of {source}", file=sys.stderr)

        def after_fit(self) -> None:
            if self.trainer.is_global_zero:
                print(_fit_summary(self.trainer), file=sys.stderr)

    return _MotoCLI


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _check_linked_arguments(config: Any) -> None:
    """Refuse a model argument that the data sets (:data:`DATA_TO_MODEL`) when it was given a different value.

    The link would silently replace it; only values equal to the data's, or the model's default, are accepted.
    """
    import inspect

    model, data = config.get("model"), config.get("data")
    model_args, data_args = getattr(model, "init_args", None), getattr(data, "init_args", None)
    if model_args is None or data_args is None or not isinstance(getattr(model, "class_path", None), str):
        return
    module_name, _, class_name = model.class_path.rpartition(".")
    try:
        parameters = inspect.signature(getattr(importlib.import_module(module_name), class_name)).parameters
    except (ImportError, AttributeError, ValueError):
        return
    for source, target in DATA_TO_MODEL:
        if target not in parameters or target not in model_args or source not in data_args:
            continue
        given, default, data_value = model_args[target], parameters[target].default, data_args[source]
        if given != default and given != data_value:
            print(
                f"error: --model.init_args.{target} {given!r} differs from the data's {source} {data_value!r}; the "
                f"model takes it from the data. Set --data.init_args.{source} only.",
                file=sys.stderr,
            )
            raise SystemExit(2)


def _cli_class() -> type:
    if _LazyCLIMeta._cls is None:
        _LazyCLIMeta._cls = _build_cli_class()
    return _LazyCLIMeta._cls


def _model_options(config: Any) -> dict[str, Any]:
    """The model's ``init_args`` of the parsed config's subcommand, as a plain dict (empty when there is none)."""
    subcommand = config.get("subcommand")
    section = config.get(subcommand) if subcommand else None
    model = section.get("model") if section is not None else None
    init = model.get("init_args") if hasattr(model, "get") else None
    return dict(init.items()) if hasattr(init, "items") else {}


def _note_checkpoint_options(before: dict[str, Any], after: dict[str, Any], ckpt_path: Any) -> None:
    """Say which model options the checkpoint's hyperparameters replaced (Lightning's CLI gives them precedence).

    ``test --ckpt_path X --model.init_args.locus_band 0.05`` otherwise runs with the checkpoint's value in silence.
    An option the config leaves at ``None`` (unset: the class's default or what it derives, such as a multi-task
    model's ``heads`` from its data) chose nothing, so the checkpoint's value replaces no choice and is not listed.
    """
    changed = [
        k for k, v in before.items() if v is not None and k in after and after[k] != v and not str(k).startswith("_")
    ]
    if not changed:
        return
    listed = ", ".join(f"{k} {after[k]!r} (config: {before[k]!r})" for k in changed)
    print(
        f"note: the model is built with the options recorded in {ckpt_path}, which replace the config's: {listed}. "
        "To change an inference option of a trained model, set it in Python (e.g. AWBRegressor.set_locus_band) or "
        "train with it.",
        file=sys.stderr,
    )


def _check_checkpoint_model(config: Any) -> None:
    """Refuse ``--ckpt_path`` files that name a model class the user did not choose (checkpoints are data)."""
    subcommand = config.get("subcommand")
    section = config.get(subcommand) if subcommand else None
    ckpt_path = section.get("ckpt_path") if section is not None else None
    if not ckpt_path or not Path(ckpt_path).is_file():
        return
    from moto_vision.trust import (
        UntrustedCheckpointError,
        check_primitive_record,
        read_checkpoint_file,
        resolve_recorded_class,
    )

    try:
        checkpoint = read_checkpoint_file(ckpt_path)
        hparams = checkpoint.get("hyper_parameters") or {}
        if not isinstance(hparams, dict):
            raise UntrustedCheckpointError(f"{ckpt_path}: 'hyper_parameters' is a {type(hparams).__name__}.")
        recorded = hparams.get("_class_path")
        if recorded is not None:
            chosen = section.get("model")
            chosen = chosen.get("class_path") if hasattr(chosen, "get") else None
            resolve_recorded_class(recorded, "task", source=str(ckpt_path), allow=[chosen] if chosen else [])
        check_primitive_record(
            {k: v for k, v in hparams.items() if not str(k).startswith("_")},
            source=str(ckpt_path),
            role="hyperparameter",
        )
    except UntrustedCheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def recipe_datamodule(config: str | os.PathLike[str]) -> Any:
    """Build only the datamodule of a training recipe, with the parser ``fit`` uses.

    A full recipe is parsed as ``moto-vision fit --config`` parses it (``${...}`` interpolation, short class names,
    every section validated, unknown keys are errors) but only ``data`` is instantiated: no model, trainer or logger
    is built. A YAML holding only a ``data:`` section is parsed by the datamodule part of that parser.

    Raises:
        ValueError: the file is missing or does not parse, with jsonargparse's reason.
    """
    import yaml
    from lightning.pytorch import LightningDataModule
    from lightning.pytorch.cli import LightningArgumentParser

    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"Recipe not found: {path}.")
    _import_components()
    content = yaml.safe_load(path.read_text()) or {}
    if not isinstance(content, dict) or "data" not in content:
        raise ValueError(f"{path} has no `data:` section (class_path + init_args) to build a datamodule from.")
    mode = {"parser_mode": "omegaconf"} if _has_omegaconf() else {}
    try:
        if set(content) == {"data"}:
            data = content["data"]
        else:
            base = _cli_class()

            class _Parsed(base):  # type: ignore[misc, valid-type]
                # Parse and validate the whole recipe like `fit`; build nothing (the datamodule is built below).
                def _set_seed(self) -> None:
                    pass

                def before_instantiate_classes(self) -> None:
                    pass

                def instantiate_classes(self) -> None:
                    pass

            parsed = _Parsed(["--config", str(path)], run=False, parser_kwargs={"exit_on_error": False})
            data = parsed.config.data
            data = data.as_dict() if hasattr(data, "as_dict") else data
        parser = LightningArgumentParser(exit_on_error=False, **mode)
        parser.add_lightning_class_args(LightningDataModule, "data", subclass_mode=True)
        namespace = parser.parse_object({"data": data})
        return parser.instantiate_classes(namespace).data
    except (SystemExit, Exception) as error:  # jsonargparse's ArgumentError spans lines; keep one
        if isinstance(error, (FileNotFoundError, ImportError)):
            raise
        detail = " ".join(str(error).split())[:500]
        raise ValueError(f"{path}: cannot build its datamodule: {detail}") from None


def _has_omegaconf() -> bool:
    return _has_module("omegaconf")


def _route_logger_dirs(trainer_config: Any, root: str) -> None:
    """Make loggers that were given no directory write under the trainer's ``default_root_dir``."""
    loggers = trainer_config.get("logger")
    if loggers is None or isinstance(loggers, bool):
        return
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init_args = getattr(logger, "init_args", None)
        if init_args is None:
            continue
        for key in ("save_dir", "dir"):
            if key in init_args and init_args[key] in (None, ".", "", "lightning_logs"):
                init_args[key] = root if key == "save_dir" else None


def _resolve_checkpoint(ckpt_path: Any, root: str, verb: str = "test") -> Any:
    """Let ``--ckpt_path best|last`` mean the newest such checkpoint under ``default_root_dir``.

    Lightning itself looks for ``last.ckpt`` only in the new run's own ``version_N`` folder, which never holds one:
    ``fit --ckpt_path last`` then silently trained from scratch. Here it resumes the newest ``last*.ckpt`` of any
    earlier run under the same root (its logs go on in a new ``version_N+1``, the step count where it stopped).
    """
    if ckpt_path not in {"best", "last"}:
        return ckpt_path
    candidates = sorted(Path(root).rglob(f"{ckpt_path}*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        if verb == "fit" and ckpt_path == "last":
            print(f"--ckpt_path last: no last*.ckpt under {Path(root).resolve()}; starting a new run.", file=sys.stderr)
            return None
        print(
            f"error: --ckpt_path {ckpt_path}: no {ckpt_path}*.ckpt under {Path(root).resolve()}. Train first with "
            "`fit` using the same --config (and --trainer.default_root_dir), or pass the checkpoint file.",
            file=sys.stderr,
        )
        raise SystemExit(2)
    chosen = str(candidates[-1])
    print(f"{'Resuming from' if verb == 'fit' else 'Using'} checkpoint {chosen}", file=sys.stderr)
    return chosen


def _require_logger_packages(trainer_config: Any) -> None:
    """A clear message, naming the extra, for a logger whose package is missing (W&B is optional)."""
    loggers = trainer_config.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        class_path = str(getattr(logger, "class_path", "") or "")
        if class_path.endswith("WandbLogger") and not _has_module("wandb"):
            from moto_vision.data.errors import MissingExtraError

            raise MissingExtraError("Logging to Weights & Biases (WandbLogger)", "wandb", "wandb")


def _data_check_hint(data_config: Any) -> str | None:
    """``moto-vision data check ...`` for the configured dataset, when it is one on disk."""
    init = getattr(data_config, "init_args", None) if data_config is not None else None
    class_path = str(getattr(data_config, "class_path", "") or "")
    root, fmt = (getattr(init, "root", None), getattr(init, "format", None)) if init is not None else (None, None)
    task = {"AWBDataModule": "awb", "PortraitDataModule": "portrait", "SceneDataModule": "scene"}.get(
        class_path.rsplit(".", 1)[-1]
    )
    if not (root and fmt and task) or fmt == "synthetic":
        return None
    return f"List every problem of this dataset with: moto-vision data check {root} --task {task} --format {fmt}"


def _fit_summary(trainer: Any) -> str:
    """The last lines of ``fit``: where the best checkpoint is and its score, and the last checkpoint."""
    lines = []
    for callback in trainer.checkpoint_callbacks:
        monitor = getattr(callback, "monitor", None)
        if not monitor:
            continue
        if callback.best_model_path:
            score = callback.best_model_score
            value = f"{float(score):.6g}" if score is not None else "n/a"
            lines.append(f"Best checkpoint: {callback.best_model_path} ({monitor} = {value}, {callback.mode})")
        else:
            lines.append(
                f"No best checkpoint: {monitor} was never logged (validation runs after each epoch, or every "
                "--trainer.val_check_interval steps)."
            )
    from moto_vision.callbacks import StepCheckpoint

    written = [getattr(c, "last_model_path", "") for c in trainer.checkpoint_callbacks]
    # A checkpoint without a monitor keeps the latest state as its "best" (the task's last.ckpt).
    written += [c.best_model_path for c in trainer.checkpoint_callbacks if not getattr(c, "monitor", None)]
    written += [str(c.path) for c in trainer.callbacks if isinstance(c, StepCheckpoint) and c.path is not None]
    last = sorted({p for p in written if p and Path(p).is_file()}, key=lambda p: Path(p).stat().st_mtime)
    if last:
        lines.append(f"Last checkpoint: {last[-1]} (resume with --ckpt_path last)")
    if not lines:
        lines.append("No checkpoint was written (checkpointing is off).")
    lines.append(f"Trained {trainer.global_step} steps.")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
