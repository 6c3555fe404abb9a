"""Checkpoints written by moto-vision 0.1.0 (tests/fixtures/legacy_0_1_0) still load and predict the same."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
import torch

from moto_vision import deploy
from moto_vision.tasks import AWBRegressor, MultiTaskPerception, PortraitSegmenter, SceneClassifier

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_0_1_0"
sys.path.insert(0, str(FIXTURES))
import tiny_backbone  # noqa: E402,F401  (registers the fixtures' timm backbone)

TASKS = {
    "awb": AWBRegressor,
    "portrait": PortraitSegmenter,
    "scene": SceneClassifier,
    "multitask": MultiTaskPerception,
}


@pytest.fixture(scope="module")
def expected() -> dict:
    return torch.load(FIXTURES / "expected.pt", weights_only=True)


def _close(ours, theirs) -> None:
    if isinstance(theirs, dict):
        assert set(ours) == set(theirs)
        for key in theirs:
            torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-5, msg=key)
    else:
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(TASKS))
def test_checkpoint_of_0_1_0_loads_and_predicts_the_same(name: str, expected: dict) -> None:
    assert expected["version"] == "0.1.0"
    record = expected[name]
    # 0.1's multi-task model had flat argument names (awb_feature_level, ...): they load, with a deprecation warning.
    expect = pytest.warns(FutureWarning, match="deprecated") if name == "multitask" else contextlib.nullcontext()
    with expect:
        model = TASKS[name].load_from_checkpoint(FIXTURES / f"{name}.ckpt").eval()
    size = record["input_size"]
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _close(model(x), record["forward"])
        _close(model.export_module().eval()(x), record["export"])
    _contains(model.export_metadata(), record["metadata"])
    # Through the checked loader of `moto-vision export` / deploy.load too (allow-list, weights checked by name).
    with expect:
        predictor = deploy.load(FIXTURES / f"{name}.ckpt")
    with torch.no_grad():
        _close(predictor(x), record["export"])


def _contains(ours: dict, theirs: dict, path: str = "") -> None:
    """Every fact 0.1.0 exported is still there with the same value (new facts may be added)."""
    for key, value in theirs.items():
        assert key in ours, f"{path}{key}"
        if isinstance(value, dict):
            _contains(ours[key], value, f"{path}{key}.")
        else:
            assert ours[key] == value, f"{path}{key}"
