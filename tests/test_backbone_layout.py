"""Backbones through timm's supported routes: old checkpoints compute the same numbers, partial files are marked.

``tests/fixtures/legacy_backbones`` holds checkpoints written by the release before the switch to timm's
``feature_cls="getter"`` feature models (see ``make.py`` there), with what they computed on fixed images.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from moto_vision.backbones import BackboneWeightsError, create_backbone, save_backbone
from moto_vision.deploy.source import load_task
from moto_vision.tasks import AWBRegressor, SceneClassifier

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy_backbones"


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(LEGACY / "reference.pt", weights_only=True)


@pytest.mark.parametrize("name, cls", [("awb", AWBRegressor), ("scene", SceneClassifier)])
def test_checkpoints_of_the_previous_layout_compute_the_same_numbers(reference, name, cls):
    images = reference["images"]
    old = torch.load(LEGACY / f"{name}.ckpt", weights_only=True)["state_dict"]
    assert not any(k.startswith("backbone.model.model.") for k in old)  # really the old names
    by_lightning = cls.load_from_checkpoint(LEGACY / f"{name}.ckpt", map_location="cpu").eval()
    by_deploy, _ = load_task(LEGACY / f"{name}.ckpt")  # the checked path renames before comparing names
    for task in (by_lightning, by_deploy):
        with torch.no_grad():
            # Same numbers up to float rounding: the heads reduce in another order since moto_vision.models.ops.
            torch.testing.assert_close(task(images), reference[name], rtol=1e-5, atol=1e-6)
    assert set(by_deploy.state_dict()) != set(old)  # the names did change


def test_an_exported_old_checkpoint_matches_the_old_code(reference, tmp_path):
    pytest.importorskip("onnxruntime")
    from moto_vision.deploy import ExportSession, load

    task, info = load_task(LEGACY / "awb.ckpt")
    # Compared with what the old code computed, which is the check that matters here (parity is tested elsewhere).
    result = ExportSession(task, info, None, parity_batches=1).export("onnx", "fp32", tmp_path, verify=False)
    assert result.status == "exported", result.error
    assert torch.allclose(load(result.path)(reference["images"]), reference["awb"], atol=1e-5)


def test_a_partial_backbone_is_refused_or_written_marked(tmp_path):
    task = AWBRegressor(backbone="mobilenetv3_small_050", image_size=64, baselines=[])  # feature level 1 only
    with pytest.raises(BackboneWeightsError, match="partial 'mobilenetv3_small_050' backbone: 22 of its 240"):
        save_backbone(task, tmp_path / "awb.safetensors")
    assert not (tmp_path / "awb.safetensors").exists()
    path = save_backbone(task, tmp_path / "awb.safetensors", allow_partial=True)
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata()["partial"] == "true" and handle.metadata()["tensors"] == "22/240"
    same_depth = create_backbone("mobilenetv3_small_050", out_indices=(1,), pretrained=path).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(same_depth(x)[-1], task.backbone.eval()(x)[-1])  # the AWB head's level
    with pytest.raises(BackboneWeightsError, match="218 of 240 tensors .* are missing.*only its first stages"):
        create_backbone("mobilenetv3_small_050", pretrained=path)  # a full backbone would be mostly random


def test_hub_weights_fail_fast_when_the_hub_does_not_answer(monkeypatch):
    """Without a network huggingface_hub retries for about 50 s; the probe gives up after 2 s."""
    from huggingface_hub import constants

    # A host that never resolves (RFC 6761), for the probe and for any download that would follow it.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", "https://hub.invalid/{repo_id}/resolve/{revision}/{filename}"
    )
    start = time.perf_counter()
    with pytest.raises(BackboneWeightsError, match="pass a local file"):
        create_backbone("mobilenetv3_small_050", pretrained=True)
    assert time.perf_counter() - start < 15  # 2 s probe; measured in the report, generous here for a busy machine
    assert constants.HF_HUB_OFFLINE is False  # restored
