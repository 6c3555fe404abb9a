"""Multi-task versus single-task: inference cost of one three-head graph, and quality after the same training steps.

Targets of issue 15 (a benchmark, not a test):

- cost (marginal): the three-head model at 256 x 256, batch 1, one thread, in ONNX Runtime and in ExecuTorch
  (XNNPACK), takes at most :data:`MARGINAL_TARGET` (1.10x) the single-task portrait model with the same backbone:
  what AWB and scene cost on top of the portrait network a camera already runs. (The retired target of issue 7,
  0.5x the sum of the three single-task models, is still reported as ``multi-task / sum``.)
- quality: trained for the same number of steps on the synthetic defaults, each head's test metric is within a
  stated margin of its single-task counterpart.

``cost`` exports the four models (multi-task, AWB, portrait, scene; untrained weights, which do not change the
cost) to ONNX and ExecuTorch and times them in ONNX Runtime (CPU execution provider, ``--threads`` intra-op threads)
and the ExecuTorch runtime (XNNPACK thread pool of ``--threads``), interleaved round by round so that machine load
hits all of them alike; eager PyTorch is timed the same way for reference.
``quality`` trains the multi-task recipe's model and data and the three single-task models (their recipes' model
settings, with the multi-task recipe's backbone, image size, per-task data and batch size) for ``--steps`` steps
each, then scores each on its test split. Every single-task model carries the same head as the multi-task model:
the multi-task recipe's ``head_options`` of its task that the single-task class takes (the AWB ``vote_grid``, the
portrait ``boundary_weight``, ...) override the single-task recipe's.

    python benchmarks/multitask.py cost    [--size 256] [--rounds 15] [--runs 10] [--threads 1] [--instances 3]
    python benchmarks/multitask.py quality [--steps 1024] [--seeds 0,1,2]   # mean and spread over seeds
    python benchmarks/multitask.py quality --summarize run0/quality.json run1/quality.json  # summary of earlier runs
    python benchmarks/multitask.py quality --multitask-only --model-args '{"weighting": "uncertainty"}'  # sweep
    python benchmarks/multitask.py quality --overlay recipes/overlays/multitask_awb_votes.yaml  # recipe + overlay
    python benchmarks/multitask.py all

Results go to ``--out`` (default ``runs/benchmarks/multitask``) as JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from moto_vision.deploy.profile import count_macs, count_parameters

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
#: Marginal-cost target: the three-head graph over the single-task portrait model, per runtime.
MARGINAL_TARGET = 1.10


def _merged(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay``'s keys, nested mappings merged key by key (as a second ``--config`` merges)."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _recipe(name: str, overlays: Sequence[Path] = ()) -> dict[str, Any]:
    """A recipe's YAML, with each overlay config (``--overlay``, e.g. ``recipes/overlays/*.yaml``) merged in."""
    recipe = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    for path in overlays:
        recipe = _merged(recipe, yaml.safe_load(Path(path).read_text()) or {})
    return recipe


def _model_args(name: str, overlays: Sequence[Path] = (), **overrides: Any) -> dict[str, Any]:
    return {**_recipe(name, overlays)["model"]["init_args"], **overrides}


def _single_tasks() -> dict[str, tuple[type, dict[str, Any]]]:
    """The single-task class of each head and the arguments it gets beyond its recipe's (no baselines to score)."""
    from moto_vision.tasks import AWBRegressor, PortraitSegmenter, SceneClassifier

    return {
        "awb": (AWBRegressor, {"baselines": []}),
        "portrait": (PortraitSegmenter, {}),
        "scene": (SceneClassifier, {}),
    }


def _shared_head_options(cls: type, multitask_args: dict[str, Any], task: str) -> dict[str, Any]:
    """The multi-task recipe's options of ``task``'s head that the single-task class ``cls`` also takes.

    Like for like: the single-task model gets the same head (e.g. the AWB vote grid) and the same head loss (e.g.
    the portrait boundary weight) as the multi-task head it is compared with.
    """
    import inspect

    section = (multitask_args.get("head_options") or {}).get(task) or {}
    accepted = inspect.signature(cls.__init__).parameters
    return {key: value for key, value in section.items() if key in accepted}


# --------------------------------------------------------------------------------------------- cost
class _Tuple(nn.Module):
    """Dict outputs as a tuple (ONNX outputs are positional)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> Any:
        out = self.module(x)
        return tuple(out.values()) if isinstance(out, dict) else out


def cost_models(backbone: str, size: int, overlays: Sequence[Path] = ()) -> dict[str, nn.Module]:
    """The four export graphs: multi-task (three heads) and the three single-task models, same backbone.

    ``overlays`` are merged into the multi-task recipe (and so reach the single-task models' shared head options).
    """
    from moto_vision.tasks import MultiTaskPerception

    # Like for like: each single-task model carries exactly the multi-task model's head for its task.
    multitask = _model_args("multitask", overlays, backbone=backbone, image_size=size, log_predictions=False)
    tasks = {"multitask (awb + portrait + scene)": MultiTaskPerception(**multitask)}
    for task, (cls, extra) in _single_tasks().items():
        options = {**_shared_head_options(cls, multitask, task), **extra}
        tasks[task] = cls(**_model_args(task, backbone=backbone, image_size=size, **options))
    return {name: _Tuple(task.eval().export_module()).eval() for name, task in tasks.items()}


def _onnx_session(module: nn.Module, example: torch.Tensor, path: Path, threads: int):
    import onnxruntime as ort

    with torch.no_grad():
        program = torch.onnx.export(module, (example,), input_names=["image"], dynamo=True, optimize=True)
    program.save(str(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"image": example.numpy()}
    reference = module(example)
    reference = reference if isinstance(reference, tuple) else (reference,)
    outputs = session.run(None, feed)
    worst = max(float((torch.from_numpy(o) - r).abs().max()) for o, r in zip(outputs, reference))
    return (lambda: session.run(None, feed)), worst


def _executorch_runner(module: nn.Module, example: torch.Tensor, threads: int):
    """An ExecuTorch (XNNPACK) program of ``module``, as ``moto-vision export --format executorch`` lowers it."""
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    from moto_vision.deploy.exporters import lower_executorch

    portable_lib._unsafe_reset_threadpool(threads)  # process-wide, as in moto_vision.deploy.runtime
    with torch.no_grad():
        buffer = lower_executorch(module, (example,)).to_executorch().buffer
    loaded = Runtime.get().load_program(buffer)
    method = loaded.load_method("forward")
    reference = module(example)
    reference = reference if isinstance(reference, tuple) else (reference,)
    worst = max(float((o - r).abs().max()) for o, r in zip(method.execute([example]), reference))
    # The program must outlive the method that runs it.
    return (lambda: (loaded, method.execute([example]))), worst


def run_cost(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    backbone = args.backbone or _model_args("multitask", args.overlay)["backbone"]
    example = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    models = cost_models(backbone, args.size, args.overlay)
    results: dict[str, Any] = {
        "backbone": backbone,
        "input": [1, 3, args.size, args.size],
        "threads": args.threads,
        "rounds": args.rounds,
        "runs_per_round": args.runs,
        "instances": args.instances,
        "models": {},
    }
    # Each program is loaded --instances times and the instances are timed in turn: where a program lands in memory
    # moves its latency for the life of the process (identical ExecuTorch programs of the portrait model, loaded
    # side by side: medians 4.56-4.67 ms, 2.4% apart, measured), so one instance per model would put that into the
    # ratio. The pooled median is reported, and the spread of the instances' medians says the resolution.
    runners: dict[str, dict[tuple[str, int], Any]] = {"onnxruntime": {}, "executorch": {}, "pytorch": {}}
    with tempfile.TemporaryDirectory() as work:
        for i, (name, module) in enumerate(models.items()):
            for k in range(args.instances):
                runner, worst = _onnx_session(module, example, Path(work) / f"model{i}_{k}.onnx", args.threads)
                runners["onnxruntime"][name, k] = runner
                runners["executorch"][name, k], et_worst = _executorch_runner(module, example, args.threads)
            runners["pytorch"][name, 0] = lambda module=module: module(example)
            results["models"][name] = {
                "params_m": count_parameters(module) / 1e6,
                "macs_m": count_macs(module, example) / 1e6,
                "onnx_max_abs_diff": worst,
                "executorch_max_abs_diff": et_worst,
            }
        times: dict[str, dict[tuple[str, int], list[float]]] = {rt: {key: [] for key in t} for rt, t in runners.items()}
        with torch.no_grad():
            for table in runners.values():
                for run in table.values():
                    for _ in range(5):
                        run()
            for _ in range(args.rounds):  # interleaved: load changes hit every model alike
                for runtime, table in runners.items():
                    for key, run in table.items():
                        for _ in range(args.runs):
                            start = time.perf_counter()
                            run()
                            times[runtime][key].append(time.perf_counter() - start)
    singles = [n for n in models if not n.startswith("multitask")]
    multi = next(n for n in models if n.startswith("multitask"))
    for runtime in runners:
        pooled = {n: [t for (m, _), ts in times[runtime].items() if m == n for t in ts] for n in models}
        medians = {n: 1000 * statistics.median(t) for n, t in pooled.items()}
        for name, value in medians.items():
            results["models"][name][f"{runtime}_ms"] = value
            per_instance = [1000 * statistics.median(ts) for (m, _), ts in times[runtime].items() if m == name]
            results["models"][name][f"{runtime}_instance_ms"] = per_instance
        summed = sum(medians[n] for n in singles)
        results[f"{runtime}_single_sum_ms"] = summed
        results[f"{runtime}_ratio"] = medians[multi] / summed
        results[f"{runtime}_marginal"] = medians[multi] / medians["portrait"]
    macs = {n: results["models"][n]["macs_m"] for n in models}
    results["macs_ratio"] = macs[multi] / sum(macs[n] for n in singles)
    results["macs_marginal"] = macs[multi] / macs["portrait"]
    results["marginal_target"] = MARGINAL_TARGET
    results["load_average"] = list(os.getloadavg())
    return results


def cost_table(results: dict[str, Any]) -> str:
    runtimes = ("onnxruntime", "executorch", "pytorch")
    lines = [
        "| model | params (M) | MACs (M) | ONNX Runtime (ms) | ExecuTorch (ms) | PyTorch eager (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in results["models"].items():
        times = " | ".join(f"{row[f'{rt}_ms']:.2f}" for rt in runtimes)
        lines.append(f"| {name} | {row['params_m']:.2f} | {row['macs_m']:.1f} | {times} |")
    singles = [r for n, r in results["models"].items() if not n.startswith("multitask")]
    sums = " | ".join(f"{results[f'{rt}_single_sum_ms']:.2f}" for rt in runtimes)
    lines.append(
        f"| sum of the three single-task models | {sum(r['params_m'] for r in singles):.2f} | "
        f"{sum(r['macs_m'] for r in singles):.1f} | {sums} |"
    )
    target = results["marginal_target"]
    marginal = " | ".join(
        f"**{results[f'{rt}_marginal']:.2f}**"
        + ("" if rt == "pytorch" else (" ✓" if results[f"{rt}_marginal"] <= target else " ✗"))
        for rt in runtimes
    )
    lines.append(
        f"| **multi-task / portrait** (target <= {target}) | | **{results['macs_marginal']:.2f}** | {marginal} |"
    )
    ratio = " | ".join(f"{results[f'{rt}_ratio']:.2f}" for rt in runtimes)
    lines.append(f"| multi-task / sum (retired target 0.5) | | {results['macs_ratio']:.2f} | {ratio} |")
    spreads = [
        max(row[key]) / min(row[key]) - 1
        for row in results["models"].values()
        for key in (f"{rt}_instance_ms" for rt in runtimes[:2])
        if len(row.get(key, [])) > 1
    ]
    if spreads:
        lines.append(
            f"\nEach program loaded {results['instances']} times (pooled medians above); the medians of one model's "
            f"instances differ by up to {100 * max(spreads):.1f}% (median {100 * statistics.median(spreads):.1f}%): "
            "ratios closer than that to the target are not resolved."
        )
    load = ", ".join(f"{v:.1f}" for v in results.get("load_average", []))
    lines.append(f"\nLoad average at the end of the run (1, 5, 15 min): {load}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- quality
def _fit_and_test(model: Any, data: Any, steps: int, root: Path) -> dict[str, float]:
    import lightning as L

    from moto_vision.callbacks import CPUThreads

    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=10_000,
        accelerator="cpu",
        devices=1,
        default_root_dir=str(root),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[CPUThreads(1)],
    )
    start = time.perf_counter()
    trainer.fit(model, data)
    seconds = time.perf_counter() - start
    values = trainer.test(model, data, verbose=False)[0]
    return {**{k: float(v) for k, v in values.items()}, "fit_seconds": seconds, "steps": trainer.global_step}


def run_quality(args: argparse.Namespace) -> dict[str, Any]:
    import lightning as L

    from moto_vision.data import MultiTaskDataModule
    from moto_vision.data.multitask import DATA_OPTIONS
    from moto_vision.tasks import MultiTaskPerception

    recipe = _recipe("multitask", args.overlay)
    model_args = {**recipe["model"]["init_args"], **json.loads(args.model_args)}
    data_args = {**recipe["data"]["init_args"], **json.loads(args.data_args)}
    # The model takes the data's image size (as `moto-vision fit` links them).
    backbone, size = model_args["backbone"], model_args.setdefault("image_size", data_args["image_size"])
    out = Path(args.out)
    results: dict[str, Any] = {
        "steps": args.steps,
        "seed": args.seed,
        "backbone": backbone,
        "image_size": size,
        "model_overrides": json.loads(args.model_args),
        "data_overrides": json.loads(args.data_args),
        "runs": {},
    }

    # The recipe's per-task data sections, typed as the training parser builds them.
    data_args = {key: DATA_OPTIONS[key](**value) if key in DATA_OPTIONS else value for key, value in data_args.items()}
    L.seed_everything(args.seed)
    data = MultiTaskDataModule(**data_args)
    model = MultiTaskPerception(**{**model_args, "log_predictions": False})
    results["runs"]["multitask"] = _fit_and_test(model, data, args.steps, out / "multitask")
    if args.multitask_only:
        return results

    for task, (cls, extra) in _single_tasks().items():
        extra = {**_shared_head_options(cls, model_args, task), **extra}
        L.seed_everything(args.seed)
        # The same data (arguments of the multi-task recipe's task datamodule), in the task's own colour domain.
        reference = MultiTaskDataModule(**data_args).datamodules[task]
        task_data = type(reference)(**{k: v for k, v in reference.hparams.items() if not k.startswith("_")})
        task_model = cls(**_model_args(task, backbone=backbone, image_size=size, log_predictions=False, **extra))
        results["runs"][task] = _fit_and_test(task_model, task_data, args.steps, out / task)
    return results


#: (head, multi-task key, single-task key, label, higher is better, stated margin)
QUALITY_ROWS = [
    ("awb", "test_awb_recovery_mean", "test_recovery_mean", "AWB recovery error, mean (deg)", False, 0.5),
    ("awb", "test_awb_recovery_median", "test_recovery_median", "AWB recovery error, median (deg)", False, 0.5),
    ("portrait", "test_portrait_iou", "test_iou", "portrait IoU", True, 0.03),
    ("portrait", "test_portrait_boundary_f", "test_boundary_f", "portrait boundary F (DAVIS)", True, 0.03),
    ("scene", "test_scene_top1", "test_top1", "scene top-1 accuracy", True, 0.03),
    ("scene", "test_scene_ece", "test_ece", "scene ECE (calibrated)", False, 0.03),
]


def _difference(ours: float, theirs: float, higher: bool) -> float:
    """How much worse the multi-task head is (positive: worse)."""
    return (theirs - ours) if higher else (ours - theirs)


def quality_summary(per_seed: list[dict[str, Any]]) -> str:
    """Mean over seeds of each row, the per-seed differences, and whether the mean is within the margin."""
    seeds = ", ".join(str(r["seed"]) for r in per_seed)
    lines = [
        f"| head metric | multi-task (mean) | single-task (mean) | difference (mean) | per seed ({seeds}) "
        "| stated margin | within (mean) |",
        "|---|---:|---:|---:|---|---:|:---:|",
    ]
    for task, multi_key, single_key, label, higher, margin in QUALITY_ROWS:
        pairs = [(r["runs"]["multitask"].get(multi_key), r["runs"].get(task, {}).get(single_key)) for r in per_seed]
        if any(a is None or b is None for a, b in pairs):
            continue
        ours, theirs = statistics.mean(a for a, _ in pairs), statistics.mean(b for _, b in pairs)
        each = " / ".join(f"{a - b:+.3f}" for a, b in pairs)
        within = _difference(ours, theirs, higher) <= margin
        lines.append(
            f"| {label} | {ours:.3f} | {theirs:.3f} | {ours - theirs:+.3f} | {each} | {margin} | "
            f"{'yes' if within else 'no'} |"
        )
    return "\n".join(lines)


def quality_table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    if set(runs) == {"multitask"}:
        keys = [key for _, key, *_ in QUALITY_ROWS]
        row = " | ".join(f"{runs['multitask'].get(k, float('nan')):.3f}" for k in keys)
        return "| " + " | ".join(keys) + " |\n|" + "---:|" * len(keys) + "\n| " + row + " |"
    lines = [
        "| head metric | multi-task | single-task | difference | stated margin | within |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for task, multi_key, single_key, label, higher, margin in QUALITY_ROWS:
        ours, theirs = runs["multitask"].get(multi_key), runs[task].get(single_key)
        if ours is None or theirs is None:
            continue
        worse_by = _difference(ours, theirs, higher)
        lines.append(
            f"| {label} | {ours:.3f} | {theirs:.3f} | {ours - theirs:+.3f} | {margin} | "
            f"{'yes' if worse_by <= margin else 'no'} |"
        )
    times = ", ".join(f"{name} {run['fit_seconds']:.0f} s" for name, run in runs.items())
    lines.append(f"\nTraining time ({results['steps']} steps each, one thread): {times}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- main
def _seed_list(text: str) -> list[int]:
    """``--seeds``: comma-separated integers."""
    try:
        return [int(seed) for seed in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,2, got {text!r}") from None


def _positive_int(text: str) -> int:
    """``--rounds`` / ``--runs`` / ``--instances``: a count of at least 1 (0 would leave nothing to time)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["cost", "quality", "all"])
    parser.add_argument("--size", type=int, default=256, help="cost: input size")
    parser.add_argument("--backbone", default=None, help="cost: backbone (default: the multi-task recipe's)")
    parser.add_argument("--rounds", type=_positive_int, default=15, help="cost: interleaved timing rounds")
    parser.add_argument("--runs", type=_positive_int, default=10, help="cost: timed runs per model per round")
    parser.add_argument(
        "--instances",
        type=_positive_int,
        default=3,
        help="cost: programs loaded per model and runtime, timed in turn (memory placement moves latency)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="cost: threads of every runtime (ONNX Runtime, ExecuTorch, PyTorch)"
    )
    parser.add_argument("--steps", type=int, default=1024, help="quality: training steps of every model")
    parser.add_argument("--seed", type=int, default=0, help="quality: seed of every model's initialisation")
    parser.add_argument(
        "--seeds",
        type=_seed_list,
        default=None,
        help="quality: comma-separated seeds (e.g. 0,1,2): one run per seed, then the mean and per-seed differences",
    )
    parser.add_argument(
        "--summarize",
        nargs="+",
        default=None,
        metavar="QUALITY_JSON",
        help="quality: only print the summary over earlier runs' quality.json files (one per seed)",
    )
    parser.add_argument(
        "--model-args",
        default="{}",
        help="quality: JSON overrides of the multi-task recipe's model arguments, e.g. '{\"lr\": 0.005}'",
    )
    parser.add_argument("--data-args", default="{}", help="quality: JSON overrides of the recipe's data arguments")
    parser.add_argument(
        "--multitask-only", action="store_true", help="quality: train and test the multi-task model only (sweeps)"
    )
    parser.add_argument(
        "--overlay",
        action="append",
        type=Path,
        default=[],
        help="cost and quality: a config merged into the multi-task recipe, as a second --config of `moto-vision fit` "
        "(repeatable), e.g. recipes/overlays/multitask_awb_votes.yaml",
    )
    parser.add_argument("--out", default="runs/benchmarks/multitask")
    args = parser.parse_args()
    missing = [str(path) for path in args.overlay if not path.is_file()]
    if missing:
        parser.error(f"--overlay: no such file {', '.join(missing)}")
    missing = [path for path in args.summarize or [] if not Path(path).is_file()]
    if missing:
        parser.error(f"--summarize: no such file {', '.join(missing)} (a quality.json written by an earlier run)")
    if args.summarize and args.seeds:
        parser.error("--summarize reads earlier runs and trains nothing: give it without --seeds")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.what in ("cost", "all"):
        cost = run_cost(args)
        (out / "cost.json").write_text(json.dumps(cost, indent=2) + "\n")
        table = cost_table(cost)
        (out / "cost.md").write_text(table + "\n")
        print(
            f"\nInference at {args.size}x{args.size}, batch 1, {args.threads} thread(s), median of "
            f"{args.rounds * args.runs} runs of each of {args.instances} instances:\n\n{table}\n"
        )
    if args.what in ("quality", "all"):
        if args.summarize:
            per_seed = [json.loads(Path(path).read_text()) for path in args.summarize]
        else:
            per_seed = []
            seeds = args.seeds or [args.seed]
            for seed in seeds:
                run_out = out / f"seed{seed}" if len(seeds) > 1 else out
                quality = run_quality(argparse.Namespace(**{**vars(args), "seed": seed, "out": str(run_out)}))
                run_out.mkdir(parents=True, exist_ok=True)
                (run_out / "quality.json").write_text(json.dumps(quality, indent=2) + "\n")
                table = quality_table(quality)
                (run_out / "quality.md").write_text(table + "\n")
                print(f"\nTest metrics after {args.steps} training steps, seed {seed}:\n\n{table}\n")
                per_seed.append(quality)
        if len(per_seed) > 1:
            summary = quality_summary(per_seed)
            (out / "quality_summary.md").write_text(summary + "\n")
            print(f"\nOver {len(per_seed)} seeds:\n\n{summary}\n")


if __name__ == "__main__":
    main()
