"""ExecuTorch fp32 latency of AWB model variants, interleaved in one process so that machine load hits all alike.

Each variant is the AWB recipe's model with some arguments changed (untrained weights: latency does not depend on
them), exported as ``moto-vision export --format executorch`` lowers it and timed with ``method.execute`` on one
thread, round by round across the variants. ``moto-vision benchmark --ckpt`` times one trained checkpoint in every
format; this compares designs before training them.

    python benchmarks/awb_latency.py   # the recipe, the recipes before it, half-resolution Gray Edge, no votes
    python benchmarks/awb_latency.py --variant 'h64={"head_channels": 64}' --variant 'recipe={}' [--rounds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import yaml

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "awb.yaml"
DEFAULT_VARIANTS = {
    "recipe": {},
    "vote_hidden 32 (the recipe before)": {"vote_hidden": 32},
    "vote_features true, vote_hidden 32 (the recipe before that)": {"vote_features": True, "vote_hidden": 32},
    "recipe, gray_edge_scale 2": {"gray_edge_scale": 2},
    "recipe, no classical_votes": {"classical_votes": False, "local_votes": "always"},  # nothing else would vote
}


def _variant(text: str) -> tuple[str, dict[str, Any]]:
    """``--variant name={json}``: a row name and the model arguments it overrides."""
    name, sep, overrides = text.partition("=")
    try:
        parsed = json.loads(overrides) if sep else None
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"--variant {name!r}: the arguments are not JSON ({error})") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(
            f"--variant wants name={{json object}}, e.g. 'h16={{\"head_channels\": 16}}', got {text!r}"
        )
    return name, parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", type=_variant, action="append", default=[], help="name={model args json}")
    parser.add_argument("--size", type=int, default=64, help="input size (square)")
    parser.add_argument("--rounds", type=int, default=60, help="interleaved rounds")
    parser.add_argument("--runs", type=int, default=25, help="timed runs per variant and round")
    args = parser.parse_args()

    from multitask import _executorch_runner  # benchmarks/multitask.py: the same lowering and runtime

    from moto_vision.deploy.profile import count_parameters
    from moto_vision.tasks import AWBRegressor

    torch.set_num_threads(1)
    recipe_args = yaml.safe_load(RECIPE.read_text())["model"]["init_args"]
    example = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    runners, params = {}, {}
    for name, overrides in (dict(args.variant) or DEFAULT_VARIANTS).items():
        try:
            model = AWBRegressor(**{**recipe_args, **overrides, "image_size": args.size}).eval()
        except (TypeError, ValueError) as error:
            parser.error(f"--variant {name!r}: {error}")
        params[name] = count_parameters(model)
        with torch.no_grad():
            runners[name], _ = _executorch_runner(model.export_module().eval(), example, threads=1)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        for _ in range(50):
            run()
    for _ in range(args.rounds):
        for name, run in runners.items():
            for _ in range(args.runs):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    size, count = f"{args.size} x {args.size}", f"{args.rounds} x {args.runs}"
    print(f"\nExecuTorch fp32, {size}, batch 1, one thread, {count} runs each:\n")
    print("| variant | parameters | median (ms) | p10 (ms) | min (ms) |\n|---|---:|---:|---:|---:|")
    for name, values in times.items():
        values.sort()
        median, p10, low = statistics.median(values), values[len(values) // 10], values[0]
        print(f"| {name} | {params[name] / 1e3:.1f} k | {1e3 * median:.3f} | {1e3 * p10:.3f} | {1e3 * low:.3f} |")
    print("\nLoad average (1, 5, 15 min): " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
