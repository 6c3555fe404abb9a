"""``moto-vision export``, ``moto-vision benchmark`` and ``moto-vision profile``: argv in, exit code out.

``export`` and ``benchmark`` parse with jsonargparse (as the Trainer verbs do), so every option can also come
from a YAML file: ``--config export.yaml`` with the options as keys (``format: [executorch, onnx]``,
``quantize: int8``, ``data_config: recipes/scene.yaml``), command-line options after it override it, and
``--print_config`` prints the resolved options as such a file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Optional, Union

__all__ = ["benchmark_main", "export_main", "profile_main"]

#: A list option: ``--x a,b --x c`` on the command line, ``x: [a, b, c]`` (or ``x: a,b``) in YAML.
ListOption = Optional[Union[list[str], str]]


def _formats_help() -> str:
    """The format table for ``--help``, from :data:`~moto_vision.deploy.formats.FORMATS` (the one table)."""
    from moto_vision.deploy.formats import FORMATS

    lines = ["formats (--format; options for --options):"]
    for f in FORMATS.values():
        options = ", ".join(f"{k}={v}" for k, v in f.options.items()) or "-"
        state = "" if f.available else " [not installed]"
        lines.append(f"  {f.name:<11} {f.suffix:<8} {f.runtime}{state}")
        lines.append(f"  {'':<20} int8: {f.int8}; options: {options}")
    return "\n".join(lines) + "\n"


def _jsonargparse_parser(prog: str, description: str, epilog: str) -> Any:
    from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter

    class Formatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """Keep the descriptions' line breaks; jsonargparse adds each option's type and default."""

    parser = ArgumentParser(prog=prog, formatter_class=Formatter, description=description, epilog=epilog)
    parser.add_argument(
        "--config",
        action=ActionConfigFile,
        help="YAML file of these options, keys as the option names with _ (data_config: ..., format: [onnx]); "
        "options given after it override it. --print_config prints one.",
    )
    return parser


def _merge_repeated(argv: Sequence[str], flags: Sequence[str]) -> list[str]:
    """``--x a --x b`` -> ``--x a,b`` for list options, so repeating a flag adds to it as it always did."""
    merged: list[str] = []
    seen: dict[str, int] = {}
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        flag, _, inline = token.partition("=")
        if flag in flags and (inline or i + 1 < len(tokens)):
            value = inline if inline else tokens[i + 1]
            i += 1 if inline else 2
            if flag in seen:
                merged[seen[flag]] += f",{value}"
            else:
                seen[flag] = len(merged)
                merged.append(f"{flag}={value}")
            continue
        merged.append(token)
        i += 1
    return merged


def _split(values: Any) -> list[str]:
    """``"a,b"``, ``["a,b", "c"]`` or ``None`` as ``[a, b, c]``."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [item.strip() for value in values for item in str(value).split(",") if item.strip()]


def _add_allow_class(parser: Any, jsonargparse: bool = True) -> None:
    kwargs: dict[str, Any] = {"type": ListOption} if jsonargparse else {"action": "append"}
    parser.add_argument(
        "--allow-class",
        metavar="CLASS",
        help="a task or datamodule class (pkg.module.Class) besides moto-vision's own that the checkpoint may name; "
        "repeat or comma-separate. Checkpoints are data: without this, a checkpoint naming any other class is refused",
        **kwargs,
    )


def _add_options(parser: Any) -> None:
    parser.add_argument(
        "--options",
        type=Optional[dict],
        help="exporter options per format, e.g. '{onnx: {opset_version: 18, dynamic_batch: false}}' (see formats)",
    )


# ------------------------------------------------------------------------------------------------ export
_EXPORT_LISTS = ("--format", "--allow-class")


def _export_parser() -> Any:
    parser = _jsonargparse_parser(
        "moto-vision export",
        "Export a trained moto-vision checkpoint to a phone format, reload it in its own runtime and check it\n"
        "against PyTorch on batches of the task's test split (max |diff| <= --atol for fp32; the task metric\n"
        "before and after for int8). The artifact takes the task's [0, 1] image (normalisation inside) and\n"
        "returns the task's output; metadata.json beside it (and inside .onnx / .pte) records task, classes,\n"
        "input size, colour domain, version and the checkpoint's hash. Failed exports leave no file.\n\n"
        + _formats_help(),
        "examples:\n"
        "  moto-vision export --ckpt runs/scene --format executorch --output export/\n"
        "  moto-vision export --ckpt best.ckpt --format executorch,onnx --quantize int8 --output export/\n"
        "  moto-vision export --config export.yaml --ckpt best.ckpt   # options from YAML, --ckpt from here\n"
        "  python -c \"from moto_vision.deploy import load; m = load('export/scene_int8.pte'); print(m(x))\"",
    )
    parser.add_argument(
        "--ckpt",
        type=Optional[str],
        help="task checkpoint (.ckpt) written by `moto-vision fit`, or its run directory (newest best*.ckpt there)",
    )
    parser.add_argument(
        "--format",
        type=ListOption,
        metavar="FORMAT",
        help="executorch, onnx, tflite or all; repeat or comma-separate (default: executorch)",
    )
    parser.add_argument(
        "--quantize",
        type=Optional[Literal["int8"]],
        help="also write a post-training int8 artifact calibrated on the task's validation batches, and print "
        "size and metric before (fp32) and after (int8)",
    )
    parser.add_argument("--output", type=str, default="export", help="output directory for artifacts and metadata.json")
    parser.add_argument("--name", type=Optional[str], help="file stem (default: <task>_<precision>)")
    parser.add_argument(
        "--task", type=Optional[str], help="task class, for checkpoints that do not record it (e.g. SceneClassifier)"
    )
    _add_allow_class(parser)
    parser.add_argument(
        "--data-config",
        type=Optional[str],
        help="recipe YAML whose data: section gives calibration / parity batches "
        "(default: the datamodule recorded in the checkpoint)",
    )
    parser.add_argument("--image-size", type=Optional[int], help="input size (default: the task's image_size)")
    parser.add_argument("--calibration-images", type=int, default=32, help="images used to calibrate int8")
    parser.add_argument(
        "--parity-batches", type=Optional[int], help="test batches for parity and metrics (default: all)"
    )
    parser.add_argument("--atol", type=float, default=1e-4, help="fp32 parity tolerance on outputs")
    _add_options(parser)
    parser.add_argument("--no-verify", action="store_true", help="skip the reload and parity check")
    parser.add_argument("--overwrite", action="store_true", help="replace existing artifacts of the same name")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def export_main(argv: Sequence[str] | None = None) -> int:
    """``moto-vision export``; returns 0 if every artifact was written (and verified), 1 otherwise."""
    from moto_vision.deploy.formats import FORMATS
    from moto_vision.deploy.session import ExportSession

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _export_parser().parse_args(_merge_repeated(argv, _EXPORT_LISTS))
    if not args.ckpt:
        print("moto-vision export: pass --ckpt (on the command line or as `ckpt:` in --config).", file=sys.stderr)
        return 2
    formats = _split(args.format) or ["executorch"]
    if "all" in formats:
        formats = list(FORMATS)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        print(
            f"moto-vision export: unknown format(s) {unknown}; choose from {sorted(FORMATS)} or all.", file=sys.stderr
        )
        return 2
    precisions = ["fp32", "int8"] if args.quantize == "int8" else ["fp32"]
    try:
        for format in formats:  # a misspelt exporter option fails here, before any work
            FORMATS[format].resolve_options((args.options or {}).get(format))
        session = ExportSession.from_checkpoint(
            args.ckpt,
            task_class=args.task,
            data_config=args.data_config,
            image_size=args.image_size,
            calibration_images=args.calibration_images,
            parity_batches=args.parity_batches,
            atol=args.atol,
            allow_classes=_split(args.allow_class),
        )
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"moto-vision export: {error}", file=sys.stderr)
        return 1
    if session.datamodule is None:
        print(
            f"note: {args.ckpt} records no datamodule; fp32 parity runs on random images and no metric is computed "
            "(pass --data-config recipes/<task>.yaml for real batches).",
            file=sys.stderr,
        )
    results = []
    for format in formats:
        for precision in precisions:
            name = f"{args.name}_{precision}" if args.name and len(precisions) > 1 else args.name
            print(f"exporting {format} {precision} ...", file=sys.stderr, flush=True)
            result = session.export(
                format,
                precision,  # type: ignore[arg-type]
                args.output,
                name=name,
                verify=not args.no_verify,
                overwrite=args.overwrite,
                options=args.options,
            )
            results.append(result)
            if not args.json:
                print(result.summary(), flush=True)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    elif args.quantize == "int8":
        print()
        print(_before_after(results))
    return 0 if all(r.status in ("verified", "exported") for r in results) else 1


def _before_after(results: list) -> str:
    lines = ["| format | precision | size (MB) | metric | value |", "|---|---|---:|---|---:|"]
    for r in results:
        metric, value = "-", "-"
        if r.parity is not None and r.parity.metric in r.parity.candidate_metrics:
            metric, value = r.parity.metric, f"{r.parity.candidate_metrics[r.parity.metric]:.4f}"
        size = f"{r.size_bytes / 1e6:.3f}" if r.size_bytes else "-"
        lines.append(f"| {r.format} | {r.precision} | {size} | {metric} | {value} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ benchmark
_BENCHMARK_LISTS = ("--ckpts", "--backbones", "--formats", "--precisions", "--allow-class")


def _benchmark_parser() -> Any:
    parser = _jsonargparse_parser(
        "moto-vision benchmark",
        "Size, latency and task metric of a model in every format and precision.\n\n"
        "One checkpoint (--ckpt): one row per format x precision with status (verified / exported / failed /\n"
        "unavailable), size in MB, latency p50 / p90 in ms at batch 1 with --threads CPU threads after --warmup\n"
        "untimed runs, and the task's metric on the test split of its datamodule. Writes benchmark.md, .csv and\n"
        ".json into --output (artifacts under --output/artifacts).\n\n"
        "Sweep (--backbones a,b,c with --recipe RECIPE, and / or --ckpts x.ckpt,y.ckpt): trains each backbone\n"
        "with the task's recipe (short with --epochs), benchmarks every model and plots the accuracy-latency\n"
        "Pareto front (pareto.png, sweep.md/.csv/.json).\n\n"
        "Latency measured here is on this machine's CPU, not a phone; use it to compare formats and backbones.\n"
        "(--config takes a YAML of these options; a training recipe given as --config is read as --recipe, as\n"
        "before, with a note.)",
        "examples:\n"
        "  moto-vision benchmark --ckpt runs/scene --output bench/scene\n"
        "  moto-vision benchmark --recipe recipes/scene.yaml --backbones mobilenetv3_small_050,lcnet_100 "
        "--epochs 3 --output bench/sweep\n"
        "  moto-vision benchmark --config bench.yaml                  # the same options as YAML keys",
    )
    source = parser.add_argument_group("what to benchmark")
    source.add_argument(
        "--ckpt", type=Optional[str], help="one task checkpoint (.ckpt, or a run directory: its newest best*.ckpt)"
    )
    source.add_argument("--ckpts", type=ListOption, help="sweep over these checkpoints (comma-separated)")
    source.add_argument("--backbones", type=ListOption, help="sweep: train these timm backbones (comma-separated)")
    source.add_argument("--recipe", type=Optional[str], help="the task recipe used to train --backbones")
    source.add_argument("--epochs", type=Optional[int], help="sweep: override trainer.max_epochs of the recipe")
    source.add_argument("--fit-args", type=str, default="", help="sweep: extra `moto-vision fit` arguments, one string")
    source.add_argument("--task", type=Optional[str], help="task class, for checkpoints that do not record it")
    _add_allow_class(source)
    source.add_argument(
        "--data-config", type=Optional[str], help="recipe YAML whose data: section gives the test split (--ckpt only)"
    )
    run = parser.add_argument_group("how to measure")
    run.add_argument(
        "--formats",
        type=ListOption,
        help="pytorch, executorch, onnx, tflite (default: pytorch,executorch,onnx; sweep: executorch)",
    )
    run.add_argument("--precisions", type=ListOption, help="fp32, int8 (default: fp32,int8)")
    run.add_argument("--threads", type=int, default=1, help="CPU threads per runtime")
    run.add_argument("--warmup", type=int, default=10, help="untimed runs before timing")
    run.add_argument("--runs", type=int, default=50, help="timed runs")
    run.add_argument("--max-batches", type=Optional[int], help="limit the test split to this many batches")
    run.add_argument("--output", type=str, default="benchmark", help="output directory")
    _add_options(run)
    return parser


def _recipe_given_as_config(argv: list[str]) -> list[str]:
    """``benchmark --config RECIPE`` meant the training recipe before ``--config`` took options: keep that working."""
    import yaml

    for i, token in enumerate(argv):
        flag, _, inline = token.partition("=")
        if flag != "--config":
            continue
        value = inline or (argv[i + 1] if i + 1 < len(argv) else "")
        try:
            content = yaml.safe_load(Path(value).read_text()) if Path(value).is_file() else None
        except (OSError, yaml.YAMLError):
            content = None
        if isinstance(content, dict) and {"model", "trainer"} & set(content):
            print(
                f"note: {value} is a training recipe; reading `--config {value}` as `--recipe {value}` "
                "(--config now takes benchmark options).",
                file=sys.stderr,
            )
            return [*argv[:i], f"--recipe={value}", *argv[i + (1 if inline else 2) :]]
    return argv


def benchmark_main(argv: Sequence[str] | None = None) -> int:
    """``moto-vision benchmark``; returns 0 when every row was measured, 1 if any failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # `--fit-args "--trainer.x=1"` would be read as an option by the parser; bind the value to the flag.
    for i, token in enumerate(argv[:-1]):
        if token == "--fit-args":
            argv[i : i + 2] = [f"--fit-args={argv[i + 1]}"]
            break
    args = _benchmark_parser().parse_args(_merge_repeated(_recipe_given_as_config(argv), _BENCHMARK_LISTS))
    ckpts, backbones = _split(args.ckpts), _split(args.backbones)
    precisions = _split(args.precisions) or ["fp32", "int8"]
    bad = [p for p in precisions if p not in ("fp32", "int8")]
    formats = _split(args.formats)
    known = {"pytorch", "executorch", "onnx", "tflite"}
    if bad or any(f not in known for f in formats):
        print(f"moto-vision benchmark: formats are {sorted(known)}, precisions fp32 / int8.", file=sys.stderr)
        return 2
    measure = {"threads": args.threads, "warmup": args.warmup, "runs": args.runs, "max_batches": args.max_batches}
    measure["options"] = args.options
    try:
        if backbones or ckpts:
            if args.ckpt:
                ckpts.insert(0, args.ckpt)
            from moto_vision.deploy.pareto import sweep

            result = sweep(
                backbones=backbones,
                checkpoints=ckpts,
                config=args.recipe,
                epochs=args.epochs,
                fit_args=args.fit_args,
                output=args.output,
                formats=formats or ["executorch"],
                precisions=precisions,
                progress=True,
                allow_classes=_split(args.allow_class),
                **measure,
            )
            print(result.report.to_markdown())
            print("Pareto front:", ", ".join(f"{r.model} {r.format} {r.precision}" for r in result.front))
            print(f"Wrote {', '.join(str(p) for p in result.files.values())}")
            rows = result.report.rows
        elif args.ckpt:
            from moto_vision.deploy.benchmarking import benchmark

            report = benchmark(
                args.ckpt,
                formats=formats or ["pytorch", "executorch", "onnx"],
                precisions=precisions,
                output=args.output,
                task_class=args.task,
                data_config=args.data_config,
                allow_classes=_split(args.allow_class),
                progress=True,
                **measure,
            )
            print(report.to_markdown())
            print(f"Wrote {Path(args.output) / 'benchmark.md'} (.csv, .json)")
            rows = report.rows
        else:
            print("moto-vision benchmark: pass --ckpt, or --backbones with --recipe, or --ckpts.", file=sys.stderr)
            return 2
    except (FileNotFoundError, ValueError, ImportError, RuntimeError) as error:
        print(f"moto-vision benchmark: {error}", file=sys.stderr)
        return 1
    return 0 if all(r.status in ("verified", "exported") for r in rows) else 1


# ------------------------------------------------------------------------------------------------ profile
def _profile_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moto-vision profile",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Runtime cost of a model for one image: parameters, MACs (multiply-accumulates, from\n"
            "torch.utils.flop_counter, convolutions and matrix products), weight size, activation memory (sum of\n"
            "layer outputs, and the peak of live intermediate tensors from the torch.export graph) and a per-layer\n"
            "table. Re-parameterisable models are fused first, as they run on the phone.\n\n"
            "--model takes a timm classifier name (costs as published: mobilenetv3_large_100 at 224 is 217 M MACs,\n"
            "5.48 M parameters); --ckpt profiles a trained task's export graph at its image_size."
        ),
        epilog=(
            "examples:\n"
            "  moto-vision profile --model mobilenetv3_large_100 --image-size 224\n"
            "  moto-vision profile --ckpt runs/awb --top 15 --output awb_profile.md"
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="timm model name (a classifier, as in timm's model cards)")
    source.add_argument("--ckpt", help="task checkpoint or run directory: profiles task.export_module()")
    parser.add_argument("--task", help="task class, for checkpoints that do not record it")
    _add_allow_class(parser, jsonargparse=False)
    parser.add_argument("--image-size", type=int, help="input size (default: 224 for --model, image_size for --ckpt)")
    parser.add_argument(
        "--num-classes", type=int, default=1000, help="classifier classes for --model (default: %(default)s)"
    )
    parser.add_argument("--no-fuse", action="store_true", help="profile before re-parameterisation")
    parser.add_argument(
        "--top",
        type=int,
        default=20,
        help="show the N layers with most MACs; 0 shows all, in execution order (default: %(default)s)",
    )
    parser.add_argument("--output", help="also write the profile to .md, .json or .csv")
    return parser


def profile_main(argv: Sequence[str] | None = None) -> int:
    """``moto-vision profile``; prints the summary and the per-layer table."""
    import torch

    from moto_vision.backbones import reparameterize
    from moto_vision.deploy.profile import profile_model

    args = _profile_parser().parse_args(argv)
    try:
        if args.model:
            import timm

            if not timm.is_model(args.model):
                print(f"moto-vision profile: unknown timm model {args.model!r}.", file=sys.stderr)
                return 2
            model = timm.create_model(args.model, pretrained=False, num_classes=args.num_classes)
            size = args.image_size or 224
            title = f"{args.model} ({args.num_classes} classes)"
        else:
            from moto_vision.deploy.source import image_size_of, load_task

            task, info = load_task(args.ckpt, args.task, allow_classes=_split(args.allow_class))
            size = image_size_of(task, override=args.image_size)
            model = task.export_module() if hasattr(task, "export_module") else task
            title = f"{type(task).__name__} ({task.hparams.get('backbone')}) from {info.path.name}"
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"moto-vision profile: {error}", file=sys.stderr)
        return 1
    model = model.eval()
    if not args.no_fuse:
        model = reparameterize(model)
    profile = profile_model(model, torch.zeros(1, 3, size, size))
    _print_profile(profile, title, args.top or None)
    if args.output:
        _write_profile(profile, Path(args.output), args.top or None)
        print(f"Wrote {args.output}")
    return 0


def _print_profile(profile, title: str, top: int | None) -> None:
    from rich.console import Console
    from rich.table import Table

    # Piped output would otherwise be cut at 80 columns, truncating layer names.
    console = Console(width=None if sys.stdout.isatty() else 160)
    summary = Table(title=title, show_header=False)
    for label, value in profile.summary_rows():
        summary.add_row(label, value)
    console.print(summary)
    heading = f"top {top} layers by MACs" if top and top < len(profile.layers) else "all layers, in execution order"
    table = Table(title=heading)
    for column in ("layer", "type", "output", "params", "MACs (M)", "%", "activations (KiB)"):
        table.add_column(column, justify="right" if column not in ("layer", "type") else "left")
    for layer in profile.top_layers(top):
        share = 100.0 * layer.macs / profile.macs if profile.macs else 0.0
        table.add_row(
            layer.name,
            layer.kind,
            "x".join(map(str, layer.output_shape)),
            f"{layer.params:,}",
            f"{layer.macs / 1e6:.3f}",
            f"{share:.1f}",
            f"{layer.activation_bytes / 1024:.1f}",
        )
    console.print(table)
    for note in profile.notes:
        console.print(f"note: {note}")


def _write_profile(profile, path: Path, top: int | None) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".json":
        path.write_text(json.dumps(profile.to_dict(), indent=2) + "\n")
    elif suffix == ".csv":
        with path.open("w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["layer", "type", "output_shape", "params", "macs", "activation_bytes"])
            for layer in profile.layers:
                writer.writerow(
                    [
                        layer.name,
                        layer.kind,
                        "x".join(map(str, layer.output_shape)),
                        layer.params,
                        layer.macs,
                        layer.activation_bytes,
                    ]
                )
    else:
        path.write_text(profile.to_markdown(top))
