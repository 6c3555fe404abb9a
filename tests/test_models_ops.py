"""The runtime-friendly ops of moto_vision.models.ops equal the plain torch expressions they replace."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F

from moto_vision.models import ops
from moto_vision.models.awb import ExposureNormalize


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))


def test_reductions_match_the_plain_ops(x):
    torch.testing.assert_close(ops.spatial_mean(x), x.mean(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(ops.spatial_max(x), x.amax(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(ops.channel_sum(x), x.sum(dim=1, keepdim=True))
    torch.testing.assert_close(ops.channel_max(x), x.amax(dim=1, keepdim=True))
    torch.testing.assert_close(ops.unit_length(x - 0.5), F.normalize(x - 0.5, dim=1, eps=1e-12))
    values, weights = torch.randn(2, 3, 7), torch.softmax(torch.randn(2, 7), dim=-1)
    torch.testing.assert_close(ops.weighted_sum(values, weights), (values * weights[:, None]).sum(dim=-1))


@pytest.mark.parametrize("size", [(16, 16), (8, 12), (4, 6), (32, 48), (5, 7)])
def test_block_mean_is_adaptive_average_pooling(x, size):
    torch.testing.assert_close(ops.block_mean(x, size), F.adaptive_avg_pool2d(x, size))


def test_step_and_select_are_a_comparison_and_a_where():
    v = torch.tensor([-1.0, 0.0, 1e-7, 2e-6, 1.0])
    torch.testing.assert_close(ops.step(v, 1e-6), (v > 1e-6).float())
    assert torch.equal(ops.step(torch.tensor([0.0, 1e-20]), 0.0), torch.tensor([0.0, 1.0]))
    a, b = torch.randn(5), torch.randn(5)
    c = ops.step(v, 1e-6)
    assert torch.equal(ops.select(c, a, b), torch.where(c > 0, a, b))


@pytest.mark.parametrize("encoding", ["linear", "log", "sqrt"])
def test_exposure_normalize_is_invariant_to_exposure(x, encoding):
    normalize = ExposureNormalize(encoding)
    torch.testing.assert_close(normalize(x * 4.0), normalize(x), rtol=1e-4, atol=1e-4)
    y = x / (x.mean(dim=(1, 2, 3), keepdim=True) + 1e-6)
    expected = {"linear": y - 1.0, "log": torch.log(y + 1e-2) * 0.5, "sqrt": torch.sqrt(y)}[encoding]
    torch.testing.assert_close(normalize(x), expected)


def test_exposure_normalize_relative_to_each_channel_removes_channel_gains(x):
    """``reference="channel_mean"``: each channel over its own mean, so per-channel gains (a light's cast) cancel."""
    normalize = ExposureNormalize("sqrt", reference="channel_mean")
    gains = torch.tensor([2.0, 1.0, 0.5])[None, :, None, None]
    torch.testing.assert_close(normalize(x * gains), normalize(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(normalize(x), torch.sqrt(x / (x.mean(dim=(2, 3), keepdim=True) + 1e-6)))
    with pytest.raises(ValueError, match="'channel_mean'"):
        ExposureNormalize(reference="median")  # type: ignore[arg-type]


def test_exposure_normalize_log_flag_is_deprecated(x):
    with pytest.warns(DeprecationWarning, match="encoding='log'"):
        normalize = ExposureNormalize(log=True)
    assert normalize.encoding == "log"
    with pytest.raises(ValueError, match="encoding must be"):
        ExposureNormalize("gamma")  # type: ignore[arg-type]


def test_multitask_input_encoding_defaults_to_sqrt_and_0_1_checkpoints_keep_log():
    from moto_vision.tasks import MultiTaskPerception

    kwargs = {"heads": ["awb"], "backbone": "mobilenetv3_small_050", "log_predictions": False}
    assert MultiTaskPerception(**kwargs).normalize.encoding == "sqrt"
    assert MultiTaskPerception(**kwargs, log_input=True).normalize.encoding == "log"  # what 0.1 stored
    assert MultiTaskPerception(**kwargs, log_input=False).normalize.encoding == "linear"
    assert MultiTaskPerception(**kwargs, input_encoding="log").normalize.encoding == "log"
    # The exposure reference: the mean brightness unless a model asks for each channel's own mean.
    assert MultiTaskPerception(**kwargs).normalize.reference == "mean"
    assert MultiTaskPerception(**kwargs, input_reference="channel_mean").normalize.reference == "channel_mean"


def test_multitask_graph_is_one_xnnpack_partition():
    """Every op of the three-head graph runs in XNNPACK: a fallback op splits the graph and costs a round trip."""
    pytest.importorskip("executorch")
    from moto_vision.deploy.exporters import lower_executorch
    from moto_vision.tasks import MultiTaskPerception

    model = MultiTaskPerception(backbone="mobilenetv3_small_100", image_size=64, log_predictions=False).eval()
    module = model.export_module().eval()
    with torch.no_grad():
        graph = lower_executorch(module, (torch.rand(1, 3, 64, 64),)).exported_program().graph
    targets = [str(n.target) for n in graph.nodes if n.op == "call_function" and "getitem" not in str(n.target)]
    delegates = [t for t in targets if "executorch_call_delegate" in t]
    # Scalar dtype copies of constants are the only ops left outside (ExecuTorch runs them once per call, no data).
    outside = [t for t in targets if "executorch_call_delegate" not in t and "_to_dim_order_copy" not in t]
    assert len(delegates) == 1 and not outside, outside


def test_awb_statistics_lift_no_int_constants_in_executorch():
    """Scales are Python floats: an int becomes a tensor constant plus a dtype copy run outside XNNPACK per call."""
    pytest.importorskip("executorch")
    from moto_vision.deploy.exporters import lower_executorch
    from moto_vision.models.awb import ClassicalEstimates

    class Statistics(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.normalize = ExposureNormalize("linear")
            self.classical = ClassicalEstimates()

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return (self.normalize(x), *self.classical(x))

    with torch.no_grad():
        graph = lower_executorch(Statistics().eval(), (torch.rand(1, 3, 64, 64),)).exported_program().graph
    copies = [n.name for n in graph.nodes if n.op == "call_function" and "_to_dim_order_copy" in str(n.target)]
    assert not copies, copies


def test_exposure_mean_and_awb_colour_grid_share_one_block_mean_in_executorch():
    """The normalisation's mean goes through the 16 x 16 block mean the AWB head takes; the export computes it once."""
    pytest.importorskip("executorch")
    from moto_vision.deploy.exporters import lower_executorch

    class NormaliseAndGrid(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.normalize = ExposureNormalize("sqrt")

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.normalize(x), ops.block_mean(x, (16, 16))

    x = torch.rand(1, 3, 256, 256)
    graph = lower_executorch(NormaliseAndGrid(), (x,), partitioners=[]).exported_program().graph
    means = [n for n in graph.nodes if n.op == "call_function" and "mean" in str(n.target)]
    # Two whole-row means for the block mean, one for the mean of its 16 x 16 result: five without the merge.
    assert len(means) == 3, [str(n.target) for n in means]
    torch.testing.assert_close(ops.blockwise_mean(x, (16, 16)), x.mean(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(ops.blockwise_mean(x[..., :250], (16, 16)), x[..., :250].mean(dim=(2, 3), keepdim=True))
