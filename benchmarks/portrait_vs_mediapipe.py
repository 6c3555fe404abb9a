"""Latency of the default portrait model against MediaPipe's selfie segmenter, in one run on this CPU.

Both models run through their own runtimes at 256x256, batch 1, on the same synthetic portrait:

- MediaPipe's selfie segmenter (``selfie_segmentation.tflite``, the general 256x256 model bundled in the
  ``mediapipe==0.10.21`` wheel) through MediaPipe's Tasks ``ImageSegmenter`` (TFLite + XNNPACK), image in,
  confidence mask out;
- our default model (``recipes/portrait.yaml``, or ``--checkpoint``) exported with ``torch.onnx.export``
  into a temporary folder and run by ONNX Runtime, timed from the uint8 image to the probability mask
  (scaling, layout change and sigmoid included, like MediaPipe's pre- and post-processing).

Measurements alternate between the two in blocks (``--rounds`` x ``--runs``), so a busy machine slows both
alike; the medians over all runs and their ratio are printed, with parameters and MACs.

MediaPipe is not a moto-vision dependency (it pins numpy<2 and protobuf<5); install it into its own
environment and point ``--mediapipe-python`` at that interpreter::

    python -m venv /tmp/mp-venv && /tmp/mp-venv/bin/pip install mediapipe==0.10.21 tflite
    python benchmarks/portrait_vs_mediapipe.py --mediapipe-python /tmp/mp-venv/bin/python

(``tflite`` only lets the script count MediaPipe's parameters and MACs from its graph.) Without a working
MediaPipe the script still measures our model and says why MediaPipe was skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]

# Runs inside the MediaPipe interpreter; answers "info" and "time N" requests with one JSON line each.
_MEDIAPIPE_WORKER = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
import mediapipe as mp
from mediapipe.tasks.python import BaseOptions, vision

size = int(sys.argv[1])
path = mp.__path__[0] + "/modules/selfie_segmentation/selfie_segmentation.tflite"
image = np.load(sys.argv[2])
options = vision.ImageSegmenterOptions(
    base_options=BaseOptions(model_asset_path=path), output_confidence_masks=True, output_category_mask=False
)
segmenter = vision.ImageSegmenter.create_from_options(options)
frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))


def graph_cost():
    try:
        import tflite
    except ImportError:
        return None, None, "install the 'tflite' package to count parameters and MACs"
    model = tflite.Model.GetRootAsModel(open(path, "rb").read(), 0)
    graph = model.Subgraphs(0)
    shape = lambda i: graph.Tensors(i).ShapeAsNumpy().tolist()
    params = 0
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        buffer = model.Buffers(tensor.Buffer())
        weights = tensor.Type() in (tflite.TensorType.FLOAT16, tflite.TensorType.FLOAT32)
        if buffer is not None and buffer.DataLength() > 0 and weights:
            params += int(np.prod(shape(i)))
    macs = 0
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        inputs, outputs = op.InputsAsNumpy().tolist(), op.OutputsAsNumpy().tolist()
        if kind == tflite.BuiltinOperator.CONV_2D:
            n, h, w, c = shape(outputs[0]); o, kh, kw, ci = shape(inputs[1])
            macs += n * h * w * c * kh * kw * ci
        elif kind == tflite.BuiltinOperator.DEPTHWISE_CONV_2D:
            n, h, w, c = shape(outputs[0]); _, kh, kw, _ = shape(inputs[1])
            macs += n * h * w * c * kh * kw
        elif kind in (tflite.BuiltinOperator.TRANSPOSE_CONV, tflite.BuiltinOperator.CUSTOM):
            # MediaPipe's custom op is a transposed convolution (+ bias): every input pixel meets every weight.
            if len(inputs) >= 2 and len(shape(inputs[1])) == 4:
                n, h, w, ci = shape(inputs[0]); o, kh, kw, _ = shape(inputs[1])
                macs += n * h * w * ci * kh * kw * o
    return params, macs, None


for line in sys.stdin:
    command = line.split()
    if command[0] == "info":
        params, macs, note = graph_cost()
        print(json.dumps({"version": mp.__version__, "model": path, "file_bytes": __import__("os").path.getsize(path),
                          "params": params, "macs": macs, "note": note}), flush=True)
    elif command[0] == "time":
        runs = int(command[1])
        times = []
        cpu = time.process_time()
        for _ in range(runs):
            start = time.perf_counter()
            result = segmenter.segment(frame)
            result.confidence_masks[0].numpy_view()
            times.append(time.perf_counter() - start)
        print(json.dumps({"times": times, "cpu": time.process_time() - cpu}), flush=True)
"""


class MediaPipeWorker:
    """MediaPipe in its own interpreter, kept alive so its timings interleave with ours."""

    def __init__(self, python: str, image: np.ndarray, size: int) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        frame = Path(self._tmp.name) / "frame.npy"
        np.save(frame, image)
        script = Path(self._tmp.name) / "worker.py"
        script.write_text(_MEDIAPIPE_WORKER)
        env = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.process = subprocess.Popen(
            [python, str(script), str(size), str(frame)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def ask(self, command: str):
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            error = self.process.stderr.read() if self.process.stderr else ""
            raise RuntimeError(f"MediaPipe worker exited: {error.strip().splitlines()[-3:]}")
        return json.loads(line)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)
        self._tmp.cleanup()


def mediapipe_interpreter(requested: str | None) -> tuple[str | None, str]:
    """The interpreter that can import mediapipe, or ``None`` and the reason."""
    candidates = [requested] if requested else [sys.executable]
    for python in candidates:
        check = subprocess.run(
            [python, "-c", "import mediapipe, sys; print(mediapipe.__version__)"],
            capture_output=True,
            text=True,
        )
        if check.returncode == 0:
            return python, check.stdout.strip()
        reason = (check.stderr.strip().splitlines() or ["unknown error"])[-1]
    hint = "pass --mediapipe-python with an interpreter that has mediapipe==0.10.21 (see the module docstring)"
    return None, f"{candidates[0]} cannot import mediapipe ({reason}); {hint}"


def build_model(checkpoint: str | None):
    from moto_vision.tasks import PortraitSegmenter

    if checkpoint:
        return PortraitSegmenter.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    recipe = yaml.safe_load((REPO / "recipes" / "portrait.yaml").read_text())
    return PortraitSegmenter(**recipe["model"]["init_args"]).eval()


def export_onnx(model: torch.nn.Module, size: int, folder: Path) -> Path:
    path = folder / "portrait.onnx"
    example = torch.rand(1, 3, size, size)
    torch.onnx.export(model, (example,), str(path), input_names=["image"], output_names=["logits"])
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="a trained PortraitSegmenter .ckpt (default: the recipe's model)")
    parser.add_argument("--mediapipe-python", help="interpreter with mediapipe installed (default: this one)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=10, help="alternating measurement blocks per model")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per block")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--ort-threads",
        type=int,
        default=1,
        help="ONNX Runtime intra-op threads (0: its default). MediaPipe's Python API has no thread setting; the "
        "'cores' column shows how many cores each runtime kept busy.",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from moto_vision.data.portrait import render_portrait
    from moto_vision.deploy.profile import count_macs, count_parameters

    torch.set_num_threads(max(1, torch.get_num_threads()))
    image_t, _ = render_portrait(seed=2024, size=args.size)
    image = image_t.mul(255).round().byte().permute(1, 2, 0).numpy()  # HWC uint8, as a camera frame

    model = build_model(args.checkpoint)
    params = count_parameters(model)
    macs = count_macs(model, torch.rand(1, 3, args.size, args.size))
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = export_onnx(model, args.size, Path(folder))
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.ort_threads
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        # The exporter may keep weights in a side file next to the graph: count everything it wrote.
        onnx_bytes = sum(f.stat().st_size for f in Path(folder).iterdir() if f.is_file())

    def ours_once() -> float:
        start = time.perf_counter()
        x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) * (1 / 255)
        logits = session.run(None, {"image": x})[0]
        1 / (1 + np.exp(-logits))
        return time.perf_counter() - start

    python, mp_status = mediapipe_interpreter(args.mediapipe_python)
    worker = MediaPipeWorker(python, image, args.size) if python else None
    mp_info = worker.ask("info") if worker else None
    for _ in range(args.warmup):
        ours_once()
    if worker:
        worker.ask(f"time {args.warmup}")

    ours_times: list[float] = []
    mp_times: list[float] = []
    ours_cpu = mp_cpu = 0.0
    for _ in range(args.rounds):
        if worker:
            answer = worker.ask(f"time {args.runs}")
            mp_times += answer["times"]
            mp_cpu += answer["cpu"]
        cpu = time.process_time()
        ours_times += [ours_once() for _ in range(args.runs)]
        ours_cpu += time.process_time() - cpu
    if worker:
        worker.close()

    def stats(times: list[float], cpu: float) -> dict[str, float]:
        ms = np.array(times) * 1e3
        return {
            "median_ms": float(np.median(ms)),
            "p10_ms": float(np.percentile(ms, 10)),
            "p90_ms": float(np.percentile(ms, 90)),
            "min_ms": float(ms.min()),
            # CPU time over wall time: about the number of cores the runtime kept busy.
            "cores_busy": cpu / max(1e-9, float(np.sum(times))),
        }

    result: dict = {
        "size": args.size,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "ours": {
            "model": f"{model.hparams.backbone} + {model.hparams.decoder} decoder",
            "runtime": f"onnxruntime {ort.__version__} (intra-op threads: {args.ort_threads or 'default'})",
            "params": params,
            "macs": macs,
            "onnx_bytes": onnx_bytes,
            **stats(ours_times, ours_cpu),
        },
    }
    if worker and mp_info:
        result["mediapipe"] = {
            "model": "selfie_segmentation.tflite (general, 256x256)",
            "runtime": f"mediapipe {mp_info['version']} Tasks ImageSegmenter (TFLite, XNNPACK)",
            "params": mp_info["params"],
            "macs": mp_info["macs"],
            "file_bytes": mp_info["file_bytes"],
            **stats(mp_times, mp_cpu),
        }
        result["ratio"] = result["ours"]["median_ms"] / result["mediapipe"]["median_ms"]
        result["ratio_p10"] = result["ours"]["p10_ms"] / result["mediapipe"]["p10_ms"]
    else:
        result["mediapipe"] = {"skipped": mp_status}

    print(
        f"Portrait segmentation at {args.size}x{args.size}, batch 1 ({result['machine']}; "
        f"{args.rounds} alternating rounds of {args.runs} runs)"
    )
    header = (
        f"{'model':<52} {'params':>9} {'MMACs':>8} {'file KB':>8} {'median ms':>10} {'p10':>7} {'p90':>7} {'cores':>6}"
    )
    print(header)
    for key in ("mediapipe", "ours"):
        entry = result[key]
        if "skipped" in entry:
            print(f"MediaPipe skipped: {entry['skipped']}")
            continue
        macs_m = f"{entry['macs'] / 1e6:.1f}" if entry.get("macs") else "n/a"
        label = f"{entry['model']} [{entry['runtime'].split(' (')[0].split(' Tasks')[0]}]"
        size_kb = (entry.get("file_bytes") or entry.get("onnx_bytes") or 0) / 1024
        print(
            f"{label:<52} {entry['params'] or 0:>9,} {macs_m:>8} {size_kb:>8.0f} {entry['median_ms']:>10.2f} "
            f"{entry['p10_ms']:>7.2f} {entry['p90_ms']:>7.2f} {entry['cores_busy']:>6.2f}"
        )
    if "ratio" in result:
        print(f"ratio ours / MediaPipe: {result['ratio']:.2f} (median latency), {result['ratio_p10']:.2f} (p10)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
