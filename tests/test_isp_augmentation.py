"""ISP augmentations (kornia classes), AWB label updates, presets, optics and codec functions."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import kornia.augmentation as K
import pytest
import torch
import torch.nn.functional as F

from moto_vision import isp
from moto_vision.isp import fusion
from moto_vision.isp.augmentation import NOISE_FIELD_IMAGES, _normal_like

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _images(b: int = 2, h: int = 32, w: int = 32, seed: int = 0, lo: float = 0.05, hi: float = 0.9) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Smooth images (upsampled noise) look more like photos than white noise and keep demosaicking sane.
    small = lo + (hi - lo) * torch.rand(b, 3, h // 4, w // 4, generator=g)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def _all_augmentations(generator: torch.Generator | None = None) -> dict[str, torch.nn.Module]:
    g = generator
    return {
        "RandomIlluminant": isp.RandomIlluminant(generator=g),
        "RandomIlluminant_srgb": isp.RandomIlluminant(domain="srgb", generator=g),
        "RandomExposure": isp.RandomExposure(generator=g),
        "RandomSensorNoise": isp.RandomSensorNoise(generator=g),
        "RandomLensShading": isp.RandomLensShading(generator=g),
        "RandomChromaticAberration": isp.RandomChromaticAberration(scale=(0.01, 0.02), generator=g),
        "RandomColorMatrix": isp.RandomColorMatrix(domain="srgb", generator=g),
        "CameraPipeline": isp.CameraPipeline(aberration=0.003, generator=g),
        "CameraPipeline_full": isp.CameraPipeline(aberration=0.003, demosaic=True, jpeg_quality=(50, 90), generator=g),
    }


# ------------------------------------------------------------------------------------------------ AWB labels
def test_awb_label_update_grey_world_image():
    # A grey-world-perfect (uniform grey) image lit by a known light, cast by the augmentation: its colour is
    # exactly the updated label.
    light = isp.sample_camera_params(6, generator=torch.Generator().manual_seed(0))["illuminant"]
    image = 0.35 * light[:, :, None, None].expand(6, 3, 16, 16) / light[:, 1:2, None, None]
    aug = isp.RandomIlluminant(p=0.5, generator=torch.Generator().manual_seed(1))
    out, label = isp.apply_with_illuminant(aug, image, light)
    colour = F.normalize(out.mean(dim=(2, 3)), dim=-1)
    assert torch.allclose(colour, label, atol=1e-5)
    assert torch.allclose(label.norm(dim=-1), torch.ones(6))
    applied = aug._params["batch_prob"] > 0.5
    assert 0 < applied.sum() < 6  # the gate skipped some images: their labels stay
    assert torch.allclose(label[~applied], light[~applied], atol=1e-6)
    assert not torch.allclose(label[applied], light[applied], atol=1e-3)
    assert torch.allclose(label, isp.update_illuminant(light, aug._params["gains"] ** applied[:, None].float()))


def test_awb_label_update_through_presets():
    light = F.normalize(torch.tensor([[0.4, 0.8, 0.45]]).repeat(4, 1), dim=-1)
    image = 0.4 * light[:, :, None, None].expand(4, 3, 32, 32) / light[:, 1:2, None, None]
    for name in ("light", "default", "heavy"):
        aug = isp.isp_preset(name, "linear", generator=torch.Generator().manual_seed(2))
        out, label = isp.apply_with_illuminant(aug, image, light)
        colour = F.normalize(out.mean(dim=(2, 3)), dim=-1)
        # Noise averages out and vignetting and chromatic aberration keep the colour; what remains is the bias of
        # noise clipped at zero in dark, underexposed channels (heavy): well under a degree.
        cos = (colour * label).sum(-1).clamp(max=1.0)
        assert torch.rad2deg(torch.acos(cos)).max() < 1.0, name


def test_applied_color_transform_composes_in_order():
    g = torch.Generator().manual_seed(3)
    seq = K.AugmentationSequential(isp.RandomIlluminant(generator=g), isp.RandomColorMatrix(generator=g))
    x = _images(3, lo=0.1, hi=0.4)
    out = seq(x)
    m = isp.applied_color_transform(seq)
    assert m.shape == (3, 3, 3)
    assert torch.allclose(out, isp.apply_color_matrix(x, m).clamp(0, 1), atol=1e-5)
    assert torch.equal(isp.applied_color_transform(torch.nn.Identity(), batch_size=2), torch.eye(3).expand(2, 3, 3))


# ------------------------------------------------------------------------------------------------ kornia behaviour
def test_masks_pass_through_untouched():
    augs = list(_all_augmentations().values())
    seq = K.AugmentationSequential(*augs, data_keys=["input", "mask"])
    x = _images(2)
    mask = torch.randint(0, 5, (2, 1, 32, 32)).float()
    out, mask_out = seq(x, mask)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert torch.equal(mask_out, mask)


@pytest.mark.parametrize("name", list(_all_augmentations()))
def test_seeded_generators_reproduce(name):
    x = _images(3)
    a = _all_augmentations(torch.Generator().manual_seed(7))[name]
    b = _all_augmentations(torch.Generator().manual_seed(7))[name]
    c = _all_augmentations(torch.Generator().manual_seed(8))[name]
    out_a, out_b, out_c = a(x), b(x), c(x)
    assert torch.equal(out_a, out_b)
    assert not torch.equal(out_a, out_c)
    # Replaying the stored parameters reproduces the output, noise included.
    assert torch.equal(a(x, params=a._params), out_a)
    assert out_a.min() >= 0 and out_a.max() <= 1


def test_global_seed_reproduces_and_p_gate():
    x = _images(8)
    torch.manual_seed(0)
    out1 = isp.isp_preset("default")(x)
    torch.manual_seed(0)
    out2 = isp.isp_preset("default")(x)
    assert torch.equal(out1, out2)
    assert torch.equal(isp.RandomSensorNoise(p=0.0)(x), x)
    aug = isp.RandomExposure(p=0.5, generator=torch.Generator().manual_seed(0))
    out = aug(x)
    skipped = aug._params["batch_prob"] < 0.5
    assert skipped.any() and torch.equal(out[skipped], x[skipped])


def test_seeded_gate_leaves_the_global_generator_alone():
    # The p-gate comes from our generator through kornia's private __batch_prob_generator__ hook; if a kornia
    # release stopped calling it, the gate would consume the global generator and this would fail.
    x = _images(8)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    aug = isp.RandomExposure(p=0.5, generator=torch.Generator().manual_seed(0))
    aug(x)
    gate = aug._params["batch_prob"].clone()
    assert torch.equal(torch.get_rng_state(), state)
    again = isp.RandomExposure(p=0.5, generator=torch.Generator().manual_seed(0))
    again(x)
    assert torch.equal(again._params["batch_prob"], gate) and 0 < int((gate > 0.5).sum()) < 8


def test_same_on_batch():
    x = _images(1).expand(4, 3, 32, 32).contiguous()
    out = isp.RandomIlluminant(same_on_batch=True)(x)
    assert torch.allclose(out, out[:1].expand_as(out))


@pytest.mark.parametrize("name", list(_all_augmentations()))
def test_gradients_reach_input_through_augmentations(name):
    aug = _all_augmentations(torch.Generator().manual_seed(0))[name]
    x = _images(2, lo=0.2, hi=0.6).requires_grad_(True)
    aug(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["RandomIlluminant", "RandomSensorNoise", "RandomLensShading", "CameraPipeline"])
def test_augmentations_half_precision(name, dtype):
    x = _images(2)
    full = _all_augmentations(torch.Generator().manual_seed(0))[name](x)
    half = _all_augmentations(torch.Generator().manual_seed(0))[name](x.to(dtype))
    assert half.dtype == dtype
    assert (half.float() - full).abs().mean() < 0.03


@pytest.mark.parametrize("device", DEVICES)
def test_presets_on_device(device):
    x = _images(2).to(device)
    for domain in ("srgb", "linear"):
        for name in isp.PRESETS:
            aug = isp.isp_preset(name, domain).to(device)
            out = aug(x)
            assert out.shape == x.shape and out.device == x.device and out.dtype == x.dtype
            assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="unknown ISP preset"):
        isp.isp_preset("strong")
    assert isinstance(isp.isp_preset("none"), torch.nn.Identity)


# ------------------------------------------------------------------------------------------------ physics
def test_camera_pipeline_without_errors_is_identity():
    # Perfect ISP (exact AWB, exact colour matrix, no noise / shading / exposure change) develops the raw image
    # back to the input: the pipeline's folded matrices are the exact inverse of each other.
    x = _images(3)
    aug = isp.CameraPipeline(
        ev=(0.0, 0.0), shot=None, corner=None, awb_error=0.0, ccm_error=(0.0, 0.0), generator=torch.Generator()
    )
    assert (aug(x) - x).abs().max() < 1e-4


def test_camera_pipeline_changes_images_realistically():
    x = _images(16)
    out = isp.CameraPipeline(generator=torch.Generator().manual_seed(0))(x)
    diff = (out - x).abs().mean(dim=(1, 2, 3))
    assert (diff > 1e-3).all() and (diff < 0.35).all()


def test_exposure_noise_and_shading_follow_their_parameters():
    flat = torch.full((4, 3, 64, 64), 0.25)
    exposure = isp.RandomExposure(ev=(-1.0, 1.0))
    out = exposure(flat)
    assert torch.allclose(out[:, :, 0, 0], 0.25 * torch.exp2(exposure._params["ev"])[:, None].expand(4, 3))

    noise = isp.RandomSensorNoise(shot=(5e-3, 1e-2))
    out = noise(flat)
    expected = noise._params["shot"] * 0.25 + noise._params["read"]
    assert torch.allclose(out.var(dim=(1, 2, 3)), expected, rtol=0.1)

    shading = isp.RandomLensShading(corner=(0.5, 0.5), color_shading=0.0)
    out = shading(flat)
    assert torch.allclose(out[:, :, 32, 32], flat[:, :, 32, 32], rtol=1e-3)  # centre keeps its light
    assert (out[:, :, 0, 0] / 0.25 - 0.5).abs().max() < 0.02  # corners get half
    assert torch.allclose(
        isp.lens_shading_map(0.5, 8, 8) * isp.lens_shading_map(0.5, 8, 8, inverse=True), torch.ones(1)
    )


def test_chromatic_aberration_moves_red_and_blue_only():
    x = _images(2, 64, 64)
    out = isp.chromatic_aberration(x, torch.tensor([[0.02, -0.02], [0.0, 0.0]]))
    assert torch.equal(out[:, 1], x[:, 1])
    assert (out[0, 0] - x[0, 0]).abs().max() > 1e-3 and (out[0, 2] - x[0, 2]).abs().max() > 1e-3
    assert torch.allclose(out[1], x[1], atol=1e-5)


def test_mosaic_demosaic_and_jpeg():
    x = _images(2, 32, 32)
    raw = isp.mosaic(x, "RGGB")
    assert raw.shape == (2, 1, 32, 32)
    assert torch.equal(raw[:, 0, 0::2, 0::2], x[:, 0, 0::2, 0::2])  # red at the top-left
    assert torch.equal(raw[:, 0, 1::2, 1::2], x[:, 2, 1::2, 1::2])
    rgb = isp.demosaic(raw, "RGGB")
    assert rgb.shape == x.shape and (rgb - x).abs().mean() < 0.02  # smooth images demosaic well
    low, high = isp.jpeg(x, 10.0), isp.jpeg(x, 95.0)
    assert (low - x).abs().mean() > (high - x).abs().mean()


def test_isp_is_lightning_free():
    # Nothing below ``tasks`` imports Lightning: the ISP imports only torch, kornia, the stdlib, itself and the base
    # dependencies numpy / scipy / pyyaml (spectral tables, sensitivity fits, camera files).
    allowed = {"torch", "kornia", "moto_vision", "__future__", "typing", "math", "os", "warnings", "collections"}
    allowed |= {"functools", "hashlib", "json", "pathlib", "numpy", "scipy", "yaml"}
    for path in Path(isp.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{path.name} imports {roots - allowed}"


def test_camera_pipeline_develops_only_gated_images():
    x = _images(6).requires_grad_(True)
    aug = isp.CameraPipeline(p=0.5, generator=torch.Generator().manual_seed(4))
    out = aug(x)
    applied = aug._params["batch_prob"] > 0.5
    assert 0 < applied.sum() < 6
    assert torch.equal(out[~applied], x[~applied])
    assert ((out[applied] - x[applied]).abs().mean(dim=(1, 2, 3)) > 1e-3).all()
    # The gated images match a full-batch run with the same parameters.
    full = isp.CameraPipeline(generator=torch.Generator())
    ref = full(x[applied], params={k: v[applied] for k, v in aug._params.items() if k != "forward_input_shape"})
    assert torch.allclose(out[applied], ref, atol=1e-6)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.equal(x.grad[~applied], torch.ones_like(x.grad[~applied]))


def test_lens_shading_map_folds_gains():
    corner, gains = torch.tensor([[0.5, 0.6, 0.7]]), torch.tensor([[2.0, 1.0, 0.5]])
    folded = isp.lens_shading_map(corner, 8, 12, inverse=True, gain=gains)
    assert torch.allclose(folded, isp.lens_shading_map(corner, 8, 12, inverse=True) * gains[:, :, None, None])


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="no C++ compiler")
def test_fused_camera_pipeline_matches_eager(monkeypatch):
    # Long runs get the torch.compile'd chains (isp.fusion, "auto"); the tests run eagerly (conftest).
    x = _images(5, 48, 40)

    def run(compile_flag: str) -> torch.Tensor:
        monkeypatch.setenv(fusion.COMPILE_ENV, compile_flag)
        aug = isp.CameraPipeline(aberration=0.003, generator=torch.Generator().manual_seed(2))
        return aug(x)

    eager, fused = run("0"), run("1")
    assert not fusion._FAILED, fusion._FAILED
    torch.testing.assert_close(fused, eager, atol=2e-5, rtol=1e-5)
    # Other batch and image sizes reuse the compiled code (dynamic shapes) and stay equal too.
    monkeypatch.setenv(fusion.COMPILE_ENV, "1")
    y = _images(3, 32, 64, seed=1)
    fused_y = isp.CameraPipeline(generator=torch.Generator().manual_seed(5))(y)
    monkeypatch.setenv(fusion.COMPILE_ENV, "0")
    torch.testing.assert_close(
        fused_y, isp.CameraPipeline(generator=torch.Generator().manual_seed(5))(y), atol=2e-5, rtol=1e-5
    )


def test_batch_noise_is_standard_normal_per_image_and_reproducible():
    image = torch.zeros(4 * NOISE_FIELD_IMAGES, 3, 32, 32)
    noise = _normal_like(image, torch.tensor([7]))
    assert noise.shape == image.shape
    per_image = noise.flatten(1)
    assert (per_image.mean(1).abs() < 0.05).all() and ((per_image.std(1) - 1).abs() < 0.05).all()
    assert not torch.equal(noise[0], noise[1])  # windows start at different places of the field
    assert torch.equal(noise, _normal_like(image, torch.tensor([7])))
    assert not torch.equal(noise, _normal_like(image, torch.tensor([8])))
    # Small batches draw every image's noise afresh.
    small = _normal_like(image[:NOISE_FIELD_IMAGES], torch.tensor([7]))
    assert small.is_contiguous() and small.shape == (NOISE_FIELD_IMAGES, 3, 32, 32)


def test_auto_fusion_compiles_only_when_the_run_ahead_pays(monkeypatch):
    monkeypatch.setenv(fusion.COMPILE_ENV, "auto")
    monkeypatch.setattr(fusion, "_FAILED", [])
    compiles: list[str] = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: compiles.append(fn.__name__) or fn)
    chain = fusion.fused(lambda x: x * 2 + 1)
    x = torch.ones(2, 3, 8, 8)
    fusion.expect_calls(None)  # no hint (a user's own loop): eager
    chain(x)
    fusion.expect_calls(8)  # an 8-step run: compiling would cost more than it saves
    chain(x)
    assert compiles == []
    fusion.expect_calls(int(fusion.PAYBACK_ELEMENTS // x.numel()) + 1)  # a run long enough to pay it back
    torch.testing.assert_close(chain(x), x * 2 + 1)
    assert len(compiles) == 1
    fusion.expect_calls(None)
