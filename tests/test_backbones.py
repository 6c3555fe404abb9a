"""Backbones: shapes for every curated model, weight round trips, plain-timm loading, fusion, freezing."""

from __future__ import annotations

import pytest
import timm
import torch

from moto_vision.backbones import BackboneWeightsError, create_backbone, save_backbone
from moto_vision.deploy.catalogue import RECOMMENDED_BACKBONES, list_backbones

TEST_MODELS = ("test_efficientnet", "test_resnet", "test_convnext", "test_vit")


@pytest.mark.parametrize("name", [*RECOMMENDED_BACKBONES, *TEST_MODELS])
def test_feature_shapes_channels_and_reductions(name):
    torch.manual_seed(0)
    size = 64 if name != "test_vit" else 160  # the tiny ViT has a fixed input size
    backbone = create_backbone(name).eval()
    with torch.no_grad():
        features = backbone(torch.rand(2, 3, size, size))
    assert len(features) == len(backbone.channels) == len(backbone.reductions)
    for feature, channels, reduction in zip(features, backbone.channels, backbone.reductions):
        assert feature.shape[:2] == (2, channels)
        assert feature.shape[-1] == pytest.approx(size / reduction, abs=1)


def test_out_indices_and_in_chans():
    backbone = create_backbone("mobilenetv3_small_050", out_indices=(1, 3), in_chans=1)
    features = backbone(torch.rand(1, 1, 64, 64))
    assert backbone.reductions == [4, 16] and [f.shape[1] for f in features] == backbone.channels


def test_unknown_name_suggests_similar():
    with pytest.raises(ValueError, match="mobilenetv3"):
        create_backbone("mobilenetv3_smal_100")


def _same_outputs(a, b, size=64):
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        return all(torch.allclose(p, q, atol=1e-5) for p, q in zip(a.eval()(x), b.eval()(x)))


def test_safetensors_round_trip_and_plain_timm_loading(tmp_path):
    torch.manual_seed(0)
    trained = create_backbone("mobilenetv3_small_050")
    path = save_backbone(trained, tmp_path / "backbone")
    assert path.suffix == ".safetensors"
    loaded = create_backbone("mobilenetv3_small_050", pretrained=path)
    assert _same_outputs(trained, loaded)

    # Another project loads the file with plain timm, knowing nothing of moto-vision (docs/backbones.md).
    overlay = dict(file=str(path))
    features = timm.create_model(
        "mobilenetv3_small_050",
        features_only=True,
        feature_cls="getter",
        pretrained=True,
        pretrained_cfg_overlay=overlay,
    )
    assert _same_outputs(trained.model, features)
    # A headless classifier body has a conv_head the file does not hold (the docs say so and show this check).
    from safetensors.torch import load_file

    body = timm.create_model("mobilenetv3_small_050", num_classes=0)
    missing, unexpected = body.load_state_dict(load_file(path), strict=False)
    assert missing == ["conv_head.weight", "conv_head.bias"] and not unexpected


@pytest.mark.parametrize("out_indices", [None, (1,)])
def test_weights_keep_timm_names_and_timm_prunes_unused_stages(tmp_path, out_indices):
    # timm's getter feature model keeps the plain model's names (no remapping) and prunes after the last level.
    torch.manual_seed(0)
    trained = create_backbone("ghostnet_100", out_indices=out_indices)
    plain = timm.create_model("ghostnet_100").state_dict()
    keys = set(trained.timm_state_dict())
    assert keys <= set(plain) and all(trained.timm_state_dict()[k].shape == plain[k].shape for k in keys)
    assert ("blocks.7.0.shortcut.3.weight" in keys) == (out_indices is None)  # the last stage only when used
    path = save_backbone(trained, tmp_path / "ghost.safetensors", allow_partial=out_indices is not None)
    assert _same_outputs(trained, create_backbone("ghostnet_100", out_indices=out_indices, pretrained=path))


def test_pth_state_dict_of_a_full_timm_model(tmp_path):
    torch.manual_seed(0)
    classifier = timm.create_model("test_efficientnet")
    torch.save({"state_dict": classifier.state_dict()}, tmp_path / "classifier.pth")
    loaded = create_backbone("test_efficientnet", pretrained=tmp_path / "classifier.pth")
    reference = timm.create_model(
        "test_efficientnet",
        features_only=True,
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(tmp_path / "classifier.pth")),
    )
    assert _same_outputs(loaded.model, reference)


def test_input_conv_is_adapted_to_other_channel_counts(tmp_path):
    path = save_backbone(create_backbone("test_efficientnet"), tmp_path / "rgb.safetensors")
    gray = create_backbone("test_efficientnet", pretrained=path, in_chans=1)
    assert gray(torch.rand(1, 1, 64, 64))[0].shape[1] == gray.channels[0]


def test_task_checkpoint_backbone_initialises_another_model(tmp_path):
    import lightning.pytorch as pl

    from tests.helpers.toy import ToyClassifier, ToyDataModule

    torch.manual_seed(0)
    model = ToyClassifier()
    trainer = pl.Trainer(
        max_steps=2,
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        enable_model_summary=False,
        limit_val_batches=1,
    )
    trainer.fit(model, ToyDataModule())
    ckpt = tmp_path / "toy.ckpt"
    trainer.save_checkpoint(ckpt)
    from_ckpt = create_backbone("test_efficientnet", pretrained=ckpt)
    assert _same_outputs(model.backbone, from_ckpt)
    # The checkpoint also converts to a plain timm file.
    path = save_backbone(ckpt, tmp_path / "from_ckpt.safetensors")
    assert _same_outputs(model.backbone, create_backbone("test_efficientnet", pretrained=path))


def test_wrong_or_missing_weights_name_the_file(tmp_path):
    path = save_backbone(create_backbone("test_efficientnet"), tmp_path / "effnet.safetensors")
    with pytest.raises(BackboneWeightsError, match="effnet.safetensors"):
        create_backbone("test_resnet", pretrained=path)
    with pytest.raises(BackboneWeightsError, match="not found"):
        create_backbone("test_resnet", pretrained=tmp_path / "nope.safetensors")
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(BackboneWeightsError, match="broken.safetensors"):
        create_backbone("test_resnet", pretrained=bad)


def test_hub_weights_offline_fail_fast_with_a_hint():
    with pytest.raises(BackboneWeightsError, match="pass a local file"):
        create_backbone("mobilenetv3_small_050", pretrained=True)


@pytest.mark.parametrize("name", ["mobileone_s0", "repvit_m0_9", "fastvit_t8"])
def test_reparameterisation_keeps_outputs(name):
    torch.manual_seed(0)
    backbone = create_backbone(name).eval()
    # Non-trivial BatchNorm statistics so that fusing them actually matters.
    for module in backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = backbone(x)
        params_before = sum(p.numel() for p in backbone.parameters())
        backbone.reparameterize()
        after = backbone(x)
    assert sum(p.numel() for p in backbone.parameters()) < params_before
    for a, b in zip(before, after):
        # Randomly initialised deep nets reach large activations; compare relative to their scale.
        relative = ((a - b).abs().max() / a.abs().max().clamp_min(1e-6)).item()
        assert relative < 1e-4, relative


def test_list_backbones_costs_are_measured():
    info = {i.name: i for i in list_backbones(("mobilenetv3_large_100", "mobilenetv3_small_100", "mobileone_s0"))}
    large = info["mobilenetv3_large_100"]
    # Published: MobileNetV3-Large 1.0 at 224x224 has about 217M MACs and 5.48M parameters.
    assert large.macs_g == pytest.approx(0.217, rel=0.02)
    assert large.params_m == pytest.approx(5.48, rel=0.01)
    assert info["mobilenetv3_small_100"].macs_g == pytest.approx(0.057, rel=0.05)
    assert info["mobileone_s0"].reparameterizable and not large.reparameterizable
    assert large.feature_reductions == (2, 4, 8, 16, 32)


def test_backbones_verb_prints_and_writes_the_measured_table(tmp_path, capsys):
    import json

    from moto_vision.cli import main

    out = tmp_path / "costs.json"
    assert (
        main(["backbones", "--names", "test_efficientnet,test_resnet", "--input-size", "64", "--output", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "| `test_efficientnet` |" in printed and "MACs (M) @64" in printed
    rows = json.loads(out.read_text())
    assert [r["name"] for r in rows] == ["test_efficientnet", "test_resnet"] and rows[0]["macs_g"] > 0
    assert main(["backbones", "--names", "no_such_net"]) == 2


def test_freeze_backbone_keeps_weights_and_batchnorm_statistics():
    import lightning.pytorch as pl

    from tests.helpers.toy import ToyClassifier, ToyDataModule

    torch.manual_seed(0)
    model = ToyClassifier(freeze_backbone=True)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head.weight.clone()
    trainer = pl.Trainer(
        max_steps=3,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, ToyDataModule())
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())
    assert not torch.equal(head_before, model.head.weight)
    model.train()
    assert not model.backbone.training and model.head.training
