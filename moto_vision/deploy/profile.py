"""Runtime cost of a model: parameters, multiply-accumulates (MACs), activation memory, per-layer table.

MACs come from PyTorch's own ``torch.utils.flop_counter.FlopCounterMode``, which counts a
multiply-accumulate as two floating-point operations; we report ``flops / 2``. It counts the
matrix products and convolutions (the work that dominates on a phone) and not element-wise
activations, normalisation or pooling, which is also how papers and timm's model cards count, so
MobileNetV3-Large 1.0 at 224 x 224 comes out at 217 M MACs and 5.48 M parameters.

Activation memory is reported two ways:

- ``activation_bytes``: the sum of the outputs of every leaf layer (what a naive runtime that keeps
  everything would hold, and roughly what training stores for the backward pass);
- ``peak_activation_bytes``: the largest amount of intermediate tensors alive at once during one
  inference, from a liveness walk over the ``torch.export`` graph in execution order. This is close
  to what a memory-planning runtime such as ExecuTorch needs for its activation arena. PyTorch has
  no public function for it, so it is computed here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = [
    "LayerProfile",
    "ModelProfile",
    "count_macs",
    "count_parameters",
    "peak_activation_bytes",
    "profile_model",
]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model`` (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on ``example`` (a tensor, or a tuple of inputs)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(*example) if isinstance(example, tuple) else model(example)
    model.train(was_training)
    return int(counter.get_total_flops() // 2)


@dataclass
class LayerProfile:
    """Cost of one leaf layer (a module without children).

    Attributes:
        name: the module's qualified name inside the model (``backbone.model.conv_stem``).
        kind: the module's class name.
        output_shape: shape of the (first) output tensor.
        params: parameters owned by this layer.
        macs: multiply-accumulates of this layer for one forward pass.
        activation_bytes: bytes of the layer's output tensors.
    """

    name: str
    kind: str
    output_shape: list[int]
    params: int
    macs: int
    activation_bytes: int


@dataclass
class ModelProfile:
    """Cost of one forward pass of a model on one input.

    Attributes:
        input_shape: the example input's shape.
        params: all parameters.
        macs: all multiply-accumulates (including any not attributed to a leaf layer).
        activation_bytes: sum of the outputs of every leaf layer.
        peak_activation_bytes: most intermediate bytes alive at once (``None`` when the model could not be
            captured with ``torch.export``; see ``notes``).
        weight_bytes: bytes of parameters and buffers as stored (float32 unless converted).
        layers: per-layer table in execution order.
        notes: caveats, e.g. why the peak could not be computed.
    """

    input_shape: list[int]
    params: int
    macs: int
    activation_bytes: int
    peak_activation_bytes: int | None
    weight_bytes: int
    layers: list[LayerProfile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def summary_rows(self) -> list[tuple[str, str]]:
        """(label, value) rows for a short summary table."""
        peak = "n/a" if self.peak_activation_bytes is None else _mib(self.peak_activation_bytes)
        return [
            ("input", "x".join(str(s) for s in self.input_shape)),
            ("parameters", f"{self.params / 1e6:.3f} M ({self.params:,})"),
            ("MACs", f"{self.macs / 1e6:.2f} M ({self.macs:,})"),
            ("weights", _mib(self.weight_bytes)),
            ("activations (sum of layer outputs)", _mib(self.activation_bytes)),
            ("peak live activations", peak),
        ]

    def to_markdown(self, top: int | None = None) -> str:
        """The summary and the per-layer table as Markdown (``top`` most expensive layers by MACs, else all)."""
        lines = ["| quantity | value |", "|---|---|"]
        lines += [f"| {label} | {value} |" for label, value in self.summary_rows()]
        lines += [
            "",
            "| layer | type | output | params | MACs (M) | MACs % | activations |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for layer in self.top_layers(top):
            share = 100.0 * layer.macs / self.macs if self.macs else 0.0
            lines.append(
                f"| {layer.name} | {layer.kind} | {'x'.join(map(str, layer.output_shape))} | {layer.params:,} | "
                f"{layer.macs / 1e6:.3f} | {share:.1f} | {_kib(layer.activation_bytes)} |"
            )
        lines += [f"\n> {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def top_layers(self, top: int | None = None) -> list[LayerProfile]:
        """Layers in execution order, or the ``top`` most expensive by MACs."""
        if top is None or top >= len(self.layers):
            return list(self.layers)
        return sorted(self.layers, key=lambda layer: layer.macs, reverse=True)[:top]


@torch.no_grad()
def profile_model(model: nn.Module, example: torch.Tensor, *, peak: bool = True) -> ModelProfile:
    """Profile one forward pass of ``model`` (in eval mode) on ``example``.

    Args:
        model: any ``nn.Module`` taking one tensor.
        example: the input, e.g. ``torch.zeros(1, 3, 224, 224)``.
        peak: also compute the peak live activation memory (needs a ``torch.export`` capture).

    Returns:
        The :class:`ModelProfile` with totals and the per-layer table.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    leaves = [(name, module) for name, module in model.named_modules() if not any(module.children())]
    records: dict[str, dict[str, Any]] = {}
    order: list[str] = []

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            tensors = list(_tensors(output))
            if name not in records:
                order.append(name)
                records[name] = {"shape": list(tensors[0].shape) if tensors else [], "bytes": 0}
            records[name]["bytes"] += sum(t.numel() * t.element_size() for t in tensors)

        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in leaves]
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    # FlopCounterMode keys modules as "<RootClass>.<qualified name>" (and the root itself by its class name).
    root = type(model).__name__
    flops_by_module = {
        name.removeprefix(root + ".") if name != root else "": sum(counts.values())
        for name, counts in counter.get_flop_counts().items()
    }
    modules = dict(leaves)
    layers = [
        LayerProfile(
            name=name,
            kind=type(modules[name]).__name__,
            output_shape=records[name]["shape"],
            params=sum(p.numel() for p in modules[name].parameters(recurse=False)),
            macs=int(flops_by_module.get(name, 0) // 2),
            activation_bytes=int(records[name]["bytes"]),
        )
        for name in order
    ]
    notes: list[str] = []
    total_macs = int(counter.get_total_flops() // 2)
    attributed = sum(layer.macs for layer in layers)
    if total_macs - attributed > 0:
        notes.append(
            f"{(total_macs - attributed) / 1e6:.3f} M MACs come from functional calls outside leaf layers "
            "(e.g. attention matmuls in a forward method); they are in the total but not in the table."
        )
    peak_bytes: int | None = None
    if peak:
        try:
            peak_bytes = peak_activation_bytes(model, example)
        except Exception as error:  # torch.export fails on some dynamic Python code
            notes.append(f"Peak live activations not computed: torch.export failed ({type(error).__name__}).")
    weight_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return ModelProfile(
        input_shape=list(example.shape),
        params=count_parameters(model),
        macs=total_macs,
        activation_bytes=sum(layer.activation_bytes for layer in layers),
        peak_activation_bytes=peak_bytes,
        weight_bytes=int(weight_bytes),
        layers=layers,
        notes=notes,
    )


def peak_activation_bytes(model: nn.Module, example: torch.Tensor) -> int:
    """Largest total size of intermediate tensors alive at once in one inference of ``model``.

    The model is captured with ``torch.export``; nodes run in graph order, a tensor is alive from the node
    that produces it to its last use, and the graph input and output count (weights do not). Views
    (``view``, ``reshape`` of contiguous data, ``t``...) are counted as new tensors, so the figure is an upper
    bound for runtimes that alias them.
    """
    was_training = model.training
    model.eval()
    try:
        program = torch.export.export(model, (example,))
    finally:
        model.train(was_training)
    graph = program.graph_module.graph
    weights = set(program.graph_signature.inputs_to_parameters) | set(program.graph_signature.inputs_to_buffers)
    weights |= set(program.graph_signature.inputs_to_lifted_tensor_constants)
    nodes = list(graph.nodes)
    position = {node: i for i, node in enumerate(nodes)}
    last_use: dict[torch.fx.Node, int] = {}
    for node in nodes:
        for used in node.all_input_nodes:
            last_use[used] = max(last_use.get(used, -1), position[node])
    alive: dict[torch.fx.Node, int] = {}
    peak = 0
    for i, node in enumerate(nodes):
        if node.op == "placeholder" and node.name in weights:
            continue
        size = _node_bytes(node)
        if size and node.op != "output":
            alive[node] = size
        peak = max(peak, sum(alive.values()))
        for used in [n for n in alive if last_use.get(n, len(nodes)) <= i and n is not node]:
            del alive[used]
    return int(peak)


def _node_bytes(node: torch.fx.Node) -> int:
    value = node.meta.get("val")
    # Static shapes only: the model is exported at one input size.
    return sum(math.prod(int(s) for s in t.shape) * t.element_size() for t in _tensors(value))


def _tensors(value: Any) -> Iterable[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def _kib(n: int) -> str:
    return f"{n / 2**10:.1f} KiB"
