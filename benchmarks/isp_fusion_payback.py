"""When compiling the ISP's fused chains pays: compile cost versus the saving per call, in CPU time.

Runs ``isp_preset(preset, domain)`` on a ``batch x 3 x size x size`` batch eagerly and fused (``torch.compile``),
one intra-op thread, and reports the CPU time (this process and its compile workers) of the first fused calls
(which compile) and the median CPU time per call of each path. The break-even is ``compile / saving`` calls, or
``compile / saving per element`` elements: ``moto_vision.isp.fusion.PAYBACK_ELEMENTS`` is chosen from it.

    python benchmarks/isp_fusion_payback.py [--batch 16] [--size 256] [--preset default] [--domain srgb]

Run it in a fresh process (the compile is cached per process).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import torch

from moto_vision.isp import fusion, isp_preset


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _per_call(augment: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = _cpu()
        augment(x)
        times.append(_cpu() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--domain", default="srgb", choices=["srgb", "linear"])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size)
    augment = isp_preset(args.preset, args.domain)
    with torch.no_grad():
        os.environ[fusion.COMPILE_ENV] = "0"
        augment(x)
        eager = _per_call(augment, x, args.repeats)
        os.environ[fusion.COMPILE_ENV] = "1"
        start, wall = _cpu(), time.perf_counter()
        augment(x)
        augment(x)  # p < 1 presets may leave a chain out of the first call
        compile_cpu, compile_wall = _cpu() - start, time.perf_counter() - wall
        fused = _per_call(augment, x, args.repeats)
    saving = eager - fused
    elements = x.numel()
    print(f"batch {args.batch} x 3 x {args.size} x {args.size}, preset {args.preset!r} ({args.domain})")
    print(f"eager {eager * 1e3:.1f} ms CPU/call, fused {fused * 1e3:.1f} ms, saving {saving * 1e3:.1f} ms")
    print(f"saving per element and call: {saving / elements * 1e9:.2f} ns")
    print(f"first two fused calls (compile included): {compile_cpu:.1f} s CPU, {compile_wall:.1f} s wall")
    if saving > 0:
        calls = (compile_cpu - 2 * fused) / saving
        print(f"break-even: {calls:.0f} calls = {calls * elements:.2e} elements")
    else:
        print("break-even: never (fused is not faster here)")


if __name__ == "__main__":
    main()
