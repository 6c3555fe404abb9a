"""Pure ISP functions: colour science, illuminants, unprocess/process, sensor noise."""

from __future__ import annotations

import math

import pytest
import torch

from moto_vision import isp


def _images(b: int = 2, h: int = 16, w: int = 16, lo: float = 0.05, hi: float = 0.85, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(b, 3, h, w, generator=g)


# ------------------------------------------------------------------------------------------------ curves
def test_srgb_curve_known_values_and_inverse():
    x = torch.tensor([0.0, 0.04045, 0.5, 1.0])
    lin = isp.srgb_to_linear(x)
    assert torch.allclose(lin, torch.tensor([0.0, 0.04045 / 12.92, 0.214041, 1.0]), atol=1e-5)
    y = torch.linspace(-0.1, 1.2, 500)
    assert torch.allclose(isp.linear_to_srgb(isp.srgb_to_linear(y)), y, atol=1e-5)


def test_tone_curve_inverse():
    y = torch.linspace(0, 1, 1001)
    assert torch.allclose(isp.tone_curve(isp.inverse_tone_curve(y)), y, atol=1e-5)
    assert isp.tone_curve(torch.tensor(0.25)).item() == pytest.approx(3 * 0.25**2 - 2 * 0.25**3)


# ------------------------------------------------------------------------------------------------ illuminants
def test_planckian_matches_cie_chromaticities():
    # CIE standard illuminant A is a 2856 K black body at xy (0.44757, 0.40745); the Kim et al. cubic
    # approximation is within 0.001 in xy of the exact locus.
    xy_a = isp.cct_duv_to_xy(2856.0)
    assert torch.allclose(xy_a, torch.tensor([0.44757, 0.40745], dtype=torch.float64), atol=1e-3)
    cct, duv = isp.xy_to_cct_duv(torch.tensor([0.44757, 0.40745]))
    assert cct.item() == pytest.approx(2856, rel=5e-3) and abs(duv.item()) < 5e-4
    # D65 (the sRGB white, xy 0.3127 0.3290) has a CCT close to 6504 K and sits 0.0032 above the locus.
    cct, duv = isp.illuminant_to_cct(torch.ones(3))
    assert cct.item() == pytest.approx(6504, abs=15) and duv.item() == pytest.approx(0.0032, abs=3e-4)
    d65 = isp.planckian_illuminant(6504.0, 0.0032)
    assert torch.allclose(d65, torch.full((3,), 1 / math.sqrt(3)), atol=2e-3)
    # A tungsten light is reddish, a blue sky bluish.
    warm, cold = isp.planckian_illuminant(torch.tensor([2856.0, 12000.0]))
    assert warm[0] > warm[1] > warm[2] and cold[2] > cold[1] > cold[0]


def test_illuminant_to_cct_inverts_planckian_vectorised():
    cct = torch.linspace(2600.0, 25000.0, 200, dtype=torch.float64).repeat(3)
    duv = torch.tensor([-0.01, 0.0, 0.01], dtype=torch.float64).repeat_interleave(200)
    rgb = isp.planckian_illuminant(cct, duv)
    assert rgb.shape == (600, 3) and rgb.dtype == torch.float64
    assert torch.allclose(rgb.norm(dim=-1), torch.ones(600, dtype=torch.float64))
    cct_back, duv_back = isp.illuminant_to_cct(rgb * 7.0)  # scale does not matter
    assert torch.allclose(cct_back, cct, rtol=1e-3)
    assert torch.allclose(duv_back, duv, atol=1e-5)
    # Exactly on the locus the inversion is exact, down to where the locus leaves the sRGB gamut (~1900 K).
    cct = torch.linspace(1950.0, 25000.0, 300, dtype=torch.float64)
    cct_back, duv_back = isp.illuminant_to_cct(isp.planckian_illuminant(cct))
    assert torch.allclose(cct_back, cct, rtol=1e-6) and duv_back.abs().max() < 1e-7


def test_gains_white_balance_a_cast_image():
    light = isp.planckian_illuminant(torch.tensor([3000.0, 7500.0]))
    grey = torch.full((2, 3, 4, 4), 0.3) * light[:, :, None, None]
    balanced = isp.apply_gains(grey, isp.illuminant_to_gains(light))
    assert torch.allclose(balanced, balanced[:, 1:2].expand_as(balanced), atol=1e-6)
    assert torch.allclose(balanced[:, 1], grey[:, 1])  # green preserved


def test_update_illuminant_gains_and_matrix():
    light = torch.tensor([[0.3, 0.8, 0.5]])
    gains = torch.tensor([[2.0, 1.0, 0.5]])
    new = isp.update_illuminant(light, gains)
    assert torch.allclose(new, torch.nn.functional.normalize(light * gains, dim=-1))
    matrix = torch.diag_embed(gains)
    assert torch.allclose(isp.update_illuminant(light, matrix), new)


# ------------------------------------------------------------------------------------------------ colour matrices
def test_random_camera_matrix_is_realistic_and_seeded():
    m = isp.random_camera_matrix(8, generator=torch.Generator().manual_seed(3))
    assert m.shape == (8, 3, 3)
    assert torch.allclose(m.sum(-1), torch.ones(8, 3), atol=1e-5)  # white stays white
    assert (m.diagonal(dim1=1, dim2=2) > 0.3).all()
    assert torch.equal(m, isp.random_camera_matrix(8, generator=torch.Generator().manual_seed(3)))
    # The native camera response to daylight is green-dominant, as in real raw files.
    xyz2cam = isp.random_xyz_to_camera(8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    d65_raw = xyz2cam @ isp.planckian_xyz(6504.0, 0.0032)
    assert (d65_raw.argmax(-1) == 1).all()


def test_inverse_3x3_matches_linalg():
    m = isp.random_camera_matrix(6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(isp.inverse_3x3(m), torch.linalg.inv(m), atol=1e-12)
    params = isp.sample_camera_params(4)
    assert torch.allclose(params["ccm"] @ params["rgb2cam"], torch.eye(3).expand(4, 3, 3), atol=1e-5)


def test_apply_color_matrix_per_image():
    x = _images(3)
    m = isp.random_camera_matrix(3)
    out = isp.apply_color_matrix(x, m)
    ref = torch.einsum("bij,bjhw->bihw", m, x)
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(isp.apply_color_matrix(x, torch.eye(3)), x)


# ------------------------------------------------------------------------------------------------ pipeline
def test_unprocess_process_round_trip():
    x = _images(4, 24, 24)
    raw, params = isp.unprocess(x, generator=torch.Generator().manual_seed(0))
    assert raw.shape == x.shape and raw.min() >= 0 and raw.max() <= 1
    for key in ("illuminant", "gains", "ccm", "rgb2cam", "cct", "tint", "digital_gain"):
        assert key in params and params[key].shape[0] == 4
    assert torch.allclose(params["illuminant"].norm(dim=-1), torch.ones(4))
    out = isp.process(raw, params)
    # Away from clipping (mid-range pixels of an in-gamut image) the round trip is exact to float precision.
    assert (out - x).abs().max() < 1e-4
    # A saturated image clips: the error is bounded and confined to clipped pixels.
    bright = _images(2, 16, 16, lo=0.0, hi=1.0)
    raw_b, params_b = isp.unprocess(bright, generator=torch.Generator().manual_seed(1))
    err = (isp.process(raw_b, params_b) - bright).abs()
    assert err.mean() < 0.02


def test_unprocess_grey_has_illuminant_colour():
    grey = torch.full((3, 3, 8, 8), 0.4)
    raw, params = isp.unprocess(grey, generator=torch.Generator().manual_seed(5))
    colour = torch.nn.functional.normalize(raw.mean((2, 3)), dim=-1)
    assert torch.allclose(colour, params["illuminant"], atol=1e-5)
    # Real raw: green dominates the light's colour for daylight.
    day = isp.sample_camera_params(16, cct_range=(5500, 6500), tint_range=(0, 0.004))
    assert (day["illuminant"].argmax(-1) == 1).all()


def test_unprocess_reuses_params():
    x = _images(2)
    raw1, params = isp.unprocess(x, generator=torch.Generator().manual_seed(0))
    raw2, _ = isp.unprocess(x, params)
    assert torch.equal(raw1, raw2)


# ------------------------------------------------------------------------------------------------ sensor
def test_noise_variance_matches_model_on_flat_fields():
    levels = torch.tensor([0.05, 0.2, 0.4, 0.6, 0.8])
    shot, read = 0.01, 4e-4
    flat = levels.view(-1, 1, 1, 1).expand(5, 3, 128, 128).contiguous()
    noisy = isp.add_sensor_noise(flat, shot, read, generator=torch.Generator().manual_seed(0))
    var = noisy.var(dim=(1, 2, 3))
    assert torch.allclose(noisy.mean(dim=(1, 2, 3)), levels, atol=2e-3)
    # Least-squares fit of variance = shot * level + read.
    design = torch.stack([levels, torch.ones(5)], dim=1)
    fit = torch.linalg.lstsq(design, var[:, None]).solution.squeeze(1)
    assert fit[0].item() == pytest.approx(shot, rel=0.05)
    assert fit[1].item() == pytest.approx(read, rel=0.2)


def test_noise_levels_follow_brooks_relation():
    shot, read = isp.random_noise_levels(4000, generator=torch.Generator().manual_seed(0))
    assert shot.min() >= 1e-4 and shot.max() <= 1.2e-2
    x, y = shot.log(), read.log()
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    assert slope.item() == pytest.approx(2.18, abs=0.05)
    assert (y - 2.18 * x).mean().item() == pytest.approx(1.20, abs=0.03)


def test_exposure_and_clipping():
    x = _images(2)
    assert torch.allclose(isp.adjust_exposure(x, torch.tensor([1.0, -1.0]))[0], 2 * x[0])
    assert isp.clip_highlights(x * 3).max() == 1.0


# ------------------------------------------------------------------------------------------------ generic behaviour
def _pure_functions():
    params = isp.sample_camera_params(2, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    return {
        "srgb_to_linear": isp.srgb_to_linear,
        "linear_to_srgb": isp.linear_to_srgb,
        "tone_curve": isp.tone_curve,
        "inverse_tone_curve": isp.inverse_tone_curve,
        "apply_gains": lambda x: isp.apply_gains(x, params["gains"]),
        "apply_color_matrix": lambda x: isp.apply_color_matrix(x, params["ccm"]),
        "unprocess": lambda x: isp.unprocess(x, params)[0],
        "process": lambda x: isp.process(x, params),
        "adjust_exposure": lambda x: isp.adjust_exposure(x, 0.5),
        "add_sensor_noise": lambda x: isp.add_sensor_noise(x, 0.01, 1e-3, noise=noise),
        "clip_highlights": isp.clip_highlights,
    }


@pytest.mark.parametrize("name", list(_pure_functions()))
def test_gradients_reach_input(name):
    fn = _pure_functions()[name]
    x = _images(2, 8, 8, lo=0.1, hi=0.6).requires_grad_(True)
    fn(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(_pure_functions()))
def test_half_precision(name, dtype):
    fn = _pure_functions()[name]
    x = _images(2, 8, 8, lo=0.1, hi=0.6)
    out = fn(x.to(dtype))
    assert out.dtype == dtype
    tol = 2e-2 if dtype == torch.float16 else 6e-2
    assert (out.float() - fn(x)).abs().max() < tol


def test_single_image_batch_and_grey_broadcast():
    x = _images(1)
    raw, params = isp.unprocess(x)
    assert raw.shape == (1, 3, 16, 16) and params["ccm"].shape == (1, 3, 3)


def test_noise_inplace_fast_path_matches_autograd_path():
    x = _images(2)
    n = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast = isp.add_sensor_noise(x, 0.01, 1e-3, noise=n)
    slow = isp.add_sensor_noise(x.clone().requires_grad_(True), 0.01, 1e-3, noise=n)
    assert torch.allclose(fast, slow.detach(), atol=1e-6)
    assert torch.equal(n, torch.randn(x.shape, generator=torch.Generator().manual_seed(0)))  # caller's noise kept
