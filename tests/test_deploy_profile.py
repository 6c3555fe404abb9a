"""`moto-vision profile`: counts checked against a hand-built net with known costs and published figures."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from moto_vision.deploy.cli import profile_main
from moto_vision.deploy.profile import count_macs, count_parameters, peak_activation_bytes, profile_model


def _known_net() -> nn.Module:
    # conv 3->8, 3x3, pad 1 on 16x16: 8*3*9 MACs per output pixel * 256 pixels; linear 8->4 on the pooled vector.
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    )


def test_hand_built_net_has_exact_counts():
    model = _known_net()
    example = torch.zeros(1, 3, 16, 16)
    profile = profile_model(model, example)
    conv_macs, linear_macs = 8 * 3 * 9 * 16 * 16, 8 * 4
    assert profile.macs == count_macs(model, example) == conv_macs + linear_macs
    assert profile.params == count_parameters(model) == (3 * 8 * 9 + 8) + (8 * 4 + 4)
    by_name = {layer.name: layer for layer in profile.layers}
    assert [layer.name for layer in profile.layers] == ["0", "1", "2", "3", "4"]  # execution order
    assert by_name["0"].macs == conv_macs and by_name["4"].macs == linear_macs and by_name["1"].macs == 0
    assert by_name["0"].params == 3 * 8 * 9 + 8 and by_name["1"].params == 0
    assert by_name["0"].output_shape == [1, 8, 16, 16]
    float_bytes = 4
    assert by_name["0"].activation_bytes == 8 * 16 * 16 * float_bytes
    assert profile.activation_bytes == float_bytes * (2 * 8 * 16 * 16 + 8 + 8 + 4)
    # Peak: while ReLU runs, the conv output and the ReLU output are both alive (the input is dead by then).
    assert profile.peak_activation_bytes == peak_activation_bytes(model, example) == 2 * 8 * 16 * 16 * float_bytes
    assert profile.weight_bytes == profile.params * float_bytes


def test_mobilenetv3_large_matches_published_figures():
    timm = pytest.importorskip("timm")
    model = timm.create_model("mobilenetv3_large_100", pretrained=False)
    profile = profile_model(model, torch.zeros(1, 3, 224, 224), peak=False)
    # Howard et al. 2019 / timm model card: 5.48 M parameters, 217 M MACs (219 M in the paper's table).
    assert profile.params / 1e6 == pytest.approx(5.48, abs=0.01)
    assert profile.macs / 1e6 == pytest.approx(217, abs=2)
    assert sum(layer.macs for layer in profile.layers) == profile.macs  # every MAC is attributed to a layer


def test_profile_cli_writes_json_and_markdown(tmp_path, capsys):
    json_path, md_path = tmp_path / "p.json", tmp_path / "p.md"
    assert profile_main(["--model", "test_efficientnet", "--image-size", "32", "--output", str(json_path)]) == 0
    data = json.loads(json_path.read_text())
    assert data["input_shape"] == [1, 3, 32, 32] and data["macs"] > 0 and data["layers"]
    assert "peak live activations" in capsys.readouterr().out
    assert (
        profile_main(["--model", "test_efficientnet", "--image-size", "32", "--top", "3", "--output", str(md_path)])
        == 0
    )
    table = md_path.read_text()
    assert "| MACs |" in table and table.count("| Conv2d |") == 3


def test_profile_cli_rejects_unknown_model(capsys):
    assert profile_main(["--model", "no_such_net"]) == 2
    assert "unknown timm model" in capsys.readouterr().err
